"""Ablation grids: expand a grid of runs, run them in parallel with reuse, collect, summarise over seeds, plot.

The *Ablations* chapter and `bgad-mini ablate` / `bgad-mini reproduce` use these five steps:

    configs = expand_grid(methods=("nf", "bgad"), categories=("brick",), known_types=("crack",), seeds=(0, 1, 2),
                          grid={"beta": (0.01, 0.05)}, profile="book")
    records = run_grid(configs, "runs/ablate", jobs=2)     # out/runs/<key>/results.json, reused when present
    rows = collect("runs/ablate", configs)                  # one flat row per finished run
    summary = summarize(rows)                               # mean ± std over seeds
    write_outputs(rows, "runs/ablate")                      # results.csv, summary.csv, plots/*.png

Each run lives in `out/runs/<key>`, where the key is a readable prefix (`bgad_brick_crack_s0_`) and a short hash
of the full config, so rerunning a grid after an interruption only runs what is missing. Parallel jobs are
separate processes, each with `max(1, cores // jobs)` torch threads (jobs × threads ≤ cores: see
`reference/cpu_measurements.md` for the 5–35x slow-down of oversubscription).
"""
from __future__ import annotations

import csv
import hashlib
import itertools
import json
import math
import os
import re
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from .config import ALIASES, METHOD_PARAMS, METHODS, RELEVANT_PARAMS, RUNTIME_FIELDS, SETTINGS, Config
from .errors import BgadError

RUNS = "runs"
RESULTS = "results.json"
CONFIG = "config.json"


#: Fields with their own flag (--methods, --settings, ...), so not allowed as --grid axes.
STRUCTURAL = {"method": "--methods", "setting": "--settings", "category": "--categories",
              "known_types": "--known-types", "seed": "--seeds", "profile": "--profile", "data_root": "--data-root"}

#: Columns of results.csv besides the varied-parameter columns; metric columns are built from these names.
METRICS = ("image_auroc", "pixel_auroc", "pro")
GROUPS = ("", "seen_", "unseen_")
METRIC_COLUMNS = tuple(g + m for g in GROUPS for m in METRICS)
PARAM_COLUMNS = ("method", "dataset", "category", "setting", "known_types", "n_known", "beta", "tau", "lambda",
                 "boundary")
#: Columns that differ between seeds of one parameter combination (not part of a summary group).
PER_RUN_COLUMNS = ("seed", "total_seconds", "run_dir", "score") + METRIC_COLUMNS
#: Which score a row's metrics come from (`collect(score=...)`): the default (inductive) one, or the paper's
#: protocol (`metrics_official*`, PRO = `pro_official_style`) for the tables that sit beside the paper's numbers.
SCORES = ("default", "official")
#: The `score` column of an official-score row, and of a run whose results.json has no official score stored.
SCORE_OFFICIAL = "official"
SCORE_FALLBACK = "default score: no metrics_official in results.json"
#: Config fields never shown as extra varied-parameter columns (already a column, or irrelevant to results).
_NOT_EXTRA = {"method", "category", "setting", "known_types", "n_known", "seed", "beta", "tau", "lam", "boundary",
              "extra", "profile", *RUNTIME_FIELDS}
#: Parameters that get a sensitivity plot when varied (results.csv column names).
SENSITIVITY_PARAMS = ("beta", "tau", "lambda", "boundary")


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
    from .data import read_category

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
# Run keys and reuse
# ----------------------------------------------------------------------------------------------
def _key_dict(cfg_dict: Mapping[str, Any]) -> dict[str, Any]:
    return Config.from_dict(dict(cfg_dict)).identity()


def run_key(cfg: Config) -> str:
    """`<method>_<category>_<known types or multi>_s<seed>_<12 hex>`: stable across processes and sessions.

    The hash covers `Config.identity()`: the config without runtime fields (threads, cache_dir) and without the
    settings of other methods, so the same run with another --jobs, or after a change to another method's
    defaults, is still reused. A new field that the method reads changes its keys.
    """
    blob = json.dumps(_key_dict(cfg.to_dict()), sort_keys=True, default=str)
    digest = hashlib.sha1(blob.encode()).hexdigest()[:12]
    which = "+".join(cfg.known_types) if cfg.setting == "one-class" else "multi"
    prefix = f"{cfg.method}_{cfg.category}_{which or 'one'}_s{cfg.seed}_"
    return re.sub(r"[^A-Za-z0-9_.+-]", "-", prefix) + digest


