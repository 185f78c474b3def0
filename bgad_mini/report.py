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


def glue_figure(name: str, fig) -> None:
    """Glue a matplotlib figure for a `{glue:figure}` block (numbered, captioned) and close it, so that the
    notebook does not also show it where it was made."""
    import matplotlib.pyplot as plt
    from myst_nb import glue

    glue(name, fig, display=False)
    plt.close(fig)

def seen_unseen_table(runs: Mapping[str, Mapping[str, Any]]):
    """One row per run (name -> results.json): seen and unseen "image AUROC / pixel AUROC / PRO" and training
    seconds. Introduced in the *BG-SPP* chapter."""
    keys = ("image_auroc", "pixel_auroc", "pro")
    fmt = lambda m: " / ".join("–" if m.get(k) is None else f"{m[k]:.3f}" for k in keys)  # noqa: E731
    return table(["method", "seen: image / pixel AUROC / PRO", "unseen: image / pixel AUROC / PRO", "train s"],
                 [[name, fmt(r["metrics_seen"]), fmt(r["metrics_unseen"]), f"{r['timings']['train']:.0f}"]
                  for name, r in runs.items()])


def share_table(by_level: Mapping[str, Sequence[Mapping[str, Any]]], level_names: Sequence[str],
                keys: Sequence[str] = ("known", "seen", "unseen")) -> tuple[Any, dict[tuple[str, str, str], tuple]]:
    """Per model and level, "above b_n / margin / below b_a" of each patch group (`showcase.margin_shares`) as a
    Markdown table, and the shares by (model, level name, group). Introduced in the *BG-SPP* chapter."""
    from .showcase import margin_shares

    heads = {"known": "known (training) anomalies", "seen": "seen test", "unseen": "unseen test"}
    shares, rows = {}, []
    for name, levels in by_level.items():
        for group, lname in zip(levels, level_names):
            cells = []
            for key in keys:
                shares[name, lname, key] = margin_shares(group, key)
                cells.append(" / ".join("–" if p != p else f"{100 * p:.0f}%" for p in shares[name, lname, key]))
            rows.append([name, lname, *cells])
    head = ["model", "level", *[f"{heads.get(k, k)}: above b_n / margin / below b_a" for k in keys]]
    return table(head, rows), shares


def toy_table(rows: Sequence[Mapping[str, Any]], labels: Mapping[str, str]):
    """The 2-D toy over seeds (`toy.seed_rows`), one row per training: mean ± std of the shares (in %) and the
    seen cluster's median x, and the unseen share below b_a seed by seed. Introduced in the *BG-SPP* chapter."""
    seeds = sorted({r["seed"] for r in rows})
    body = []
    for method, label in labels.items():
        rs = [r for r in rows if r["method"] == method]
        if not rs:
            continue
        pct = lambda k: pm([100 * r[k] for r in rs], digits=0)  # noqa: E731
        per_seed = " / ".join(f"{100 * r['unseen_below_ba']:.0f}" for r in sorted(rs, key=lambda r: r["seed"]))
        body.append([label, pct("normal_above_bn"), pct("seen_below_ba"),
                     pm([r["seen_median_x"] for r in rs], digits=2), pct("unseen_below_ba"), per_seed,
                     pct("unseen_above_bn")])
    head = ["training", "held-out normal above b_n, %", "seen below b_a, %", "seen: median x",
            "unseen below b_a, %", f"… seed by seed ({', '.join(map(str, seeds))})", "unseen at or above b_n, %"]
    return table(head, body)


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


# ----------------------------------------------------------------------------------------------
# Chapter set-up
# ----------------------------------------------------------------------------------------------
def parse_list(text: Any, kind: type = str, what: str = "list") -> list:
    """A parameters-cell or form list: `"0.01, 0.1"` -> [0.01, 0.1] (with `kind`, repeats kept once); "" -> [].
    A value `kind` cannot read is a one-line BgadError naming `what`."""
    from .errors import BgadError

    parts = [p.strip() for p in str(text).replace(";", ",").split(",") if p.strip()]
    try:
        return list(dict.fromkeys(kind(p) for p in parts))
    except ValueError:
        raise BgadError(f"{what}: {text!r} is not a comma-separated list of {kind.__name__} values; "
                        "e.g. 0.01, 0.05") from None


def thread_limit() -> int:
    """Torch threads for a chapter's runs: the machine's OMP_NUM_THREADS when set (a shared machine), else 0 (all)."""
    import os

    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() else 0


