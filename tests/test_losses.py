"""Losses on hand-computed values: focal weights, L_bg-spp, the BGAD† push-pull variant, FIRM/SupCon/SimCLR."""
from __future__ import annotations

import math

import pytest
import torch

from bgad_mini.errors import BgadError
from bgad_mini.losses import (abnormal_focal_weights, bg_spp_loss, firm_loss, linear_push_loss, ml_loss,
                              normal_focal_weights, pushpull_loss, simclr_loss, supcon_loss)


def t(values, grad: bool = False) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64, requires_grad=grad)


def mask(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.bool)


# --- focal weights (official §1.7.3 sample values; ℓ = 10·x) ---------------------------------------------
def test_normal_focal_weight_sample_values():
    w = normal_focal_weights(t([-5.0, -10.0, -20.0, 3.0, -1.0]))
    assert w[0].item() == pytest.approx(3.67, abs=5e-3)
    assert w[1].item() == pytest.approx(9.30, abs=5e-3)
    assert w[2].item() == pytest.approx(21.76, abs=5e-3)  # "21.8"
    assert w[3].item() == 1.0 and w[4].item() == 1.0  # x > -0.2: easy normals keep weight 1


def test_abnormal_focal_weight_sample_values():
    w = abnormal_focal_weights(t([-5.0, -1.0, -10.0, -30.0]))
    assert w[0].item() == pytest.approx(2.74, abs=5e-3)
    assert w[1].item() == pytest.approx(19.23, abs=5e-3)  # "19.2"
    assert w[2].item() == 1.0 and w[3].item() == 1.0  # x ≤ -1: far anomalies keep weight 1


def test_focal_weights_continuous_at_switch_points():
    eps = 1e-6
    wn = normal_focal_weights(t([-2.0 - eps, -2.0 + eps]))  # x = -0.2 ∓ 1e-7
    assert wn[1].item() == 1.0
    assert wn[0].item() == pytest.approx(0.996, abs=1e-3)  # 11.7·√(1-e^-0.2)·0.2
    wa = abnormal_focal_weights(t([-10.0 - eps, -10.0 + eps]))  # x = -1 ∓ 1e-7
    assert wa[0].item() == 1.0
    assert wa[1].item() == pytest.approx(0.99, abs=5e-3)  # 0.53·(1+e^-1)²


def test_abnormal_focal_weight_guarded_at_zero_and_detached():
    ll = t([0.0, 1e-9, -1e-9], grad=True)
    w = abnormal_focal_weights(ll)
    assert torch.isfinite(w).all()
    assert w[0].item() == pytest.approx(0.53 * 4 / 1e-3)  # |x| clamped to 1e-3
    assert not w.requires_grad and not normal_focal_weights(ll).requires_grad


# --- L_bg-spp ---------------------------------------------------------------------------------------------
# ℓ = [-12, -8, -3, -1, 5], abnormal = [F, F, F, T, T], normaliser 10, b_n = -1.0, b_a = -1.1
# x = [-1.2, -0.8, -0.3, -0.1, 0.5]; V_n = {-1.2} → L_n = 0.2; V_a = {-0.1, 0.5} → L_a = (1.0 + 1.6)/2 = 1.3
LL_CASE = [-12.0, -8.0, -3.0, -1.0, 5.0]
AB_CASE = [False, False, False, True, True]


def test_bg_spp_hand_case():
    loss, stats = bg_spp_loss(t(LL_CASE), mask(AB_CASE), b_n=-1.0, b_a=-1.1)
    assert loss.item() == pytest.approx(1.5)
    assert stats["l_n"] == pytest.approx(0.2) and stats["l_a"] == pytest.approx(1.3)
    assert stats["n_violating_normal"] == 1 and stats["n_violating_abnormal"] == 2
    assert all(isinstance(stats[k], float) for k in ("l_n", "l_a"))
    assert all(isinstance(stats[k], int) for k in ("n_violating_normal", "n_violating_abnormal"))


def test_bg_spp_gradient_signs():
    ll = t(LL_CASE, grad=True)
    loss, _ = bg_spp_loss(ll, mask(AB_CASE), b_n=torch.tensor(-1.0), b_a=torch.tensor(-1.1))
    loss.backward()
    # L_n = (b_n - ℓ_0/10)/1 → dL/dℓ_0 = -0.1 (gradient descent raises ℓ_0: pulled up)
    # L_a = Σ (ℓ_j/10 - b_a)/2 → dL/dℓ_j = +0.05 (lowered: pushed down); satisfied normals get 0
    assert ll.grad.tolist() == pytest.approx([-0.1, 0.0, 0.0, 0.05, 0.05])


