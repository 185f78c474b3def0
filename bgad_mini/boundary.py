"""Explicit separating boundaries b_n and b_a from the normal log-likelihood distribution.

Introduced in the *Boundary* chapter. Everything here works on ℓ = log p / C, the per-dimension
log-likelihood the flow produces, and returns boundaries in **ℓ / normaliser units**, exactly like the
official code (`losses.py::get_logp_boundary`): b_n is the β-quantile, from the low (least likely) end, of
the detached normal ℓ divided by the normaliser (10 by default), and b_a = b_n − τ. With the normaliser 10,
τ = 0.1 is a margin of 1 nat per dimension in ℓ units. Multiply by the normaliser to get back to ℓ.

Two scopes:
- "batch" (the official code): `boundaries` is called on every flow mini-batch (chunk) of one level, using
  only that chunk's normal patches, so b_n moves at every optimiser step.
- "epoch" (one possible reading of the paper, not a fact about it): `EpochBoundary` collects the normal ℓ of
  a whole epoch and fixes (b_n, b_a) for the next epoch. The paper takes b_n from "the normal log-likelihood
  distribution" P_n = {log p_i}_{i=1}^N, but the same N bounds the sum of L_bg-spp over a mini-batch, so P_n
  may as well be the mini-batch's normal values, i.e. the "batch" scope.
"""
from __future__ import annotations

import numpy as np
import torch

from .errors import BgadError


def _check_beta(beta: float) -> None:
    if not (0.0 < float(beta) < 1.0):  # also rejects NaN
        raise BgadError(f"beta must lie in (0, 1), got {beta}; e.g. beta=0.01")


def _check_tau(tau: float) -> None:
    if not float(tau) >= 0.0:
        raise BgadError(f"tau must be >= 0 (the margin b_n - b_a in l/normalizer units), got {tau}; e.g. tau=0.1")


def _check_normalizer(normalizer: float) -> None:
    if not float(normalizer) > 0.0:
        raise BgadError(f"normalizer must be > 0, got {normalizer}; e.g. normalizer=10")


def _quantile_index(n: int, beta: float) -> int:
    """k = int(n·β), the floor, as the official code; 0 <= k < n because 0 < β < 1."""
    return int(n * beta)


def normal_boundary(normal_loglik: torch.Tensor, beta: float, normalizer: float = 10.0) -> torch.Tensor:
    """b_n = sorted(ℓ_normal)[⌊n·β⌋] / normaliser: the β-quantile of the detached normal ℓ (a 0-d tensor).

    b_n lives in ℓ/normaliser units (multiply by `normalizer` for ℓ units). No gradient flows through it.
    Introduced in the *Boundary* chapter.
    """
    _check_beta(beta)
    _check_normalizer(normalizer)
    values = normal_loglik.detach().reshape(-1)
    n = values.numel()
    if n == 0:
        raise BgadError("no normal log-likelihoods to take the boundary b_n from; "
                        "the batch must contain at least one normal patch")
    k = _quantile_index(n, beta)
    kth = torch.kthvalue(values, k + 1).values  # (k+1)-th smallest = sorted(values)[k]
    return kth / normalizer


def abnormal_boundary(b_n: torch.Tensor | float, tau: float) -> torch.Tensor | float:
    """b_a = b_n − τ, in the same ℓ/normaliser units (τ = 0.1 with normaliser 10 is 1 nat per dimension)."""
    _check_tau(tau)
    return b_n - tau


