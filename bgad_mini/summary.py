"""Collecting finished runs into rows, mean ± std over seeds, CSVs and the standard plots.

    rows = collect("runs/ablate", configs)                  # one flat row per finished run
    summary = summarize(rows)                               # mean ± std over seeds
    write_outputs(rows, "runs/ablate")                      # results.csv, summary.csv, plots/*.png
"""
from __future__ import annotations

import csv
import json
import math
import os
import re
import statistics
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from .config import ALIASES, METHOD_PARAMS, METHODS, RELEVANT_PARAMS, RUNTIME_FIELDS, Config
from .errors import BgadError
from .runs import RUNS, RunFolder, finished, run_key

#: Columns of results.csv besides the varied-parameter columns; metric columns are built from these names.
METRICS = ("image_auroc", "pixel_auroc", "pro")
GROUPS = ("", "seen_", "unseen_")
METRIC_COLUMNS = tuple(g + m for g in GROUPS for m in METRICS)
PARAM_COLUMNS = ("method", "dataset", "category", "setting", "known_types", "n_known", "beta", "tau", "lambda",
                 "boundary", "focal", "push")
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
              "focal", "push",
              "extra", "profile", *RUNTIME_FIELDS}
#: Parameters that get a sensitivity plot when varied (results.csv column names).
SENSITIVITY_PARAMS = ("beta", "tau", "lambda", "boundary")


#: results.csv column -> Config field, for the columns that are run parameters.
_COLUMN_FIELDS = {"category": "category", "setting": "setting", "known_types": "known_types", "n_known": "n_known",
                  "beta": "beta", "tau": "tau", "lambda": "lam", "boundary": "boundary", "focal": "focal",
                  "push": "push"}


def at_base(value: Any, base_value: Any) -> bool:
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


def axis_rows(rows: Sequence[Mapping[str, Any]], base: Config, method: str, column: str,
              free: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Rows (results or summary) of `method` whose parameters are all at `base` except `column`, sorted by it.

    With `column` = "" the rows at the base itself. Parameters a method does not read are ignored,
    so `axis_rows(summary, base, "nf", "")` finds the NF baseline of a grid made around `base`. Columns in
    `free` (e.g. category, known_types) are not compared: every category and seen type at the base settings.
    """
    free = set(free)
    field = _COLUMN_FIELDS.get(column, ALIASES.get(column, column))
    out = []
    for row in rows:
        if row.get("method") != method:
            continue
        ok = True
        for col, value in row.items():
            f = _COLUMN_FIELDS.get(col, col if col not in _NOT_EXTRA else None)
            if (f is None or col == column or f == field or col in free or not hasattr(base, f)
                    or not _uses(method, col)):
                continue
            if not at_base(value, getattr(base, f)):
                ok = False
                break
        if ok:
            out.append(dict(row))
    if column:
        out.sort(key=lambda r: (not isinstance(r.get(column), (int, float)), r.get(column) if isinstance(
            r.get(column), (int, float)) else str(r.get(column))))
    return out


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
        "focal": cfg.get("focal"), "push": cfg.get("push", "bce"),  # push: results made before it existed were BCE
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
        found = [(runs / run_key(c), finished(runs / run_key(c), c)) for c in configs]
        pairs = [(d, r) for d, r in found if r is not None]
    else:
        pairs = []
        for path in sorted(runs.glob(f"*/{RunFolder('.').results.name}")):
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


#: What a paired comparison pairs on: the same category, seen type(s) and seed.
PAIR_KEYS = ("category", "known_types", "seed")


def paired_test(rows_a: Sequence[Mapping[str, Any]], rows_b: Sequence[Mapping[str, Any]], metric: str,
                keys: Sequence[str] = PAIR_KEYS) -> dict[str, Any]:
    """A − B on `metric` over the cells (`keys`) that both have: the Wilcoxon signed-rank test (two-sided).

    Returns n (pairs), mean_a, mean_b, mean_diff, sd_diff, dz (mean / sd of the differences, Cohen's d for
    paired data), wins (pairs with A > B), p (None with fewer than 2 non-zero differences) and r, the
    matched-pairs rank-biserial correlation (W+ − W−)/(W+ + W−), from −1 (B higher in every pair) to 1.
    """
    from scipy import stats

    def cell(r: Mapping[str, Any]) -> tuple:
        return tuple(str(r.get(k)) for k in keys)

    b = {cell(r): r.get(metric) for r in rows_b}
    pairs = [(float(r[metric]), float(b[cell(r)])) for r in rows_a
             if r.get(metric) is not None and b.get(cell(r)) is not None]
    out: dict[str, Any] = {"metric": metric, "n": len(pairs), "mean_a": None, "mean_b": None, "mean_diff": None,
                           "sd_diff": None, "dz": None, "wins": 0, "p": None, "r": None}
    if not pairs:
        return out
    d = [x - y for x, y in pairs]
    out.update(mean_a=statistics.fmean(x for x, _ in pairs), mean_b=statistics.fmean(y for _, y in pairs),
               mean_diff=statistics.fmean(d), wins=sum(v > 0 for v in d))
    if len(d) > 1:
        out["sd_diff"] = statistics.stdev(d)
        out["dz"] = out["mean_diff"] / out["sd_diff"] if out["sd_diff"] > 0 else None
    nonzero = [v for v in d if v != 0]
    if nonzero:
        ranks = stats.rankdata([abs(v) for v in nonzero])
        w_plus = sum(rk for rk, v in zip(ranks, nonzero) if v > 0)
        out["r"] = float((2 * w_plus - ranks.sum()) / ranks.sum())
    if len(nonzero) > 1:
        out["p"] = float(stats.wilcoxon(nonzero).pvalue)
    return out


def verdict(test: Mapping[str, Any], alpha: float = 0.05, digits: int = 3) -> str:
    """One sentence: the mean difference, how many pairs it wins, the test's p and effect size, and whether the
    difference counts as real (p < `alpha`)."""
    if not test["n"]:
        return "not measured (no paired runs)"
    head = f"{test['mean_diff']:+.{digits}f} ({test['wins']} of {test['n']} pairs higher"
    if test["p"] is None:
        return head + "; too few pairs for a test)"
    real = "a real difference" if test["p"] < alpha else "not distinguishable from run-to-run variation"
    return head + f"; Wilcoxon p = {test['p']:.2g}, r = {test['r']:+.2f}): {real}"


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


def print_report(records: Sequence[dict], paths: Mapping[str, Any]) -> None:
    failed = [r for r in records if r["status"] == "failed"]
    counts = {s: sum(r["status"] == s for r in records) for s in ("reused", "trained", "failed")}
    missing = sum(r["status"] == "missing" for r in records)
    print(f"{len(records)} runs: {counts['reused']} reused, {counts['trained']} trained, {counts['failed']} failed"
          + (f", {missing} not run yet" if missing else ""))
    for r in failed:
        print(f"  failed: {r['key']}: {r['error']}")
    for name in ("results_csv", "summary_csv"):
        print(f"  {name.replace('_csv', '')}: {paths[name]}")
    if paths.get("plots"):
        print(f"  plots: {len(paths['plots'])} PNG in {Path(paths['plots'][0]).parent}")
    for name in ("markdown", "multi_class_csv", "one_class_csv"):
        if paths.get(name):
            print(f"  {name.replace('_', ' ')}: {paths[name]}")


