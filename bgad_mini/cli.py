"""`bgad-mini` (also `python -m bgad_mini`): data, run, eval, ablate, reproduce.

Every user error is one line on stderr and exit code 2; the full traceback is shown only with
`BGAD_DEBUG=1`.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
from typing import Sequence

from .config import METHODS, PROFILES, SETTINGS
from .errors import BgadError


def _parse_sets(pairs: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        if "=" not in pair:
            raise BgadError(f"--set expects key=value, got {pair!r}; e.g. --set beta=0.01")
        key, value = pair.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bgad-mini", description="BGAD, rebuilt for teaching: data, training, evaluation.")
    sub = p.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="make or download datasets")
    dsub = data.add_subparsers(dest="data_command", required=True)
    synth = dsub.add_parser("synth", help="generate the offline synthetic dataset (MVTec layout)")
    synth.add_argument("--out", default=os.path.join("data", "synthetic"), help="output folder (default: data/synthetic)")
    synth.add_argument("--profile", choices=("smoke", "book"), default="book")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--categories", nargs="+", default=None, help="subset of brick grass gravel")
    for name in ("mvtec", "btad"):
        d = dsub.add_parser(name, help=f"download and extract {'MVTecAD' if name == 'mvtec' else 'BTAD'}")
        d.add_argument("--root", default=os.path.join("data", name), help=f"target folder (default: data/{name})")
        d.add_argument("--url", default=None, help=f"archive URL (or env BGAD_{name.upper()}_URL)")
        d.add_argument("--sha256", default=None, help="expected SHA-256 of the archive (default: the official one)")
        d.add_argument("--categories", nargs="+", default=None, help="extract only these categories")
        d.add_argument("--remove-archive", action="store_true", help="delete the archive after extraction")

    run = sub.add_parser("run", help="train one method on one category, evaluate, write results.json")
    run.add_argument("--data-root", default=None, help="dataset root in the MVTec layout (default: the profile's)")
    run.add_argument("--category", default=None)
    run.add_argument("--method", choices=METHODS, default="nf")
    run.add_argument("--setting", choices=SETTINGS, default=None)
    run.add_argument("--known-types", nargs="+", default=None, help="seen defect type(s) for the one-class setting")
    run.add_argument("--n-known", type=int, default=None, help="number of known anomalies N (removed from the test set)")
    run.add_argument("--profile", choices=PROFILES, default="book")
    run.add_argument("--seed", type=int, default=None)
    run.add_argument("--device", default=None, help="auto (default), cpu or cuda")
    run.add_argument("--out", required=True, help="run folder: results.json, checkpoints, figures")
    run.add_argument("--set", dest="sets", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                     help="any Config field; several pairs after one --set")
    run.add_argument("--no-progress", action="store_true")

    ev = sub.add_parser("eval", help="re-evaluate a saved run from its checkpoint")
    ev.add_argument("--run", required=True, help="run folder written by `bgad-mini run`")
    ev.add_argument("--no-progress", action="store_true")

    _add_grid_commands(sub)
    return p


def _add_grid_commands(sub) -> None:
    """`ablate` and `reproduce`: grids of runs with reuse and parallel jobs (logic in `grid.py`, `summary.py`)."""
    ab = sub.add_parser("ablate", help="run a grid of methods x settings x seeds x parameters; CSVs and plots",
                        description="A grid of runs (finished ones reused), locally in --jobs processes or as one "
                                    "Dask task per run (--scheduler); results.csv, summary.csv and plots in --out.")
    ab.add_argument("--data-root", default=None, help="dataset root in the MVTec layout (default: the profile's)")
    ab.add_argument("--categories", nargs="+", default=None, help="default: the profile's category")
    ab.add_argument("--methods", nargs="+", default=["nf", "bgad"], help=f"any of {' '.join(METHODS)}")
    ab.add_argument("--settings", nargs="+", default=["one-class"], help=f"any of {' '.join(SETTINGS)}")
    ab.add_argument("--known-types", nargs="+", default=None,
                    help="one-class seen type per run; crack,hole = two seen types in one run (default: first type)")
    ab.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ab.add_argument("--profile", choices=PROFILES, default="book")
    ab.add_argument("--out", required=True, help="folder: runs/<key>/, results.csv, summary.csv, plots/")
    ab.add_argument("--grid", nargs="+", action="extend", default=[], metavar="KEY=V1,V2",
                    help="parameter axes, e.g. beta=0.01,0.05 tau=0.1,0.5 lambda=0.5,1 boundary=batch,epoch n_known=1,5")
    ab.add_argument("--axes", nargs="+", action="extend", default=[], metavar="[M+M:]KEY=V1,V2",
                    help="one setting at a time around the defaults, on the first --known-types only, e.g. "
                         "bgad:beta=0.005,0.05 nf+bgad:n_known=1,5 pushpull:push=linear (prefix: the methods)")
    ab.add_argument("--set", dest="sets", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                    help="any Config field; several pairs after one --set")
    ab.add_argument("--jobs", type=int, default=1, help="parallel runs; each gets max(1, cores // jobs) threads")
    ab.add_argument("--publish", action="store_true",
                    help="a result grid to commit: only results.json per run, and PROVENANCE.json (make results)")
    ab.add_argument("--only-finished", action="store_true",
                    help="train nothing: collect (and with --publish, publish) the runs that are finished")
    ab.add_argument("--no-progress", action="store_true")
    _add_cluster_options(ab)

    rs = sub.add_parser("results", help="check or verify a published result grid (results/)")
    rs.add_argument("action", choices=("check", "verify"),
                    help="check: made by this code on this data; verify: rerun a sample from scratch and compare")
    rs.add_argument("--root", default="results")
    rs.add_argument("--data-root", default=None, help="where the grid's data is now (default: as recorded)")
    rs.add_argument("--sample", type=int, default=3, help="verify: how many runs to rerun (default 3)")
    rs.add_argument("--jobs", type=int, default=1, help="verify: parallel reruns")
    rs.add_argument("--no-progress", action="store_true")
    _add_cluster_options(rs)

    rp = sub.add_parser("reproduce", help="BGAD on every category found, tables beside the paper's own numbers")
    rp.add_argument("--data-root", default=os.path.join("data", "mvtec"), help="MVTecAD (or BTAD) root")
    rp.add_argument("--profile", choices=PROFILES, default="paper")
    rp.add_argument("--out", default=os.path.join("runs", "reproduce"))
    rp.add_argument("--categories", nargs="+", default=None, help="default: every category under the data root")
    rp.add_argument("--methods", nargs="+", default=["bgad"], help="bgad (default); add nf for the NFAD column")
    rp.add_argument("--seeds", nargs="+", type=int, default=[0])
    rp.add_argument("--set", dest="sets", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                    help="any Config field; several pairs after one --set")
    rp.add_argument("--jobs", type=int, default=1, help="parallel runs; each gets max(1, cores // jobs) threads")
    rp.add_argument("--no-progress", action="store_true")
    _add_cluster_options(rp)


def _add_cluster_options(parser: argparse.ArgumentParser) -> None:
    """--scheduler / --scheduler-file: the missing runs as Dask tasks (`cluster.py`, `bgad-mini[cluster]`)."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--scheduler", default=None, metavar="tcp://HOST:8786",
                       help="run each missing run as one task on this Dask scheduler's workers (instead of --jobs)")
    where.add_argument("--scheduler-file", default=None, metavar="PATH",
                       help="the same, with the scheduler's address read from the file `dask scheduler "
                            "--scheduler-file` (or dask-jobqueue) wrote")
    parser.add_argument("--threads-per-task", type=int, default=0, metavar="N",
                        help="torch threads of each run on a cluster (default: a worker machine's cores divided by "
                             "the runs its workers run at once)")


