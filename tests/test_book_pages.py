"""Book pages: the Reproduction chapter under papermill (paper tables, deviations, our table when runs exist),
citation keys against references.bib, and the files `_toc.yml` names."""
from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest
from nbutil import glued, run_chapter

from bgad_mini import paper_tables as pt

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = ROOT / "book" / "reproduction.ipynb"
FLOAT = re.compile(r"\d+\.\d+")


def _run(out: Path, **params) -> nbformat.NotebookNode:
    return run_chapter(CHAPTER, out, **params)


def _markdown_outputs(nb) -> list[str]:
    return [o["data"]["text/markdown"] for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
            if "text/markdown" in o.get("data", {})]




def _table(outputs: list[str], label: str) -> list[list[str]]:
    """The body rows (cells) of the first Markdown table whose caption line contains `label`."""
    hits = [t for t in outputs if t.startswith("**") and label in t.splitlines()[0]]
    assert hits, f"no table captioned {label!r}"
    lines = [l for l in hits[0].splitlines() if l.startswith("|")]
    return [[c.strip() for c in l.strip("|").split("|")] for l in lines[2:]]


def _floats(cell: str) -> list[float]:
    return [float(x) for x in FLOAT.findall(cell)]


@pytest.fixture(scope="module")
def smoke_nb(tmp_path_factory) -> nbformat.NotebookNode:
    tmp = tmp_path_factory.mktemp("reproduction")
    (tmp / "empty").mkdir()
    return _run(tmp / "reproduction.ipynb", profile="smoke", reproduce_dir=str(tmp / "empty"), seed=0)


def test_paper_tables_shown_equal_paper_tables_module(smoke_nb):
    outs = _markdown_outputs(smoke_nb)

    rows = _table(outs, pt.LABEL_TABLE1)
    by_cat = {r[1]: r for r in rows}
    assert [r[1] for r in rows[:15]] == list(pt.MVTEC_ORDER)
    for c in pt.MVTEC_ORDER:
        for i, m in enumerate(pt.TABLE1_METHODS):
            expect = list(pt.MVTEC_MULTI_CLASS[c][m])
            if m == "BGAD":  # value ± std / value ± std
                sd = pt.MVTEC_MULTI_CLASS_STD[c]
                expect = [expect[0], sd[0], expect[1], sd[1]]
            assert _floats(by_cat[c][2 + i]) == expect, (c, m)
    mean = by_cat["mean"]
    for i, m in enumerate(pt.TABLE1_METHODS):
        assert _floats(mean[2 + i])[::2 if m == "BGAD" else 1] == list(pt.MVTEC_MULTI_CLASS_MEAN[m])
        assert _floats(rows[-1][2 + i])[0] == pt.MVTEC_IMAGE_MEAN[m]
    assert _floats(rows[-1][4])[1] == pt.MVTEC_IMAGE_MEAN_STD

    rows = _table(outs, pt.LABEL_ONE_CLASS)
    others = ("DevNet", "FLOS", "SAOE", "MLEP", "DRA")
    expect_rows = [(c, t) for c, types in pt.MVTEC_ONE_CLASS.items() for t in types]
    assert [(r[0], r[1]) for r in rows] == expect_rows
    for r in rows:
        c, t = r[0], r[1]
        assert _floats(r[2]) == list(pt.MVTEC_ONE_CLASS[c][t]["NFAD"])
        assert _floats(r[3]) == list(pt.MVTEC_ONE_CLASS[c][t]["BGAD"])
        assert [_floats(x)[0] for x in r[4:]] == [pt.ONE_CLASS_OTHERS[c][t][o] for o in others]

    rows = _table(outs, pt.LABEL_BTAD)
    assert [r[0] for r in rows] == list(pt.BTAD)
    for r in rows:
        assert _floats(r[1]) == list(pt.BTAD[r[0]]["NFAD"])
        b, sd = pt.BTAD[r[0]]["BGAD"], pt.BTAD_STD[r[0]]
        assert _floats(r[2]) == [b[0], sd[0], b[1], sd[1]]

    rows = _table(outs, pt.LABEL_SEMI_PUSH_PULL)
    assert [r[0] for r in rows] == list(pt.SEMI_PUSH_PULL)
    for r in rows:
        got = [_floats(x) for x in r[1:]]
        assert got == [list(pt.SEMI_PUSH_PULL[r[0]][m]) for m in ("NFAD", "BGAD_dagger", "BGAD")]

    rows = _table(outs, pt.LABEL_HARD_SUBSETS)
    assert len(rows) == 3
    for r, k in zip(rows, ("image_auroc", "pixel_auroc", "pro")):
        expect = [pt.HARD_SUBSETS[s][m][k] for s in ("mvtecad", "hard", "unseen") for m in ("NFAD", "BGAD")]
        assert [_floats(x)[0] for x in r[1:]] == expect

    # the page says whose numbers these are
    md = "\n".join(c.source for c in smoke_nb.cells if c.cell_type == "markdown")
    assert "**the paper's**" in md and "None of it is computed by this book" in md