def _same_run(saved: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    """Whether a saved config is the wanted one, up to runtime fields (and the one-class default known type)."""
    a, b = _key_dict(saved), _key_dict(wanted)
    if b.get("setting") == "one-class" and not b.get("known_types"):
        a = {k: v for k, v in a.items() if k != "known_types"}
        b = {k: v for k, v in b.items() if k != "known_types"}
    return a == b


def finished_results(run_dir: str | os.PathLike, cfg: Config) -> dict | None:
    """The saved results of `cfg` in `run_dir`, or None when the run is missing, unfinished or another config."""
    path = Path(run_dir) / RESULTS
    if not path.is_file():
        return None
    try:
        res = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return res if _same_run(res.get("config", {}), cfg.to_dict()) else None


def _align_runtime_fields(run_dir: Path, cfg: Config) -> None:
    """An unfinished run folder saved with other threads / cache_dir: update them so the pipeline resumes it."""
    path = run_dir / CONFIG
    if not path.is_file():
        return
    try:
        saved = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return
    wanted = cfg.to_dict()
    if saved != wanted and _same_run(saved, wanted):
        saved.update({k: wanted[k] for k in RUNTIME_FIELDS if k in wanted})
        path.write_text(json.dumps(saved, indent=2))


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


def _pipeline_run(cfg: Config, out: str, progress: bool = False) -> dict:
    from . import pipeline  # looked up at call time: tests may replace pipeline.run

    return pipeline.run(cfg, out, progress=progress)


def _run_one(cfg_dict: dict, run_dir: str, threads: int, runner: Callable | None, in_worker: bool) -> dict:
    """One job (in a worker process, or in this one when jobs = 1): never raises, reports failure instead."""
    if in_worker:
        _set_thread_env(threads)  # before this process imports torch (the pipeline imports it lazily)
    start = time.perf_counter()
    out = Path(run_dir)
    try:
        cfg = Config.from_dict(cfg_dict).with_overrides(threads=threads)
        out.mkdir(parents=True, exist_ok=True)
        _align_runtime_fields(out, cfg)
        results = (runner or _pipeline_run)(cfg, str(out), progress=False)
        return {"status": "trained", "results": results, "error": None, "seconds": time.perf_counter() - start,
                "pid": os.getpid()}
    except BaseException as exc:  # noqa: BLE001 - one job's failure must not stop the others
        if isinstance(exc, KeyboardInterrupt) and not in_worker:
            raise
        try:
            out.mkdir(parents=True, exist_ok=True)
            (out / "error.txt").write_text(traceback.format_exc())
        except OSError:
            pass
        msg = " ".join(str(exc).split()) or type(exc).__name__
        return {"status": "failed", "results": None, "error": f"{type(exc).__name__}: {msg}",
                "seconds": time.perf_counter() - start, "pid": os.getpid()}


def _init_worker(threads: int) -> None:
    _set_thread_env(threads)


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


#: results.csv column -> Config field, for the columns that are run parameters.
_COLUMN_FIELDS = {"category": "category", "setting": "setting", "known_types": "known_types", "n_known": "n_known",
                  "beta": "beta", "tau": "tau", "lambda": "lam", "boundary": "boundary"}


def _at_base(value: Any, base_value: Any) -> bool:
    if isinstance(base_value, tuple):
        base_value = "+".join(base_value)
    if isinstance(base_value, bool) or isinstance(value, bool):
        return str(value).lower() == str(base_value).lower()
    if isinstance(base_value, (int, float)) and value is not None and value != "":
        try:
            return math.isclose(float(value), float(base_value), rel_tol=1e-9, abs_tol=1e-12)
        except (TypeError, ValueError):
            return False
    return str(value) == str(base_value)


def axis_rows(rows: Sequence[Mapping[str, Any]], base: Config, method: str, column: str) -> list[dict[str, Any]]:
    """Rows (results or summary) of `method` whose parameters are all at `base` except `column`, sorted by it.

    With `column` = "" the rows at the base itself. Parameters a method does not read are ignored,
    so `axis_rows(summary, base, "nf", "")` finds the NF baseline of a grid made around `base`.
    """
    field = _COLUMN_FIELDS.get(column, ALIASES.get(column, column))
    out = []
    for row in rows:
        if row.get("method") != method:
            continue
        ok = True
        for col, value in row.items():
            f = _COLUMN_FIELDS.get(col, col if col not in _NOT_EXTRA else None)
            if f is None or col == column or f == field or not hasattr(base, f) or not _uses(method, col):
                continue
            if not _at_base(value, getattr(base, f)):
                ok = False
                break
        if ok:
            out.append(dict(row))
    if column:
        out.sort(key=lambda r: (not isinstance(r.get(column), (int, float)), r.get(column) if isinstance(
            r.get(column), (int, float)) else str(r.get(column))))
    return out


def run_grid(configs: Sequence[Config], out: str | os.PathLike, jobs: int = 1, progress: bool = True,
             runner: Callable | None = None, mp_context: str = "spawn", runs_dir: str | os.PathLike | None = None
             ) -> list[dict]:
    """Run every config into `out/runs/<run_key>` (or `runs_dir/<run_key>`: the chapters' run cache), reusing
    finished runs; return one record per config, in order.

    A record is {"key", "run_dir", "config" (Config), "status" ("reused" | "trained" | "failed"), "error"
    (one line or None), "seconds", "results" (the results dict or None)}. With `jobs` > 1 the missing runs go
    to a `ProcessPoolExecutor` (`mp_context`, default spawn: safe with torch) of min(jobs, missing) processes,
    each with OMP_NUM_THREADS and `cfg.threads` = max(1, cores // processes); with jobs = 1 they run here, one
    after another. A failing job is reported in one line (traceback in its `error.txt`) and the others go on.
    `runner(cfg, run_dir, progress=False)` replaces `pipeline.run` (it must be picklable when jobs > 1).
    """
    if jobs < 1:
        raise BgadError(f"--jobs must be >= 1, got {jobs}")
    runs = Path(runs_dir) if runs_dir is not None else Path(out) / RUNS
    runs.mkdir(parents=True, exist_ok=True)
    records: list[dict] = []
    todo: list[int] = []
    for cfg in configs:
        key = run_key(cfg)
        run_dir = runs / key
        done = finished_results(run_dir, cfg)
        records.append({"key": key, "run_dir": str(run_dir), "config": cfg, "status": "reused" if done else None,
                        "error": None, "seconds": 0.0, "results": done})
        if done is None:
            todo.append(len(records) - 1)
    n_reused = len(records) - len(todo)
    workers = min(jobs, len(todo)) if todo else 0
    threads = threads_per_job(max(1, workers))

    from tqdm.auto import tqdm

    def say(line: str) -> None:
        if progress:
            tqdm.write(line, file=sys.stderr)  # beside the bar (stderr); the final report goes to stdout

    if progress:
        print(f"{len(records)} runs: {n_reused} finished (reused), {len(todo)} to run"
              + (f" in {workers} processes × {threads} threads" if todo else ""), file=sys.stderr)
    bar = tqdm(total=len(todo), disable=not progress or not todo, unit="run", desc="ablation", file=sys.stderr)

    def finish(i: int, outcome: dict) -> None:
        rec = records[i]
        rec.update({k: outcome[k] for k in ("status", "error", "seconds", "results")})
        if rec["status"] == "failed":
            say(f"FAILED {rec['key']}: {rec['error']} (traceback: {Path(rec['run_dir']) / 'error.txt'})")
        else:
            say(f"done {rec['key']} in {rec['seconds']:.0f} s: {_fmt_metrics(rec['results'].get('metrics'))}")
        bar.update(1)

    try:
        if workers == 1:
            for i in todo:
                r = records[i]
                finish(i, _run_one(r["config"].to_dict(), r["run_dir"], threads, runner, in_worker=False))
        elif workers > 1:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor, as_completed

            ctx = multiprocessing.get_context(mp_context)
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                                     initargs=(threads,)) as pool:
                futures = {pool.submit(_run_one, records[i]["config"].to_dict(), records[i]["run_dir"], threads,
                                       runner, True): i for i in todo}
                try:
                    for fut in as_completed(futures):
                        try:
                            outcome = fut.result()
                        except Exception as exc:  # the worker process died (e.g. out of memory)
                            outcome = {"status": "failed", "results": None, "seconds": 0.0,
                                       "error": f"{type(exc).__name__}: {' '.join(str(exc).split())}"}
                        finish(futures[fut], outcome)
                except KeyboardInterrupt:
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise
    finally:
        bar.close()
    return records


