"""Time-to-quality curve of the CPU schedule: metrics of `nf` and `bgad` against CPU seconds, one schedule knob at a
time (patches per image, epochs, learning rate, flow batch, coupling blocks, image size) and any combination given
with `--point`. The `book` profile is chosen from this curve.

Writes JSON (default `bench/results/schedule.json`) after every finished run, so an interrupted bench loses nothing:
a rerun skips what is there (runs are kept in `--runs-dir` and reused by config). `--figure` draws metric against
CPU seconds. `--publish` also writes the JSON where the book's status page reads it (`bench/published/schedule.json`).
It never asserts on a time.

    python bench/bench_schedule.py --categories brick --seeds 0                # the default curve, ~40 min on 1 core
    python bench/bench_schedule.py --points book patches=1024 "ep=phase1_epochs=12,phase2_epochs=6"
    python bench/bench_schedule.py --profile smoke --data-root data/synthetic_smoke --points book patches=128
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from bench_peers import machine  # the bench folder's machine description
from bgad_mini.utils import write_json

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
DEFAULT_OUT = BENCH_DIR / "results" / "schedule.json"
PUBLISHED = BENCH_DIR / "published" / "schedule.json"  # tracked: the status page reads it

#: The default curve: the profile itself, then one knob at a time (name -> Config overrides).
POINTS: dict[str, dict[str, Any]] = {
    "book": {},
    "patches=256": {"patches_per_image": 256},
    "epochs=6+3": {"phase1_epochs": 6, "phase2_epochs": 3},
    "epochs=12+6": {"phase1_epochs": 12, "phase2_epochs": 6},
    "lr=1e-3": {"lr": 1e-3},
    "lr=4e-3": {"lr": 4e-3},
    "blocks=4": {"coupling_blocks": 4},
    "img_size=192": {"img_size": 192},
    "sigma=0": {"score_sigma": 0.0},
    "3 levels": {"stages": "1;2;3"},
}
METRICS = ("image_auroc", "pixel_auroc", "pro")


def parse_point(text: str) -> tuple[str, dict[str, str]]:
    """`name` from POINTS, `key=value` (one override, named by itself) or `name=key=v,key=v` (a list value such
    as `stages` takes `;`: `stages=2;3`)."""
    if text in POINTS:
        return text, dict(POINTS[text])
    if text.count("=") == 1:
        key, value = text.split("=")
        return text, {ALIASES.get(key, key): value}
    name, _, body = text.partition("=")
    pairs = [p.split("=", 1) for p in body.split(",") if p]
    if not name or any(len(p) != 2 for p in pairs):
        raise SystemExit(f"bench_schedule: cannot read point {text!r}; use NAME, key=value or name=key=v,key=v")
    return name, {ALIASES.get(k, k): v for k, v in pairs}


ALIASES = {"patches": "patches_per_image", "blocks": "coupling_blocks"}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", default="book", choices=("smoke", "book", "paper"))
    p.add_argument("--data-root", default=None, help="dataset in the MVTec layout (default: the profile's)")
    p.add_argument("--categories", nargs="+", default=["brick"])
    p.add_argument("--known-types", default="missing")
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--methods", nargs="+", default=["nf", "bgad"], choices=("nf", "bgad", "pushpull"))
    p.add_argument("--points", nargs="+", default=list(POINTS), help="schedule points (see POINTS, or key=value)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run (1 leaves a core to the rest)")
    p.add_argument("--runs-dir", default=str(BENCH_DIR / "results" / "schedule_runs"))
    p.add_argument("--cache-dir", default=".cache")
    p.add_argument("--share-phase1", action="store_true",
                   help="let bgad load nf's phase 1 (faster bench; its CPU seconds then miss phase 1)")
    p.add_argument("--out", default=str(DEFAULT_OUT))
    p.add_argument("--figure", default=None, help="PNG of metric against CPU seconds (default: next to --out)")
    p.add_argument("--publish", action="store_true", help=f"also write {PUBLISHED.relative_to(ROOT)} for the book")
    return p.parse_args(argv)


def _key(point: str, method: str, category: str, seed: int) -> str:
    return f"{point}|{method}|{category}|{seed}"


def _git_head() -> str:
    import subprocess

    r = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "bgad_mini"], cwd=ROOT, capture_output=True, text=True)
    return r.stdout.strip() + (" (bgad_mini modified)" if dirty.stdout.strip() else "") if r.returncode == 0 else "?"


def _data_meta(data_root: str | None, profile: str) -> dict[str, Any]:
    """The dataset's generator, version, profile and seed (its meta.json), where it has one."""
    from bgad_mini.config import Config

    meta = Path(data_root or Config.from_profile(profile).data_root) / "meta.json"
    if not meta.is_file():
        return {"root": str(meta.parent)}
    m = json.loads(meta.read_text())
    return {"root": str(meta.parent), **{k: m.get(k) for k in ("generator", "generator_version", "profile", "seed")}}


