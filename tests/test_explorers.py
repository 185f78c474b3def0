"""The kernel-free explorers (bgad_mini.explorers): the states they precompute equal what the pure functions give,
the HTML leaves plotly.js to the page in the book build and carries it inline elsewhere, the update script picks
the state of the controls' positions, and the book's Sphinx extension vendors plotly.js onto the pages that need it.
Driving them in a browser: tests/test_browser_check.py."""
from __future__ import annotations

import base64
import importlib.util
import json
import os
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from bgad_mini import explorers, widgets
from bgad_mini.config import Config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def constructed():
    """Normal ℓ = 0, −0.1, …, −9.9 (x = ℓ/10 = 0 … −0.99) and four anomalous ℓ with known positions."""
    return -0.1 * np.arange(100, dtype=np.float64), np.array([-12.0, -10.3, -9.0, -5.0])


BETAS, TAUS = [0.01, 0.05, 0.2], [0.0, 0.1, 0.2]


def test_boundary_states_equal_boundary_state(constructed):
    normal, abnormal = constructed
    states = explorers.boundary_states(normal, abnormal, BETAS, TAUS)
    assert list(states) == [f"{i},{j}" for i in range(3) for j in range(3)]
    s = states["1,1"]  # β = 0.05, τ = 0.1: the values test_widgets checks by hand
    assert s["values"]["b_n"] == pytest.approx(-0.94) and s["values"]["b_a"] == pytest.approx(-1.04)
    assert (s["values"]["normal_below_bn"], s["values"]["abnormal_above_ba"]) == (6, 3)
    assert (s["values"]["normal_in_margin"], s["values"]["abnormal_in_margin"]) == (5, 1)
    for i, b in enumerate(BETAS):
        for j, t in enumerate(TAUS):
            st, lay = widgets.boundary_state(normal, abnormal, b, t), states[f"{i},{j}"]["layout"]
            assert states[f"{i},{j}"]["values"] == {k: st[k] for k in states[f"{i},{j}"]["values"]}
            assert lay["shapes[1].x0"] == lay["shapes[1].x1"] == lay["annotations[0].x"] == st["b_n"]  # b_n line
            assert lay["shapes[2].x0"] == lay["shapes[2].x1"] == lay["annotations[1].x"] == st["b_a"]  # b_a line
            assert (lay["shapes[0].x0"], lay["shapes[0].x1"]) == (st["b_a"], st["b_n"])  # the margin
            assert f"{st['normal_below_bn']:,} of 100" in lay["title.text"] and f"τ = {t:g}" in lay["title.text"]


def test_boundary_explorer_starts_at_beta_tau(constructed):
    normal, abnormal = constructed
    ex = explorers.boundary_explorer(normal, abnormal, BETAS, TAUS, beta=0.05, tau=0.1, bins=20)
    fig = ex.figure
    assert [s.active for s in fig.layout.sliders] == [1, 1]
    assert [st.label for st in fig.layout.sliders[0].steps] == ["0.01", "0.05", "0.2"]
    assert all(st.method == "skip" for sl in fig.layout.sliders for st in sl.steps)  # the script moves the figure
    assert fig.layout.shapes[1].x0 == pytest.approx(-0.94) and fig.layout.shapes[2].x0 == pytest.approx(-1.04)
    assert fig.layout.title.text == fig.layout.meta["states"]["1,1"]["layout"]["title.text"]
    normal_bars, abnormal_bars = fig.data
    width = normal_bars.width
    assert np.sum(normal_bars.y) * width == pytest.approx(1.0, abs=1e-3)  # densities over common bins
    assert np.sum(abnormal_bars.y) * width == pytest.approx(1.0, abs=1e-3)
    lowest_ba = min(s["values"]["b_a"] for s in fig.layout.meta["states"].values())
    assert fig.layout.xaxis.range[0] <= lowest_ba  # every b_a of the grid is inside the drawn range
    assert "100" in normal_bars.name and "4" in abnormal_bars.name


