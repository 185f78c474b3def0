"""The explicit boundaries b_n, b_a on known arrays: quantile index, units, detachment, epoch scope, counts."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bgad_mini.boundary import (EpochBoundary, abnormal_boundary, boundaries, boundary_counts,
                                normal_boundary)
from bgad_mini.errors import BgadError

# ℓ = -50, -49, ..., 49: sorted(ℓ)[k] = k - 50
LL = torch.arange(100, dtype=torch.float64) - 50


# --- normal_boundary / abnormal_boundary / boundaries ----------------------------------------------------
@pytest.mark.parametrize("beta, expected", [(0.05, -4.5), (0.01, -4.9), (0.5, 0.0), (0.99, 4.9)])
def test_normal_boundary_on_known_array(beta, expected):
    # k = int(100·β): 5 → ℓ = -45 → /10 = -4.5;  1 → -49 → -4.9;  50 → 0;  99 → 49 → 4.9
    b_n = normal_boundary(LL, beta)
    assert b_n.dim() == 0
    assert float(b_n) == pytest.approx(expected, abs=1e-12)


def test_normal_boundary_uses_floor_not_round():
    values = torch.arange(10, dtype=torch.float64)  # sorted(values)[k] = k
    assert float(normal_boundary(values, 0.15, normalizer=1.0)) == 1.0  # 10·0.15 = 1.5 → k = 1
    assert float(normal_boundary(values, 0.19, normalizer=1.0)) == 1.0  # 1.9 → 1
    assert float(normal_boundary(values, 0.2, normalizer=1.0)) == 2.0


def test_normal_boundary_normalizer_units():
    assert float(normal_boundary(LL, 0.05, normalizer=1.0)) == -45.0
    assert float(normal_boundary(LL, 0.05, normalizer=5.0)) == -9.0


def test_boundaries_pair_and_margin():
    b_n, b_a = boundaries(LL, beta=0.05, tau=0.1)
    assert float(b_n) == pytest.approx(-4.5)
    assert float(b_a) == pytest.approx(-4.6)
    assert float(abnormal_boundary(b_n, 0.0)) == pytest.approx(-4.5)
    assert abnormal_boundary(-1.0, 0.25) == -1.25


def test_boundary_is_detached():
    ll = LL.clone().requires_grad_(True)
    b_n, b_a = boundaries(ll * 2.0, beta=0.05, tau=0.1)
    assert not b_n.requires_grad and not b_a.requires_grad
    assert float(b_n) == pytest.approx(-9.0)


def test_boundary_permutation_invariant():
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        shuffled = LL[torch.randperm(100, generator=g)]
        assert float(normal_boundary(shuffled, 0.05)) == pytest.approx(-4.5)
    # a 2-D input is flattened
    assert float(normal_boundary(LL.reshape(10, 10).T, 0.05)) == pytest.approx(-4.5)


@pytest.mark.parametrize("beta", [0.0, 1.0, 1.5, -0.1, math.nan])
def test_bad_beta(beta):
    with pytest.raises(BgadError, match="beta must lie in"):
        normal_boundary(LL, beta)
    with pytest.raises(BgadError, match="beta"):
        EpochBoundary(beta, 0.1)
    with pytest.raises(BgadError, match="beta"):
        boundary_counts(np.zeros(3), np.zeros(2), beta, 0.1)


def test_bad_tau_normalizer_and_empty():
    with pytest.raises(BgadError, match="tau must be >= 0"):
        abnormal_boundary(torch.tensor(-1.0), -0.1)
    with pytest.raises(BgadError, match="tau must be >= 0"):
        boundaries(LL, 0.05, -0.1)
    for bad in (0.0, -10.0):
        with pytest.raises(BgadError, match="normalizer"):
            normal_boundary(LL, 0.05, normalizer=bad)
    with pytest.raises(BgadError, match="no normal"):
        normal_boundary(torch.empty(0), 0.05)
    with pytest.raises(BgadError, match="no normal"):
        boundary_counts(np.array([]), np.array([1.0]), 0.05, 0.1)
    with pytest.raises(BgadError, match="capacity"):
        EpochBoundary(0.05, 0.1, capacity=0)


# --- EpochBoundary ---------------------------------------------------------------------------------------
def test_epoch_boundary_uses_whole_previous_epoch():
    eb = EpochBoundary(beta=0.05, tau=0.1)
    assert eb.current() is None
    eb.update(LL[50:])  # ℓ = 0..49 alone would give sorted[2] = 2 → 0.2
    eb.update(LL[:50])  # ℓ = -50..-1 alone would give sorted[2] = -48 → -4.8
    assert eb.current() is None  # nothing fixed until the epoch finishes
    assert eb.n_seen == 100
    b_n, b_a = eb.finish_epoch()
    assert float(b_n) == pytest.approx(-4.5)  # all 100 values: sorted[5] = -45
    assert float(b_a) == pytest.approx(-4.6)
    assert eb.n_seen == 0

    # the next epoch's updates do not move the fixed pair until it finishes
    eb.update(LL + 100.0)
    b_n2, b_a2 = eb.current()
    assert float(b_n2) == pytest.approx(-4.5) and float(b_a2) == pytest.approx(-4.6)
    b_n3, _ = eb.finish_epoch()
    assert float(b_n3) == pytest.approx(5.5)  # (-45 + 100) / 10

    # an epoch without any normal value keeps the previous pair
    assert float(eb.finish_epoch()[0]) == pytest.approx(5.5)


def test_epoch_boundary_detaches_and_ignores_empty_updates():
    eb = EpochBoundary(beta=0.05, tau=0.1)
    eb.update(torch.empty(0))
    eb.update(LL.clone().requires_grad_(True))
    b_n, _ = eb.finish_epoch()
    assert not b_n.requires_grad and float(b_n) == pytest.approx(-4.5)


def test_epoch_boundary_reservoir_is_bounded_and_unbiased():
    # ℓ = 0..9999 fed in ascending chunks: keeping only the first or the last chunks would be far off
    eb = EpochBoundary(beta=0.5, tau=0.0, normalizer=1.0, capacity=1000, seed=0)
    values = torch.arange(10_000, dtype=torch.float64)
    for chunk in values.split(500):
        eb.update(chunk)
        assert eb.n_kept <= 1000
    assert eb.n_seen == 10_000 and eb.n_kept == 1000
    b_n, _ = eb.finish_epoch()
    # sample median of 1000 uniform draws: standard deviation ≈ 10000·0.5/√1000 ≈ 160
    assert abs(float(b_n) - 5000) < 800


# --- boundary_counts ------------------------------------------------------------------------------------
def test_boundary_counts_known_values():
    normal = np.array([60, -30, 0, -24, 10, 20, 30, -10, 40, 50], dtype=float)
    abnormal = np.array([-40, -25, -24, -12, -10, 5], dtype=float)
    # sorted normal: -30, -24, -10, 0, ...; β = 0.2 → k = 2 → ℓ = -10 → b_n = -1.0
    # τ = 1.5 → b_a = -2.5 (ℓ = -25)
    c = boundary_counts(normal, abnormal, beta=0.2, tau=1.5, normalizer=10.0)
    assert c["b_n"] == -1.0 and c["b_a"] == -2.5
    assert c["b_n_loglik"] == -10.0 and c["b_a_loglik"] == -25.0
    assert c["n_normal"] == 10 and c["n_abnormal"] == 6
    assert c["normal_below_bn"] == 3  # -30, -24, -10 (x ≤ b_n, the quantile element included)
    assert c["frac_normal_below_bn"] == pytest.approx(0.3)
    assert c["abnormal_above_ba"] == 5  # -25, -24, -12, -10, 5 (x ≥ b_a)
    assert c["frac_abnormal_above_ba"] == pytest.approx(5 / 6)
    assert c["normal_in_margin"] == 1  # -24 in (-25, -10)
    assert c["abnormal_in_margin"] == 2  # -24, -12


def test_boundary_counts_no_abnormal_values():
    c = boundary_counts(np.arange(100) - 50, np.array([]), beta=0.05, tau=0.1)
    assert c["b_n"] == pytest.approx(-4.5) and c["b_a"] == pytest.approx(-4.6)
    assert c["normal_below_bn"] == 6  # -50..-45
    assert c["abnormal_above_ba"] == 0 and c["frac_abnormal_above_ba"] == 0.0 and c["abnormal_in_margin"] == 0


def test_boundary_counts_agree_with_torch_boundary():
    rng = np.random.default_rng(0)
    normal = rng.normal(-5, 3, 1000)
    c = boundary_counts(normal, rng.normal(-20, 5, 50), beta=0.01, tau=0.1)
    assert c["b_n"] == pytest.approx(float(normal_boundary(torch.from_numpy(normal), 0.01)))
    assert c["normal_below_bn"] == int(1000 * 0.01) + 1  # the k lower values and the quantile element
