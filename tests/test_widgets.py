"""The β/τ widgets through the pure functions they wrap, and the book's plots (the kernel-free explorers:
test_explorers.py)."""
from __future__ import annotations

import numpy as np
import pytest

from bgad_mini import viz, widgets


@pytest.fixture
def constructed():
    """Normal ℓ = 0, −0.1, …, −9.9 (x = ℓ/10 = 0 … −0.99) and four anomalous ℓ with known positions."""
    normal = -0.1 * np.arange(100, dtype=np.float64)
    abnormal = np.array([-12.0, -10.3, -9.0, -5.0])  # x = −1.2, −1.03, −0.9, −0.5
    return normal, abnormal


def test_boundary_state_known_values(constructed):
    normal, abnormal = constructed
    st = widgets.boundary_state(normal, abnormal, beta=0.05, tau=0.1, normalizer=10.0)
    # k = ⌊100·0.05⌋ = 5: the 6th lowest ℓ is −9.4, so b_n = −0.94 and b_a = −1.04
    assert st["b_n"] == pytest.approx(-0.94)
    assert st["b_a"] == pytest.approx(-1.04)
    assert st["b_n_loglik"] == pytest.approx(-9.4)
    assert st["normal_below_bn"] == 6 and st["frac_normal_below_bn"] == pytest.approx(0.06)
    assert st["abnormal_above_ba"] == 3  # −1.03, −0.9, −0.5 are ≥ −1.04
    assert st["abnormal_in_margin"] == 1  # −1.03 lies in (−1.04, −0.94)
    assert st["normal_in_margin"] == 5  # −0.99 … −0.95
    assert st["beta"] == 0.05 and st["tau"] == 0.1
    assert "b_n = -0.940" in st["text"] and "6 of 100" in st["text"] and "3 of 4" in st["text"]


def test_counts_monotone_in_beta_and_tau():
    rng = np.random.default_rng(0)
    normal, abnormal = rng.normal(-3.0, 0.4, 20_000), rng.normal(-3.5, 0.8, 500)
    betas, taus = [0.001, 0.005, 0.01, 0.05, 0.1, 0.3], [0.0, 0.02, 0.05, 0.1, 0.2, 0.5]
    grid = widgets.boundary_grid(normal, abnormal, betas, taus)
    assert set(grid) == {(b, t) for b in betas for t in taus}
    for t in taus:  # larger β: b_n moves right, more normals pulled, fewer anomalies above b_a
        col = [grid[(b, t)] for b in betas]
        assert all(x["b_n"] <= y["b_n"] for x, y in zip(col, col[1:]))
        assert all(x["normal_below_bn"] <= y["normal_below_bn"] for x, y in zip(col, col[1:]))
        assert all(x["abnormal_above_ba"] >= y["abnormal_above_ba"] for x, y in zip(col, col[1:]))
        assert col[0]["normal_below_bn"] < col[-1]["normal_below_bn"]
    for b in betas:  # larger τ: b_n fixed, b_a moves left, more anomalies above b_a
        row = [grid[(b, t)] for t in taus]
        assert len({x["b_n"] for x in row}) == 1 and len({x["normal_below_bn"] for x in row}) == 1
        assert all(x["b_a"] > y["b_a"] for x, y in zip(row, row[1:]))
        assert all(x["abnormal_above_ba"] <= y["abnormal_above_ba"] for x, y in zip(row, row[1:]))
        assert row[0]["abnormal_above_ba"] < row[-1]["abnormal_above_ba"]
    for b in betas:  # distinct values: exactly ⌊nβ⌋ + 1 normals at or below b_n
        assert grid[(b, 0.1)]["normal_below_bn"] == int(normal.size * b) + 1
        assert grid[(b, 0.0)]["normal_in_margin"] == 0  # τ = 0: the margin is empty


def test_boundary_widget_builds_with_sliders(constructed):
    pytest.importorskip("ipywidgets")
    normal, abnormal = constructed
    box = widgets.boundary_widget(normal, abnormal, beta=0.02, tau=0.15)
    sliders = box.children[0].children
    assert [s.description for s in sliders] == ["β", "τ"]
    assert sliders[0].value == pytest.approx(0.02) and sliders[1].value == pytest.approx(0.15)
    # the figure is a PNG image redrawn when a slider moves; no Output widget (nbclient can hang on those)
    import ipywidgets

    image, caption = box.children[1], box.children[2]
    assert isinstance(image, ipywidgets.Image) and image.value[:8] == b"\x89PNG\r\n\x1a\n"
    assert not any(isinstance(c, ipywidgets.Output) for c in box.children)
    before, text_before = image.value, caption.value
    sliders[1].value = 0.4
    assert image.value != before and "τ = 0.4" in caption.value and caption.value != text_before


def test_book_plots_return_figures(constructed):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    normal, abnormal = constructed
    rng = np.random.default_rng(0)
    figs = [
        viz.plot_boundary_hist(normal / 10, abnormal / 10, -0.94, -1.04),
        viz.plot_boundary_grid(normal / 10, abnormal / 10, widgets.boundary_grid(normal, abnormal, [0.01, 0.1], [0.0, 0.1]),
                                    [0.01, 0.1], [0.0, 0.1]),
        viz.plot_boundary_levels([normal / 10] * 2, [abnormal / 10] * 2,
                                      [widgets.boundary_state(normal, abnormal, 0.01, 0.1)] * 2, ["a", "b"]),
        viz.plot_chunk_boundaries(-0.5, {"512": rng.normal(-0.5, 0.01, 50)}, tau=0.1),
        viz.plot_feature_levels(rng.random((32, 32, 3)), [rng.random((4, 8, 8)), rng.random((6, 4, 4))], ["a", "b"]),
        viz.plot_positional_encoding(rng.uniform(-1, 1, (8, 4, 4)), [0, 4], ["x", "y"]),
        viz.plot_ml_loss(np.linspace(-5, 3, 50), rng.normal(-3, 0.4, 100)),
        viz.plot_history([{"epoch": 0, "phase": 1, "levels": [{"loss": 3.0}]},
                               {"epoch": 1, "phase": 2, "levels": [{"loss": 2.5}]}], ["/4"]),
        viz.plot_logp_vs_ell([rng.normal(-70, 5, 100), rng.normal(-300, 10, 100)], [24, 112], ["/4", "/16"]),
        viz.plot_roc_pro((np.array([0, 1.0]), np.array([0, 1.0])), (np.array([0, 1.0]), np.array([0, 1.0])),
                              (np.array([0, 0.1, 0.3]), np.array([0, 0.5, 0.9])), {"image_auroc": 0.5}),
    ]
    assert all(isinstance(f, matplotlib.figure.Figure) for f in figs)
    for f in figs:
        plt.close(f)


def test_feature_pca_image_finds_the_dominant_direction():
    rng = np.random.default_rng(0)
    pattern = np.outer(np.linspace(-1, 1, 8), np.ones(8))  # a left-right ramp on an 8×8 grid
    direction = np.array([3.0, 1.0, 0.0])
    fmap = direction[:, None, None] * pattern[None] + 0.01 * rng.normal(size=(3, 8, 8))
    pc = viz.feature_pca_image(fmap)
    assert abs(np.corrcoef(pc.ravel(), pattern.ravel())[0, 1]) > 0.99