# ----------------------------------------------------------------------------------------------
# Collecting and summarising
# ----------------------------------------------------------------------------------------------
def results_row(results: Mapping[str, Any], run_dir: str | os.PathLike = "", score: str = "default"
                ) -> dict[str, Any]:
    """One flat row of results.csv from a results dict (metrics overall, seen, unseen; params; seconds).

    score "default": `metrics*` (the inductive score, standard PRO). score "official": `metrics_official*`
    with PRO = `pro_official_style` (the paper's protocol), and a `score` column saying which was used: a
    results.json without `metrics_official` falls back to `metrics*` and says so (`SCORE_FALLBACK`).
    """
    if score not in SCORES:
        raise BgadError(f"unknown score {score!r}; choose one of {', '.join(SCORES)}")
    official = score == "official" and bool(results.get("metrics_official"))
    cfg = results.get("config", {})
    row: dict[str, Any] = {
        "method": results.get("method", cfg.get("method")),
        "dataset": results.get("dataset", ""),
        "category": results.get("category", cfg.get("category")),
        "setting": results.get("setting", cfg.get("setting")),
        "known_types": "+".join(results.get("known_types") or []),
        "n_known": results.get("n_known", cfg.get("n_known")),
        "seed": results.get("seed", cfg.get("seed")),
        "beta": cfg.get("beta"), "tau": cfg.get("tau"), "lambda": cfg.get("lam"), "boundary": cfg.get("boundary"),
    }
    for group, key in (("", "metrics"), ("seen_", "metrics_seen"), ("unseen_", "metrics_unseen")):
        m = results.get(key.replace("metrics", "metrics_official") if official else key) or {}
        for name in METRICS:
            row[group + name] = m.get("pro_official_style", m.get(name)) if official and name == "pro" \
                else m.get(name)
    row["total_seconds"] = (results.get("timings") or {}).get("total")
    row["run_dir"] = str(run_dir)
    if score == "official":
        row["score"] = SCORE_OFFICIAL if official else SCORE_FALLBACK
    return row


def collect(out: str | os.PathLike, configs: Sequence[Config] | None = None,
            runs_dir: str | os.PathLike | None = None, score: str = "default") -> list[dict[str, Any]]:
    """Rows of every finished run under `out/runs` (or `runs_dir`; or only of `configs`): methods in `METHODS`
    order, then category, setting, known types, N, β, τ, λ, boundary, seed. `score="official"` reads the
    paper's protocol instead of the default score (see `results_row`) and adds a `score` column.

    Config fields (other than the fixed columns) that differ between the collected runs are added as columns,
    so a --grid over e.g. `phase2_epochs` shows up in results.csv and in the summary groups.
    """
    runs = Path(runs_dir) if runs_dir is not None else Path(out) / RUNS
    if configs is not None:
        found = [(runs / run_key(c), finished_results(runs / run_key(c), c)) for c in configs]
        pairs = [(d, r) for d, r in found if r is not None]
    else:
        pairs = []
        for path in sorted(runs.glob(f"*/{RESULTS}")):
            try:
                pairs.append((path.parent, json.loads(path.read_text())))
            except (OSError, json.JSONDecodeError):
                continue
    rows = [results_row(r, d, score) for d, r in pairs]
    cfgs = [r.get("config", {}) for _, r in pairs]
    extra = sorted({k for c in cfgs for k in c if k not in _NOT_EXTRA
                    and len({json.dumps(x.get(k), sort_keys=True) for x in cfgs}) > 1})
    for row, c in zip(rows, cfgs):
        for k in extra:
            v = c.get(k)
            row[k] = "+".join(map(str, v)) if isinstance(v, list) else v
    order = list(PARAM_COLUMNS) + extra + ["seed"] + list(METRIC_COLUMNS) + ["total_seconds", "run_dir"]
    order += ["score"] if score == "official" else []
    return sorted(({k: row.get(k) for k in order} for row in rows), key=_row_order)