def test_profile_table_computed_from_config(smoke_nb):
    from bgad_mini.config import Config

    rows = _table(_markdown_outputs(smoke_nb), "Profiles, from Config.from_profile")
    by_field = {r[0].strip("`"): r for r in rows}
    book, paper = Config.from_profile("book"), Config.from_profile("paper")
    for f in ("lr", "phase2_epochs", "flow_batch", "patches_per_image", "batch_images"):
        assert float(by_field[f][1]) == getattr(book, f) and float(by_field[f][2]) == getattr(paper, f), f
    g = glued(smoke_nb)
    assert g["book_flow_batch"] == str(book.flow_batch) and g["paper_flow_batch"] == str(paper.flow_batch)
    assert g["paper_total_epochs"] == str(paper.total_epochs)
    assert g["build_profile"] == "smoke"


def test_no_reproduction_run_is_said(smoke_nb):
    g = glued(smoke_nb)
    assert g["n_reproduce_runs"] == "0"
    assert any("No reproduction run is present in this build" in t for t in _markdown_outputs(smoke_nb))


def test_deviations_section_lists_the_key_items(smoke_nb):
    md = "\n".join(c.source for c in smoke_nb.cells if c.cell_type == "markdown")
    assert "## Deviations" in md
    dev = md.split("## Deviations", 1)[1].split("## Exercises", 1)[0]
    items = {
        "best epoch": r"best epoch", "final model": r"final model", "warm-up bug": r"Warm-up bug",
        "Adam per level": r"One Adam optimiser per level", "leftover vectors": r"Leftover vectors are kept",
        "NaN": r"NaN", "PRO": r"divide by", "β default": r"β default mismatch",
        "num_anomalies": r"`num_anomalies` semantics", "mask binarisation": r"Mask binarisation",
        "nearest/area": r'mask_rule="area"', "ML loss": r"ML loss form kept", "copy-paste": r"Copy-paste, simplified",
        "foreground masks": r"foreground masks", "albumentations": r"albumentations",
        "Lite0 vs B6": r"EfficientNet-Lite0 instead of EfficientNet-B6", "feature cache": r"Feature cache",
        "book scale-down": r"`book` profile is scaled down", "synthetic data": r"Synthetic data instead of MVTecAD",
        "boundary scope": r'boundary="epoch"', "BGAD† formula": r"BGAD†'s formula is ours",
        "FIRM/SupCon patch level": r"FIRM and SupCon at patch level are our adaptation",
    }
    missing = [name for name, pattern in items.items() if not re.search(pattern, dev)]
    assert not missing, missing
    # the scale-down numbers are glued from Config, not typed
    for key in ("book_lr", "paper_lr", "book_epochs", "paper_epochs", "book_ppi", "book_flow_batch"):
        assert f"{{glue:text}}`{key}`" in dev, key


def _fake_results(run_dir: Path, category: str, seed: int, image: float) -> None:
    run_dir.mkdir(parents=True)
    m = {"image_auroc": image, "pixel_auroc": 0.9, "pro": 0.8}
    run_dir.joinpath("results.json").write_text(json.dumps({
        "method": "bgad", "dataset": "mvtec", "category": category, "setting": "multi-class", "known_types": [],
        "n_known": 10, "seed": seed, "metrics": m, "metrics_seen": m, "metrics_unseen": None,
        "timings": {"total": 1.0},
        "config": {"profile": "paper", "method": "bgad", "category": category, "setting": "multi-class",
                   "beta": 0.01, "tau": 0.1, "lam": 1.0, "boundary": "batch"},
    }))


