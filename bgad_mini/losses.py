"""Training objectives on per-dimension log-likelihoods ℓ = log p / C.

Introduced in the *Conditional flows* chapter (`ml_loss`); the boundary-guided and contrastive losses
follow in the *BG-SPP* and *Contrastive* chapters.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .errors import BgadError


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


# --- asymmetric focal weights (official code, `losses.py:7-44`) -------------------------------------------
def normal_focal_weights(loglik: torch.Tensor, normalizer: float = 10.0) -> torch.Tensor:
    """Normal focal weight w_n (γ=0.5, α=11.7) on the detached x = ℓ/normaliser, as the official code.

    w = 1 if x > −0.2, else 11.7·(1 − eˣ)^0.5·|x|: continuous at −0.2 (0.996); w(−0.5)=3.67, w(−1)=9.30,
    w(−2)=21.8. Hard (low-likelihood) normal patches are up-weighted. Introduced in the *BG-SPP* chapter.
    """
    x = loglik.detach() / normalizer
    focal = 11.7 * (1.0 - torch.exp(x)).clamp_min(0.0).pow(0.5) * x.abs()
    return torch.where(x > -0.2, torch.ones_like(x), focal)


def abnormal_focal_weights(loglik: torch.Tensor, normalizer: float = 10.0, min_abs_x: float = 1e-3) -> torch.Tensor:
    """Abnormal focal weight w_a (γ=2, α=0.53) on the detached x = ℓ/normaliser, as the official code.

    w = 1 if x ≤ −1, else 0.53·(1 + eˣ)²/|x|: continuous at −1 (0.99); w(−0.5)=2.74, w(−0.1)=19.2. Hard
    (high-likelihood, normal-looking) anomalies are up-weighted. The official weight diverges as x → 0 (it is
    inf at x = 0 exactly); here |x| is clamped to at least `min_abs_x` = 1e-3, which caps w_a at
    0.53·(1+eˣ)²/1e-3 ≈ 2 120 near x = 0 and changes nothing for |x| ≥ 1e-3 (|ℓ| ≥ 0.01 nat per dimension).
    """
    x = loglik.detach() / normalizer
    focal = 0.53 * (1.0 + torch.exp(x)).pow(2) / x.abs().clamp_min(min_abs_x)
    return torch.where(x <= -1.0, torch.ones_like(x), focal)


# --- L_bg-spp ----------------------------------------------------------------------------------------------
def _as_mask(abnormal: torch.Tensor, loglik: torch.Tensor) -> torch.Tensor:
    """A flat bool mask matching the flat ℓ; non-bool masks are binarised at 0.5 (see official §1.10.9)."""
    mask = abnormal.reshape(-1)
    if mask.dtype != torch.bool:
        mask = mask > 0.5
    if mask.numel() != loglik.numel():
        raise ValueError(f"abnormal mask has {mask.numel()} entries but loglik has {loglik.numel()}")
    return mask.to(loglik.device)


def _mean_or_zero(terms: torch.Tensor) -> torch.Tensor:
    """Mean of `terms`, or an exact 0 (still in the graph, zero gradient) when `terms` is empty: never NaN."""
    return terms.sum() / max(terms.numel(), 1)


def bg_spp_loss(loglik: torch.Tensor, abnormal: torch.Tensor, b_n: torch.Tensor | float, b_a: torch.Tensor | float,
                normalizer: float = 10.0, focal: bool = False) -> tuple[torch.Tensor, dict]:
    """L_bg-spp = L_n + L_a, the boundary guided semi-push-pull loss with the official code's semantics.

    With x = ℓ/normaliser and (b_n, b_a) in the same units (see `boundary.py`):
    semi-pull  V_n = {normal i : x_i ≤ b_n},   L_n = mean_{V_n} w_i·(b_n − x_i);
    semi-push  V_a = {abnormal j : x_j ≥ b_a}, L_a = mean_{V_a} w_j·(x_j − b_a).
    The means run over the violating patches only (not all normals/anomalies), as in the code; an empty set
    contributes exactly 0 (the official code yields NaN there). Normals above b_n and anomalies below b_a
    contribute nothing (semi-pull, semi-push); any patch inside the margin (b_a, b_n) is penalised (a normal
    is pulled up, an anomaly pushed down), which empties the margin. w = 1, or the focal weights w_n / w_a
    when `focal`. λ is applied by the caller (L = L_ml + λ·L_bg-spp). The boundaries are detached. Returns
    (loss, stats) with python numbers l_n, l_a, n_violating_normal, n_violating_abnormal. Introduced in the
    *BG-SPP* chapter (seed 001's L_bg-spp sums over patches; the official code averages over violators).
    """
    ll = loglik.reshape(-1)
    mask = _as_mask(abnormal, ll)
    x = ll / normalizer
    b_n = torch.as_tensor(b_n, dtype=x.dtype, device=x.device).detach()
    b_a = torch.as_tensor(b_a, dtype=x.dtype, device=x.device).detach()

    x_n, x_a = x[~mask], x[mask]
    v_n, v_a = x_n <= b_n, x_a >= b_a
    pull = b_n - x_n[v_n]
    push = x_a[v_a] - b_a
    if focal:
        pull = pull * normal_focal_weights(ll[~mask][v_n], normalizer)
        push = push * abnormal_focal_weights(ll[mask][v_a], normalizer)
    l_n = _mean_or_zero(pull)
    l_a = _mean_or_zero(push)
    stats = {"l_n": float(l_n.detach()), "l_a": float(l_a.detach()),
             "n_violating_normal": int(v_n.sum()), "n_violating_abnormal": int(v_a.sum())}
    return l_n + l_a, stats


def pushpull_loss(loglik: torch.Tensor, abnormal: torch.Tensor,
                  normalizer: float = 10.0, push_weight: float = 1.0) -> tuple[torch.Tensor, dict]:
    """BGAD†'s "conventional contrastive" loss: L_pull + push_weight·L_push, binary cross-entropy with ℓ as the logit.

    L_pull = mean over normal patches of softplus(−ℓ) = −log σ(ℓ)      (exactly the official L_ml form);
    L_push = mean over abnormal patches of softplus(ℓ) = −log(1 − σ(ℓ)).
    No explicit boundary and no margin: every normal is pulled up and every anomaly pushed down. The paper does
    not print BGAD†'s formula and the official code has no such variant, so this is our re-derivation. Why this
    form: it is bounded (each term ≥ 0, each patch's gradient |dL/dℓ| < 1, so pushing cannot run off to −∞
    the way a raw +ℓ push term would), and its normal half is exactly L_ml. Known weakness: an anomaly already
    at ℓ ≪ 0 has σ(ℓ) ≈ 0 and gets almost no gradient (dL_push/dℓ = σ(ℓ)), so the push mostly acts on
    anomalies that look normal; and unlike BG-SPP it has no margin at which pushing stops.
    Empty sets contribute 0. `normalizer` is accepted for a call signature uniform with `bg_spp_loss` but is
    not used: the logit is ℓ itself, as in L_ml. Returns (loss, stats) with l_pull, l_push, n_normal,
    n_abnormal. Introduced in the *BG-SPP* chapter (ablation "BGAD†").
    """
    ll = loglik.reshape(-1)
    mask = _as_mask(abnormal, ll)
    l_pull = _mean_or_zero(F.softplus(-ll[~mask]))
    l_push = _mean_or_zero(F.softplus(ll[mask]))
    stats = {"l_pull": float(l_pull.detach()), "l_push": float(l_push.detach()),
             "n_normal": int((~mask).sum()), "n_abnormal": int(mask.sum())}
    return l_pull + push_weight * l_push, stats


def linear_push_loss(loglik: torch.Tensor, abnormal: torch.Tensor, normalizer: float = 10.0,
                     focal: bool = True) -> tuple[torch.Tensor, dict]:
    """A push as strong as BG-SPP's with no boundary: L_push = mean over every abnormal patch of w_a·x, x = ℓ/normaliser.

    This is BG-SPP's semi-push with b_a → −∞: each anomaly gets the same gradient w_a/normaliser per nat as
    BG-SPP gives a violating one (about 0.5 at ℓ ≈ −3 with the focal weight, where BCE's σ(ℓ) is 0.05), but the
    push never stops, however low ℓ gets. `PushPullObjective` adds the focal-weighted L_ml on normal patches, as
    BGAD's phase 2 does, so BGAD and this control differ only in the boundary: BG-SPP's semi-pull of normals
    below b_n and its stop at b_a. The ablation control of the *Ablations* chapter. Returns (loss, stats).
    """
    ll = loglik.reshape(-1)
    mask = _as_mask(abnormal, ll)
    push = ll[mask] / normalizer
    if focal:
        push = push * abnormal_focal_weights(ll[mask], normalizer)
    l_push = _mean_or_zero(push)
    return l_push, {"l_push": float(l_push.detach()), "n_abnormal": int(mask.sum())}


# --- contrastive losses on embeddings (FIRM, SupCon, SimCLR), pairwise B×B layout ---------------------------
def _check_temperature(temperature: float) -> None:
    if not float(temperature) > 0.0:
        raise BgadError(f"temperature must be > 0, got {temperature}; e.g. temperature=0.2")


def _pairwise_contrastive(f1: torch.Tensor, f2: torch.Tensor, positives: torch.Tensor,
                          temperature: float) -> torch.Tensor:
    """−mean_i Σ_j P_ij·log_softmax_j(f1_i·f2_j/τ) with P = M / rowsum(M), on L2-normalised views."""
    _check_temperature(temperature)
    if f1.shape != f2.shape or f1.dim() != 2:
        raise ValueError(f"f1 and f2 must both be (B, D), got {tuple(f1.shape)} and {tuple(f2.shape)}")
    z1, z2 = F.normalize(f1, dim=1), F.normalize(f2, dim=1)
    q = torch.log_softmax(z1 @ z2.T / temperature, dim=1)
    m = positives.to(q.dtype)
    p = m / m.sum(dim=1, keepdim=True).clamp_min(1.0)
    return -(p * q).sum(dim=1).mean()


def _labels(labels: torch.Tensor, f1: torch.Tensor) -> torch.Tensor:
    labels = labels.reshape(-1).to(f1.device)
    if labels.numel() != f1.shape[0]:
        raise ValueError(f"labels has {labels.numel()} entries but f1 has {f1.shape[0]} rows")
    return labels


def firm_loss(f1: torch.Tensor, f2: torch.Tensor, labels: torch.Tensor, temperature: float = 0.2,
              inlier_label: int = 1) -> torch.Tensor:
    """L_FIRM, the FIRM paper version (official `FIRMLoss`, pairwise B×B): anchors f1, keys f2.

    S = f1 f2ᵀ/τ, q = log_softmax(S, dim=1). Positives M: an inlier row i → every inlier j (j = i included);
    an outlier row i → only j = i (its own other view). P = M/rowsum(M), L = −mean_i Σ_j P_ij q_ij.
    Inliers become compact, each outlier is its own class (outliers stay diverse). Inputs are L2-normalised
    here. Introduced in the *Contrastive* chapter.
    """
    inlier = _labels(labels, f1) == inlier_label
    b = inlier.numel()
    eye = torch.eye(b, dtype=torch.bool, device=f1.device)
    positives = (inlier[:, None] & inlier[None, :]) | eye
    return _pairwise_contrastive(f1, f2, positives, temperature)


def supcon_loss(f1: torch.Tensor, f2: torch.Tensor, labels: torch.Tensor, temperature: float = 0.2,
                inlier_label: int = 1) -> torch.Tensor:
    """L_SupCon with binary labels in FIRM's pairwise layout: positives are all j with the same label as i.

    Labels are binarised (inlier = `inlier_label`, everything else one outlier class), as FIRM's comparison
    does, so all outliers are mutual positives and collapse into one cluster. Introduced in the *Contrastive*
    chapter.
    """
    inlier = _labels(labels, f1) == inlier_label
    positives = inlier[:, None] == inlier[None, :]
    return _pairwise_contrastive(f1, f2, positives, temperature)


def simclr_loss(f1: torch.Tensor, f2: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """L_SimCLR (NT-Xent) in the pairwise B×B layout: the only positive of row i is j = i, its other view.

    Introduced in the *Contrastive* chapter's toy example.
    """
    eye = torch.eye(f1.shape[0], dtype=torch.bool, device=f1.device)
    return _pairwise_contrastive(f1, f2, eye, temperature)
