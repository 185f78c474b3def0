"""Ablation grids: expand a grid of runs and run it, in parallel, reusing every finished run.

    configs = expand_grid(methods=("nf", "bgad"), categories=("brick",), known_types=("crack",), seeds=(0, 1, 2),
                          grid={"beta": (0.01, 0.05)}, profile="book")
    records = run_grid(configs, "runs/ablate", jobs=2)     # out/runs/<key>/results.json, reused when present

Each run lives in `out/runs/<run_key>` (`runs`: the key covers the config, the code and the data), so rerunning a
grid after an interruption, or after a code change, runs only what is missing or stale. Parallel jobs are
separate processes, each with `max(1, cores // jobs)` torch threads (jobs × threads ≤ cores: see
`reference/cpu_measurements.md` for the 5–35x slow-down of oversubscription). `summary` collects and tabulates.
"""
from __future__ import annotations

import contextlib
import functools
import itertools
import os
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from .config import ALIASES, METHOD_PARAMS, METHODS, RELEVANT_PARAMS, RUNTIME_FIELDS, SETTINGS, Config
from .data import read_category
from .errors import BgadError
from .runs import RUNS, RunFolder, finished, load_or_run, run_key

#: Fields with their own flag (--methods, --settings, ...), so not allowed as --grid axes.
STRUCTURAL = {"method": "--methods", "setting": "--settings", "category": "--categories",
              "known_types": "--known-types", "seed": "--seeds", "profile": "--profile", "data_root": "--data-root"}

# ----------------------------------------------------------------------------------------------
# Grid expansion
# ----------------------------------------------------------------------------------------------
def parse_grid(items: Iterable[str]) -> dict[str, list[str]]:
    """`["beta=0.01,0.05", "boundary=batch,epoch"]` -> `{"beta": ["0.01", "0.05"], ...}` (values typed later)."""
    grid: dict[str, list[str]] = {}
    for item in items:
        if "=" not in item:
            raise BgadError(f"--grid expects key=v1,v2,..., got {item!r}; e.g. --grid beta=0.01,0.05")
        key, values = item.split("=", 1)
        vals = [v.strip() for v in values.split(",") if v.strip()]
        if not vals:
            raise BgadError(f"--grid {key.strip()} has no values; e.g. --grid {key.strip()}=0.01,0.05")
        grid.setdefault(key.strip(), []).extend(vals)
    return grid


def _grid_field(key: str) -> str:
    """The Config field a grid key names (aliases such as lambda -> lam), or a one-line BgadError."""
    field = ALIASES.get(key, key)
    if field in STRUCTURAL:
        raise BgadError(f"{key!r} is not a --grid axis; use {STRUCTURAL[field]}")
    if field in RUNTIME_FIELDS:
        raise BgadError(f"{key!r} is not a --grid axis: it does not change results (threads follow --jobs)")
    known = set(Config.__dataclass_fields__) - set(STRUCTURAL) - set(RUNTIME_FIELDS) - {"extra"}
    if field not in known:
        raise BgadError(f"unknown grid key {key!r}; grid keys are Config fields, e.g. beta, tau, lambda, boundary, "
                        f"n_known (all: {', '.join(sorted(known))})")
    return field


def _known_type_sets(known_types: Iterable[str | Sequence[str]] | None) -> list[tuple[str, ...]]:
    """Each entry is one run's seen types: "crack", "crack,hole" (two seen types) or a tuple."""
    if not known_types:
        return [()]
    out: list[tuple[str, ...]] = []
    for entry in known_types:
        parts = entry.replace("+", ",").split(",") if isinstance(entry, str) else list(entry)
        types = tuple(dict.fromkeys(p.strip() for p in parts if p.strip()))
        if types and types not in out:
            out.append(types)
    return out or [()]


