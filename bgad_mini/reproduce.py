"""`bgad-mini reproduce`: the paper's settings run on what a data folder holds, and its tables with our numbers
(official score, official-style PRO, mean ± std over seeds) beside the paper's (`paper_tables`)."""
from __future__ import annotations

import os
import statistics
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from . import paper_tables as pt
from .config import Config
from .data import list_categories, read_category
from .errors import BgadError
from .grid import expand_grid, run_grid
from .summary import METRICS, SCORE_OFFICIAL, collect, print_report, summarize, write_csv, write_outputs

#: Categories of the paper's one-class table: each defect type in turn is the seen type.
ONE_CLASS_CATEGORIES = ("carpet", "metal_nut")


def reproduce_configs(data_root: str, profile: str = "paper", categories: Sequence[str] | None = None,
                      seeds: Sequence[int] = (0,), methods: Sequence[str] = ("bgad",),
                      overrides: Mapping[str, Any] | None = None) -> list[Config]:
    """The paper's runs on what `data_root` holds: every category multi-class; carpet and metal_nut also
    one-class with each of their defect types as the seen type (N = the profile's n_known, 10 for `paper`)."""
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


class _Marks:
    """Puts ‡ on cells that are not the official score (see the note under the tables) and counts them."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, s: Mapping[str, Any]) -> str:
        if not s or s.get("score") == SCORE_OFFICIAL:
            return ""
        self.count += 1
        return " ‡"


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def reproduce_tables(summary: Sequence[Mapping[str, Any]], methods: Sequence[str] = ("bgad",)
                     ) -> tuple[str, list[dict[str, Any]], list[dict[str, Any]]]:
    """Markdown, and the rows of the multi-class and one-class CSVs: ours (mean ± std over seeds) beside the
    paper's numbers (labelled with their table, see `paper_tables`).

    `summary` should come from `summarize(collect(..., score="official"))`: beside the paper, our cells are the
    official (transductive) score with the official-style PRO, as the paper's protocol. A summary row without
    that label (a default-score summary, or runs whose results.json has no official score) is marked ‡.
    """
    md: list[str] = ["# BGAD reproduction: our numbers beside the paper's", "",
                     f"Ours: `bgad-mini reproduce`, final model (the paper reports its best epoch), mean ± sample "
                     f"std over seeds, with the {OFFICIAL_LABEL} (`metrics_official`, `pro_official_style`), as "
                     "the paper's protocol; results.csv and summary.csv hold the default (inductive) score and the "
                     f"standard PRO. Paper: {pt.CITATION}; numbers transcribed in `bgad_mini/paper_tables.py` "
                     "and labelled with their table.", ""]
    marks = _Marks()
    multi_md, multi_rows = _multi_class_table([s for s in summary if s.get("setting") == "multi-class"], methods,
                                              marks)
    one_md, one_rows = _one_class_table([s for s in summary if s.get("setting") == "one-class"
                                         and s.get("category") in ONE_CLASS_CATEGORIES], methods, marks)
    md += multi_md + one_md
    if not multi_rows and not one_rows:
        md += ["No finished runs to tabulate.", ""]
    if marks.count:
        md += [f"‡ Not the {OFFICIAL_LABEL}: the default (inductive) score and the standard PRO, because the "
               "runs' results.json holds no `metrics_official` (made by an older bgad_mini) or the table was "
               "built from a default-score summary. Rerun them for the paper's protocol.", ""]
    return "\n".join(md), multi_rows, one_rows


def _multi_class_table(multi: Sequence[Mapping[str, Any]], methods: Sequence[str], marks: _Marks
                       ) -> tuple[list[str], list[dict[str, Any]]]:
    """The multi-class table: one row per category, then the means (`_multi_class_means`)."""
    order = {c: i for i, c in enumerate(pt.MVTEC_ORDER)}
    cats = sorted({s["category"] for s in multi}, key=lambda c: (order.get(c, len(order)), c))
    if not cats:
        return [], []
    md: list[str] = []
    multi_rows: list[dict[str, Any]] = []
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
    md += [_row(head), _row(["---"] * len(head))]
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
            cells += [_pm(s.get("image_auroc_mean"), s.get("image_auroc_std")) + marks(s),
                      f"{_pm(s.get('pixel_auroc_mean'), s.get('pixel_auroc_std'))} / "
                      f"{_pm(s.get('pro_mean'), s.get('pro_std'))}" + marks(s)]
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
        md.append(_row(cells))
    mean_md, mean_rows = _multi_class_means(cats, methods, with_paper, multi_rows, marks)
    return md + mean_md, multi_rows + mean_rows


def _multi_class_means(cats: Sequence[str], methods: Sequence[str], with_paper: Sequence[str],
                       multi_rows: Sequence[Mapping[str, Any]], marks: _Marks
                       ) -> tuple[list[str], list[dict[str, Any]]]:
    """The multi-class table's mean rows: over the categories shown, beside the paper's printed means."""
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
        fb = " ‡" if marks.count else ""
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
    md = [_row(cells), _row(img_cells), ""]
    return md + sorted(set(notes)) + ([""] if notes else []), [mean_row, img_row]



def _one_class_table(one: Sequence[Mapping[str, Any]], methods: Sequence[str], marks: _Marks
                     ) -> tuple[list[str], list[dict[str, Any]]]:
    """The one-class table (carpet, metal_nut): one row per seen type, then the category's mean."""
    if not one:
        return [], []
    md: list[str] = []
    one_rows: list[dict[str, Any]] = []
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
    md += [_row(head), _row(["---"] * len(head))]
    for c in ONE_CLASS_CATEGORIES:
        types = sorted({s["known_types"] for s in one if s["category"] == c})
        if not types:
            continue
        per_cat: list[dict[str, Any]] = []
        n_marked = marks.count
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
                cells[-3:] = [x + marks(s) for x in cells[-3:]]
                if m in ("bgad", "nf"):
                    p = pt.one_class_cell(c, t, m)
                    name = pt.PAPER_NAME[m]
                    row[f"paper_{name}_image_auroc"] = p and p["image_auroc"]
                    row[f"paper_{name}_pixel_auroc"] = p and p["pixel_auroc"]
                    cells.append(f"{_pm(p['image_auroc'])} / {_pm(p['pixel_auroc'])}" if p else "–")
            per_cat.append(row)
            md.append(_row(cells))
        mean = {"category": c, "known_type": "mean"}
        cells = [c, "mean"]
        for m in methods:
            for key in [k for k in per_cat[0] if k.startswith(f"ours_{m}_") and k.endswith("_mean")]:
                mean[key] = _mean_of(r.get(key) for r in per_cat)
            fb = " ‡" if marks.count > n_marked else ""
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
        md.append(_row(cells))
    md.append("")
    return md, one_rows


def reproduce(data_root: str, profile: str, out: str | os.PathLike, categories: Sequence[str] | None = None,
              seeds: Sequence[int] = (0,), methods: Sequence[str] = ("bgad",), sets: Mapping[str, Any] | None = None,
              jobs: int = 1, progress: bool = True, runner: Callable | None = None, scheduler: str | None = None,
              threads_per_task: int = 0) -> int:
    """Run the paper's settings (`reproduce_configs`), then write out/reproduce.md and the two table CSVs beside
    the usual results.csv, summary.csv and plots. Returns 0, or 1 when any job failed (tables show the rest).
    `scheduler` runs the grid on a Dask cluster (`run_grid`)."""
    configs = reproduce_configs(data_root, profile, categories, seeds, methods, sets)
    records = run_grid(configs, out, jobs=jobs, progress=progress, runner=runner, scheduler=scheduler,
                       threads_per_task=threads_per_task)
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
    print_report(records, paths)
    return 1 if any(r["status"] == "failed" for r in records) else 0