def _cluster(args: argparse.Namespace) -> dict:
    """run_grid's `scheduler` and `threads_per_task` from the command line (a one-line error on a bad mix)."""
    scheduler = args.scheduler_file or args.scheduler
    if args.scheduler and "://" not in args.scheduler:
        scheduler = f"tcp://{args.scheduler}"
    if scheduler and args.jobs != 1:
        raise BgadError("--jobs is for runs on this machine; on a cluster each worker thread runs one run at a time")
    if args.threads_per_task < 0 or (args.threads_per_task and not scheduler):
        raise BgadError("--threads-per-task N (N >= 1) goes with --scheduler or --scheduler-file")
    return dict(scheduler=scheduler, threads_per_task=args.threads_per_task)


def _cmd_grid(args: argparse.Namespace) -> int:
    from .ablation import ablate
    from .reproduce import reproduce

    common = dict(sets=_parse_sets(args.sets), jobs=args.jobs, progress=not args.no_progress, **_cluster(args))
    if args.command == "ablate":
        command = " ".join(shlex.quote(a) for a in ["bgad-mini", *args.argv])
        return ablate(args.data_root, args.categories, args.methods, args.settings, args.known_types,
                      args.seeds, args.profile, args.out, grid=args.grid, axes=args.axes, publish=args.publish,
                      command=command, only_finished=args.only_finished, **common)
    return reproduce(args.data_root, args.profile, args.out, categories=args.categories, seeds=args.seeds,
                     methods=args.methods, **common)


