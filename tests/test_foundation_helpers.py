"""Helpers of the Data, Flows and Conditional flows chapters: per-level maps that add up to evaluate's maps, glued
figures that are closed, and figures that fit the page width in the book's palette."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402

from bgad_mini import showcase, viz  # noqa: E402
from bgad_mini.errors import BgadError  # noqa: E402
from bgad_mini.evaluate import anomaly_maps, inductive_maps, score_reference  # noqa: E402


def _levels(rng, n=3):
    return [rng.normal(-2.0, 0.5, (n, 8, 8)), rng.normal(-1.5, 0.3, (n, 4, 4)), rng.normal(-1.0, 0.2, (n, 2, 2))]


def test_level_maps_add_up_to_the_inductive_and_the_official_map():
    rng = np.random.default_rng(0)
    ll = _levels(rng)
    reference = score_reference(_levels(rng, n=5))  # m_l from other ("training") images
    parts = showcase.level_maps(ll, 32, reference)
    assert len(parts) == 3 and all(p.shape == (3, 32, 32) and p.dtype == np.float64 for p in parts)
    np.testing.assert_allclose(len(parts) - sum(parts), inductive_maps(ll, reference, 32, dtype=np.float64),
                               atol=1e-12)
    total = sum(showcase.level_maps(ll, 32))  # m_l over these images: the official, transductive score
    np.testing.assert_allclose(total.max() - total, anomaly_maps(ll, 32, dtype=np.float64), atol=1e-12)
    assert all(p.max() <= 1.0 + 1e-12 for p in showcase.level_maps(ll, 32))  # exp(ℓ − max ℓ) ∈ (0, 1]
    with pytest.raises(BgadError):
        showcase.level_maps(ll, 32, reference[:2])


def test_glue_figure_closes_the_figure(monkeypatch):
    import sys
    import types

    from bgad_mini import report

    glued = {}
    fake = types.ModuleType("myst_nb")
    fake.glue = lambda name, value, display=True: glued.__setitem__(name, (value, display))
    monkeypatch.setitem(sys.modules, "myst_nb", fake)
    fig, _ = plt.subplots()
    report.glue_figure("fig_x", fig)
    assert glued["fig_x"] == (fig, False) and not plt.fignum_exists(fig.number)


def _text_sizes(fig) -> list[float]:
    sizes = []
    for ax in fig.axes:
        sizes += [t.get_fontsize() for t in ax.get_xticklabels() + ax.get_yticklabels() if t.get_text()]
        sizes += [ax.title.get_fontsize()] if ax.get_title() else []
        if ax.get_legend():
            sizes += [t.get_fontsize() for t in ax.get_legend().get_texts()]
    return sizes


def test_foundation_figures_fit_the_page_and_read():
    rng = np.random.default_rng(0)
    grid = rng.normal(-3, 1, (20, 20))
    pts = rng.normal(size=(50, 2))
    maps = rng.random((8, 16, 16))
    masks = np.zeros((8, 16, 16), bool)
    masks[:, 4:8, 4:8] = True
    figs = [
        viz.plot_flow_2d(pts, grid, (-2, 2, -2, 2), pts, pts),
        viz.plot_flow_comparison({"a": rng.random(60), "b": rng.random(60)}, {"a": grid, "b": grid}, (-2, 2, -2, 2)),
        viz.plot_loglik_by_dim([24, 40, 112], [rng.normal(-30, 3, 200), rng.normal(-60, 3, 200),
                                               rng.normal(-150, 5, 200)]),
        viz.plot_positional_encoding(rng.uniform(-1, 1, (16, 6, 6)), list(range(8)), [f"c{i}" for i in range(8)]),
        viz.plot_score_levels(rng.random((16, 16, 3)), masks[0], [maps[0]] * 3, ["a", "b", "c"], maps[0]),
        viz.plot_roc_pro((np.array([0, 1.0]), np.array([0, 1.0])), (np.array([0, 1.0]), np.array([0, 1.0])),
                         (np.array([0, 0.1, 0.3]), np.array([0, 0.5, 0.9]))),
        viz.plot_anomaly_map_grid(rng.random((8, 16, 16, 3)), maps, masks, [f"t{i}" for i in range(8)],
                                  ["normal", "seen"] + ["unseen"] * 6),
        viz.plot_defect_montage(rng.random((8, 16, 16, 3)), masks, [f"t{i}" for i in range(8)], ncols=4),
    ]
    for fig in figs:
        assert fig.get_figwidth() <= 10.0 + 1e-9, fig.get_figwidth()
        assert min(_text_sizes(fig)) >= 8.5, _text_sizes(fig)
        plt.close(fig)


def test_foundation_figures_use_the_palette():
    rng = np.random.default_rng(0)
    maps = rng.random((3, 16, 16))
    fig = viz.plot_anomaly_map_grid(rng.random((3, 16, 16, 3)), maps, np.zeros((3, 16, 16), bool),
                                    ["normal", "SEEN: a", "unseen: b"], ["normal", "seen", "unseen"])
    colours = [to_hex(ax.title.get_color()) for ax in fig.axes if ax.get_title()]
    assert colours == [viz.GROUP_COLOURS[g].lower() for g in ("normal", "seen", "unseen")]
    fig = viz.plot_mask_areas({"a": [0.01, 0.02], "b": [0.03]}, {"a": "seen", "b": "unseen"})
    faces = [to_hex(c.get_facecolor()[0]) for c in fig.axes[0].collections]
    assert faces == [viz.GROUP_COLOURS["seen"].lower(), viz.GROUP_COLOURS["unseen"].lower()]
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["seen type", "unseen type"]
    fig = viz.plot_roc_pro((np.array([0, 1.0]), np.array([0, 1.0])), (np.array([0, 1.0]), np.array([0, 1.0])),
                           None, colour=viz.METHOD_COLOURS["nf"])
    assert to_hex(fig.axes[0].lines[0].get_color()) == viz.METHOD_COLOURS["nf"].lower()
    plt.close("all")