def expand_grid(
    methods: Sequence[str] = ("nf",),
    settings: Sequence[str] = ("one-class",),
    categories: Sequence[str] | None = None,
    known_types: Iterable[str | Sequence[str]] | None = None,
    seeds: Sequence[int] = (0,),
    grid: Mapping[str, Sequence[Any]] | None = None,
    profile: str = "book",
    data_root: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    base: Config | None = None,
    check_data: bool = True,
) -> list[Config]:
    """The cartesian product methods × settings × known types × categories × seeds × grid axes, as Configs.

    `base` (or the `profile` with `data_root` and `overrides`, e.g. from --set) gives every other field.
    Known types apply to the one-class setting only (multi-class runs ignore them); each entry is one run's
    seen type(s). Grid axes over method-specific fields that a method does not read (`RELEVANT_PARAMS`) are
    collapsed to the base value for that method, and identical configs are kept once (order preserved).
    `check_data` reads each category's defect types (file names only) to catch a missing category or an
    unknown known type before any run starts, and fills the one-class default (the first type) when no known
    type is given. Raises a one-line BgadError on an unknown method, setting or grid key.
    """
    for m in methods:
        if m not in METHODS:
            raise BgadError(f"unknown method {m!r}; choose from {', '.join(METHODS)}")
    for s in settings:
        if s not in SETTINGS:
            raise BgadError(f"unknown setting {s!r}; choose from {', '.join(SETTINGS)}")
    if not methods or not settings or not seeds:
        raise BgadError("a grid needs at least one method, one setting and one seed")
    if base is None:
        ov = dict(overrides or {})
        if data_root is not None:
            ov["data_root"] = data_root
        base = Config.from_profile(profile, **ov)
    categories = list(categories) if categories else [base.category]
    axes: list[tuple[str, list[Any]]] = []
    for key, values in (grid or {}).items():
        values = list(values)
        if not values:
            raise BgadError(f"grid axis {key!r} has no values")
        field = _grid_field(key)
        # typed and checked once, whichever methods use the axis (a bad value fails even if collapsed)
        typed = list(dict.fromkeys(getattr(base.with_overrides(**{field: v}), field) for v in values))
        axes.append((field, typed))
    type_sets = _known_type_sets(known_types)
    defect_types = _defect_types(base.data_root, categories) if check_data else {}

    configs: list[Config] = []
    seen: set[str] = set()
    for method in methods:
        relevant = set(RELEVANT_PARAMS[method])
        m_axes = [(f, vals if (f not in METHOD_PARAMS or f in relevant) else [getattr(base, f)]) for f, vals in axes]
        for setting in settings:
            for types in (type_sets if setting == "one-class" else [()]):
                for category in categories:
                    types_c = types
                    if setting == "one-class" and check_data:
                        types_c = _check_types(category, types, defect_types[category])
                    for seed in seeds:
                        for combo in itertools.product(*[vals for _, vals in m_axes]):
                            ov = {"method": method, "setting": setting, "known_types": types_c,
                                  "category": category, "seed": int(seed)}
                            ov.update({f: v for (f, _), v in zip(m_axes, combo)})
                            cfg = base.with_overrides(**ov)
                            key = run_key(cfg)
                            if key not in seen:
                                seen.add(key)
                                configs.append(cfg)
    return configs


def _defect_types(data_root: str, categories: Sequence[str]) -> dict[str, list[str]]:
    return {c: read_category(data_root, c, check_sizes=False).defect_types for c in dict.fromkeys(categories)}


def _check_types(category: str, types: tuple[str, ...], found: list[str]) -> tuple[str, ...]:
    if not types:
        if not found:
            raise BgadError(f"category {category!r} has no defect types to draw known anomalies from")
        return (found[0],)
    missing = [t for t in types if t not in found]
    if missing:
        raise BgadError(f"known type(s) {', '.join(missing)} not in category {category!r}; types found: "
                        f"{', '.join(found)}")
    return types


