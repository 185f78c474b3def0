"""The Boundary chapter's helpers: the per-chunk b_n study (showcase.chunk_boundaries) draws chunks as the trainer does
and measures what a quantile's noise should do; its figures (viz) fit the page width with legible type."""
from __future__ import annotations

import matplotlib
import numpy as np
import pytest
import torch

from bgad_mini import showcase, viz, widgets
from bgad_mini.boundary import boundary_counts, normal_boundary
from bgad_mini.config import Config
from bgad_mini.train import split_chunks

matplotlib.use("Agg")


def _cfg(**overrides) -> Config:
    return Config.from_profile("smoke").with_overrides(**overrides)


def test_the_trainers_chunks_have_the_sizes_split_chunks_gives():
    # 7 images of 5 × 5 locations; batches of 3 images (3, 3, 1), 10 locations each, chunks of about 8
    values = np.random.default_rng(0).normal(size=(7, 5, 5))
    cfg = _cfg(batch_images=3, patches_per_image=10, flow_batch=8)
    study = showcase.chunk_boundaries(values, cfg, beta=0.1, n_chunks=40, rng=1, sizes=(8,))
    g = torch.Generator().manual_seed(0)
    epoch = [len(c) for n in (30, 30, 10) for c in split_chunks(n, cfg.flow_batch, g)]  # batch by batch
    trainer = study["sizes"]["trainer"]
    assert len(trainer) == 40 and len(study["chunks"]["trainer"]) == 40
    assert sorted(trainer[:9]) == sorted(epoch) and sorted(trainer[9:18]) == sorted(epoch)  # epoch after epoch
    assert study["summary"]["trainer"]["size"] == int(np.median(trainer))
    assert set(study["sizes"]["8"]) == {8} and len(study["chunks"]["8"]) == 40
    # every location of an image when patches_per_image = 0: 3 images × 25 = 75 -> round(75 / 8) = 9 chunks
    every = showcase.chunk_boundaries(values, _cfg(batch_images=3, patches_per_image=0, flow_batch=8), 0.1,
                                      n_chunks=9, rng=1, sizes=())
    assert sum(every["sizes"]["trainer"]) == 75 and "3 images × 25 patches" in every["labels"]["trainer"]


def test_whole_set_boundary_is_normal_boundary_of_every_value():
    values = np.random.default_rng(2).normal(-30.0, 3.0, size=(20, 8, 8))
    study = showcase.chunk_boundaries(values, _cfg(), beta=0.02, n_chunks=5, rng=0)
    flat = values.reshape(-1)
    assert study["whole"] == pytest.approx(float(normal_boundary(torch.from_numpy(flat), 0.02, 10.0)))
    assert study["whole"] == pytest.approx(np.sort(flat)[int(flat.size * 0.02)] / 10.0)  # sorted(x)[⌊Nβ⌋] / 10
    assert "4096" not in study["chunks"] and "512" in study["chunks"]  # 1,280 values: two chunks of 512, not of 4096
    s = study["summary"]["512"]
    assert s["bias"] == pytest.approx(study["chunks"]["512"].mean() - study["whole"])
    assert s["p5"] <= s["p95"] and s["std"] == pytest.approx(study["chunks"]["512"].std())


def test_chunk_boundaries_spread_shrinks_with_chunk_size_as_a_quantile_should():
    # a standard normal ℓ: the β-quantile of n values has a std of sqrt(β(1-β)/n) / φ(q_β)
    values = np.random.default_rng(3).normal(size=(64, 32, 32))
    beta = 0.05
    study = showcase.chunk_boundaries(values, _cfg(normalizer=1.0), beta, n_chunks=400, rng=4, sizes=(512, 4096))
    std = {k: v["std"] for k, v in study["summary"].items()}
    assert std["512"] > std["4096"]
    assert 2.0 < std["512"] / std["4096"] < 4.0  # √8 ≈ 2.8
    q = -1.6448536269514722  # Φ⁻¹(0.05)
    density = np.exp(-q * q / 2) / np.sqrt(2 * np.pi)
    for n in (512, 4096):
        assert std[str(n)] == pytest.approx(np.sqrt(beta * (1 - beta) / n) / density, rel=0.25)
    assert abs(study["summary"]["512"]["bias"]) < 3 * std["512"] / np.sqrt(400) + 0.01
    # the same generator seed draws the same chunks
    again = showcase.chunk_boundaries(values, _cfg(normalizer=1.0), beta, n_chunks=400, rng=4, sizes=(512, 4096))
    assert all(np.array_equal(study["chunks"][k], again["chunks"][k]) for k in study["chunks"])


def _smallest_text(fig) -> float:
    texts = [t for t in fig.findobj(matplotlib.text.Text) if t.get_text().strip() and t.get_visible()
             and (t.axes is None or t.axes.axison)]
    return min(t.get_fontsize() for t in texts)


def test_boundary_figures_fit_the_page_with_legible_type():
    rng = np.random.default_rng(0)
    normal, abnormal = rng.normal(-2.7, 0.25, 5000), rng.normal(-3.2, 0.4, 80)
    counts = [boundary_counts(normal, abnormal, 0.01, 0.1) for _ in range(3)]
    grid = widgets.boundary_grid(normal, abnormal, [0.005, 0.01, 0.1], [0.0, 0.1, 0.2])
    study = showcase.chunk_boundaries(normal.reshape(50, 100), _cfg(), 0.01, n_chunks=50, rng=0, sizes=(512,))
    figs = [viz.plot_boundary_by_level([normal / 10] * 3, [abnormal / 10] * 3, counts, ["/4", "/8", "/16"]),
            viz.plot_beta_tau_grid(normal / 10, abnormal / 10, grid, [0.005, 0.01, 0.1], [0.0, 0.1, 0.2]),
            viz.plot_chunk_spread(study["whole"], study["chunks"], study["labels"], 0.1)]
    for fig in figs:
        assert fig.get_figwidth() <= 10.0
        # shown 800 px wide, s pt is s / 72 · 800 / width px: at least 80 % of a 16 px body font
        assert _smallest_text(fig) / 72 * 800 / fig.get_figwidth() >= 0.8 * 16
    by_level = figs[0]
    assert sum(ax.get_visible() and ax.axison for ax in by_level.axes) == 3  # 2 × 2, the fourth panel off
    colours = {matplotlib.colors.to_hex(p.get_facecolor()[:3]) for ax in figs[2].axes for p in ax.patches}
    assert colours == {viz.NORMAL_COLOUR.lower()}  # per-chunk b_n of normal patches: the normal colour
    import matplotlib.pyplot as plt

    plt.close("all")
