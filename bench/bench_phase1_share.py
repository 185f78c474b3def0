"""Benchmark of the shared phase 1: what a BGAD run costs when it loads phase 1 from an NF run with the same
phase-1 config, against the same BGAD run training phase 1 itself (`--set share_phase1=false`).

Writes JSON (default `bench/results/phase1_share.json`): wall time per stage of the three runs (nf, which writes the
shared state; bgad loading it; bgad alone), the saving, and the largest metric difference between the two bgad runs
(0 when sharing changes nothing, as the tests require). It never asserts on a time.

    python bench/bench_phase1_share.py --data-root data/synthetic --category brick
    python bench/bench_phase1_share.py --profile smoke --data-root data/synthetic_smoke
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import tempfile
from pathlib import Path
from typing import Any, Sequence

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_OUT = BENCH_DIR / "results" / "phase1_share.json"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", default=None, help="dataset in the MVTec layout (default: the profile's)")
    p.add_argument("--category", default="brick")
    p.add_argument("--known-types", default="missing")
    p.add_argument("--profile", default="book", choices=("smoke", "book", "paper"))
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = every core this process may use)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(DEFAULT_OUT), help=f"JSON output (default {DEFAULT_OUT.relative_to(BENCH_DIR.parent)})")
    return p.parse_args(argv)


def _metric_diff(a: dict, b: dict) -> float:
    """Largest absolute difference over every metric of two results (overall, seen, unseen, per type)."""
    pairs = [(a.get(k) or {}, b.get(k) or {}) for k in ("metrics", "metrics_seen", "metrics_unseen")]
    pairs += [(a["metrics_by_type"][t], b["metrics_by_type"][t]) for t in a.get("metrics_by_type", {})]
    return max((abs(x[m] - y[m]) for x, y in pairs for m in x if x[m] is not None and y.get(m) is not None),
               default=0.0)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    from bgad_mini.config import Config
    from bgad_mini.runs import load_or_run

    overrides = dict(category=args.category, known_types=args.known_types, seed=args.seed, threads=args.threads)
    if args.data_root:
        overrides["data_root"] = args.data_root
    work = Path(tempfile.mkdtemp(prefix="bench_phase1_"))
    try:
        base = Config.from_profile(args.profile, cache_dir=str(work / "cache"), **overrides)
        runs = {}
        for name, cfg in (("nf_writes", base.with_overrides(method="nf")),
                          ("bgad_loads", base.with_overrides(method="bgad")),
                          ("bgad_alone", base.with_overrides(method="bgad", share_phase1=False))):
            res = load_or_run(cfg, work / name, progress=True).results
            runs[name] = {"timings": res["timings"], "shared_epochs": sum(bool(h.get("shared")) for h in res["history"]),
                          "metrics": res["metrics"], "results": res}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    loads, alone = runs["bgad_loads"], runs["bgad_alone"]
    result = {
        "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "loadavg_1min": os.getloadavg()[0]},
        "profile": args.profile, "category": args.category, "known_types": args.known_types, "seed": args.seed,
        "epochs": {"phase1": base.phase1_epochs, "phase2": base.phase2_epochs},
        "runs": {k: {kk: vv for kk, vv in v.items() if kk != "results"} for k, v in runs.items()},
        "bgad_train_seconds_loaded": loads["timings"]["train"],
        "bgad_train_seconds_alone": alone["timings"]["train"],
        "train_time_ratio": loads["timings"]["train"] / alone["timings"]["train"],
        "total_seconds_saved": alone["timings"]["total"] - loads["timings"]["total"],
        "max_metric_difference": _metric_diff(loads["results"], alone["results"]),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"bgad train {result['bgad_train_seconds_loaded']:.1f} s with the shared phase 1 "
          f"({loads['shared_epochs']} of {base.phase1_epochs} phase-1 epochs loaded) vs "
          f"{result['bgad_train_seconds_alone']:.1f} s alone (ratio {result['train_time_ratio']:.2f}); "
          f"largest metric difference {result['max_metric_difference']:.1e}; {out}")
    return result


if __name__ == "__main__":
    main()
