"""Grids on a Dask cluster: one task per missing run (`bgad-mini ablate --scheduler tcp://HOST:8786`).

    records = run_grid(configs, "runs/ablate", scheduler="tcp://lab-1:8786")      # or a scheduler file's path

`grid.run_grid` plans the grid as for local runs and hands the missing runs here (`bgad-mini[cluster]` installs
dask[distributed]). The shared run folder stays the source of truth: finished runs are never submitted, each run
writes its files atomically, `runs.RunLock` keeps two workers from training the same run, and rerunning the grid
submits only what is still missing. Every path a run reads or writes must mean the same on every worker: a shared
filesystem mounted at the same path, and absolute `--data-root` / `--out` (or workers started in the project folder).

- **Threads.** Dask's workers start with OMP_NUM_THREADS=1, so each task sets its own: `threads_per_task`, or by
  default the worker machine's cores divided by the runs its workers run at once (the sum of their `--nthreads`),
  the rule of local processes (`grid.threads_per_job`). The task sets the environment, `cfg.threads` and, where a
  previous task already imported torch, `torch.set_num_threads`.
- **GPUs.** A run whose config says `device=cuda` (`--set device=cuda`) asks for the resource `GPU=1`, so it runs
  only on workers started with `--resources GPU=1`, one at a time per GPU. `device=auto` runs anywhere and uses a
  GPU where its worker has one.
- **Lost workers.** A run whose worker dies (killed, out of memory, a pre-empted node) goes back to the scheduler
  and runs on another worker, up to the scheduler's `distributed.scheduler.allowed-failures` (3) times; then it is
  reported as failed (`KilledWorker`). A run that raises is not retried: `grid._run_one` returns its failure,
  reported in one line, and the other runs go on.
- **Progress.** Each task logs an event when it starts, so the grid's `started` (the lab's "running") names the
  worker's address; the outcome's `where` is the worker that finished it. `stop` cancels the runs not yet started;
  a run already running cannot be interrupted inside its worker: it finishes there (and is reused next time), but
  the grid returns at once with it marked "stopped".
"""
from __future__ import annotations

import dataclasses
import json
import os
import queue
import sys
import uuid
from pathlib import Path
from typing import Any, Callable

from .errors import BgadError

#: Seconds to wait for the scheduler to answer before the one-line error.
CONNECT_TIMEOUT = 10.0
INSTALL = "the Dask executor needs dask[distributed]: pip install 'bgad-mini[cluster]'"


def describe(scheduler: str) -> str:
    """The progress line's "in ..." for a scheduler address or scheduler file (no connection made)."""
    where = f"at {scheduler}" if "://" in scheduler else f"of scheduler file {scheduler}"
    return f"the Dask cluster {where}, one task per run"


