"""The flow module's mathematics: positional encoding, invertibility, log-det against autograd, ℓ at identity."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bgad_mini.errors import BgadError
from bgad_mini.flow import (ConditionalFlows, build_flow, gaussian_log_likelihood, level_log_likelihoods,
                            log_likelihood, positional_encoding_2d)


def _perturbed_flow(channels: int, cond_dim: int = 8, n_blocks: int = 3, seed: int = 0):
    """A small float64 flow whose every trainable parameter is randomised, so that it is far from identity."""
    torch.manual_seed(seed)
    flow = build_flow(channels, cond_dim=cond_dim, n_blocks=n_blocks).double()
    with torch.no_grad():
        for p in flow.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.5)
    return flow


def _identity_flow(channels: int, cond_dim: int = 8, n_blocks: int = 4):
    """A flow that is a pure rotation: the last Linear of each subnet is zero, so every coupling is identity."""
    torch.manual_seed(0)
    flow = build_flow(channels, cond_dim=cond_dim, n_blocks=n_blocks)
    with torch.no_grad():
        for block in flow:
            block.subnet[-1].weight.zero_()
            block.subnet[-1].bias.zero_()
    return flow


# --- positional encoding ------------------------------------------------------------------------
def test_positional_encoding_values_by_hand():
    # dim 8: half = 4, div = exp([0, 2] · (-ln 1e4 / 4)) = [1, 0.01]
    p = positional_encoding_2d(8, 3, 5)
    assert p.shape == (8, 3, 5)
    y, x = 2, 3
    expected = [math.sin(3), math.cos(3), math.sin(0.03), math.cos(0.03),
                math.sin(2), math.cos(2), math.sin(0.02), math.cos(0.02)]
    assert torch.allclose(p[:, y, x], torch.tensor(expected), atol=1e-6)
    expected0 = [0, 1, 0, 1, 0, 1, 0, 1]
    assert torch.allclose(p[:, 0, 0], torch.tensor(expected0, dtype=torch.float32))
    # x channels constant down a column, y channels constant along a row
    assert torch.equal(p[:4, 0, :], p[:4, 2, :]) and torch.equal(p[4:, :, 0], p[4:, :, 4])


def test_positional_encoding_128_matches_official_formula():
    dim, h, w = 128, 4, 6
    p = positional_encoding_2d(dim, h, w)
    d = dim // 2
    div = torch.exp(torch.arange(0.0, d, 2) * -(math.log(1e4) / d))
    assert div.shape == (32,)
    assert torch.allclose(p[0:d:2, 1, 5], torch.sin(5 * div)) and torch.allclose(p[d + 1::2, 3, 0], torch.cos(3 * div))


@pytest.mark.parametrize("dim", [6, 10, 0])
def test_positional_encoding_rejects_dims_not_multiple_of_4(dim):
    with pytest.raises(BgadError, match="multiple of 4"):
        positional_encoding_2d(dim, 4, 4)


# --- one flow -----------------------------------------------------------------------------------
def test_flow_shapes_and_official_block_settings():
    torch.manual_seed(0)
    flow = build_flow(6, cond_dim=8, n_blocks=2, clamp=1.9)
    z, logdet = flow(torch.randn(5, 6), c=[torch.randn(5, 8)])
    assert z.shape == (5, 6) and logdet.shape == (5,)
    block = flow[0]
    assert block.clamp == 1.9 and block.splits == [3, 3]
    assert [m.__class__.__name__ for m in block.subnet] == ["Linear", "ReLU", "Linear"]
    assert block.subnet[0].in_features == 3 + 8 and block.subnet[0].out_features == 2 * (3 + 8)
    assert block.subnet[-1].out_features == 2 * 3
    w = block.w_perm.detach().reshape(6, 6).double()
    assert torch.allclose(w @ w.T, torch.eye(6, dtype=torch.float64), atol=1e-6)  # a rotation
    assert torch.linalg.det(w).item() == pytest.approx(1.0, abs=1e-5)


def test_build_flow_depends_on_torch_seed_only_and_leaves_numpy_alone():
    np.random.seed(123)
    expected_next = np.random.rand()
    np.random.seed(123)
    torch.manual_seed(7)
    a = build_flow(5, cond_dim=4, n_blocks=2).state_dict()
    assert np.random.rand() == expected_next  # NumPy's global stream is untouched
    np.random.seed(999)  # a different NumPy state must not matter
    torch.manual_seed(7)
    b = build_flow(5, cond_dim=4, n_blocks=2).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    torch.manual_seed(8)
    c = build_flow(5, cond_dim=4, n_blocks=2).state_dict()
    assert not torch.equal(a["module_list.0.w_perm"], c["module_list.0.w_perm"])


@pytest.mark.parametrize("channels", [4, 5])
def test_flow_is_invertible(channels):
    flow = _perturbed_flow(channels)
    torch.manual_seed(1)
    x = torch.randn(16, channels, dtype=torch.float64) * 2
    cond = torch.randn(16, 8, dtype=torch.float64)
    z, logdet = flow(x, c=[cond])
    assert (z - x).abs().max() > 0.1  # not the identity
    x_back, logdet_rev = flow(z, c=[cond], rev=True)
    # FrEIA keeps W and its inverse Wᵀ as float32 copies, so even in float64 Wᵀ inverts W only to ~1e-7
    assert (x_back - x).abs().max() < 1e-5
    assert torch.allclose(logdet_rev, -logdet, atol=1e-10)


def test_flow_is_invertible_in_float32():
    torch.manual_seed(0)
    flow = build_flow(6, cond_dim=8, n_blocks=4)
    with torch.no_grad():
        for p in flow.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.3)
    x, cond = torch.randn(32, 6), torch.randn(32, 8)
    z, _ = flow(x, c=[cond])
    x_back, _ = flow(z, c=[cond], rev=True)
    assert (x_back - x).abs().max() < 1e-4


@pytest.mark.parametrize("channels", [4, 5])
def test_logdet_equals_autograd_jacobian(channels):
    flow = _perturbed_flow(channels, seed=3)
    torch.manual_seed(2)
    x = torch.randn(1, channels, dtype=torch.float64)
    cond = torch.randn(1, 8, dtype=torch.float64)
    _, logdet = flow(x, c=[cond])
    jac = torch.autograd.functional.jacobian(lambda v: flow(v, c=[cond])[0], x).reshape(channels, channels)
    sign, logabsdet = torch.linalg.slogdet(jac)
    assert abs(logdet.item()) > 0.05  # a non-trivial volume change
    # W is stored in float32, so det W = 1 only to ~1e-7 per block
    assert logdet.item() == pytest.approx(logabsdet.item(), abs=1e-5)


def test_identity_flow_gives_the_standard_gaussian_per_dimension():
    c = 6
    flow = _identity_flow(c)
    x = torch.tensor([[0.0, 0, 0, 0, 0, 0], [1.0, -2.0, 0.5, 0.0, 3.0, -1.0]])
    cond = torch.randn(2, 8)
    z, logdet = flow(x, c=[cond])
    # the global scale starts at g = 0.1·softplus_{β=0.5}(2 ln(e⁵ − 1)) = 1, so log|det| = 0
    assert torch.allclose(logdet, torch.zeros(2), atol=1e-5)
    # the soft permutations are rotations, so ‖z‖ = ‖x‖ even though z ≠ x
    assert torch.allclose(z.norm(dim=1), x.norm(dim=1), atol=1e-5) and not torch.allclose(z, x)
    expected = -0.5 * math.log(2 * math.pi) - x.pow(2).sum(1) / (2 * c)
    assert torch.allclose(log_likelihood(flow, x, cond), expected, atol=1e-5)
    assert log_likelihood(flow, x[:1], cond[:1]).item() == pytest.approx(-0.9189385, abs=1e-6)


def test_gaussian_log_likelihood_by_hand():
    z = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    logdet = torch.tensor([0.5, -1.0])
    expected = torch.tensor([-math.log(2 * math.pi) - 2.5 + 0.5, -math.log(2 * math.pi) - 1.0])
    assert torch.allclose(gaussian_log_likelihood(z, logdet), expected)


# --- one flow per level -------------------------------------------------------------------------
def test_conditional_flows_one_flow_per_level():
    torch.manual_seed(0)
    flows = ConditionalFlows([4, 6], cond_dim=8, n_blocks=2)
    assert len(flows) == 2 and flows.channels == [4, 6]
    x, cond = torch.randn(3, 6), torch.randn(3, 8)
    ll = flows.log_likelihood(1, x, cond)
    assert ll.shape == (3,)
    assert torch.equal(ll, log_likelihood(flows.flows[1], x, cond)) and torch.equal(flows(1, x, cond), ll)
    with pytest.raises(BgadError):
        ConditionalFlows([4], cond_dim=6)


def test_level_log_likelihoods_matches_per_location_evaluation():
    torch.manual_seed(0)
    flows = ConditionalFlows([4, 6], cond_dim=8, n_blocks=2)
    feats = [torch.randn(3, 4, 5, 7), torch.randn(3, 6, 2, 3)]
    lls = level_log_likelihoods(flows, feats, pos_dim=8, batch_size=11)  # chunks cross image boundaries
    assert [t.shape for t in lls] == [(3, 5, 7), (3, 2, 3)]
    assert all(t.dtype == torch.float32 for t in lls)
    for level, n, y, x in [(0, 2, 4, 6), (0, 0, 0, 0), (1, 1, 1, 2)]:
        pos = positional_encoding_2d(8, *feats[level].shape[2:])[:, y, x]
        direct = flows.log_likelihood(level, feats[level][n, :, y, x][None], pos[None])
        assert lls[level][n, y, x].item() == pytest.approx(direct.item(), abs=1e-5)
    big = level_log_likelihoods(list(flows.flows), feats, pos_dim=8, batch_size=8192)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(lls, big))
    read_only = [f.numpy().copy() for f in feats]  # cached features may come as read-only NumPy arrays
    for a in read_only:
        a.setflags(write=False)
    from_numpy = level_log_likelihoods(flows, read_only, pos_dim=8)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(lls, from_numpy))
    with pytest.raises(BgadError):
        level_log_likelihoods(flows, feats[:1], pos_dim=8)
