"""Grids on a Dask cluster (`cluster.py`): a real scheduler and two workers on 127.0.0.1, started here as
subprocesses (one thread each, random ports, a scheduler file) and ended by their process groups.

The workers import the stand-in runners from `cluster_runners.py` (tests/ is on their PYTHONPATH), so most tests
take milliseconds a run; one trains a smoke grid for real and compares it with the local executor.
"""
from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("distributed")

from bgad_mini import cluster, grid  # noqa: E402
from bgad_mini.cli import main  # noqa: E402
from bgad_mini.config import Config  # noqa: E402
from bgad_mini.errors import BgadError  # noqa: E402
from bgad_mini.grid import expand_grid, run_grid  # noqa: E402
from bgad_mini.runs import RunFolder, run_key  # noqa: E402
from cluster_runners import attempt_run, fake_run, slow_run  # noqa: E402
from test_ablation import base_cfg, calls, stop_at_first_start  # noqa: E402

TESTS = Path(__file__).parent


# ----------------------------------------------------------------------------------------------
# A scheduler and two workers, ended by their process groups
# ----------------------------------------------------------------------------------------------
@dataclass
class LocalCluster:
    scheduler_file: str
    address: str
    client: object
    logs: Path


def _end(procs: list[subprocess.Popen]) -> None:
    """SIGTERM each process group (nanny, worker, resource tracker), SIGKILL what is left after 10 s."""
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def _group_members(pgids: set[int]) -> list[str]:
    ps = subprocess.run(["ps", "-eo", "pid=,pgid=,stat=,args="], capture_output=True, text=True).stdout
    return [line for line in ps.splitlines() if len(line.split()) > 2 and int(line.split()[1]) in pgids
            and not line.split()[2].startswith("Z")]


@pytest.fixture(scope="module")
def local_cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dask")
    sched_file = tmp / "scheduler.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH", "")) if p)}
    procs: list[subprocess.Popen] = []

    def start(module: str, *args: str, log: str) -> None:
        procs.append(subprocess.Popen([sys.executable, "-m", module, *args, "--no-dashboard"], cwd=tmp, env=env,
                                      stdout=open(tmp / log, "w"), stderr=subprocess.STDOUT, start_new_session=True))

    client = None
    try:
        start("distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0", "--scheduler-file",
              str(sched_file), log="scheduler.log")
        for name in ("w0", "w1"):
            start("distributed.cli.dask_worker", "--scheduler-file", str(sched_file), "--host", "127.0.0.1",
                  "--nthreads", "1", "--name", name, "--death-timeout", "30", log=f"{name}.log")
        from distributed import Client

        client = Client(scheduler_file=str(sched_file), timeout=30, set_as_default=False)
        client.wait_for_workers(2, timeout=60)
        yield LocalCluster(str(sched_file), client.scheduler.address, client, tmp)
    finally:
        if client is not None:
            client.close()
        _end(procs)
        deadline = time.monotonic() + 10
        while (left := _group_members({p.pid for p in procs})) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not left, f"processes left behind: {left}"


@pytest.fixture
def dask(local_cluster) -> LocalCluster:
    """The cluster with both workers up (a test may have killed one: its nanny starts a new one)."""
    local_cluster.client.wait_for_workers(2, timeout=60)
    return local_cluster