# ----------------------------------------------------------------------------------------------
# Running
# ----------------------------------------------------------------------------------------------
def available_cores() -> int:
    """Cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def threads_per_job(jobs: int, cores: int | None = None) -> int:
    """max(1, cores // jobs), and never more than a user's OMP_NUM_THREADS: jobs × threads ≤ cores."""
    per = max(1, (cores or available_cores()) // max(1, jobs))
    cap = os.environ.get("OMP_NUM_THREADS", "")
    if cap.isdigit() and int(cap) > 0:
        per = min(per, int(cap))
    return per


def _set_thread_env(threads: int) -> None:
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)


def _load_or_run(cfg: Config, run_dir: str, progress: bool = False) -> dict:
    return load_or_run(cfg, run_dir, progress=progress).results


def _run_one(cfg_dict: dict, run_dir: str, threads: int, runner: Callable | None, in_worker: bool,
             results_only: bool = False, log: bool = False) -> dict:
    """One job (in a worker process, or in this one when jobs = 1): never raises, reports failure instead.

    With `log`, the run's progress bars and messages go to its `run.log` (read by the lab's per-run bars)."""
    if in_worker:
        _set_thread_env(threads)  # before this process imports torch (the pipeline imports it lazily)
    start = time.perf_counter()
    out = Path(run_dir)
    try:
        cfg = Config.from_dict(cfg_dict).with_overrides(threads=threads)
        out.mkdir(parents=True, exist_ok=True)
        if log:
            with open(RunFolder(out).log, "a", buffering=1) as fh, \
                    contextlib.redirect_stderr(fh), contextlib.redirect_stdout(fh):
                results = (runner or _load_or_run)(cfg, str(out), progress=True)
        else:
            results = (runner or _load_or_run)(cfg, str(out), progress=False)
        if results_only:  # a published grid keeps results.json only
            for f in out.iterdir():
                if f.name != RunFolder(out).results.name:
                    f.unlink()
        return {"status": "trained", "results": results, "error": None, "seconds": time.perf_counter() - start,
                "pid": os.getpid()}
    except BaseException as exc:  # noqa: BLE001 - one job's failure must not stop the others
        if isinstance(exc, KeyboardInterrupt) and not in_worker:
            raise
        try:
            out.mkdir(parents=True, exist_ok=True)
            RunFolder(out).error.write_text(traceback.format_exc())
        except OSError:
            pass
        return {"status": "failed", "results": None, "error": one_line(exc),
                "seconds": time.perf_counter() - start, "pid": os.getpid()}


def one_line(exc: BaseException) -> str:
    """`Type: message` on one line (a grid reports a failed run this way; its traceback is in error.txt)."""
    msg = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {msg}"


def _init_worker(threads: int) -> None:
    """A pool process: its thread budget, and an end of its own when its parent dies (a killed kernel must not
    leave runs training for no one)."""
    import multiprocessing

    _set_thread_env(threads)
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=lambda: (parent.join(), os._exit(1)), daemon=True).start()


def _fmt_metrics(m: Mapping[str, Any] | None) -> str:
    if not m:
        return "n/a"
    return " ".join(f"{k.replace('_auroc', '')}={'n/a' if v is None else f'{v:.3f}'}" for k, v in m.items())


def dedupe(configs: Iterable[Config]) -> list[Config]:
    """`configs` without repeats (same run key), first occurrence kept."""
    out: dict[str, Config] = {}
    for cfg in configs:
        out.setdefault(run_key(cfg), cfg)
    return list(out.values())


def one_at_a_time(base: Config, axes: Mapping[str, Sequence[Any]], method: str = "bgad", seeds: Sequence[int] = (0,),
                  known_types: Iterable[str | Sequence[str]] | None = None, check_data: bool = True) -> list[Config]:
    """`method` at `base`, then each axis's values with every other setting held at `base`.

    The cheap sensitivity grid of the *Ablations* chapter: Σ (values per axis) runs instead of the Π of a full
    `expand_grid` product. Axes are grid keys (`beta`, `tau`, `lambda`, `boundary`, `n_known`, any Config field).
    """
    kw = dict(methods=(method,), seeds=seeds, base=base, known_types=known_types, check_data=check_data)
    configs = expand_grid(**kw)
    for key, values in axes.items():
        configs += expand_grid(grid={key: values}, **kw)
    return dedupe(configs)