def test_bg_spp_focal_hand_case():
    loss, stats = bg_spp_loss(t(LL_CASE), mask(AB_CASE), b_n=-1.0, b_a=-1.1, focal=True)
    w_n = 11.7 * math.sqrt(1 - math.exp(-1.2)) * 1.2        # ≈ 11.737 at x = -1.2
    w_a1 = 0.53 * (1 + math.exp(-0.1)) ** 2 / 0.1          # ≈ 19.231 at x = -0.1
    w_a2 = 0.53 * (1 + math.exp(0.5)) ** 2 / 0.5           # ≈ 7.437 at x = 0.5
    l_n = w_n * 0.2
    l_a = (w_a1 * 1.0 + w_a2 * 1.6) / 2
    assert stats["l_n"] == pytest.approx(l_n) and stats["l_a"] == pytest.approx(l_a)
    assert loss.item() == pytest.approx(l_n + l_a)
    assert loss.item() == pytest.approx(17.912, abs=1e-3)


def test_bg_spp_empty_abnormal_violators_is_zero_not_nan():
    ll = t([-12.0, -8.0, -30.0], grad=True)  # the anomaly x = -3 < b_a: V_a empty
    loss, stats = bg_spp_loss(ll, mask([False, False, True]), b_n=-1.0, b_a=-1.1)
    assert stats["l_a"] == 0.0 and stats["n_violating_abnormal"] == 0
    assert loss.item() == pytest.approx(0.2)
    loss.backward()
    assert torch.isfinite(ll.grad).all()
    assert ll.grad.tolist() == pytest.approx([-0.1, 0.0, 0.0])


def test_bg_spp_no_abnormal_patches():
    loss, stats = bg_spp_loss(t([-12.0, -14.0, 3.0]), mask([False, False, False]), b_n=-1.0, b_a=-1.1)
    assert stats["l_a"] == 0.0
    assert loss.item() == pytest.approx((0.2 + 0.4) / 2)


def test_bg_spp_all_abnormal_chunk():
    # x = [-0.5, 0.3] ≥ b_a = -1.1 → L_a = (0.6 + 1.4)/2 = 1.0; no normals → L_n = 0
    ll = t([-5.0, 3.0], grad=True)
    loss, stats = bg_spp_loss(ll, mask([True, True]), b_n=-1.0, b_a=-1.1)
    assert stats["l_n"] == 0.0 and stats["n_violating_normal"] == 0
    assert loss.item() == pytest.approx(1.0)
    loss.backward()
    assert ll.grad.tolist() == pytest.approx([0.05, 0.05])


def test_bg_spp_nothing_violating():
    ll = t([5.0, -50.0], grad=True)
    loss, _ = bg_spp_loss(ll, mask([False, True]), b_n=-1.0, b_a=-1.1)
    loss.backward()
    assert loss.item() == 0.0 and ll.grad.tolist() == [0.0, 0.0]


def test_bg_spp_satisfied_patches_contribute_nothing():
    # a normal just above b_n (x = -0.99) and an anomaly just below b_a (x = -1.11) change nothing, because
    # the means run over the violators only
    base, _ = bg_spp_loss(t(LL_CASE), mask(AB_CASE), b_n=-1.0, b_a=-1.1)
    ll = t(LL_CASE + [-9.9, -11.1], grad=True)
    more, stats = bg_spp_loss(ll, mask(AB_CASE + [False, True]), b_n=-1.0, b_a=-1.1)
    assert more.item() == pytest.approx(base.item())
    assert stats["n_violating_normal"] == 1 and stats["n_violating_abnormal"] == 2
    more.backward()
    assert ll.grad[-2:].tolist() == [0.0, 0.0]


def test_bg_spp_margin_patches_are_penalised_on_both_sides():
    # inside the margin (b_a, b_n) = (-1.1, -1.0): a normal at x = -1.05 is pulled, an anomaly at -1.05 pushed
    loss, stats = bg_spp_loss(t([-10.5, -10.5]), mask([False, True]), b_n=-1.0, b_a=-1.1)
    assert stats["l_n"] == pytest.approx(0.05) and stats["l_a"] == pytest.approx(0.05)


def test_bg_spp_float_mask_boundary_detached_and_shape_check():
    b_n = torch.tensor(-1.0, requires_grad=True)
    ll = t(LL_CASE, grad=True)
    loss, _ = bg_spp_loss(ll, torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0]), b_n, b_n - 0.1)
    assert loss.item() == pytest.approx(1.5)
    loss.backward()
    assert b_n.grad is None and ll.grad is not None
    with pytest.raises(ValueError):
        bg_spp_loss(t(LL_CASE), mask([True, False]), -1.0, -1.1)