def connect(scheduler: str, timeout: float | None = None):
    """A `distributed.Client` for "tcp://HOST:8786" or a scheduler file, or a one-line BgadError naming the fix."""
    try:
        from distributed import Client
    except ImportError:
        raise BgadError(INSTALL) from None
    timeout = CONNECT_TIMEOUT if timeout is None else timeout
    if "://" in scheduler:
        kw: dict[str, Any] = {"address": scheduler}
        address = scheduler
    else:
        path = Path(scheduler)
        if not path.is_file():
            raise BgadError(f"scheduler file {scheduler} not found; start a scheduler with `dask scheduler "
                            f"--scheduler-file {scheduler}` or pass --scheduler tcp://HOST:8786")
        kw = {"scheduler_file": str(path)}
        address = f"{_file_address(path)} (from {scheduler})"
    try:
        return Client(**kw, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise BgadError(f"no Dask scheduler answers at {address} within {timeout:g} s "
                        f"({type(exc).__name__}); start one with `dask scheduler` and workers with "
                        f"`dask worker tcp://HOST:8786`, or check the address") from None


def _file_address(path: Path) -> str:
    try:
        return str(json.loads(path.read_text()).get("address", "?"))
    except (OSError, ValueError):
        return "?"


def task_resources(config: dict) -> dict[str, int] | None:
    """`{"GPU": 1}` for a run whose config asks for CUDA, else no constraint."""
    return {"GPU": 1} if str(config.get("device", "auto")).startswith("cuda") else None


def task_threads(requested: int, cores: int, slots: int) -> int:
    """`requested` if > 0, else max(1, cores // slots): the worker machine shared by the runs it runs at once."""
    return requested if requested > 0 else max(1, cores // max(1, slots))


def _host_slots(workers: dict[str, dict]) -> dict[str, int]:
    """Runs that can run at once on each host: the sum of its workers' nthreads."""
    slots: dict[str, int] = {}
    for info in workers.values():
        slots[info["host"]] = slots.get(info["host"], 0) + int(info.get("nthreads", 1))
    return slots


def scheduler_workers(client) -> dict[str, dict]:
    """Every worker the scheduler knows (distributed 2025.4–2026.6 list only 5 unless asked for all)."""
    try:
        return client.scheduler_info(n_workers=-1)["workers"]
    except TypeError:  # distributed before 2025.4: always all of them
        return client.scheduler_info()["workers"]


def run_task(call: Callable[..., dict], requested: int, host_slots: dict[str, int], topic: str, index: int) -> dict:
    """One run inside a Dask worker: announce it, choose and set the threads, run `grid._run_one` (never raises).

    The machine's task slots are read from the live cluster when the run starts (workers may have joined after the
    grid was submitted, as with dask-jobqueue), falling back to `host_slots` taken at submission."""
    from distributed import get_client, get_worker
    from distributed.comm import get_address_host

    from .grid import available_cores

    worker = get_worker()
    worker.log_event(topic, {"index": index, "where": worker.address})
    host = get_address_host(worker.address)
    try:
        host_slots = _host_slots(scheduler_workers(get_client()))
    except Exception:  # noqa: BLE001 - no client from inside this worker: the slots taken at submission
        pass
    slots = host_slots.get(host, worker.state.nthreads)
    cores = available_cores()
    threads = task_threads(requested, cores, slots)
    if "torch" in sys.modules:  # a previous task imported it: the environment alone no longer counts
        sys.modules["torch"].set_num_threads(threads)
    outcome = call(threads=threads)  # sets OMP/MKL threads and cfg.threads
    outcome["where"] = worker.address
    return outcome


def _lost(fut, stopping: bool) -> dict:
    """The outcome of a task that returned nothing: its workers died, or it was cancelled."""
    if stopping:
        from .grid import STOPPED

        return dict(STOPPED)
    exc = fut.exception() if fut.status == "error" else None
    if exc is None:
        error = f"the task was {fut.status} (scheduler restarted or connection lost); rerun the grid"
    else:
        from .grid import one_line

        error = one_line(exc)
    return {"status": "failed", "results": None, "error": error, "seconds": 0.0}


def execute_dask(execution, scheduler: str) -> None:
    """Run `execution`'s jobs (a `grid.Execution`) as one task each on the cluster of `scheduler`."""
    client = connect(scheduler)
    topic = f"bgad-mini-{uuid.uuid4().hex[:12]}"
    events: queue.Queue = queue.Queue()  # ("start", index, where) from the tasks, ("done", future) from Dask
    futures: dict[Any, Any] = {}
    try:
        client.subscribe_topic(topic, lambda event: events.put(("start", event[1]["index"], event[1]["where"])))
        workers = scheduler_workers(client)
        _warn_if_unservable(execution, workers)
        slots = _host_slots(workers)
        for job in execution.jobs:
            job = dataclasses.replace(job, run_dir=os.path.abspath(job.run_dir))  # the same on a shared filesystem
            fut = client.submit(run_task, execution.call(job), execution.threads, slots, topic, job.index,
                                key=f"bgad-{Path(job.run_dir).name}-{uuid.uuid4().hex[:8]}", pure=False,
                                resources=task_resources(job.config))
            futures[fut] = job
            fut.add_done_callback(lambda f: events.put(("done", f)))
        _follow(execution, client, futures, events)
    except KeyboardInterrupt:
        client.cancel(list(futures))
        raise
    finally:
        client.close()


def _warn_if_unservable(execution, workers: dict[str, dict]) -> None:
    needs_gpu = any(task_resources(job.config) for job in execution.jobs)
    relative = sorted({job.config["data_root"] for job in execution.jobs if not os.path.isabs(job.config["data_root"])})
    if relative:  # part of a run's identity, so it cannot be made absolute here
        print(f"bgad-mini: the data root {relative[0]} is relative: each worker reads it in its own working folder "
              "(start the workers there, or give --data-root an absolute path)", file=sys.stderr)
    if not workers:
        print("bgad-mini: the Dask scheduler has no workers yet; runs wait for `dask worker ...`", file=sys.stderr)
    elif needs_gpu and not any(w.get("resources", {}).get("GPU") for w in workers.values()):
        print("bgad-mini: device=cuda runs wait for a worker started with --resources GPU=1 (none is connected)",
              file=sys.stderr)


def _follow(execution, client, futures: dict, events: queue.Queue) -> None:
    """Report starts and ends as their events come, until every task is done or `stop` cancels the rest."""
    announced: dict[int, str] = {}
    left = {job.index: fut for fut, job in futures.items()}
    while left:
        try:
            event = events.get(timeout=0.5)
        except queue.Empty:
            event = None
        if event is not None and event[0] == "start":
            _, i, where = event
            if i in left and announced.get(i) != where:  # a second start: it lost its worker, runs elsewhere
                announced[i] = where
                execution.started(i, where)
        elif event is not None and futures[event[1]].index in left:
            fut = event[1]
            i = futures[fut].index
            outcome = fut.result() if fut.status == "finished" else _lost(fut, execution.stopping())
            if i not in announced and outcome.get("where"):
                execution.started(i, outcome["where"])  # its start event has not come yet
            del left[i]
            execution.finish(i, outcome)
        if execution.stopping() and left:
            client.cancel(list(left.values()))
            for i in list(left):
                del left[i]
                execution.finish(i, _lost(None, stopping=True))