def ablation_grid(ablation_root: str, base: Config, methods: Sequence[str], axes: Mapping[str, Sequence[Any]],
                  runs_root: str, noise: tuple[Sequence[str], Sequence[int]] = ((), ())
                  ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str]:
    """The Ablations chapter's runs: (rows, records of what this call trained or reused, where the rows came from).

    `ablation_root` holding a PROVENANCE.json: the committed grid, checked against the current code and data
    (`published.load`); another folder: the runs a `bgad-mini ablate --out` made there; "": a small grid trained
    here into `runs_root`: `methods` at `base`, `noise` = (methods, seeds) again at more seeds, and BGAD one setting
    of `axes` at a time. A failed run stops the chapter with one line."""
    from pathlib import Path

    from . import grid, published
    from .errors import BgadError
    from .summary import collect

    if ablation_root and (Path(ablation_root) / published.PROVENANCE).exists():
        rows = published.load(ablation_root, data_root=base.data_root)  # refuses other code or data
        prov = published.read_provenance(ablation_root)
        return rows, [], f"the committed grid ({published.grid_summary(prov)})"
    if ablation_root:
        return collect(ablation_root), [], f"the runs in `{ablation_root}`"
    known = [base.known_types]
    configs = grid.expand_grid(methods=methods, seeds=[base.seed], base=base, known_types=known)
    noise_methods, noise_seeds = noise
    if noise_methods and noise_seeds:
        configs += grid.expand_grid(methods=noise_methods, seeds=noise_seeds, base=base, known_types=known)
    axes = {k: v for k, v in axes.items() if v}
    configs = grid.dedupe(configs + grid.one_at_a_time(base, axes, method="bgad", seeds=[base.seed],
                                                       known_types=known))
    records = grid.run_grid(configs, runs_root, runs_dir=runs_root)
    failed = [r for r in records if r["status"] == "failed"]
    if failed:
        raise BgadError(f"{len(failed)} runs failed, first: {failed[0]['key']}: {failed[0]['error']}")
    return collect(runs_root, configs, runs_dir=runs_root), records, "this build's grid"


def seed_noise(rows: Sequence[Mapping[str, Any]], base: Config, methods: Sequence[str],
               metrics: Mapping[str, str]) -> tuple[Any, dict[str, float | None]]:
    """How much the seed alone moves each metric at `base`: a Markdown table (each method with several seeds, one
    line per seed, then the largest change) and {metric: largest max − min over seeds of any method, or None}."""
    per_seed = {m: {r["seed"]: r for r in axis_rows(rows, base, m, "")} for m in methods}
    per_seed = {m: v for m, v in per_seed.items() if len(v) > 1}
    noise: dict[str, float | None] = {}
    for metric in metrics:
        spreads = [max(vals) - min(vals) for v in per_seed.values()
                   if len(vals := [r[metric] for r in v.values() if r[metric] is not None]) > 1]
        noise[metric] = max(spreads) if spreads else None
    body = [[f"{m}, seed {s}", *[r[k] for k in metrics]] for m, v in per_seed.items() for s, r in sorted(v.items())]
    body.append(["largest seed-to-seed change", *[noise_text(noise[k]) for k in metrics]])
    return table(["", *metrics.values()], body), noise


def noise_text(noise: float | None) -> str:
    return "not measured (one seed)" if noise is None else f"{noise:.4f}"


def against_noise(d: float | None, noise: float | None) -> str:
    """A difference read against the seed noise: "+0.0123, above by more than the seed noise (0.0040)"."""
    if d is None:
        return "not measured"
    size = f"{d:+.4f}"  # four decimals: the seed noise of the unseen metrics is a few thousandths
    if noise is None:
        return f"{size} (noise not measured)"
    if abs(d) <= noise:
        return f"{size}, within the seed noise ({noise:.4f})"
    return f"{size}, {'above' if d > 0 else 'below'} by more than the seed noise ({noise:.4f})"


# ----------------------------------------------------------------------------------------------
# Captioned tables and numbers as printed (Reproduction chapter)
# ----------------------------------------------------------------------------------------------
def captioned_table(caption: str, head: Sequence[str], rows: Iterable[Sequence[Any]], note: str = ""):
    """`table` under a bold caption line, with an optional note below it (IPython `Markdown`)."""
    from IPython.display import Markdown

    text = f"**{caption}**\n\n{table(head, rows).data}"
    return Markdown(text + (f"\n\n{note}" if note else ""))


def printed(v: float, sd: float | None = None) -> str:
    """A paper's number as printed: three decimals, or every digit where the paper printed more (FLOS 0.9788);
    with `sd`, "v ± sd" and the spread to four decimals, as the paper prints BGAD's ± over three runs."""

    def one(x: float, digits: int) -> str:
        s = f"{x:.{digits}f}"
        return s if float(s) == x else repr(x)

    return one(v, 3) if sd is None else f"{one(v, 3)} ± {one(sd, 4)}"


def sci(x: float, digits: int = 0) -> str:
    """`x` in short scientific notation, the exponent without padding: 2e-4, 9.9e-7."""
    mantissa, exponent = f"{x:.{digits}e}".split("e")
    return f"{mantissa}e{int(exponent)}"