def _row_order(row: Mapping[str, Any]) -> tuple:
    """Methods in `METHODS` order, then every column (numbers before text, numerically), the run folder last."""
    def part(v: Any) -> tuple:
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return (0, float(v), "")
        return (1, 0.0, "" if v is None else str(v))

    method = row.get("method")
    rank = METHODS.index(method) if method in METHODS else len(METHODS)
    return (rank,) + tuple(part(v) for k, v in row.items() if k not in METRIC_COLUMNS + ("total_seconds", "score"))


def _group_columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    cols: list[str] = []
    for row in rows:
        cols += [k for k in row if k not in PER_RUN_COLUMNS and k not in cols]
    return cols


def summarize(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Mean and sample std (ddof = 1; None with one seed) over seeds per parameter combination.

    A group is every column except the seed, the metrics, the seconds and the run folder: method × setting ×
    category × known types × N × β, τ, λ, boundary (× any other varied field). Each row carries n_seeds, seeds,
    `<metric>_mean` / `<metric>_std` for the overall, seen_ and unseen_ metrics (missing values skipped), and
    total_seconds_mean; rows from `collect(score="official")` also carry `score` (the members' labels, joined).
    """
    cols = _group_columns(rows)
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(json.dumps(row.get(c), default=str) for c in cols), []).append(row)
    out: list[dict[str, Any]] = []
    for members in groups.values():
        s: dict[str, Any] = {c: members[0].get(c) for c in cols}
        seeds = sorted(r.get("seed") for r in members)
        s["n_seeds"] = len(members)
        s["seeds"] = " ".join(map(str, seeds))
        labels = sorted({str(r["score"]) for r in members if r.get("score")})
        if labels:
            s["score"] = "; ".join(labels)
        for m in METRIC_COLUMNS + ("total_seconds",):
            vals = [float(r[m]) for r in members if r.get(m) is not None and not _isnan(r[m])]
            s[f"{m}_mean"] = statistics.fmean(vals) if vals else None
            if m != "total_seconds":
                s[f"{m}_std"] = statistics.stdev(vals) if len(vals) > 1 else None
        out.append(s)
    return out


def _isnan(v: Any) -> bool:
    return isinstance(v, float) and math.isnan(v)


def write_csv(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Rows (dicts) to CSV; None is an empty cell; columns in first-seen order."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = _all_columns(rows)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for row in rows:
            w.writerow({c: "" if row.get(c) is None else row.get(c) for c in cols})
    return path


def _all_columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    cols: list[str] = []
    for row in rows:
        cols += [k for k in row if k not in cols]
    return cols


# ----------------------------------------------------------------------------------------------
# Outputs: CSVs and the standard plots
# ----------------------------------------------------------------------------------------------
_SHORT = {"beta": "β", "tau": "τ", "lambda": "λ", "n_known": "N", "known_types": "seen"}


def _varying(rows: Sequence[Mapping[str, Any]], cols: Iterable[str]) -> list[str]:
    return [c for c in cols if len({json.dumps(r.get(c), default=str) for r in rows}) > 1]


def label_rows(rows: Sequence[Mapping[str, Any]], exclude: Iterable[str] = ()) -> list[str]:
    """A short label per summary row: the method plus every parameter that varies among `rows` (not `exclude`)
    and that the row's method reads (`RELEVANT_PARAMS`)."""
    skip = set(exclude) | {"method", "n_seeds", "seeds"} | {k for k in _all_columns(rows) if k.endswith(("_mean", "_std"))}
    vary = _varying(rows, [c for c in _all_columns(rows) if c not in skip])
    labels = []
    for r in rows:
        parts = [str(r.get("method"))] + [f"{_SHORT.get(c, c)}={r.get(c)}" for c in vary
                                          if c not in ("category", "setting", "known_types")
                                          and _uses(str(r.get("method")), c)]
        parts += [str(r.get(c)) for c in ("setting", "category") if c in vary]
        if "known_types" in vary:
            parts.append(f"seen={r.get('known_types') or 'all'}")
        labels.append(" ".join(parts))
    return labels


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "-", str(text)).strip("-") or "all"


def _uses(method: str, column: str) -> bool:
    field = ALIASES.get(column, column)
    return field not in METHOD_PARAMS or field in RELEVANT_PARAMS.get(method, ())


def write_outputs(rows: Sequence[Mapping[str, Any]], out: str | os.PathLike,
                  summary: Sequence[Mapping[str, Any]] | None = None, plots: bool = True) -> dict[str, Any]:
    """Write out/results.csv, out/summary.csv and the standard plots (PNG) in out/plots/; return the paths.

    Plots: seen vs unseen bars per method (one figure per setting × category, one panel per metric);
    a sensitivity figure for each of β, τ, λ, boundary that some method varies; an N-known figure when N varies.
    """
    out = Path(out)
    summary = list(summary) if summary is not None else summarize(rows)
    paths: dict[str, Any] = {"results_csv": write_csv(rows, out / "results.csv"),
                             "summary_csv": write_csv(summary, out / "summary.csv"), "plots": []}
    if not plots or not summary:
        return paths
    import matplotlib.pyplot as plt

    from . import viz

    plot_dir = out / "plots"
    plot_dir.mkdir(parents=True, exist_ok=True)

    def save(fig, name: str) -> None:
        path = plot_dir / name
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        paths["plots"].append(path)

    has_unseen = any(s.get("unseen_image_auroc_mean") is not None for s in summary)
    metrics = list(METRICS) + ([f"unseen_{m}" for m in METRICS] if has_unseen else [])
    for setting in dict.fromkeys(s.get("setting") for s in summary):
        for category in dict.fromkeys(s.get("category") for s in summary if s.get("setting") == setting):
            part = [dict(s) for s in summary if s.get("setting") == setting and s.get("category") == category]
            for s, lab in zip(part, label_rows(part, exclude=("setting", "category"))):
                s["label"] = lab
            fig = viz.plot_seen_unseen_bars(part, METRICS,
                                            title=f"{category}, {setting}: seen vs unseen defect types")
            save(fig, f"seen_unseen_{_slug(setting)}_{_slug(category)}.png")

    for param in SENSITIVITY_PARAMS + ("n_known",):
        if param not in (summary[0] if summary else {}):
            continue
        varied = any(len({s.get(param) for s in summary if s.get("method") == m and _uses(m, param)}) > 1
                     for m in {s.get("method") for s in summary})
        if not varied:
            continue
        part = [dict(s) for s in summary]
        for s, lab in zip(part, label_rows(part, exclude=(param,))):
            s["series"] = lab
        if param == "n_known":
            save(viz.plot_n_known(part, metrics), "n_known.png")
        else:
            save(viz.plot_sensitivity(part, param, metrics), f"sensitivity_{param}.png")
    return paths


# ----------------------------------------------------------------------------------------------
# bgad-mini ablate
# ----------------------------------------------------------------------------------------------
def ablate(data_root: str | None, categories: Sequence[str] | None, methods: Sequence[str], settings: Sequence[str],
           known_types: Sequence[str] | None, seeds: Sequence[int], profile: str, out: str | os.PathLike,
           grid: Sequence[str] = (), sets: Mapping[str, Any] | None = None, jobs: int = 1,
           progress: bool = True, runner: Callable | None = None) -> int:
    """Expand, run, collect, write outputs; print where they are. Returns 0, or 1 when any job failed."""
    configs = expand_grid(methods=methods, settings=settings, categories=categories, known_types=known_types,
                          seeds=seeds, grid=parse_grid(grid), profile=profile, data_root=data_root,
                          overrides=sets)
    records = run_grid(configs, out, jobs=jobs, progress=progress, runner=runner)
    rows = collect(out, configs)
    paths = write_outputs(rows, out)
    _report(records, paths)
    return 1 if any(r["status"] == "failed" for r in records) else 0


def _report(records: Sequence[dict], paths: Mapping[str, Any]) -> None:
    failed = [r for r in records if r["status"] == "failed"]
    counts = {s: sum(r["status"] == s for r in records) for s in ("reused", "trained", "failed")}
    print(f"{len(records)} runs: {counts['reused']} reused, {counts['trained']} trained, {counts['failed']} failed")
    for r in failed:
        print(f"  failed: {r['key']}: {r['error']}")
    for name in ("results_csv", "summary_csv"):
        print(f"  {name.replace('_csv', '')}: {paths[name]}")
    if paths.get("plots"):
        print(f"  plots: {len(paths['plots'])} PNG in {Path(paths['plots'][0]).parent}")
    for name in ("markdown", "multi_class_csv", "one_class_csv"):
        if paths.get(name):
            print(f"  {name.replace('_', ' ')}: {paths[name]}")


# ----------------------------------------------------------------------------------------------
# bgad-mini reproduce: the paper's tables, with our numbers next to the paper's
# ----------------------------------------------------------------------------------------------
#: Categories of the paper's one-class table: each defect type in turn is the seen type.
ONE_CLASS_CATEGORIES = ("carpet", "metal_nut")


def reproduce_configs(data_root: str, profile: str = "paper", categories: Sequence[str] | None = None,
                      seeds: Sequence[int] = (0,), methods: Sequence[str] = ("bgad",),
                      overrides: Mapping[str, Any] | None = None) -> list[Config]:
    """The paper's runs on what `data_root` holds: every category multi-class; carpet and metal_nut also
    one-class with each of their defect types as the seen type (N = the profile's n_known, 10 for `paper`)."""
    from . import paper_tables as pt
    from .data import list_categories, read_category

    found = list_categories(data_root)
    if not found:
        raise BgadError(f"no categories (folders with train/) under {data_root!r}; get MVTecAD with "
                        f"`bgad-mini data mvtec --root {data_root}`")
    if categories:
        missing = [c for c in categories if c not in found]
        if missing:
            raise BgadError(f"category(ies) {', '.join(missing)} not under {data_root}; found: {', '.join(found)}")
        found = list(dict.fromkeys(categories))
    order = {c: i for i, c in enumerate(pt.MVTEC_ORDER)}
    cats = sorted(found, key=lambda c: (order.get(c, len(order)), c))
    common = dict(methods=methods, seeds=seeds, profile=profile, data_root=data_root, overrides=overrides)
    configs = expand_grid(settings=("multi-class",), categories=cats, **common)
    for c in cats:
        if c in ONE_CLASS_CATEGORIES:
            types = read_category(data_root, c, check_sizes=False).defect_types
            configs += expand_grid(settings=("one-class",), categories=[c], known_types=types, **common)
    return configs


#: How the reproduction tables label our cells that sit beside the paper's numbers.
OFFICIAL_LABEL = "official score, official-style PRO"


def _pm(mean: float | None, std: float | None = None, digits: int = 3, std_digits: int | None = None) -> str:
    if mean is None:
        return "–"
    if std is None:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{std_digits or digits}f}"


