"""Benchmark of the Dask executor: one grid through `bgad-mini ablate` on this machine's local processes
(`--jobs N`) and on a Dask cluster of N one-thread workers started here (`--scheduler-file`).

Writes JSON (default `bench/results/cluster.json`): the grid's wall time with each executor (the whole command:
interpreter start, planning, training, tables), the cluster's start-up time (scheduler and workers until all are
connected; not in the grid's time), the sum of the runs' own seconds, and the largest metric difference between the
two grids (0 expected: same runs, one thread each). Each grid starts from empty run and feature-cache folders and,
on Dask, a freshly started cluster (cold workers); `--repeat` alternates the two and records every time and the
median. It never asserts on a time.

    python bench/bench_cluster.py                                     # nf, bgad x seeds 0 1 x brick, grass (8 runs)
    python bench/bench_cluster.py --methods nf --seeds 0 --categories brick --workers 1
"""
from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_OUT = BENCH_DIR / "results" / "cluster.json"
METRICS = ("image_auroc", "pixel_auroc", "pro", "seen_image_auroc", "unseen_image_auroc", "unseen_pro")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", default=str(BENCH_DIR.parent / "data" / "synthetic_smoke"))
    p.add_argument("--profile", default="smoke", choices=("smoke", "book", "paper"))
    p.add_argument("--methods", nargs="+", default=["nf", "bgad"])
    p.add_argument("--seeds", nargs="+", default=["0", "1"])
    p.add_argument("--categories", nargs="+", default=["brick", "grass"])
    p.add_argument("--workers", type=int, default=2, help="local --jobs and Dask workers (one thread each)")
    p.add_argument("--repeat", type=int, default=3, help="grids per executor (default 3)")
    p.add_argument("--out", default=str(DEFAULT_OUT), help=f"JSON output (default {DEFAULT_OUT.relative_to(BENCH_DIR.parent)})")
    return p.parse_args(argv)


def start_cluster(work: Path, workers: int) -> tuple[list[subprocess.Popen], str, float]:
    """A scheduler and `workers` one-thread workers on 127.0.0.1; (processes, scheduler file, start-up seconds)."""
    from distributed import Client

    sched_file = work / "scheduler.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()

    def start(*args: str, log: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", *args, "--no-dashboard"], cwd=work, env=env,
                                stdout=open(work / log, "w"), stderr=subprocess.STDOUT, start_new_session=True)

    procs = [start("distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0", "--scheduler-file",
                   str(sched_file), log="scheduler.log")]
    procs += [start("distributed.cli.dask_worker", "--scheduler-file", str(sched_file), "--host", "127.0.0.1",
                    "--nthreads", "1", "--death-timeout", "60", log=f"worker{i}.log") for i in range(workers)]
    with Client(scheduler_file=str(sched_file), timeout=60, set_as_default=False) as client:
        client.wait_for_workers(workers, timeout=120)
    return procs, str(sched_file), time.perf_counter() - t0


def end_cluster(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def run_grid_cli(args: argparse.Namespace, out: Path, *executor: str) -> dict[str, Any]:
    """`bgad-mini ablate` as a user runs it; its wall time, its runs' seconds and metrics (results.csv)."""
    cmd = [sys.executable, "-m", "bgad_mini", "ablate", "--data-root", args.data_root, "--profile", args.profile,
           "--methods", *args.methods, "--seeds", *args.seeds, "--categories", *args.categories,
           "--out", str(out), "--set", f"cache_dir={out / 'cache'}", "--no-progress", *executor]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    rows = list(csv.DictReader(open(out / "results.csv")))
    return {"command": " ".join(["bgad-mini", *cmd[3:]]), "wall_s": round(wall, 2), "runs": len(rows),
            "run_seconds_sum": round(sum(float(r["total_seconds"]) for r in rows), 2),
            "metrics": {Path(r["run_dir"]).name: {m: float(r[m]) for m in METRICS if r.get(m)} for r in rows}}


def summary(grids: list[dict[str, Any]]) -> dict[str, Any]:
    """The command once, every grid's wall time and runs' seconds, and the median wall time."""
    walls = [g["wall_s"] for g in grids]
    return {"command": grids[0]["command"], "runs": grids[0]["runs"], "wall_s": walls,
            "wall_s_median": sorted(walls)[len(walls) // 2], "run_seconds_sum": [g["run_seconds_sum"] for g in grids]}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    from bgad_mini.grid import available_cores
    from bgad_mini.published import cpu_model

    locals_, dasks, startups = [], [], []
    for i in range(args.repeat):
        work = Path(tempfile.mkdtemp(prefix="bench_cluster_"))
        try:
            locals_.append(run_grid_cli(args, work / "local", "--jobs", str(args.workers)))
            procs, sched_file, startup = start_cluster(work, args.workers)
            startups.append(round(startup, 2))
            try:
                dasks.append(run_grid_cli(args, work / "dask", "--scheduler-file", sched_file,
                                          "--threads-per-task", "1"))
            finally:
                end_cluster(procs)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    a, b = locals_[0]["metrics"], dasks[0]["metrics"]
    diff = max((abs(a[k][m] - b[k][m]) for k in a for m in a[k] if m in b.get(k, {})), default=None)
    local, dask = summary(locals_), summary(dasks)
    result = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": {"cpu": cpu_model(), "cores": available_cores(), "platform": platform.platform(),
                    "load_average": os.getloadavg()},
        "grid": {"profile": args.profile, "methods": args.methods, "seeds": args.seeds, "categories": args.categories,
                 "data_root": args.data_root},
        "local": {"jobs": args.workers, **local},
        "dask": {"workers": args.workers, "threads_per_worker": 1, "cluster_startup_s": startups, **dask},
        "same_runs": all(sorted(g["metrics"]) == sorted(a) for g in locals_ + dasks),
        "max_metric_diff": diff,
        "note": "wall_s: the whole ablate command, once per repeat; each Dask grid had a fresh cluster, started "
                "before the command (cluster_startup_s)",
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("local", "dask", "max_metric_diff")}, indent=2))
    return result


if __name__ == "__main__":
    main()