def boundaries(normal_loglik: torch.Tensor, beta: float, tau: float,
               normalizer: float = 10.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(b_n, b_a) from one set of normal ℓ: the "batch" scope of the official code, in ℓ/normaliser units."""
    _check_tau(tau)
    b_n = normal_boundary(normal_loglik, beta, normalizer)
    return b_n, abnormal_boundary(b_n, tau)


class EpochBoundary:
    """(b_n, b_a) fixed from the whole previous epoch's normal ℓ: the "epoch" scope, one per level.

    One possible reading of the paper's P_n (see the module docstring); the official code uses the "batch" scope.

    Call `update(normal_loglik)` on every chunk's normal ℓ during an epoch and `finish_epoch()` at its end;
    `current()` then returns the pair to use during the next epoch (None before the first epoch finished, so
    feed it during the ML-only phase-1 epoch to have a boundary when phase 2 starts). Memory is bounded: a
    uniform random reservoir of at most `capacity` values is kept (Vitter's algorithm R, vectorised), so the
    quantile is exact while an epoch has at most `capacity` normal values and a random-sample estimate beyond.
    The "batch" scope (the official code) is `boundaries` called on each chunk instead.
    """

    def __init__(self, beta: float, tau: float, normalizer: float = 10.0, capacity: int = 200_000,
                 seed: int = 0) -> None:
        _check_beta(beta)
        _check_tau(tau)
        _check_normalizer(normalizer)
        if int(capacity) < 1:
            raise BgadError(f"capacity must be >= 1, got {capacity}; e.g. capacity=200000")
        self.beta, self.tau, self.normalizer, self.capacity = float(beta), float(tau), float(normalizer), int(capacity)
        self._generator = torch.Generator().manual_seed(seed)
        self._buffer = torch.empty(0)
        self._seen = 0
        self._fixed: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def n_seen(self) -> int:
        """Number of normal values fed since the last `finish_epoch`."""
        return self._seen

    @property
    def n_kept(self) -> int:
        """Number of values currently held in the reservoir (at most `capacity`)."""
        return self._buffer.numel()

    def update(self, normal_loglik: torch.Tensor) -> None:
        """Add a chunk's detached normal ℓ to this epoch's reservoir."""
        values = normal_loglik.detach().reshape(-1).cpu()
        if values.numel() == 0:
            return
        if self._buffer.numel() == 0:
            self._buffer = self._buffer.to(values.dtype)
        room = self.capacity - self._buffer.numel()
        if room > 0:
            head = values[:room]
            self._buffer = torch.cat([self._buffer, head.to(self._buffer.dtype)])
            self._seen += head.numel()
            values = values[room:]
        m = values.numel()
        if m:
            # algorithm R: the item with global index t replaces slot j ~ U{0..t} if j < capacity
            t = self._seen + torch.arange(m, dtype=torch.float64)
            j = torch.floor(torch.rand(m, generator=self._generator, dtype=torch.float64) * (t + 1)).long()
            keep = j < self.capacity
            self._buffer[j[keep]] = values[keep].to(self._buffer.dtype)
            self._seen += m

    def finish_epoch(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Fix (b_n, b_a) from this epoch's values for the next epoch and start a new epoch.

        An epoch that received no normal values keeps the previous pair.
        """
        if self._buffer.numel():
            self._fixed = boundaries(self._buffer, self.beta, self.tau, self.normalizer)
        self._buffer = torch.empty(0, dtype=self._buffer.dtype)
        self._seen = 0
        return self._fixed

    def current(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The fixed (b_n, b_a) in ℓ/normaliser units, or None before the first `finish_epoch`."""
        return self._fixed


def boundary_counts(normal_ll: np.ndarray, abnormal_ll: np.ndarray, beta: float, tau: float,
                    normalizer: float = 10.0) -> dict:
    """What the β/τ sliders show: b_n, b_a and how many normal/abnormal ℓ violate them or sit in the margin.

    Inputs are ℓ values (per-dimension log-likelihoods); x = ℓ/normaliser is compared with the boundaries
    exactly as in `losses.bg_spp_loss`: a normal value "below b_n" means x ≤ b_n (the set V_n the loss pulls
    up, which includes the quantile element itself), an abnormal value "above b_a" means x ≥ b_a (the set V_a
    the loss pushes down); the margin is the open interval (b_a, b_n). Fractions of an empty set are 0.0.
    Keys: b_n, b_a (ℓ/normaliser units), b_n_loglik, b_a_loglik (ℓ units), n_normal, n_abnormal,
    normal_below_bn, frac_normal_below_bn, abnormal_above_ba, frac_abnormal_above_ba, normal_in_margin,
    abnormal_in_margin. Introduced in the *Boundary* chapter.
    """
    _check_beta(beta)
    _check_tau(tau)
    _check_normalizer(normalizer)
    normal = np.asarray(normal_ll, dtype=np.float64).reshape(-1)
    abnormal = np.asarray(abnormal_ll, dtype=np.float64).reshape(-1)
    if normal.size == 0:
        raise BgadError("no normal log-likelihoods to take the boundary b_n from; pass at least one normal value")
    k = _quantile_index(normal.size, beta)
    kth = float(np.partition(normal, k)[k])
    b_n = kth / normalizer
    b_a = b_n - float(tau)
    xn, xa = normal / normalizer, abnormal / normalizer
    normal_below = int(np.count_nonzero(xn <= b_n))
    abnormal_above = int(np.count_nonzero(xa >= b_a))
    return {
        "b_n": b_n,
        "b_a": b_a,
        "b_n_loglik": kth,
        "b_a_loglik": kth - float(tau) * normalizer,
        "n_normal": int(normal.size),
        "n_abnormal": int(abnormal.size),
        "normal_below_bn": normal_below,
        "frac_normal_below_bn": normal_below / normal.size,
        "abnormal_above_ba": abnormal_above,
        "frac_abnormal_above_ba": abnormal_above / abnormal.size if abnormal.size else 0.0,
        "normal_in_margin": int(np.count_nonzero((xn > b_a) & (xn < b_n))),
        "abnormal_in_margin": int(np.count_nonzero((xa > b_a) & (xa < b_n))),
    }
