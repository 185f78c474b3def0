"""A published result grid: `results/` as `make results` writes it, its provenance, its checks.

`bgad-mini ablate ... --publish --out results` keeps only each run's results.json (metrics, history, timings,
config, identity: no weights or checkpoints) and writes `results/PROVENANCE.json`: the exact command, the code
fingerprint, the data fingerprint of every category, package versions, CPU model, threads, date, and the CPU time
the grid took. The chapters read the grid through `load`, which refuses (one line naming `make results`) a grid
that other code or other data computed; `verify` reruns a deterministic sample of its runs from scratch and
compares every metric (`make verify-results`, run by CI).
"""
from __future__ import annotations

import datetime
import hashlib
import json
import math
import os
import platform
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

from .config import Config
from .errors import BgadError
from .fingerprint import code_fingerprint, data_fingerprint
from .grid import available_cores, run_grid
from .pipeline import package_versions
from .runs import RUNS, RunFolder
from .summary import METRIC_COLUMNS, collect, results_row
from .utils import write_json

PROVENANCE = "PROVENANCE.json"
REBUILD = "run `make results` to recompute it (about two hours on 2 cores), or check out the code that made it"


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), or what `platform.processor` says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict[str, Any]:
    """CPU model, cores this process may use, platform."""
    return {"cpu": cpu_model(), "cores": available_cores(), "platform": platform.platform()}


