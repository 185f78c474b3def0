"""Training objectives on per-dimension log-likelihoods ℓ = log p / C.

Introduced in the *Conditional flows* chapter (`ml_loss`); the boundary-guided and contrastive losses
follow in the *BG-SPP* and *Contrastive* chapters.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def ml_loss(loglik: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """L_ml as the official code computes it: mean of −log σ(ℓ) = softplus(−ℓ).

    For ℓ ≪ 0 this is ≈ −ℓ, the plain negative log-likelihood per dimension; for ℓ > 0 it saturates, so
    patches that are already very likely stop pulling on the flow (CFlow-AD's choice, kept by BGAD).
    `weights` (e.g. focal weights) multiply each patch's term before the mean.
    """
    per_patch = F.softplus(-loglik)
    if weights is not None:
        per_patch = per_patch * weights
    return per_patch.mean() if per_patch.numel() else loglik.sum() * 0.0