# --- BGAD† push-pull ----------------------------------------------------------------------------------------
def test_pushpull_hand_case():
    # normals ℓ = 0, 2: softplus(-0) = ln 2, softplus(-2) = ln(1 + e^-2)
    # anomalies ℓ = -1, 3: softplus(-1) = ln(1 + e^-1), softplus(3) = ln(1 + e^3)
    loss, stats = pushpull_loss(t([0.0, 2.0, -1.0, 3.0]), mask([False, False, True, True]))
    l_pull = (math.log(2.0) + math.log(1 + math.exp(-2.0))) / 2   # ≈ 0.41004
    l_push = (math.log(1 + math.exp(-1.0)) + math.log(1 + math.exp(3.0))) / 2  # ≈ 1.68092
    assert stats["l_pull"] == pytest.approx(l_pull) and stats["l_push"] == pytest.approx(l_push)
    assert loss.item() == pytest.approx(l_pull + l_push)
    assert stats["n_normal"] == 2 and stats["n_abnormal"] == 2
    # its normal half is L_ml
    assert stats["l_pull"] == pytest.approx(ml_loss(t([0.0, 2.0])).item())


def test_pushpull_empty_sets():
    loss, stats = pushpull_loss(t([0.0]), mask([False]))
    assert stats["l_push"] == 0.0 and loss.item() == pytest.approx(math.log(2.0))
    ll = t([0.0], grad=True)
    loss, stats = pushpull_loss(ll, mask([True]))
    assert stats["l_pull"] == 0.0 and loss.item() == pytest.approx(math.log(2.0))
    loss.backward()
    assert ll.grad.item() == pytest.approx(0.5)  # σ(0)


def test_pushpull_far_anomaly_gets_almost_no_gradient():
    ll = t([-20.0, 0.0], grad=True)
    loss, _ = pushpull_loss(ll, mask([True, True]))
    loss.backward()
    # dL/dℓ_j = σ(ℓ_j)/2: σ(-20) ≈ 2.1e-9, σ(0) = 0.5
    assert 0 < ll.grad[0].item() < 1e-8
    assert ll.grad[1].item() == pytest.approx(0.25)


def test_linear_push_is_as_strong_as_bg_spps_and_never_stops():
    # at ℓ = -3 (x = -0.3) a violating anomaly gets the same gradient from both: w_a(-0.3)/10 ≈ 0.53·(1+e^-0.3)²/0.3/10
    ll_lin, ll_spp = t([-3.0], grad=True), t([-3.0], grad=True)
    linear_push_loss(ll_lin, mask([True]))[0].backward()
    bg_spp_loss(ll_spp, mask([True]), b_n=0.0, b_a=-0.5, focal=True)[0].backward()
    w = 0.53 * (1 + math.exp(-0.3)) ** 2 / 0.3
    assert ll_lin.grad.item() == pytest.approx(w / 10) == pytest.approx(ll_spp.grad.item())
    assert ll_lin.grad.item() > 0.5  # BCE's push there: σ(-3) ≈ 0.047
    # far below any b_a: BG-SPP has stopped (no gradient), the linear push has not (w_a = 1 for x ≤ -1)
    ll_lin, ll_spp = t([-30.0], grad=True), t([-30.0], grad=True)
    loss, stats = linear_push_loss(ll_lin, mask([True]))
    loss.backward()
    assert stats["l_push"] == pytest.approx(-3.0) and ll_lin.grad.item() == pytest.approx(0.1)
    spp, _ = bg_spp_loss(ll_spp, mask([True]), b_n=0.0, b_a=-0.5, focal=True)
    spp.backward()
    assert ll_spp.grad.item() == 0.0
    # without focal weights: the plain mean of x; normals and an empty set contribute nothing
    loss, stats = linear_push_loss(t([5.0, -2.0, -4.0]), mask([False, True, True]), focal=False)
    assert loss.item() == pytest.approx(-0.3) and stats["n_abnormal"] == 2
    assert linear_push_loss(t([1.0]), mask([False]))[0].item() == 0.0


def test_pushpull_objective_linear_push_adds_bgads_focal_ml():
    from bgad_mini.config import Config
    from bgad_mini.train import PushPullObjective

    ll, ab = t([-1.0, -8.0, -3.0]), mask([False, False, True])
    cfg = Config(method="pushpull", push="linear", lam=2.0)
    loss, stats = PushPullObjective(cfg)(0, ll, ab)
    normal = ll[~ab]
    want = ml_loss(normal, normal_focal_weights(normal)) + 2.0 * linear_push_loss(ll, ab)[0]
    assert loss.item() == pytest.approx(want.item()) and set(stats) == {"ml", "push"}
    bce, _ = PushPullObjective(Config(method="pushpull", lam=2.0))(0, ll, ab)  # the default: BGAD†'s BCE
    assert bce.item() == pytest.approx(pushpull_loss(ll, ab, push_weight=2.0)[0].item())
    with pytest.raises(BgadError, match="push must be"):
        Config(method="pushpull", push="hinge")


