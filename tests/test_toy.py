"""The BG-SPP chapter's 2-D toy (bgad_mini.toy) and its figures: determinism, the semi-push's zero gradient below
b_a, the ML-only flow's density integrating to one, the one-patch losses and gradients against their closed forms."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bgad_mini import toy, viz
from bgad_mini.boundary import boundaries

STEPS = (30, 20)  # enough to move the flow, small enough for a unit test


def _params(flow):
    return torch.cat([p.detach().reshape(-1) for p in flow.parameters()])


def test_toy_data_is_deterministic_and_placed():
    a, b, c = toy.toy_data(3), toy.toy_data(3), toy.toy_data(4)
    for k in ("normal", "normal_test", "seen", "unseen"):
        assert torch.equal(getattr(a, k), getattr(b, k))
        assert not torch.equal(getattr(a, k), getattr(c, k))
    assert a.normal.shape == (1000, 2) and a.seen.shape == (30, 2) and a.unseen.shape == (200, 2)
    # both clusters at distance 3.5 from the origin, 135° apart
    assert float(a.seen.mean(0).norm()) == pytest.approx(3.5, abs=0.15)
    assert float(a.unseen.mean(0).norm()) == pytest.approx(3.5, abs=0.1)
    cos = float(a.seen.mean(0) @ a.unseen.mean(0)) / float(a.seen.mean(0).norm() * a.unseen.mean(0).norm())
    assert cos == pytest.approx(np.cos(0.75 * np.pi), abs=0.05)


def test_toy_flow_leaves_numpy_rng_alone_and_is_seeded():
    np.random.seed(123)
    expected = np.random.rand()
    np.random.seed(123)
    f1 = toy.toy_flow(5)
    assert np.random.rand() == expected  # NumPy's global stream is restored
    assert torch.equal(_params(f1), _params(toy.toy_flow(5)))
    assert not torch.equal(_params(f1), _params(toy.toy_flow(6)))


def test_train_toy_is_deterministic():
    cfg, data = toy.toy_config(), toy.toy_data(1)
    a = toy.train_toy(data, cfg, STEPS, seed=1, methods=tuple(toy.LABELS))
    b = toy.train_toy(data, cfg, STEPS, seed=1, methods=tuple(toy.LABELS))
    assert list(a) == list(toy.LABELS)
    for m in a:
        assert torch.equal(_params(a[m]), _params(b[m])), m
    # the trainings share phase 1 and then differ
    assert not torch.equal(_params(a["nf"]), _params(a["bgad"]))


def test_bgspp_objective_leaves_points_below_ba_alone():
    """Through the objective the toy trains with: anomalies with x < b_a and normals with x > b_n get exactly the
    gradient of L_ml alone (0 for an anomaly); violators get λ/(normaliser·|V|) more."""
    cfg, data = toy.toy_config(), toy.toy_data(0)
    flow = toy.train_toy(data, cfg, (40, 0), seed=0, methods=("nf",))["nf"]
    with torch.no_grad():
        ell = toy.toy_loglik(flow, torch.cat([data.normal, data.seen]))
    ell = ell.clone().requires_grad_(True)
    abnormal = torch.zeros(len(ell), dtype=torch.bool)
    abnormal[len(data.normal):] = True
    # put some anomalies far below b_a, some above it
    with torch.no_grad():
        ell[len(data.normal)::2] -= 50.0
    loss, _ = toy.objective_for("bgad", cfg)(0, ell, abnormal)
    (grad,) = torch.autograd.grad(loss, ell)
    b_n, b_a = (float(b) for b in boundaries(ell.detach()[~abnormal], cfg.beta, cfg.tau, cfg.normalizer))
    x = ell.detach() / cfg.normalizer
    below = abnormal & (x < b_a)
    above = abnormal & (x >= b_a)
    assert below.sum() > 0 and above.sum() > 0
    assert torch.all(grad[below] == 0.0)
    assert torch.allclose(grad[above], torch.full_like(grad[above], cfg.lam / cfg.normalizer / int(above.sum())))
    n = int((~abnormal).sum())
    ml_grad = -torch.sigmoid(-ell.detach()) / n  # d softplus(−ℓ)/dℓ, mean over the normal points
    likely = ~abnormal & (x > b_n)
    assert torch.allclose(grad[likely], ml_grad[likely], atol=1e-7)
    pulled = ~abnormal & (x <= b_n)
    extra = -cfg.lam / cfg.normalizer / int(pulled.sum())
    assert torch.allclose(grad[pulled], ml_grad[pulled] + extra, atol=1e-7)


def test_ml_only_flow_integrates_to_one():
    data = toy.toy_data(0)
    flow = toy.train_toy(data, toy.toy_config(), (150, 0), seed=0, methods=("nf",))["nf"]
    ell, cell, extent = toy.loglik_grid(flow, half_width=7.0, n=280)
    assert extent == (-7.0, 7.0, -7.0, 7.0) and ell.shape == (280, 280)
    assert float(np.exp(2 * ell.astype(np.float64)).sum() * cell) == pytest.approx(1.0, abs=0.02)


def test_toy_summary_shares_and_units():
    cfg, data = toy.toy_config(), toy.toy_data(0)
    flow = toy.train_toy(data, cfg, (60, 0), seed=0, methods=("nf",))["nf"]
    s = toy.toy_summary(flow, data, cfg)
    assert s["b_a"] == pytest.approx(s["b_n"] - cfg.tau)
    assert s["ell_bn"] == pytest.approx(s["b_n"] * cfg.normalizer)
    for k in ("seen", "unseen"):
        assert s[f"{k}_below_ba"] + s[f"{k}_in_margin"] + s[f"{k}_above_bn"] == pytest.approx(1.0)
    with torch.no_grad():
        x = toy.toy_loglik(flow, data.unseen).numpy() / cfg.normalizer
    assert s["unseen_below_ba"] == pytest.approx(np.mean(x <= s["b_a"]))
    assert 0.9 < s["normal_above_bn"] <= 1.0  # held-out normals: about 1 − β above b_n


def test_seed_rows_and_typical_seed():
    cfg = toy.toy_config()
    trained = toy.train_seeds([0, 1], cfg, (10, 5), methods=("nf", "bgad"))
    rows = toy.seed_rows(trained, cfg)
    assert [(r["seed"], r["method"]) for r in rows] == [(0, "nf"), (0, "bgad"), (1, "nf"), (1, "bgad")]
    fake = [{"seed": s, "method": m, "unseen_below_ba": v}
            for s, d in enumerate([0.3, -0.1, 0.0, 0.5, -0.4]) for m, v in (("nf", 0.5), ("bgad", 0.5 + d))]
    assert toy.typical_seed(fake) == 2  # changes −0.4, −0.1, 0.0, 0.3, 0.5: the median 0.0 is seed 2
    assert toy.typical_seed(fake[:4]) == 1  # two seeds (0.3, −0.1): the lower middle one


def test_patch_losses_match_closed_forms():
    ell = np.array([-20.0, -11.5, -10.5, -5.0, 0.0, 3.0])
    b_n, b_a, norm, lam = -1.0, -1.1, 10.0, 2.0
    out = toy.patch_losses(ell, b_n, b_a, norm, lam)
    x = ell / norm
    sig = lambda v: 1.0 / (1.0 + np.exp(-v))  # noqa: E731
    softplus = lambda v: np.log1p(np.exp(v))  # noqa: E731
    loss, grad = out["BG-SPP"]["normal"]
    np.testing.assert_allclose(loss, softplus(-ell) + lam * np.maximum(b_n - x, 0), rtol=1e-9)
    np.testing.assert_allclose(grad, -sig(-ell) - lam / norm * (x <= b_n), rtol=1e-9)
    loss, grad = out["BG-SPP"]["anomalous"]
    np.testing.assert_allclose(loss, lam * np.maximum(x - b_a, 0), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(grad, lam / norm * (x >= b_a), rtol=1e-9)
    assert grad[0] == 0.0 and grad[1] == 0.0  # below b_a: left alone
    loss, grad = out["push-pull"]["normal"]
    np.testing.assert_allclose(grad, -sig(-ell), rtol=1e-9)
    loss, grad = out["push-pull"]["anomalous"]
    np.testing.assert_allclose(loss, lam * softplus(ell), rtol=1e-9)
    np.testing.assert_allclose(grad, lam * sig(ell), rtol=1e-9)  # never zero: every anomaly is pushed


def test_loss_curves_are_linear_in_lambda():
    x = np.linspace(-2.0, 0.2, 23)
    curves = toy.loss_curves(x, -1.0, -1.1)
    for lam in (0.0, 0.75, 3.0):
        xs, normal, anomalous = curves(lam)
        np.testing.assert_allclose(xs, x)
        np.testing.assert_allclose(normal, np.log1p(np.exp(-10 * x)) + lam * np.maximum(-1.0 - x, 0), rtol=1e-9)
        np.testing.assert_allclose(anomalous, lam * np.maximum(x + 1.1, 0), rtol=1e-9, atol=1e-12)


def test_bgspp_figures_draw():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = -np.add.outer(np.linspace(-3, 3, 40) ** 2, np.linspace(-3, 3, 40) ** 2) / 4 - 0.9
    pts = {"normal": np.zeros((5, 2)), "seen": np.ones((3, 2)), "unseen": -np.ones((3, 2))}
    figs = [viz.plot_toy_boundaries({"a": grid, "b": grid}, {"a": (-3.5, -2.5), "b": (-3.0, -2.0)}, pts,
                                    (-3, 3, -3, 3), {"a": "note"}),
            viz.plot_spp_roles([-1.2, -0.8], [-1.05, 0.5, -1.5], -1.0, -1.1),
            viz.plot_patch_gradients(np.linspace(-15, 2, 30), {
                "BG-SPP (BGAD)": toy.patch_losses(np.linspace(-15, 2, 30), -1.0, -1.1)["BG-SPP"],
                "push-pull (BGAD†)": toy.patch_losses(np.linspace(-15, 2, 30), -1.0, -1.1)["push-pull"]},
                -10.0, -11.0),
            viz.plot_loss_curves(toy.loss_curves(np.linspace(-2, 0.2, 20), -1.0, -1.1), [0.0, 1.0], -1.0, -1.1)]
    assert [len(f.axes) for f in figs] == [2, 2, 2, 2]
    assert figs[1].axes[0].get_title().startswith("BG-SPP")
    for f in figs:
        assert f.get_size_inches()[0] <= 9.5
        plt.close(f)


def test_margin_shares_and_the_chapter_tables():
    from bgad_mini import report, showcase

    group = {"b_n": -1.0, "b_a": -1.1, "seen": np.array([-1.2, -1.1, -1.05, -1.0, 0.5]), "unseen": np.array([])}
    assert showcase.margin_shares(group, "seen") == pytest.approx((0.4, 0.2, 0.4))  # ≥ b_n, (b_a, b_n), ≤ b_a
    assert all(np.isnan(showcase.margin_shares(group, "unseen")))
    md, shares = report.share_table({"A": [group]}, ["/8"], keys=("seen", "unseen"))
    assert shares["A", "/8", "seen"] == pytest.approx((0.4, 0.2, 0.4))
    assert "| A | /8 | 40% / 20% / 40% | – / – / – |" in md.data
    rows = [{"seed": s, "method": m, "normal_above_bn": 0.99, "seen_below_ba": 1.0, "seen_median_x": -0.5,
             "unseen_below_ba": u, "unseen_above_bn": 0.0} for s, u in ((0, 0.5), (1, 0.25)) for m in ("nf",)]
    md = report.toy_table(rows, {"nf": "ML only", "bgad": "BG-SPP"}).data
    assert "| ML only | 99 ± 0 | 100 ± 0 | -0.50 ± 0.00 | 38 ± 18 | 50 / 25 | 0 ± 0 |" in md
    assert "BG-SPP" not in md.split("\n", 2)[2]  # a training without rows is left out
    res = {"metrics_seen": {"image_auroc": 0.5, "pixel_auroc": None, "pro": 0.25},
           "metrics_unseen": {"image_auroc": 1.0, "pixel_auroc": 0.75, "pro": 0.5}, "timings": {"train": 12.4}}
    assert "| NF | 0.500 / – / 0.250 | 1.000 / 0.750 / 0.500 | 12 |" in report.seen_unseen_table({"NF": res}).data


def test_group_hists_colour_each_group():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_hex

    rng = np.random.default_rng(0)
    g = {"normal": rng.normal(-0.3, 0.05, 500), "seen": rng.normal(-0.5, 0.1, 50),
         "unseen": rng.normal(-0.6, 0.1, 50), "b_n": -0.4, "b_a": -0.5}
    fig = viz.plot_group_hists({"NF": g, "BGAD": g}, (-1.0, 0.0))
    assert fig.get_size_inches()[0] <= 9.5 and len(fig.axes) == 4
    for ax, key in zip(fig.axes[::2], ("seen", "unseen")):  # column 1: seen on top, unseen below
        assert to_hex(ax.containers[-1][0].get_facecolor()) == viz.GROUP_COLOURS[key].lower()
    plt.close(fig)
