"""Conditional normalizing flows on feature vectors: 2-D positional encoding, one FrEIA flow per level,
and the per-dimension log-likelihood ℓ = log p(x) / C.

Introduced in the *Flows* and *Conditional flows* chapters. Follows CFlow-AD / BGAD (official
`models/modules.py`, `fc_flow.py`, `utils.py:64-66`): each level's flow maps one C-dimensional feature
vector x (a "fiber" at one location of that level's map) to z, conditioned on the positional encoding c of
the location, and

    log p(x) = -C/2 · ln 2π - ½‖z‖² + log|det ∂z/∂x|,        ℓ = log p(x) / C.
"""
from __future__ import annotations

import math
from typing import Sequence, Union

import numpy as np
import torch
from torch import Tensor, nn

from .errors import BgadError

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


# ----------------------------------------------------------------------------------------------
# positional encoding (the condition c)
# ----------------------------------------------------------------------------------------------
def positional_encoding_2d(dim: int, h: int, w: int) -> Tensor:
    """The condition c: a (dim, h, w) sinusoidal encoding of each location of an h×w feature map.

    As the official code (CFlow `positionalencoding2d`, copied by BGAD): half of the channels encode the column
    x, half the row y, with `div = exp(arange(0, dim/2, 2) · (-ln 10⁴ / (dim/2)))`;
    channels `[0:dim/2:2] = sin(x·div)`, `[1:dim/2:2] = cos(x·div)`, `[dim/2::2] = sin(y·div)`,
    `[dim/2+1::2] = cos(y·div)`. x and y are integer pixel indices of that level's grid (not normalised),
    so every level has its own grid.
    """
    if dim <= 0 or dim % 4 != 0:
        raise BgadError(f"positional encoding size must be a positive multiple of 4, got {dim}; e.g. --set pos_dim=128")
    half = dim // 2
    div = torch.exp(torch.arange(0.0, half, 2) * (-math.log(1e4) / half))  # (half/2,)
    xs = torch.arange(0.0, w)[:, None] * div  # (w, half/2)
    ys = torch.arange(0.0, h)[:, None] * div  # (h, half/2)
    p = torch.zeros(dim, h, w)
    p[0:half:2] = torch.sin(xs).T[:, None, :].expand(-1, h, w)
    p[1:half:2] = torch.cos(xs).T[:, None, :].expand(-1, h, w)
    p[half::2] = torch.sin(ys).T[:, :, None].expand(-1, h, w)
    p[half + 1::2] = torch.cos(ys).T[:, :, None].expand(-1, h, w)
    return p


# ----------------------------------------------------------------------------------------------
# one flow
# ----------------------------------------------------------------------------------------------
def subnet_fc(d_in: int, d_out: int) -> nn.Module:
    """The coupling subnet of CFlow / BGAD: Linear(d_in, 2·d_in) → ReLU → Linear(2·d_in, d_out)."""
    return nn.Sequential(nn.Linear(d_in, 2 * d_in), nn.ReLU(), nn.Linear(2 * d_in, d_out))


def build_flow(channels: int, cond_dim: int = 128, n_blocks: int = 8, clamp: float = 1.9):
    """A conditional flow on C = `channels` dimensions: `n_blocks` FrEIA `AllInOneBlock`s, as the official code.

    Each block (FrEIA 0.2, same formulas as BGAD's pinned commit 4e0c6ab): split x = [x1, x2]
    (ceil(C/2), floor(C/2)); a = 0.1 · subnet([x1 ‖ c]); s = α·tanh(a_s) with α = `clamp`;
    x2' = x2·exp(s) + a_t; then the global affine y = ([x1, x2'] · g + b) Wᵀ with
    g = 0.1·softplus_{β=0.5}(γ) (starts at 1), b = 0 at start, and W a fixed random rotation (`permute_soft`).

    Determinism: FrEIA draws each W from `scipy.stats.special_ortho_group.rvs`, which uses NumPy's *global*
    RNG (`np.random`), while the subnets are initialised by torch's RNG. To make the whole flow depend on the
    torch seed only, one integer is drawn from torch's RNG, NumPy's global RNG is seeded with it while the
    blocks are built, and NumPy's previous state is restored afterwards (NumPy's stream is left untouched).
    W is stored as a frozen `nn.Parameter` (`w_perm`, `requires_grad=False`), so checkpoints restore it;
    FrEIA keeps W and Wᵀ as separate float32 copies, so even after `.double()` the inverse is exact to ~1e-7
    and log|det W| = 0 holds to ~1e-7.
    """
    import FrEIA.framework as Ff
    import FrEIA.modules as Fm

    if channels < 2:
        raise BgadError(f"a coupling flow needs at least 2 feature channels, got {channels}")
    if n_blocks < 1:
        raise BgadError(f"coupling_blocks must be >= 1, got {n_blocks}")
    np_seed = int(torch.randint(0, 2**31 - 1, (1,)).item())
    saved = np.random.get_state()
    np.random.seed(np_seed)
    try:
        flow = Ff.SequenceINN(channels)
        for _ in range(n_blocks):
            flow.append(Fm.AllInOneBlock, cond=0, cond_shape=(cond_dim,), subnet_constructor=subnet_fc,
                        affine_clamping=clamp, global_affine_type="SOFTPLUS", permute_soft=True)
    finally:
        np.random.set_state(saved)
    return flow