# --- FIRM / SupCon / SimCLR --------------------------------------------------------------------------------
def unit(deg: float, scale: float = 1.0) -> list[float]:
    return [scale * math.cos(math.radians(deg)), scale * math.sin(math.radians(deg))]


def lse(*values: float) -> float:
    return math.log(sum(math.exp(v) for v in values))


def test_firm_hand_case_cross_view_orientation():
    # labels: inlier, inlier, outlier. f1 at 0°, 90°, 180°; f2 at 90°, 90°, 180° (f2 scaled: normalised inside)
    # S_ij = cos(a_i - b_j), τ = 1:  row 0 [0, 0, -1], row 1 [1, 1, 0], row 2 [0, 0, 1]
    f1 = t([unit(0), unit(90), unit(180)])
    f2 = t([unit(90, 3.0), unit(90, 3.0), unit(180, 3.0)])
    labels = torch.tensor([1, 1, -1])
    row0 = -((0 - lse(0, 0, -1)) + (0 - lse(0, 0, -1))) / 2  # inlier: positives j = 0, 1
    row1 = -((1 - lse(1, 1, 0)) + (1 - lse(1, 1, 0))) / 2
    row2 = -(1 - lse(0, 0, 1))                                # outlier: only j = 2
    expected = (row0 + row1 + row2) / 3
    assert firm_loss(f1, f2, labels, temperature=1.0).item() == pytest.approx(expected, abs=1e-12)
    # anchors are f1 (rows), keys f2: swapping the views gives S ᵀ and another value
    assert firm_loss(f2, f1, labels, temperature=1.0).item() != pytest.approx(expected, abs=1e-6)


def test_firm_and_simclr_hand_case_symmetric():
    # f1 = f2 at 0°, 90°, 180°: S = [[1, 0, -1], [0, 1, 0], [-1, 0, 1]], τ = 1
    f = t([unit(0), unit(90), unit(180)])
    labels = torch.tensor([1, 1, -1])
    l0, l1, l2 = lse(1, 0, -1), lse(0, 1, 0), lse(-1, 0, 1)
    firm = ((l0 - 1) + (l0 - 0)) / 2 + ((l1 - 0) + (l1 - 1)) / 2 + (l2 - 1)
    simclr = (l0 - 1) + (l1 - 1) + (l2 - 1)
    assert firm_loss(f, f, labels, temperature=1.0).item() == pytest.approx(firm / 3, abs=1e-12)
    assert simclr_loss(f, f, temperature=1.0).item() == pytest.approx(simclr / 3, abs=1e-12)


def random_views(b: int, d: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    f1 = torch.randn(b, d, generator=g, dtype=torch.float64)
    return f1, f1 + 0.3 * torch.randn(b, d, generator=g, dtype=torch.float64)


def test_firm_equals_supcon_with_one_outlier_only():
    f1, f2 = random_views(5)
    one = torch.tensor([1, 1, -1, 1, 1])
    assert firm_loss(f1, f2, one).item() == pytest.approx(supcon_loss(f1, f2, one).item(), abs=1e-12)
    two = torch.tensor([1, -1, -1, 1, 1])  # SupCon makes the two outliers mutual positives, FIRM does not
    assert abs(firm_loss(f1, f2, two).item() - supcon_loss(f1, f2, two).item()) > 1e-3


def test_simclr_equals_firm_when_all_outliers():
    f1, f2 = random_views(4, seed=1)
    outliers = torch.tensor([-1, -1, -1, -1])
    assert simclr_loss(f1, f2).item() == pytest.approx(firm_loss(f1, f2, outliers).item(), abs=1e-12)
    # and SupCon with all inliers equals FIRM with all inliers (one class)
    inliers = torch.ones(4, dtype=torch.long)
    assert supcon_loss(f1, f2, inliers).item() == pytest.approx(firm_loss(f1, f2, inliers).item(), abs=1e-12)


def test_firm_separation_beats_collapse():
    labels = torch.tensor([1, 1, -1, -1])
    e = torch.eye(3, dtype=torch.float64)
    separated = torch.stack([e[0], e[0], e[1], e[2]])  # compact inliers, outliers apart from both
    collapsed = torch.stack([e[0]] * 4)
    l_sep = firm_loss(separated, separated, labels).item()
    l_col = firm_loss(collapsed, collapsed, labels).item()
    assert l_col == pytest.approx(math.log(4))  # all logits equal: -log(1/4) in every row
    assert l_sep < l_col


def test_contrastive_input_checks():
    f1, f2 = random_views(3)
    with pytest.raises(BgadError, match="temperature"):
        firm_loss(f1, f2, torch.tensor([1, 1, -1]), temperature=0.0)
    with pytest.raises(ValueError):
        firm_loss(f1, f2[:2], torch.tensor([1, 1, -1]))
    with pytest.raises(ValueError):
        supcon_loss(f1, f2, torch.tensor([1, -1]))
