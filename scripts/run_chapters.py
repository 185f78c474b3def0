"""Run every chapter with papermill on a dataset in the MVTec layout: the GPU workflow's loop, and its CPU test.

    python scripts/run_chapters.py --data-root data/mvtec --category bottle --known-types broken_large \\
        --profile paper --device cuda --out executed                       # the GPU runner (gpu-notebooks.yml)
    python scripts/run_chapters.py --data-root /tmp/fake_mvtec --category bottle --known-types broken_large \\
        --profile smoke --device cpu --out /tmp/executed                   # tests/test_run_chapters.py

Every chapter gets the same parameters (papermill ignores the names a chapter does not have): profile, device,
the dataset's absolute path, category and seen type. The committed result grid (`results/`) was made on the
synthetic dataset, so on any other dataset the chapters that read it are told to compute instead
(`ablation_root` and `results_root` empty). At the `paper` profile a run takes hours, so the Ablations chapter
runs only its method comparison there (the runs the BG-SPP and Contrastive chapters reuse); sweep β, τ, λ and N
with `bgad-mini ablate` instead. Each chapter runs from `book/`, one at a time; a failing chapter is reported and
the others still run. Writes OUT/<chapter>.ipynb and OUT/times.json (seconds and status per chapter); exit code 1
when any chapter failed.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

BOOK = Path(__file__).resolve().parents[1] / "book"
#: At the paper profile the Ablations chapter compares the methods at their defaults only.
PAPER_ABLATIONS = {"noise_seeds": "", "betas": "", "taus": "", "lams": "", "n_knowns": "", "boundaries": "",
                   "live_param": ""}


def chapter_parameters(args: argparse.Namespace, chapter: str) -> dict:
    params = {"profile": args.profile, "device": args.device, "data_root": str(Path(args.data_root).resolve()),
              "category": args.category, "known_types": args.known_types}
    if not args.synthetic:
        params.update(ablation_root="", results_root="")  # the committed grid is of the synthetic dataset
    if args.runs_root:
        params["runs_root"] = str(Path(args.runs_root).resolve())
        params["reproduce_dir"] = str(Path(args.runs_root).resolve() / "reproduce")
    if args.cache_dir:
        params["cache_dir"] = str(Path(args.cache_dir).resolve())
    if chapter == "ablations" and args.profile == "paper":
        params.update(PAPER_ABLATIONS)
    return params


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", required=True, help="dataset root in the MVTec layout")
    ap.add_argument("--category", required=True)
    ap.add_argument("--known-types", required=True, help="the seen defect type(s), comma-separated")
    ap.add_argument("--profile", default="paper", choices=("smoke", "book", "paper"))
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default="executed", help="folder for the executed notebooks and times.json")
    ap.add_argument("--chapters", nargs="+", default=None, help="chapter names (default: every book/*.ipynb)")
    ap.add_argument("--runs-root", default=None, help="run cache (default: each chapter's own, ../runs)")
    ap.add_argument("--cache-dir", default=None, help="feature cache (default: each chapter's own, ../.cache)")
    ap.add_argument("--synthetic", action="store_true", help="the data is the synthetic dataset of results/")
    ap.add_argument("--timeout", type=int, default=10800, help="seconds a cell may run (default 3 h)")
    args = ap.parse_args(argv)

    import papermill as pm

    data = Path(args.data_root)
    if not (data / args.category / "train").is_dir():
        print(f"run_chapters: error: no {args.category}/train under {data}; get MVTecAD with "
              f"`bgad-mini data mvtec --root {data}`", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = args.chapters or sorted(p.stem for p in BOOK.glob("*.ipynb"))
    times: dict[str, dict] = {}
    for name in names:
        start = time.perf_counter()
        print(f"::group::{name}", flush=True)
        try:
            pm.execute_notebook(str(BOOK / f"{name}.ipynb"), str(out / f"{name}.ipynb"), cwd=str(BOOK),
                                parameters=chapter_parameters(args, name), kernel_name="python3",
                                progress_bar=False, log_output=True, execution_timeout=args.timeout)
            status, error = "ok", None
        except Exception as exc:  # noqa: BLE001 - one chapter's failure is reported, the others still run
            status, error = "failed", " ".join(str(exc).split())[-600:] or type(exc).__name__
            traceback.print_exc()
        times[name] = {"status": status, "seconds": round(time.perf_counter() - start, 1), "error": error}
        print(f"::endgroup::\n{name}: {status} in {times[name]['seconds']:.0f} s", flush=True)
        (out / "times.json").write_text(json.dumps({"args": vars(args), "chapters": times}, indent=2))
    failed = [n for n, t in times.items() if t["status"] != "ok"]
    print(f"{len(names) - len(failed)} of {len(names)} chapters ran" + (f"; failed: {', '.join(failed)}"
                                                                       if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