def test_our_table_shown_when_runs_exist(tmp_path):
    rdir = tmp_path / "reproduce"
    _fake_results(rdir / "runs" / "bgad_carpet_multi_s0_x", "carpet", 0, 0.95)
    _fake_results(rdir / "runs" / "bgad_carpet_multi_s1_x", "carpet", 1, 0.97)
    nb = _run(tmp_path / "out.ipynb", profile="smoke", reproduce_dir=str(rdir))
    assert glued(nb)["n_reproduce_runs"] == "2"
    ours = [t for t in _markdown_outputs(nb) if "finished run(s)" in t]
    assert ours and "0.960 ± 0.014" in ours[0]  # mean ± sample std of 0.95 and 0.97
    assert "0.996 ± 0.0002 / 0.989 ± 0.0004" in ours[0]  # the paper's carpet cell beside ours
    assert "Not the `paper` profile" not in ours[0]


# ----------------------------------------------------------------------------------------------
# citations and the table of contents
# ----------------------------------------------------------------------------------------------
def _bib_keys() -> set[str]:
    text = (ROOT / "references.bib").read_text()
    return set(re.findall(r"@\w+\s*\{\s*([^,\s]+)\s*,", text))


def _page_texts() -> dict[str, str]:
    pages = {}
    for path in sorted((ROOT / "book").glob("*.md")):
        pages[path.name] = path.read_text()
    for path in sorted((ROOT / "book").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        pages[path.name] = "\n".join(c.source for c in nb.cells)
    return pages


def test_every_cite_key_is_in_references_bib():
    keys = _bib_keys()
    assert "yao2023bgad" in keys
    cite = re.compile(r"\{cite(?::[a-z]+)?\}`([^`]+)`")
    missing = {}
    for name, text in _page_texts().items():
        for group in cite.findall(text):
            for key in (k.strip() for k in group.split(",")):
                if key and key not in keys:
                    missing.setdefault(name, []).append(key)
    assert not missing, missing


def test_bib_keys_are_unique():
    text = (ROOT / "references.bib").read_text()
    keys = re.findall(r"@\w+\s*\{\s*([^,\s]+)\s*,", text)
    assert len(keys) == len(set(keys)), sorted(k for k in keys if keys.count(k) > 1)


def _toc_files(node) -> list[str]:
    out = []
    if isinstance(node, dict):
        for k, v in node.items():
            if k in ("file", "root") and isinstance(v, str):
                out.append(v)
            else:
                out += _toc_files(v)
    elif isinstance(node, list):
        for v in node:
            out += _toc_files(v)
    return out


def test_every_toc_file_exists():
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = _toc_files(toc)
    assert "book/intro" in files
    missing = [f for f in files if not any((ROOT / (f + ext)).is_file() for ext in ("", ".md", ".ipynb"))]
    assert not missing, missing


def test_status_page_draws_the_published_schedule_curve(monkeypatch):
    """The status page's code cell runs on the committed bench/published JSON and draws the book profile's point."""
    import re
    import sys
    import types

    src = (ROOT / "book" / "status.md").read_text()
    code = re.search(r"```\{code-cell\} ipython3\n:tags: \[hide-input\]\n\n(.*?)```", src, re.S).group(1)
    glued = {}
    fake = types.ModuleType("myst_nb")
    fake.glue = lambda name, value, display=True: glued.__setitem__(name, value)
    monkeypatch.setitem(sys.modules, "myst_nb", fake)
    monkeypatch.chdir(ROOT / "book")
    scope: dict = {}
    exec(compile(code, "status.md", "exec"), scope)
    assert any(r["point"] == "book" and r["method"] == "bgad" for r in scope["runs"])
    assert {"anomalib cflow", "anomalib patchcore"} <= set(scope["stars"])
    assert glued["fig_schedule"].axes and re.fullmatch(r"\d{4}-\d{2}-\d{2}", glued["schedule_date"])


def test_figure_and_table_names_are_unique_across_the_book():
    """Sphinx labels are global: two chapters naming a figure `fig-history` break the -W build."""
    import collections
    import json

    names = collections.Counter()
    for path in sorted((ROOT / "book").glob("*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            names.update(re.findall(r"^:name: (\S+)", "".join(cell["source"]), re.M))
    for path in sorted((ROOT / "book").glob("*.md")):
        names.update(re.findall(r"^:name: (\S+)", path.read_text(), re.M))
    assert names and not [n for n, k in names.items() if k > 1], [n for n, k in names.items() if k > 1]
