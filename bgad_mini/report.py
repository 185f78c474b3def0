"""Formatting for the chapters, so that their visible code is about ideas: Markdown tables, mean ± std cells,
glueing many values at once, and the tables of a result grid (method × category, paired comparisons)."""
from __future__ import annotations

import statistics
from typing import Any, Iterable, Mapping, Sequence

from .config import Config
from .summary import axis_rows, paired_test, verdict

#: How the chapters name the methods.
NAMES = {"nf": "NF baseline", "pushpull": "BGAD† (push-pull)", "bgad": "BGAD (BG-SPP)", "supcon": "SupCon + k-NN",
         "firm": "FIRM + k-NN"}


def table(head: Sequence[str], rows: Iterable[Sequence[Any]]):
    """A Markdown table (IPython `Markdown`), cells formatted with `cell`."""
    from IPython.display import Markdown

    lines = ["| " + " | ".join(map(str, head)) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return Markdown("\n".join(lines))


def cell(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def pm(values: Sequence[float], digits: int = 3) -> str:
    """mean ± sample std of `values` ("–" when empty, no ± with one value)."""
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return "–"
    if len(vals) == 1:
        return f"{vals[0]:.{digits}f}"
    return f"{statistics.fmean(vals):.{digits}f} ± {statistics.stdev(vals):.{digits}f}"


def glue_all(values: Mapping[str, Any]) -> None:
    """`myst_nb.glue(name, value, display=False)` for every item."""
    from myst_nb import glue

    for k, v in values.items():
        glue(k, v, display=False)


FREE = ("category", "known_types")  # pooled over categories and seen types


def at_defaults(rows: Sequence[Mapping[str, Any]], base: Config, method: str) -> list[dict[str, Any]]:
    """Every run of `method` at `base`'s settings, in any category and with any seen type."""
    return axis_rows(rows, base, method, "", free=FREE)


def category_table(rows: Sequence[Mapping[str, Any]], base: Config, methods: Sequence[str], metric: str):
    """Method × category (and pooled): mean ± std of `metric` over seeds and seen types, at `base`'s settings."""
    cats = sorted({r["category"] for r in rows})
    body = []
    for m in methods:
        found = at_defaults(rows, base, m)
        if found:
            body.append([NAMES.get(m, m)] + [pm([r[metric] for r in found if r["category"] == c]) for c in cats]
                        + [pm([r[metric] for r in found]), len(found)])
    return table(["method", *cats, "pooled", "runs"], body)


def comparisons(rows: Sequence[Mapping[str, Any]], pairs: Sequence[tuple[str, Config, str, Config]],
                metrics: Sequence[str]) -> tuple[Any, dict[tuple[str, str], dict]]:
    """Paired tests (`summary.paired_test`, pairs = same category, seen type and seed) for each
    (label A, config A, label B, config B): a Markdown table of verdicts and the tests by (comparison, metric)."""
    tests, body = {}, []
    for la, ca, lb, cb in pairs:
        a, b = at_defaults(rows, ca, ca.method), at_defaults(rows, cb, cb.method)
        row = [f"{la} − {lb}"]
        for metric in metrics:
            t = paired_test(a, b, metric)
            tests[(f"{la} − {lb}", metric)] = t
            row.append(verdict(t))
        body.append(row)
    return table(["comparison", *[m.replace("_", " ") for m in metrics]], body), tests


def grid_report(results_root: str, data_root: str, base: Config, methods: Sequence[str],
                pairs: Sequence[tuple[str, Mapping[str, Any], str, Mapping[str, Any]]],
                metrics: Sequence[str] = ("unseen_pro", "unseen_pixel_auroc")) -> dict[str, Any] | None:
    """What a chapter shows of the committed result grid: None without one at `results_root` ("" = none).

    `pairs` are (label A, overrides of `base` for A, label B, overrides for B), e.g. ("BGAD", {"method": "bgad"},
    "NF", {"method": "nf"}). Returns {"prov", "rows", "table": methods × categories of `metrics[0]`,
    "tests_table", "tests": {(comparison, metric): paired test}}. The grid is checked against the current code
    and data first (`published.load`): a stale grid stops the chapter with one line naming `make results`.
    """
    from pathlib import Path

    from . import published

    if not results_root or not (Path(results_root) / published.PROVENANCE).exists():
        return None
    rows = published.load(results_root, data_root=data_root)
    tests_table, tests = comparisons(rows, [(la, base.with_overrides(**a), lb, base.with_overrides(**b))
                                            for la, a, lb, b in pairs], metrics)
    return {"prov": published.read_provenance(results_root), "rows": rows, "tests": tests,
            "table": category_table(rows, base, methods, metrics[0]), "tests_table": tests_table}


def glue_verdicts(grid: Mapping[str, Any] | None, keys: Mapping[str, tuple[str, str]]) -> None:
    """Glue `verdict` of each (comparison, metric) under its key, and `grid_line` (the grid in one line); without a
    grid every key says so."""
    from . import published

    if grid is None:
        glue_all({k: "not measured (no result grid in this build)" for k in keys} | {"grid_line": "no result grid"})
        return
    glue_all({k: verdict(grid["tests"][key]) for k, key in keys.items()}
             | {"grid_line": published.grid_summary(grid["prov"])})


def one_class_table(rows: Sequence[Mapping[str, Any]], base: Config, methods: Sequence[str]):
    """The paper's one-class layout on a grid: one row per category and seen type, per method "unseen image AUROC /
    unseen pixel AUROC" and all-types PRO, mean ± std over seeds (use rows of `collect(score="official")` to put
    them beside the paper's)."""
    found = {m: at_defaults(rows, base, m) for m in methods}
    cells = sorted({(r["category"], r["known_types"]) for rs in found.values() for r in rs})
    body = []
    for cat, seen in cells:
        row: list[Any] = [cat, seen]
        for m in methods:
            rs = [r for r in found[m] if (r["category"], r["known_types"]) == (cat, seen)]
            row += [f"{pm([r['unseen_image_auroc'] for r in rs])} / {pm([r['unseen_pixel_auroc'] for r in rs])}",
                    pm([r["pro"] for r in rs])]
        body.append(row)
    head = ["category", "seen type"]
    for m in methods:
        head += [f"{NAMES.get(m, m)}: unseen image / pixel AUROC", f"{NAMES.get(m, m)}: PRO (all types)"]
    return table(head, body)