def _grid(n_seeds: int = 2, **extra) -> list[Config]:
    return expand_grid(methods=("nf", "bgad"), categories=("brick",), known_types=("crack",),
                       seeds=tuple(range(n_seeds)), base=base_cfg(extra=extra), check_data=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------------------------
# On the cluster
# ----------------------------------------------------------------------------------------------
def test_runs_spread_over_two_worker_processes_and_a_rerun_submits_nothing(dask, tmp_path):
    updates = []
    cfgs = _grid(sleep=0.5)
    recs = run_grid(cfgs, tmp_path, scheduler=dask.scheduler_file, runner=slow_run, progress=False,
                    on_update=lambda r: updates.append((r["key"], r["status"], r["where"])))
    assert [r["status"] for r in recs] == ["trained"] * 4, [r["error"] for r in recs]
    workers = set(dask.client.scheduler_info()["workers"])
    assert {r["where"] for r in recs} == workers  # two worker processes, each ran some of the runs
    pids = {r["results"]["worker"]["pid"] for r in recs}
    assert len(pids) == 2 and os.getpid() not in pids
    for r in recs:  # "running" on the worker that then finished it
        assert [(s, w) for k, s, w in updates if k == r["key"]] == [("running", r["where"]), ("trained", r["where"])]
        threads = cluster.task_threads(0, grid.available_cores(), 2)  # both workers on this host, 1 thread each
        assert r["results"]["worker"]["threads"] == threads and r["results"]["worker"]["omp"] == str(threads)
    assert len(calls(tmp_path)) == 4
    # a rerun submits nothing: it does not even connect (this address has no scheduler)
    again = run_grid(cfgs, tmp_path, scheduler=f"tcp://127.0.0.1:{_free_port()}", runner=slow_run, progress=False)
    assert [r["status"] for r in again] == ["reused"] * 4 and len(calls(tmp_path)) == 4
    assert [r["results"] for r in again] == [r["results"] for r in recs]


def test_threads_per_task_are_set_in_the_task(dask, tmp_path):
    (rec,) = run_grid(_grid(n_seeds=1)[:1], tmp_path, scheduler=dask.address, runner=fake_run, progress=False,
                      threads_per_task=2)
    assert rec["status"] == "trained" and rec["results"]["worker"] | {"pid": 0} == {"pid": 0, "omp": "2", "threads": 2}


def test_a_failing_run_is_reported_once_and_the_others_finish(dask, tmp_path, capsys):
    cfgs = expand_grid(methods=("nf",), categories=("brick",), known_types=("crack",), seeds=(0, 1, 2),
                       base=base_cfg(extra={"fail_seed": 1}), check_data=False)
    recs = run_grid(cfgs, tmp_path, scheduler=dask.scheduler_file, runner=attempt_run, progress=True)
    assert [r["status"] for r in recs] == ["trained", "failed", "trained"]
    assert recs[1]["error"] == "BgadError: boom on seed 1 second line" and recs[1]["where"] in set(
        dask.client.scheduler_info()["workers"])
    assert "Traceback" in RunFolder(recs[1]["run_dir"]).error.read_text()
    assert len((Path(recs[1]["run_dir"]) / "attempts.txt").read_text().split()) == 1  # not retried
    err = capsys.readouterr().err
    assert err.count("FAILED") == 1 and f"FAILED {recs[1]['key']}: BgadError: boom on seed 1 second line" in err


def test_a_run_whose_worker_is_killed_runs_again_on_another(dask, tmp_path):
    slow, quick = base_cfg(extra={"sleep": 30}), base_cfg(seed=1)
    slow_dir = tmp_path / "runs" / run_key(slow)
    updates, recs = [], []
    t = threading.Thread(target=lambda: recs.extend(run_grid(
        [slow, quick], tmp_path, scheduler=dask.scheduler_file, runner=attempt_run, progress=False,
        on_update=lambda r: updates.append((r["key"], r["status"], r["where"])))))
    t0 = time.monotonic()
    t.start()
    while not (slow_dir / "attempts.txt").exists():
        assert time.monotonic() - t0 < 30, "the slow run never started"
        time.sleep(0.1)
    first_pid = int((slow_dir / "attempts.txt").read_text().split()[0])
    os.kill(first_pid, signal.SIGKILL)  # the worker process (its nanny starts a new one)
    t.join(timeout=60)
    assert not t.is_alive() and time.monotonic() - t0 < 30  # not the 30 s sleep: the second attempt ran at once
    assert [r["status"] for r in recs] == ["trained", "trained"], [r["error"] for r in recs]
    pids = [int(p) for p in (slow_dir / "attempts.txt").read_text().split()]
    assert len(pids) == 2 and pids[0] == first_pid != pids[1] == recs[0]["results"]["worker"]["pid"]
    starts = [w for k, s, w in updates if k == recs[0]["key"] and s == "running"]
    assert len(starts) == 2 and starts[0] != starts[1] == recs[0]["where"]  # "running" again, on another worker


@pytest.mark.slow
def test_a_smoke_grid_on_the_cluster_equals_the_local_one(dask, smoke_root, tmp_path, capsys):
    """Real training: nf and bgad × seeds 0, 1 on brick, through the CLI, locally (--jobs 2) and on two workers."""
    argv = ["ablate", "--data-root", str(smoke_root), "--categories", "brick", "--methods", "nf", "bgad",
            "--known-types", "crack", "--seeds", "0", "1", "--profile", "smoke", "--no-progress"]
    assert main([*argv, "--out", str(tmp_path / "local"), "--jobs", "2",
                 "--set", f"cache_dir={tmp_path / 'cache_local'}"]) == 0
    assert main([*argv, "--out", str(tmp_path / "dask"), "--scheduler-file", dask.scheduler_file,
                 "--threads-per-task", "1", "--set", f"cache_dir={tmp_path / 'cache_dask'}"]) == 0
    assert "4 runs: 0 reused, 4 trained, 0 failed" in capsys.readouterr().out
    local, remote = (list(csv.DictReader(open(tmp_path / d / "results.csv"))) for d in ("local", "dask"))
    assert len(local) == len(remote) == 4
    metrics = [c for c in local[0] if c.endswith(("auroc", "pro"))]
    assert len(metrics) >= 9
    for a, b in zip(local, remote):
        assert Path(a["run_dir"]).name == Path(b["run_dir"]).name  # the same run keys
        assert {m: float(a[m]) for m in metrics if a[m]} == pytest.approx({m: float(b[m]) for m in metrics if b[m]},
                                                                        abs=1e-6)
        res = json.loads((Path(b["run_dir"]) / "results.json").read_text())
        assert res["config"]["threads"] == 1
    assert main([*argv, "--out", str(tmp_path / "dask"), "--scheduler", f"127.0.0.1:{_free_port()}",
                 "--set", f"cache_dir={tmp_path / 'cache_dask'}"]) == 0  # all reused: nothing submitted
    assert "4 runs: 4 reused, 0 trained, 0 failed" in capsys.readouterr().out


def test_stop_cancels_the_runs_not_started_and_returns_at_once(dask, tmp_path):
    """Last on the cluster: the stopped runs still running keep their workers busy for a few seconds."""
    stop = threading.Event()
    statuses: list = []
    on_update = stop_at_first_start(stop, statuses)
    t0 = time.monotonic()
    cfgs = expand_grid(methods=("nf",), categories=("brick",), known_types=("crack",), seeds=(0, 1, 2),
                       base=base_cfg(extra={"sleep": 5}), check_data=False)
    recs = run_grid(cfgs, tmp_path, scheduler=dask.scheduler_file, runner=slow_run, progress=False,
                    on_update=on_update, stop=stop)
    assert time.monotonic() - t0 < 4.5 and statuses[0] == "running"
    assert [r["status"] for r in recs] == ["stopped"] * 3 and not calls(tmp_path)


# ----------------------------------------------------------------------------------------------
# Without a cluster
# ----------------------------------------------------------------------------------------------
def test_no_scheduler_no_file_and_no_dask_are_one_line_errors(tmp_path, tiny_root, monkeypatch, capsys):
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT", 1.0)
    cfgs = _grid(n_seeds=1)
    address = f"tcp://127.0.0.1:{_free_port()}"
    t0 = time.monotonic()
    with pytest.raises(BgadError, match=f"no Dask scheduler answers at {address} within 1 s.*dask scheduler") as err:
        run_grid(cfgs, tmp_path, scheduler=address, runner=fake_run, progress=False)
    assert "\n" not in str(err.value) and time.monotonic() - t0 < 10 and not calls(tmp_path)
    with pytest.raises(BgadError, match="scheduler file .*nope.json not found; start a scheduler with"):
        run_grid(cfgs, tmp_path, scheduler=str(tmp_path / "nope.json"), runner=fake_run, progress=False)
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "distributed", None)  # as if dask[distributed] were not installed
        with pytest.raises(BgadError, match=r"pip install 'bgad-mini\[cluster\]'"):
            run_grid(cfgs, tmp_path, scheduler=address, runner=fake_run, progress=False)
    argv = ["ablate", "--data-root", str(tiny_root), "--categories", "widget", "--methods", "nf", "--seeds", "0",
            "--profile", "smoke", "--out", str(tmp_path / "cli"), "--no-progress"]
    for extra, message in ((["--scheduler", address[len("tcp://"):]], f"no Dask scheduler answers at {address}"),
                           (["--scheduler", address, "--jobs", "2"], "--jobs is for runs on this machine"),
                           (["--threads-per-task", "2"], "--threads-per-task N (N >= 1) goes with --scheduler")):
        assert main([*argv, *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"bgad-mini: error: {message}") and "\n" not in err, err


def test_threads_and_resources_of_a_task():
    assert cluster.task_threads(0, cores=16, slots=2) == 8  # the rule of local processes
    assert cluster.task_threads(0, cores=2, slots=4) == 1 and cluster.task_threads(3, cores=2, slots=4) == 3
    assert cluster._host_slots({"a": {"host": "n1", "nthreads": 1}, "b": {"host": "n1", "nthreads": 2},
                                "c": {"host": "n2", "nthreads": 4}}) == {"n1": 3, "n2": 4}
    assert cluster.task_resources({"device": "cuda"}) == cluster.task_resources({"device": "cuda:1"}) == {"GPU": 1}
    assert cluster.task_resources({"device": "auto"}) is None and cluster.task_resources({"device": "cpu"}) is None
    assert cluster.describe("tcp://h:8786") == "the Dask cluster at tcp://h:8786, one task per run"