@dataclass
class Job:
    """One missing run handed to an executor: its index in the records, its config (as a dict) and folder."""

    index: int
    config: dict
    run_dir: str


@dataclass
class Execution:
    """What every executor gets: the jobs, how to run one (`_run_one`'s other arguments) and whom to tell."""

    jobs: list[Job]
    threads: int
    runner: Callable | None
    results_only: bool
    log: bool
    started: Callable[[int, Any], None]  # (job index, where: a pid or a worker address)
    finish: Callable[[int, dict], None]  # (job index, outcome of _run_one)
    stop: threading.Event | None

    def stopping(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    def call(self, job: Job, in_worker: bool = True) -> Callable[..., dict]:
        """`_run_one` for `job`, picklable, still waiting for `threads=` (a Dask task picks its own)."""
        return functools.partial(_run_one, job.config, job.run_dir, runner=self.runner, in_worker=in_worker,
                                 results_only=self.results_only, log=self.log)


def plan(configs: Sequence[Config], runs: str | os.PathLike) -> list[dict]:
    """One record per config (see `run_grid`): finished runs come back `reused` with their results, the others
    with status None. Reads only the run folders' JSON (no training, no torch)."""
    records = []
    for cfg in configs:
        key = run_key(cfg)
        run_dir = Path(runs) / key
        done = finished(run_dir, cfg)
        records.append({"key": key, "run_dir": str(run_dir), "config": cfg, "status": "reused" if done else None,
                        "error": None, "seconds": 0.0, "results": done, "where": None})
    return records


def run_grid(configs: Sequence[Config], out: str | os.PathLike, jobs: int = 1, progress: bool = True,
             runner: Callable | None = None, mp_context: str = "spawn", runs_dir: str | os.PathLike | None = None,
             results_only: bool = False, scheduler: str | None = None, processes: bool | None = None,
             on_update: Callable[[dict], None] | None = None, stop: threading.Event | None = None,
             log: bool = False, threads_per_task: int = 0) -> list[dict]:
    """Run every config into `out/runs/<run_key>` (or `runs_dir/<run_key>`: the chapters' run cache), reusing
    finished runs; return one record per config, in order.

    A record is {"key", "run_dir", "config" (Config), "status" ("reused" | "running" | "trained" | "failed" |
    "stopped"), "error" (one line or None), "seconds", "results" (the results dict or None), "where" (the pid or
    Dask worker that ran it)}. Executors:

    - local, one after another in this process (jobs = 1, the default);
    - local processes (jobs > 1, or `processes=True`): a `ProcessPoolExecutor` (`mp_context`, default spawn: safe
      with torch) of min(jobs, missing) processes, each with OMP_NUM_THREADS and `cfg.threads` = max(1, cores //
      processes);
    - a Dask cluster (`scheduler`: "tcp://HOST:8786" or a scheduler file's path; `bgad-mini[cluster]`): one task
      per missing run (see `cluster.py`), each with `threads_per_task` torch threads (0: the worker machine's cores
      divided by the runs it runs at once, the rule of local processes).

    A failing job is reported in one line (traceback in its `error.txt`) and the others go on. `on_update(record)`
    is called when a run starts and when it ends; setting `stop` ends the grid cleanly: no new run starts, running
    processes are ended (their last epoch checkpoint stays, so the run resumes next time) and marked "stopped".
    `log` writes each run's progress bars to its `run.log`. `runner(cfg, run_dir, progress=...)` replaces
    `runs.load_or_run` (it must be picklable when runs leave this process).
    """
    if jobs < 1:
        raise BgadError(f"--jobs must be >= 1, got {jobs}")
    runs = Path(runs_dir) if runs_dir is not None else Path(out) / RUNS
    runs.mkdir(parents=True, exist_ok=True)
    records = plan(configs, runs)
    todo = [i for i, r in enumerate(records) if r["status"] is None]
    n_reused = len(records) - len(todo)
    if scheduler:
        from .cluster import execute_dask, describe

        executor, how = execute_dask, describe(scheduler)
        threads = threads_per_task  # 0: each task picks its own, on its worker
    else:
        workers = min(jobs, len(todo)) if todo else 0
        threads = threads_per_job(max(1, workers))
        use_processes = workers > 1 or (processes and workers > 0)
        executor = _execute_processes if use_processes else _execute_inline
        how = f"{workers} processes × {threads} threads" if use_processes else f"this process × {threads} threads"

    from tqdm.auto import tqdm

    def say(line: str) -> None:
        if progress:
            tqdm.write(line, file=sys.stderr)  # beside the bar (stderr); the final report goes to stdout

    if progress:
        print(f"{len(records)} runs: {n_reused} finished (reused), {len(todo)} to run" + (f" in {how}" if todo else ""),
              file=sys.stderr)
    bar = tqdm(total=len(todo), disable=not progress or not todo, unit="run", desc="ablation", file=sys.stderr)

    def started(i: int, where: Any) -> None:
        records[i].update(status="running", where=where)
        if on_update:
            on_update(records[i])

    def finish(i: int, outcome: dict) -> None:
        rec = records[i]
        rec.update({k: outcome.get(k) for k in ("status", "error", "seconds", "results")})
        rec["where"] = outcome.get("where", outcome.get("pid", rec.get("where")))
        if rec["status"] == "failed":
            say(f"FAILED {rec['key']}: {rec['error']} (traceback: {RunFolder(rec['run_dir']).error})")
        elif rec["status"] == "stopped":
            say(f"stopped {rec['key']} (it resumes from its last checkpoint next time)")
        else:
            say(f"done {rec['key']} in {rec['seconds']:.0f} s: {_fmt_metrics(rec['results'].get('metrics'))}")
        bar.update(1)
        if on_update:
            on_update(rec)

    if log:  # an earlier, interrupted try's bars are not this one's (the lab reads the log's last bar)
        for i in todo:
            RunFolder(records[i]["run_dir"]).log.unlink(missing_ok=True)
    jobs_ = [Job(i, records[i]["config"].to_dict(), records[i]["run_dir"]) for i in todo]
    execution = Execution(jobs_, threads, runner, results_only, log, started, finish, stop)
    try:
        if jobs_:
            if scheduler:
                executor(execution, scheduler)
            elif executor is _execute_processes:
                executor(execution, min(jobs, len(jobs_)), mp_context)
            else:
                executor(execution)
    finally:
        bar.close()
    return records


#: The outcome of a run that `stop` ended or never started (it resumes from its checkpoint next time).
STOPPED = {"status": "stopped", "results": None, "error": None, "seconds": 0.0}


def _stopped(execution: Execution, job: Job) -> None:
    execution.finish(job.index, dict(STOPPED))


def _execute_inline(execution: Execution) -> None:
    """One run after another in this process (`stop` is checked between runs)."""
    for job in execution.jobs:
        if execution.stopping():
            _stopped(execution, job)
            continue
        execution.started(job.index, os.getpid())
        execution.finish(job.index, execution.call(job, in_worker=False)(threads=execution.threads))


def _execute_processes(execution: Execution, workers: int, mp_context: str) -> None:
    """A pool of `workers` spawned processes; on `stop` (or Ctrl-C) pending runs are cancelled and running ones
    ended, so each keeps its last epoch checkpoint."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    ctx = multiprocessing.get_context(mp_context)
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                               initargs=(execution.threads,))
    futures = {pool.submit(execution.call(job), threads=execution.threads): job for job in execution.jobs}
    announced: set[int] = set()
    pending = set(futures)
    try:
        while pending:
            done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            for fut in futures:
                job = futures[fut]
                if job.index not in announced and (fut.running() or fut.done()):
                    announced.add(job.index)
                    execution.started(job.index, "process")
            for fut in done:
                try:
                    outcome = fut.result()
                except Exception as exc:  # the worker process died (e.g. out of memory) or was ended by stop
                    outcome = dict(STOPPED) if execution.stopping() else \
                        {"status": "failed", "results": None, "seconds": 0.0, "error": one_line(exc)}
                execution.finish(futures[fut].index, outcome)
            if (execution.stopping() or not threading.main_thread().is_alive()) and pending:
                # the interpreter is exiting (a lab grid in a background thread) counts as stop;
                # not fut.cancel(): the pool's manager thread sets BrokenProcessPool on every pending future once
                # its processes are gone, and a cancelled future would make it raise InvalidStateError
                _end_processes(pool)
                for fut in pending:
                    _stopped(execution, futures[fut])
                pending = set()
    except KeyboardInterrupt:
        _end_processes(pool)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _end_processes(pool) -> None:
    """End a pool's worker processes now (SIGTERM): a run stops mid-epoch and resumes from its checkpoint."""
    for proc in list(getattr(pool, "_processes", {}).values()):
        if proc.is_alive():
            proc.terminate()
    for proc in list(getattr(pool, "_processes", {}).values()):
        proc.join(timeout=10)


# ----------------------------------------------------------------------------------------------
# One-at-a-time axes and the order runs are trained in
# ----------------------------------------------------------------------------------------------
def parse_axes(items: Iterable[str]) -> list[tuple[tuple[str, ...], str, list[str]]]:
    """`["bgad:beta=0.005,0.05", "nf+bgad:n_known=1,5", "tau=0,0.2"]` -> [(methods, key, values), ...].

    Methods before the colon (joined by +) restrict the axis to them; without a prefix it applies to every
    method of the grid (each still ignores the fields it does not read)."""
    out = []
    for item in items:
        head, sep, rest = item.partition(":")
        methods: tuple[str, ...] = ()
        if sep and "=" not in head:
            methods = tuple(m.strip() for m in head.split("+") if m.strip())
            bad = [m for m in methods if m not in METHODS]
            if bad:
                raise BgadError(f"unknown method(s) {', '.join(bad)} in --axes {item!r}; "
                                f"choose from {', '.join(METHODS)}")
            item = rest
        ((key, values),) = parse_grid([item]).items()
        out.append((methods, key, values))
    return out


def axes_configs(axes: Sequence[tuple[Sequence[str], str, Sequence[Any]]], methods: Sequence[str],
                 **grid_kw: Any) -> list[Config]:
    """One setting at a time around the base: for each axis, its values for its methods (`parse_axes`), every
    other setting at the base. `grid_kw` are `expand_grid`'s other arguments (categories, known_types, seeds...)."""
    configs: list[Config] = []
    for axis_methods, key, values in axes:
        configs += expand_grid(methods=tuple(axis_methods) or tuple(methods), grid={key: values}, **grid_kw)
    return configs


def training_order(configs: Sequence[Config]) -> list[Config]:
    """Seed first, then seen types, category and method (NF before the methods that load its phase 1), so an
    interrupted grid leaves whole seeds behind, in which every method can be compared pairwise."""
    rank = {m: i for i, m in enumerate(("nf", "firm", "supcon", "pushpull", "bgad"))}
    first_seen: dict[Any, int] = {}
    for c in configs:
        first_seen.setdefault(c.known_types, len(first_seen))
        first_seen.setdefault(c.category, len(first_seen))
    return sorted(configs, key=lambda c: (c.seed, first_seen[c.known_types], first_seen[c.category],
                                          rank.get(c.method, len(rank))))