def _find(summary: Sequence[Mapping[str, Any]], **match: Any) -> Mapping[str, Any] | None:
    hits = [s for s in summary if all(s.get(k) == v for k, v in match.items())]
    return hits[0] if hits else None


def _mean_of(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.fmean(vals) if vals else None


def reproduce_tables(summary: Sequence[Mapping[str, Any]], methods: Sequence[str] = ("bgad",)
                     ) -> tuple[str, list[dict[str, Any]], list[dict[str, Any]]]:
    """Markdown, and the rows of the multi-class and one-class CSVs: ours (mean ± std over seeds) beside the
    paper's numbers (labelled with their table, see `paper_tables`).

    `summary` should come from `summarize(collect(..., score="official"))`: beside the paper, our cells are the
    official (transductive) score with the official-style PRO, as the paper's protocol. A summary row without
    that label (a default-score summary, or runs whose results.json has no official score) is marked ‡.
    """
    from . import paper_tables as pt

    order = {c: i for i, c in enumerate(pt.MVTEC_ORDER)}
    md: list[str] = ["# BGAD reproduction: our numbers beside the paper's", "",
                     f"Ours: `bgad-mini reproduce`, final model (the paper reports its best epoch), mean ± sample "
                     f"std over seeds, with the {OFFICIAL_LABEL} (`metrics_official`, `pro_official_style`), as "
                     "the paper's protocol; results.csv and summary.csv hold the default (inductive) score and the "
                     f"standard PRO. Paper: {pt.CITATION}; numbers transcribed in `bgad_mini/paper_tables.py` "
                     "and labelled with their table.", ""]
    fallback: list[bool] = []

    def mark(s: Mapping[str, Any]) -> str:
        # ‡: these cells are not the official score (see the note under the tables)
        if not s or s.get("score") == SCORE_OFFICIAL:
            return ""
        fallback.append(True)
        return " ‡"

    # --- multi-class -------------------------------------------------------------------------
    multi = [s for s in summary if s.get("setting") == "multi-class"]
    cats = sorted({s["category"] for s in multi}, key=lambda c: (order.get(c, len(order)), c))
    multi_rows: list[dict[str, Any]] = []
    if cats:
        seeds = sorted({x for s in multi for x in str(s.get("seeds", "")).split()}, key=int)
        n_known = sorted({s.get("n_known") for s in multi})
        btad = all(c in pt.BTAD for c in cats)
        md += ["## Multi-class setting", "",
               f"N = {', '.join(map(str, n_known))} known anomalies drawn from all defect types; seeds "
               f"{', '.join(seeds)}. Cells: image AUROC, and pixel AUROC / PRO as in the paper's "
               + ("BTAD table (which prints no image AUROC)." if btad else
                  "Table 1 (which prints image AUROC only as a mean over the 15 MVTecAD categories)."), ""]
        head = ["group", "category"]
        with_paper = [m for m in methods if pt.PAPER_NAME.get(m) in pt.TABLE1_METHODS]
        for m in methods:
            name = pt.DISPLAY.get(pt.PAPER_NAME.get(m, ""), m)
            head += [f"ours {m}: image AUROC", f"ours {m}: pixel AUROC / PRO (official-style)"]
            label = pt.LABEL_BTAD if btad else pt.LABEL_TABLE1
            if m in with_paper:
                head.append(f"{label} {name}: pixel AUROC / PRO")
        md += ["| " + " | ".join(head) + " |", "| " + " | ".join(["---"] * len(head)) + " |"]
        for c in cats:
            group = "textures" if c in pt.TEXTURES else "objects" if c in pt.OBJECTS else ""
            row: dict[str, Any] = {"group": group, "category": c}
            cells = [group, c]
            for m in methods:
                s = _find(multi, method=m, category=c) or {}
                for k in METRICS:
                    row[f"ours_{m}_{k}_mean"] = s.get(f"{k}_mean")
                    row[f"ours_{m}_{k}_std"] = s.get(f"{k}_std")
                row[f"ours_{m}_n_seeds"] = s.get("n_seeds")
                row[f"ours_{m}_score"] = s.get("score")
                cells += [_pm(s.get("image_auroc_mean"), s.get("image_auroc_std")) + mark(s),
                          f"{_pm(s.get('pixel_auroc_mean'), s.get('pixel_auroc_std'))} / "
                          f"{_pm(s.get('pro_mean'), s.get('pro_std'))}" + mark(s)]
                if m in with_paper:
                    p = pt.multi_class_cell(c, m)
                    name = pt.PAPER_NAME[m]
                    for k in ("pixel_auroc", "pro"):
                        row[f"paper_{name}_{k}"] = p and p[k]
                        row[f"paper_{name}_{k}_std"] = p and p[f"{k}_std"]
                    row[f"paper_{name}_source"] = p["label"] if p else ""
                    cells.append(f"{_pm(p['pixel_auroc'], p['pixel_auroc_std'], std_digits=4)} / "
                                 f"{_pm(p['pro'], p['pro_std'], std_digits=4)}" if p else "–")
            multi_rows.append(row)
            md.append("| " + " | ".join(cells) + " |")
        # mean rows
        all_mvtec = set(cats) == set(pt.MVTEC_ORDER)
        all_btad = set(cats) == {"01", "02", "03"}
        mean_row: dict[str, Any] = {"group": "", "category": f"mean ({len(cats)} categories)"}
        cells = ["", f"mean ({len(cats)} categories)"]
        img_row: dict[str, Any] = {"group": "", "category": "image-level mean"}
        img_cells = ["", "image-level mean"]
        notes: list[str] = []
        for m in methods:
            for k in METRICS:
                mean_row[f"ours_{m}_{k}_mean"] = _mean_of(r.get(f"ours_{m}_{k}_mean") for r in multi_rows)
            img_row[f"ours_{m}_image_auroc_mean"] = mean_row[f"ours_{m}_image_auroc_mean"]
            fb = " ‡" if fallback else ""
            cells += [_pm(mean_row[f"ours_{m}_image_auroc_mean"]) + fb,
                      f"{_pm(mean_row[f'ours_{m}_pixel_auroc_mean'])} / {_pm(mean_row[f'ours_{m}_pro_mean'])}" + fb]
            img_cells += [_pm(mean_row[f"ours_{m}_image_auroc_mean"]) + fb, ""]
            if m not in with_paper:
                continue
            name = pt.PAPER_NAME[m]
            if all_mvtec and name in pt.MVTEC_MULTI_CLASS_MEAN:
                pix, pro = pt.MVTEC_MULTI_CLASS_MEAN[name]
                std = pt.MVTEC_MULTI_CLASS_MEAN_STD if name == "BGAD" else (None, None)
                cells.append(f"{_pm(pix, std[0], std_digits=4)} / {_pm(pro, std[1], std_digits=4)} (printed mean)")
            elif all_btad and name in pt.BTAD["mean"]:
                pix, pro = pt.BTAD["mean"][name]
                std = pt.BTAD_STD["mean"] if name == "BGAD" else (None, None)
                cells.append(f"{_pm(pix, std[0], std_digits=4)} / {_pm(pro, std[1], std_digits=4)} (printed mean)")
            else:
                pix = _mean_of(r.get(f"paper_{name}_pixel_auroc") for r in multi_rows)
                pro = _mean_of(r.get(f"paper_{name}_pro") for r in multi_rows)
                cells.append(f"{_pm(pix)} / {_pm(pro)} (paper cells averaged over these categories)"
                             if pix is not None else "–")
            mean_row[f"paper_{name}_pixel_auroc"], mean_row[f"paper_{name}_pro"] = pix, pro
            if name in pt.MVTEC_IMAGE_MEAN and all(c in pt.MVTEC_MULTI_CLASS for c in cats):
                std = pt.MVTEC_IMAGE_MEAN_STD if name == "BGAD" else None
                img_row[f"paper_{name}_image_auroc"] = pt.MVTEC_IMAGE_MEAN[name]
                img_cells.append(f"{_pm(pt.MVTEC_IMAGE_MEAN[name], std, std_digits=4)} (image AUROC"
                                 f"{'' if all_mvtec else ', mean over all 15 categories'})")
                if not all_mvtec:
                    notes.append("The paper's image-level mean is over all 15 MVTecAD categories; ours is over "
                                 "the categories above only.")
            else:
                img_cells.append("–")
        multi_rows += [mean_row, img_row]
        md += ["| " + " | ".join(cells) + " |", "| " + " | ".join(img_cells) + " |", ""]
        md += sorted(set(notes)) + ([""] if notes else [])

    # --- one-class ---------------------------------------------------------------------------
    one = [s for s in summary if s.get("setting") == "one-class" and s.get("category") in ONE_CLASS_CATEGORIES]
    one_rows: list[dict[str, Any]] = []
    if one:
        n_one = ", ".join(map(str, sorted({s.get("n_known") for s in one})))
        md += ["## One-class setting", "",
               f"N = {n_one} known anomalies from one defect type (the row's); every other type is unseen. Pairs are "
               "image AUROC / pixel AUROC, as in the paper's one-class table. The paper does not say on which test "
               "images; its baselines come from DRA's hard setting, which tests on the unseen types, so our "
               "unseen-types pair is the closer comparison; all types and PRO are given too.", ""]
        head = ["category", "known type"]
        for m in methods:
            head += [f"ours {m}: unseen types, image / pixel AUROC", f"ours {m}: all types, image / pixel AUROC",
                     f"ours {m}: all types, PRO (official-style)"]
            if m in pt.PAPER_NAME and m in ("bgad", "nf"):
                head.append(f"{pt.LABEL_ONE_CLASS} {pt.DISPLAY[pt.PAPER_NAME[m]]}: image / pixel AUROC")
        md += ["| " + " | ".join(head) + " |", "| " + " | ".join(["---"] * len(head)) + " |"]
        for c in ONE_CLASS_CATEGORIES:
            types = sorted({s["known_types"] for s in one if s["category"] == c})
            if not types:
                continue
            per_cat: list[dict[str, Any]] = []
            n_fallback = len(fallback)
            for t in types:
                row = {"category": c, "known_type": t}
                cells = [c, t]
                for m in methods:
                    s = _find(one, method=m, category=c, known_types=t) or {}
                    for g in ("unseen_", ""):
                        for k in METRICS:
                            row[f"ours_{m}_{g}{k}_mean"] = s.get(f"{g}{k}_mean")
                            row[f"ours_{m}_{g}{k}_std"] = s.get(f"{g}{k}_std")
                    row[f"ours_{m}_n_seeds"] = s.get("n_seeds")
                    row[f"ours_{m}_score"] = s.get("score")
                    cells += [f"{_pm(s.get('unseen_image_auroc_mean'), s.get('unseen_image_auroc_std'))} / "
                              f"{_pm(s.get('unseen_pixel_auroc_mean'), s.get('unseen_pixel_auroc_std'))}",
                              f"{_pm(s.get('image_auroc_mean'), s.get('image_auroc_std'))} / "
                              f"{_pm(s.get('pixel_auroc_mean'), s.get('pixel_auroc_std'))}",
                              _pm(s.get("pro_mean"), s.get("pro_std"))]
                    cells[-3:] = [x + mark(s) for x in cells[-3:]]
                    if m in ("bgad", "nf"):
                        p = pt.one_class_cell(c, t, m)
                        name = pt.PAPER_NAME[m]
                        row[f"paper_{name}_image_auroc"] = p and p["image_auroc"]
                        row[f"paper_{name}_pixel_auroc"] = p and p["pixel_auroc"]
                        cells.append(f"{_pm(p['image_auroc'])} / {_pm(p['pixel_auroc'])}" if p else "–")
                per_cat.append(row)
                md.append("| " + " | ".join(cells) + " |")
            mean = {"category": c, "known_type": "mean"}
            cells = [c, "mean"]
            for m in methods:
                for key in [k for k in per_cat[0] if k.startswith(f"ours_{m}_") and k.endswith("_mean")]:
                    mean[key] = _mean_of(r.get(key) for r in per_cat)
                fb = " ‡" if len(fallback) > n_fallback else ""
                cells += [f"{_pm(mean[f'ours_{m}_unseen_image_auroc_mean'])} / "
                          f"{_pm(mean[f'ours_{m}_unseen_pixel_auroc_mean'])}" + fb,
                          f"{_pm(mean[f'ours_{m}_image_auroc_mean'])} / "
                          f"{_pm(mean[f'ours_{m}_pixel_auroc_mean'])}" + fb,
                          _pm(mean[f"ours_{m}_pro_mean"]) + fb]
                if m in ("bgad", "nf"):
                    p = pt.one_class_cell(c, "mean", m)
                    name = pt.PAPER_NAME[m]
                    row_types = [r["known_type"] for r in per_cat]
                    full = p is not None and set(row_types) == set(pt.MVTEC_ONE_CLASS[c]) - {"mean"}
                    mean[f"paper_{name}_image_auroc"] = p["image_auroc"] if full else None
                    mean[f"paper_{name}_pixel_auroc"] = p["pixel_auroc"] if full else None
                    cells.append(f"{_pm(p['image_auroc'])} / {_pm(p['pixel_auroc'])} (printed mean)" if full else "–")
            one_rows += per_cat + [mean]
            md.append("| " + " | ".join(cells) + " |")
        md.append("")
    if not cats and not one:
        md += ["No finished runs to tabulate.", ""]
    if fallback:
        md += [f"‡ Not the {OFFICIAL_LABEL}: the default (inductive) score and the standard PRO, because the "
               "runs' results.json holds no `metrics_official` (made by an older bgad_mini) or the table was "
               "built from a default-score summary. Rerun them for the paper's protocol.", ""]
    return "\n".join(md), multi_rows, one_rows


def reproduce(data_root: str, profile: str, out: str | os.PathLike, categories: Sequence[str] | None = None,
              seeds: Sequence[int] = (0,), methods: Sequence[str] = ("bgad",), sets: Mapping[str, Any] | None = None,
              jobs: int = 1, progress: bool = True, runner: Callable | None = None) -> int:
    """Run the paper's settings (`reproduce_configs`), then write out/reproduce.md and the two table CSVs beside
    the usual results.csv, summary.csv and plots. Returns 0, or 1 when any job failed (tables show the rest)."""
    configs = reproduce_configs(data_root, profile, categories, seeds, methods, sets)
    records = run_grid(configs, out, jobs=jobs, progress=progress, runner=runner)
    rows = collect(out, configs)
    paths = write_outputs(rows, out, summarize(rows))  # the default score, as every other table
    md, multi_rows, one_rows = reproduce_tables(summarize(collect(out, configs, score="official")), methods)
    out = Path(out)
    (out / "reproduce.md").write_text(md)
    paths["markdown"] = out / "reproduce.md"
    if multi_rows:
        paths["multi_class_csv"] = write_csv(multi_rows, out / "reproduce_multi_class.csv")
    if one_rows:
        paths["one_class_csv"] = write_csv(one_rows, out / "reproduce_one_class.csv")
    _report(records, paths)
    return 1 if any(r["status"] == "failed" for r in records) else 0