def _cmd_results(args: argparse.Namespace) -> int:
    from . import published

    if args.action == "check":
        prov = published.check(args.root, args.data_root)
        print(f"{args.root}: made by this code on this data; {published.grid_summary(prov)}")
        return 0
    report = published.verify(args.root, n=args.sample, jobs=args.jobs, data_root=args.data_root,
                              progress=not args.no_progress, **_cluster(args))
    for r in report:
        print(f"  {r['run']}: {r['metrics_compared']} metrics, largest difference {r['max_abs_diff']:.1e}")
    print(f"{args.root}: {len(report)} runs rerun from scratch match the committed metrics (to 1e-3)")
    return 0


def _cmd_data(args: argparse.Namespace) -> int:
    if args.data_command == "synth":
        from . import synthetic

        cats = tuple(args.categories) if args.categories else synthetic.CATEGORIES
        out = synthetic.generate(args.out, profile=args.profile, seed=args.seed, categories=cats)
        print(f"synthetic dataset ({args.profile}, seed {args.seed}) written to {out}")
        return 0
    from . import download

    source = download.MVTEC if args.data_command == "mvtec" else download.BTAD
    root = download.download_dataset(
        source, args.root, url=args.url, sha256=args.sha256, categories=args.categories,
        keep_archive=not args.remove_archive,
    )
    print(f"{source.name} ready in {root}")
    return 0


def _run_config(args: argparse.Namespace):
    from .config import Config

    overrides: dict = {"method": args.method}
    for key, value in (
        ("data_root", args.data_root), ("category", args.category), ("setting", args.setting),
        ("n_known", args.n_known), ("seed", args.seed), ("device", args.device),
    ):
        if value is not None:
            overrides[key] = value
    if args.known_types is not None:
        overrides["known_types"] = tuple(args.known_types)
    overrides.update(_parse_sets(args.sets))
    return Config.from_profile(args.profile, **overrides)


def _cmd_run(args: argparse.Namespace) -> int:
    from .runs import load_or_run

    cfg = _run_config(args)
    results = load_or_run(cfg, args.out, progress=not args.no_progress).results
    _print_summary(results)
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from .runs import reevaluate

    results = reevaluate(args.run, progress=not args.no_progress)
    _print_summary(results)
    return 0


def _print_summary(results: dict) -> None:
    def fmt(m: dict | None) -> str:
        if not m:
            return "n/a"
        return "  ".join(f"{k}={'null' if v is None else f'{v:.3f}'}" for k, v in m.items())

    print(f"{results['method']} on {results['category']} (seed {results['seed']}): {fmt(results['metrics'])}")
    if results.get("metrics_seen"):
        print(f"  seen   {fmt(results['metrics_seen'])}")
    if results.get("metrics_unseen"):
        print(f"  unseen {fmt(results['metrics_unseen'])}")
    print(f"  results: {results['paths']['results']}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # recorded in a published grid's provenance
    try:
        if args.command == "data":
            return _cmd_data(args)
        if args.command == "run":
            return _cmd_run(args)
        if args.command == "eval":
            return _cmd_eval(args)
        if args.command in ("ablate", "reproduce"):
            return _cmd_grid(args)
        if args.command == "results":
            return _cmd_results(args)
    except BgadError as exc:
        if os.environ.get("BGAD_DEBUG"):
            raise
        print(f"bgad-mini: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bgad-mini: interrupted; finished epochs are saved in the run folder, rerun the same command to resume",
              file=sys.stderr)
        return 130
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