def write_provenance(out: str | os.PathLike, command: str, configs: Sequence[Config], records: Sequence[dict],
                     threads: int, executor: str = "local") -> dict[str, Any]:
    """PROVENANCE.json of a published grid: what made it, on what, and whether it is complete.

    Threads and CPU hours come from each run's own config (a run on a Dask worker chose its threads there);
    `threads` is the fallback for results that do not say. `executor` names where the runs ran."""
    finished = [r for r in records if r["results"] is not None]
    codes = {r["results"].get("identity", {}).get("code") for r in finished}
    if len(codes) > 1:
        raise BgadError(f"the runs in {out} come from different code ({', '.join(sorted(map(str, codes)))}); {REBUILD}")
    data = {}
    for c in configs:
        data.setdefault(c.data_root, {})[c.category] = data_fingerprint(c.data_root, c.category)
    per_run = [(r["results"].get("timings", {}).get("total", 0.0),
                int((r["results"].get("config") or {}).get("threads") or threads)) for r in finished]
    seconds = sum(sec for sec, _ in per_run)
    used = sorted({t for _, t in per_run}) or [threads]
    prov = {
        "command": command,
        "code_fingerprint": code_fingerprint(),
        "data_fingerprints": data,
        "runs": len(configs),
        "finished": len(finished),
        "complete": len(finished) == len(configs),
        "run_keys": sorted(r["key"] for r in finished),
        "threads_per_run": used[0] if len(used) == 1 else used,
        "run_seconds_total": round(seconds, 1),
        "cpu_hours": round(sum(sec * t for sec, t in per_run) / 3600, 2),
        "executor": executor,
        "versions": package_versions(),
        "machine": machine(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    write_json(Path(out) / PROVENANCE, prov)
    return prov


def read_provenance(root: str | os.PathLike) -> dict[str, Any]:
    path = Path(root) / PROVENANCE
    if not path.is_file():
        raise BgadError(f"{path} not found: {root} is not a published result grid; {REBUILD}")
    return json.loads(path.read_text())


def check(root: str | os.PathLike, data_root: str | None = None) -> dict[str, Any]:
    """The provenance of `root` if the current code and data made it; else a one-line BgadError naming `make results`.

    `data_root` replaces the recorded data folder (a chapter reads `../data/synthetic` from `book/`)."""
    prov = read_provenance(root)
    code = code_fingerprint()
    if prov["code_fingerprint"] != code:
        raise BgadError(f"{root} was computed by other code (fingerprint {prov['code_fingerprint']}, this code "
                        f"{code}); {REBUILD}")
    for recorded_root, cats in prov["data_fingerprints"].items():
        for cat, fp in cats.items():
            now = data_fingerprint(data_root or recorded_root, cat)
            if now != fp:
                raise BgadError(f"{root} was computed on other data ({cat}: fingerprint {fp}, "
                                f"{data_root or recorded_root} now {now}); {REBUILD}")
    return prov


def load(root: str | os.PathLike, data_root: str | None = None, score: str = "default") -> list[dict[str, Any]]:
    """The rows (`summary.collect`) of the runs a published grid's provenance lists, after `check` (a run that
    finished after PROVENANCE.json was written is not part of the grid)."""
    keys = set(check(root, data_root)["run_keys"])
    return [r for r in collect(root, score=score) if Path(r["run_dir"]).name in keys]


def sample(root: str | os.PathLike, n: int = 3) -> list[Path]:
    """A deterministic sample of `n` finished runs: the first run (by key hash) of each method in turn."""
    prov = read_provenance(root)
    keys = sorted(prov["run_keys"], key=lambda k: hashlib.sha256(k.encode()).hexdigest())
    by_method: dict[str, list[str]] = {}
    for k in keys:
        by_method.setdefault(k.split("_", 1)[0], []).append(k)
    chosen: list[str] = []
    while len(chosen) < min(n, len(keys)):
        for m in sorted(by_method):
            if by_method[m] and len(chosen) < n:
                chosen.append(by_method[m].pop(0))
    return [Path(root) / RUNS / k for k in chosen]


def verify(root: str | os.PathLike, n: int = 3, tolerance: float = 1e-3, jobs: int = 1, data_root: str | None = None,
           cache_dir: str | None = None, progress: bool = True, scheduler: str | None = None,
           threads_per_task: int = 0) -> list[dict[str, Any]]:
    """Rerun `sample(root, n)` from scratch (fresh run folders, no shared phase 1) and compare every metric of
    results.csv's columns; return one record per run, raise a BgadError naming the first mismatch. `scheduler`
    reruns them on a Dask cluster (`run_grid`; each result comes back with its task)."""
    check(root, data_root)
    runs = sample(root, n)
    saved = [json.loads(RunFolder(r).results.read_text()) for r in runs]
    overrides: dict[str, Any] = {"share_phase1": False}
    if data_root:
        overrides["data_root"] = data_root
    if cache_dir:
        overrides["cache_dir"] = cache_dir
    configs = [Config.from_dict(s["config"]).with_overrides(**overrides) for s in saved]
    with tempfile.TemporaryDirectory(prefix="verify_results_") as tmp:
        records = run_grid(configs, tmp, jobs=jobs, progress=progress, scheduler=scheduler,
                           threads_per_task=threads_per_task)
    report, bad = [], []
    for run, old, rec in zip(runs, saved, records):
        if rec["status"] == "failed":
            raise BgadError(f"verify-results: rerunning {run.name} failed: {rec['error']}")
        a, b = results_row(old), results_row(rec["results"])
        diffs = {m: abs(a[m] - b[m]) for m in METRIC_COLUMNS if a.get(m) is not None and b.get(m) is not None}
        nan = [m for m in METRIC_COLUMNS if (a.get(m) is None) != (b.get(m) is None)]
        worst = max(diffs.values()) if diffs else 0.0
        report.append({"run": run.name, "max_abs_diff": worst, "metrics_compared": len(diffs)})
        if worst > tolerance or nan or math.isnan(worst):
            bad.append(f"{run.name}: largest metric difference {worst:.2e} > {tolerance:g}"
                       + (f", missing in one of them: {', '.join(nan)}" if nan else ""))
    if bad:
        raise BgadError(f"verify-results: {len(bad)} of {len(runs)} reruns differ from {root}: {bad[0]}")
    return report


def grid_summary(prov: Mapping[str, Any]) -> str:
    """One line for a chapter: how many runs, whether complete, CPU hours, machine."""
    return (f"{prov['finished']} of {prov['runs']} runs ({'complete' if prov['complete'] else 'incomplete'}), "
            f"{prov['cpu_hours']} CPU hours on {prov['machine']['cpu']}, {prov['date'][:10]}")