def gaussian_log_likelihood(z: Tensor, logdet: Tensor) -> Tensor:
    """log p(x) = -C/2·ln 2π - ½‖z‖² + log|det J| for z (B, C) and log|det J| (B,): total, not per dimension."""
    c = z.shape[1]
    return -c * _HALF_LOG_2PI - 0.5 * z.pow(2).sum(dim=1) + logdet


def log_likelihood(flow: nn.Module, x: Tensor, cond: Tensor) -> Tensor:
    """ℓ = log p(x | c) / C for x (B, C) and condition c (B, cond_dim) under one flow: shape (B,)."""
    z, logdet = flow(x, c=[cond])
    return gaussian_log_likelihood(z, logdet) / x.shape[1]


# ----------------------------------------------------------------------------------------------
# one flow per feature level
# ----------------------------------------------------------------------------------------------
class ConditionalFlows(nn.Module):
    """One independent conditional flow per feature level (the official model has 3)."""

    def __init__(self, channels: Sequence[int], cond_dim: int = 128, n_blocks: int = 8, clamp: float = 1.9):
        super().__init__()
        if cond_dim % 4 != 0:
            raise BgadError(f"positional encoding size must be a positive multiple of 4, got {cond_dim}")
        self.channels = [int(c) for c in channels]
        self.cond_dim = int(cond_dim)
        self.flows = nn.ModuleList([build_flow(c, cond_dim, n_blocks, clamp) for c in self.channels])

    def __len__(self) -> int:
        return len(self.flows)

    def log_likelihood(self, level: int, x: Tensor, cond: Tensor) -> Tensor:
        """ℓ = log p(x | c) / C at feature level `level`, x (B, C), c (B, cond_dim): shape (B,)."""
        return log_likelihood(self.flows[level], x, cond)

    def forward(self, level: int, x: Tensor, cond: Tensor) -> Tensor:
        """Same as `log_likelihood`."""
        return self.log_likelihood(level, x, cond)


FlowsLike = Union[ConditionalFlows, Sequence[nn.Module]]


def _flow_list(flows: FlowsLike) -> list[nn.Module]:
    return list(flows.flows) if isinstance(flows, ConditionalFlows) else list(flows)


@torch.no_grad()
def level_log_likelihoods(flows: FlowsLike, feats: Sequence[Union[Tensor, np.ndarray]], pos_dim: int,
                          batch_size: int = 8192) -> list[Tensor]:
    """ℓ at every location of every image: one (N, h, w) float32 CPU tensor per level (no gradient).

    `feats[l]` is (N, C_l, h_l, w_l); each location is conditioned on the positional encoding of its own
    level's grid. Vectors are evaluated in chunks of `batch_size` on the flows' device. Used for evaluation.
    """
    flow_list = _flow_list(flows)
    if len(flow_list) != len(feats):
        raise BgadError(f"{len(feats)} feature levels given for {len(flow_list)} flows")
    out: list[Tensor] = []
    for flow, f in zip(flow_list, feats):
        n, c, h, w = f.shape
        param = next(flow.parameters())
        device, dtype = param.device, param.dtype
        # (N·h·w, C), location-major within each image; NumPy input (possibly a read-only memmap) is copied once
        if torch.is_tensor(f):
            vectors = f.permute(0, 2, 3, 1).reshape(-1, c)
        else:
            vectors = torch.from_numpy(np.ascontiguousarray(np.moveaxis(np.asarray(f), 1, -1)).reshape(-1, c))
        pos = positional_encoding_2d(pos_dim, h, w).reshape(pos_dim, h * w).T.contiguous().to(device, dtype)
        ll = torch.empty(n * h * w, dtype=torch.float32)
        for start in range(0, n * h * w, batch_size):
            stop = min(start + batch_size, n * h * w)
            x = vectors[start:stop].to(device, dtype)
            cond = pos[torch.arange(start, stop, device=device) % (h * w)]
            ll[start:stop] = log_likelihood(flow, x, cond).float().cpu()
        out.append(ll.reshape(n, h, w))
    return out
