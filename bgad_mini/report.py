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