def test_html_leaves_plotlyjs_to_the_page_in_the_book_build(constructed, monkeypatch):
    normal, abnormal = constructed
    ex = explorers.boundary_explorer(normal, abnormal, BETAS, TAUS, bins=10)
    monkeypatch.setenv(explorers.PLOTLYJS_ENV, "page")
    page = ex.html()
    assert page.startswith('<div id="bt-explorer" class="bgad-explorer">') and 'id="bt-explorer-plot"' in page
    assert "plotly.js v" not in page and "<script src" not in page and "cdn" not in page  # nothing fetched
    assert "plotly_sliderchange" in page and "bt-explorer-plot" in page  # the update script, bound to the div
    assert len(page) < 100_000
    monkeypatch.delenv(explorers.PLOTLYJS_ENV)
    inline = ex.html()  # Jupyter, Colab: plotly.js inside the output, no network needed
    assert "plotly.js v" in inline and len(inline) > 1_000_000 and "<script src" not in inline
    bundle = ex._repr_mimebundle_()
    assert set(bundle) == {"text/html", "text/plain", "image/png"}
    assert base64.b64decode(bundle["image/png"])[:8] == b"\x89PNG\r\n\x1a\n"  # the print / PDF version


_SCRIPT_SHIM = r"""
const handlers = {}, updates = [];
const graph = {layout: {sliders: [{active: 1}, {active: 1}], meta: {states: JSON.parse(process.argv[2])}},
               on(name, f) { handlers[name] = f; }};
global.document = {getElementById: id => id === "PLOT" ? graph : null};
global.Plotly = {update(g, data, layout) { updates.push(layout); }};
(0, eval)(process.argv[3].split("{plot_id}").join("PLOT"));  // as the page runs it: its own scope
graph.layout.sliders[0].active = 2; handlers.plotly_sliderchange();
handlers.plotly_sliderchange();  // the same position again: nothing to redo
graph.layout.sliders[1].active = 0; handlers.plotly_sliderchange();
console.log(JSON.stringify(updates));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node to run the update script")
def test_update_script_applies_the_state_of_the_controls(constructed, tmp_path):
    normal, abnormal = constructed
    states = explorers.boundary_states(normal, abnormal, BETAS, TAUS)
    (tmp_path / "shim.js").write_text(_SCRIPT_SHIM)
    res = subprocess.run(["node", str(tmp_path / "shim.js"), json.dumps(states), explorers.UPDATE_SCRIPT],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == [states["1,1"]["layout"], states["2,1"]["layout"], states["2,0"]["layout"]]


def test_lambda_explorer_steps_hold_the_curves():
    x = np.linspace(-0.6, -0.2, 41)

    def curves(lam):
        return x, np.exp(-x) + lam * np.maximum(-0.4 - x, 0), lam * np.maximum(x + 0.5, 0)

    lams = [0.0, 0.5, 1.0, 2.0]
    ex = explorers.lambda_explorer(curves, lams, b_n=-0.4, b_a=-0.5, lam=1.0)
    fig = ex.figure
    assert fig.layout.sliders[0].active == 2 and ex.script is None  # one slider: Plotly restyles on its own
    for step, lam in zip(fig.layout.sliders[0].steps, lams):
        _, n, a = curves(lam)
        assert step.method == "update" and step.label == f"{lam:g}"
        assert np.allclose(step.args[0]["y"][0], n, atol=1e-5) and np.allclose(step.args[0]["y"][1], a, atol=1e-5)
    assert np.allclose(fig.data[0].y, curves(1.0)[1], atol=1e-5)
    assert [fig.layout.shapes[k].x0 for k in range(3)] == [-0.5, -0.4, -0.5]  # margin, b_n, b_a
    assert fig.layout.yaxis.range[1] >= max(np.max(curves(2.0)[1]), np.max(curves(2.0)[2]))  # fixed over λ


def _row(method, category, seed, seen, unseen, known="missing", **params):
    base = {"beta": 0.01, "tau": 0.1, "lambda": 1.0, "n_known": 10, "boundary": "batch", "focal": True, "push": "bce"}
    row = {"method": method, "dataset": "synthetic", "category": category, "setting": "one-class",
           "known_types": known, "seed": seed, **base, **params}
    for m in ("pro", "pixel_auroc", "image_auroc"):
        row[f"seen_{m}"], row[f"unseen_{m}"] = seen, unseen
    return row


@pytest.fixture
def grid_rows():
    rows = []
    for cat, off in (("brick", 0.0), ("grass", -0.2)):
        for seed in (0, 1):
            rows += [_row("nf", cat, seed, 0.8 + off + 0.01 * seed, 0.7 + off),
                     _row("bgad", cat, seed, 0.9 + off, 0.75 + off + 0.02 * seed),
                     _row("bgad", cat, seed, 0.88 + off, 0.6 + off, known="crack")]
        rows.append(_row("bgad", cat, 0, 0.5 + off, 0.4 + off, tau=0.2))  # τ varied on seen type missing, seed 0
    return rows


def test_grid_explorer_bars_are_the_rows_means(grid_rows):
    base = Config.from_profile("smoke", category="brick", known_types=("missing",), n_known=10)
    ex = explorers.grid_explorer(grid_rows, base, ["nf", "bgad"], metrics=("pro", "image_auroc"))
    fig = ex.figure
    axes = [b.label for b in fig.layout.updatemenus[2].buttons]
    assert axes == ["methods at the defaults", "τ"]  # β, λ, N, ... are not varied in these rows
    assert [b.label for b in fig.layout.updatemenus[1].buttons] == ["all categories", "brick", "grass"]
    states = fig.layout.meta["states"]
    assert len(states) == 2 * 3 * 2
    bars = fig.data[0]
    assert list(bars.x[0]) == ["NF", "NF", "BGAD", "BGAD"] and list(bars.x[1]) == ["seen", "unseen"] * 2
    nf = [r for r in grid_rows if r["method"] == "nf"]
    bgad = [r for r in grid_rows if r["method"] == "bgad" and r["tau"] == 0.1]
    expect = [np.mean([r[k] for r in rs]) for rs in (nf, bgad) for k in ("seen_pro", "unseen_pro")]
    assert np.allclose(bars.y, expect, atol=1e-4)
    assert np.allclose(bars.error_y.array[:2], [np.std([r["seen_pro"] for r in nf], ddof=1),
                                                np.std([r["unseen_pro"] for r in nf], ddof=1)], atol=1e-4)
    assert list(bars.marker.color) == [explorers.METHOD_COLOURS["nf"]] * 2 + [explorers.METHOD_COLOURS["bgad"]] * 2
    assert list(bars.marker.pattern.shape) == ["/", ""] * 2  # seen hatched, unseen solid
    grass = states["1,2,0"]["data"]  # image AUROC, grass, methods at the defaults
    g_nf = [r for r in nf if r["category"] == "grass"]
    assert grass["y"][0][:2] == pytest.approx([np.mean([r["seen_image_auroc"] for r in g_nf]),
                                               np.mean([r["unseen_image_auroc"] for r in g_nf])], abs=1e-4)
    tau = states["0,1,1"]["data"]  # PRO, brick, τ: the default restricted to the cells where τ was varied
    assert tau["x"][0][0] == ["τ = 0.1<br>(default)"] * 2 + ["τ = 0.2"] * 2
    assert tau["y"][0] == pytest.approx([0.9, 0.75, 0.5, 0.4], abs=1e-4)  # seed 0, seen type missing only
    assert "τ" in states["0,1,1"]["layout"]["title.text"] and "brick" in states["0,1,1"]["layout"]["title.text"]


def _bookfixes():
    spec = importlib.util.spec_from_file_location("bookfixes", ROOT / "_ext" / "bookfixes.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_book_vendors_plotlyjs_onto_pages_with_a_figure(tmp_path, monkeypatch):
    bookfixes = _bookfixes()
    assert bookfixes.plotlyjs_source() == explorers.plotlyjs_path() and explorers.plotlyjs_path().is_file()
    added = []
    app = SimpleNamespace(builder=SimpleNamespace(format="html"), outdir=str(tmp_path), add_js_file=added.append,
                          connect=lambda *a, **k: None)
    bookfixes.copy_plotlyjs(app)
    copied = tmp_path / "_static" / "plotly.min.js"
    assert copied.read_bytes() == explorers.plotlyjs_path().read_bytes()
    bookfixes.add_plotlyjs(app, "book/intro", "page.html", {"body": "<p>no figure</p>"}, None)
    assert added == []
    bookfixes.add_plotlyjs(app, "book/boundary", "page.html", {"body": '<div class="plotly-graph-div">'}, None)
    assert added == ["plotly.min.js"]
    monkeypatch.setenv(explorers.PLOTLYJS_ENV, "inline")  # restored after the test
    bookfixes.setup(app)
    assert os.environ[explorers.PLOTLYJS_ENV] == "page"  # the kernels of the build leave plotly.js out