def run_point(cfg, out_dir: Path) -> dict[str, Any]:
    """Train and evaluate one config (or reuse its finished folder); CPU and wall seconds of this process."""
    from bgad_mini.runs import load_or_run

    cpu0, wall0 = time.process_time(), time.perf_counter()
    res = load_or_run(cfg, out_dir, progress=False).results
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    reused = wall < 0.5 * res["timings"].get("total", wall)
    return {"metrics": res["metrics"], "metrics_seen": res["metrics_seen"], "metrics_unseen": res["metrics_unseen"],
            "metrics_official": res.get("metrics_official"), "timings": res["timings"],
            # a reused run's own timings stand for its cost; CPU seconds are measured only when it trained here
            "cpu_s": None if reused else cpu, "wall_s": res["timings"]["total"] if reused else wall}


def draw(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from bgad_mini import viz

    fig = viz.plot_time_to_quality(list(results["runs"].values()))
    fig.savefig(path, dpi=100)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    from bgad_mini.config import Config
    from bgad_mini.errors import BgadError
    from bgad_mini.pipeline import package_versions

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {"runs": {}}
    results.update({"command": "python bench/bench_schedule.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                    "machine": machine(args.threads), "versions": package_versions(), "threads": args.threads,
                    "profile": args.profile, "date": datetime.datetime.now().isoformat(timespec="seconds"),
                    "code_commit": _git_head(), "data": _data_meta(args.data_root, args.profile)})
    points = [parse_point(p) for p in args.points]
    todo = [(name, ov, m, c, s) for name, ov in points for c in args.categories for s in args.seeds for m in args.methods]
    for i, (name, ov, method, category, seed) in enumerate(todo, 1):
        key = _key(name, method, category, seed)
        base = dict(category=category, known_types=args.known_types, seed=seed, threads=args.threads,
                    cache_dir=args.cache_dir, method=method, share_phase1=args.share_phase1)
        if args.data_root:
            base["data_root"] = args.data_root
        try:
            cfg = Config.from_profile(args.profile, **base).with_overrides(**ov)
        except BgadError as e:
            raise SystemExit(f"bench_schedule: point {name!r}: {e}") from None
        identity = json.loads(json.dumps(cfg.identity()))
        if results["runs"].get(key, {}).get("config") == identity:
            continue  # measured with this very config (a changed profile default measures the point again)
        print(f"[{i}/{len(todo)}] {key} {ov}", flush=True)
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:8]
        folder = "_".join(part.replace("=", "-").replace("+", "p").replace(" ", "") for part in key.split("|"))
        rec = run_point(cfg, Path(args.runs_dir) / f"{folder}_{digest}")
        results["runs"][key] = {"point": name, "overrides": ov, "method": method, "category": category, "seed": seed,
                                "config": identity, **rec}
        m = rec["metrics_unseen"] or rec["metrics"]
        print(f"    unseen: " + "  ".join(f"{k}={m[k]:.3f}" for k in METRICS) + f"  cpu={rec['cpu_s'] or 0:.0f}s"
              f" wall={rec['wall_s']:.0f}s", flush=True)
        write_json(out, results)
    figure = Path(args.figure) if args.figure else out.with_suffix(".png")
    draw(results, figure)
    if args.publish:
        write_json(PUBLISHED, results)
    print(f"wrote {out} and {figure}")
    return results


if __name__ == "__main__":
    main()
