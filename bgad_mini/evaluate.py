"""Anomaly maps from per-level log-likelihoods, image scores, and the metrics: image AUROC, pixel AUROC and
PRO (the area under the per-region-overlap curve up to a false-positive rate of 0.3), over all test images,
per defect type, and over seen / unseen defect types.

Introduced in the *Conditional flows* chapter. Two scores: the default `inductive_maps` (every statistic from
the training images, so an image's map never depends on the rest of the test set) and `anomaly_maps`, the
official BGAD / CFlow code's transductive score (`utils/utils.py:182-200`, `validate`), kept for comparisons
with the paper. PRO follows the MVTec AD standard (`pro_score`); `pro_score_official_style` is the official one.
"""
from __future__ import annotations

from typing import Iterable, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

from .errors import BgadError

ArrayLike = Union[np.ndarray, torch.Tensor]


# ----------------------------------------------------------------------------------------------
# anomaly maps and image scores
# ----------------------------------------------------------------------------------------------
def _upsampled(level: torch.Tensor, img_size: int, chunk: int = 32) -> Iterable[tuple[slice, torch.Tensor]]:
    """Bilinear (align_corners=True) upsampling of (N, h, w) to (N, S, S), S = img_size, a chunk at a time."""
    for start in range(0, level.shape[0], chunk):
        part = level[start:start + chunk, None]
        up = F.interpolate(part, size=(img_size, img_size), mode="bilinear", align_corners=True)[:, 0]
        yield slice(start, start + part.shape[0]), up


def _levels(level_logliks: Sequence[ArrayLike]) -> list[torch.Tensor]:
    if len(level_logliks) == 0:
        raise BgadError("no feature levels given")
    levels = [torch.as_tensor(np.asarray(l) if not torch.is_tensor(l) else l).detach().cpu().double()
              for l in level_logliks]
    n = levels[0].shape[0]
    if any(l.ndim != 3 or l.shape[0] != n for l in levels):
        raise BgadError("every level's log-likelihoods must be an (N, h, w) array with the same N")
    return levels


def _likelihood_sum(levels: list[torch.Tensor], shifts: Sequence[float], img_size: int) -> np.ndarray:
    """S = Σ_l upsample(exp(ℓ_l − m_l)) in float64, (N, img_size, img_size): the official "normality" sum."""
    total = np.zeros((levels[0].shape[0], img_size, img_size), np.float64)
    for level, m in zip(levels, shifts):
        for sl, up in _upsampled(torch.exp(level - float(m)), img_size):
            total[sl] += up.numpy()
    return total


def anomaly_maps(level_logliks: Sequence[ArrayLike], img_size: int, dtype=np.float32) -> np.ndarray:
    """The official (transductive) anomaly map: per level exp(ℓ − max ℓ over the whole set), upsampled, summed;
    map = max − sum.

    `level_logliks[l]` holds ℓ = log p / C at every location of level l, shape (N, h_l, w_l). As the official
    code: subtract the level's global maximum over all N images, exp (the likelihood relative to the most
    normal location of that level, in (0, 1]), upsample bilinearly (align_corners=True) to img_size, sum the
    levels, and turn the "normality" S into an anomaly score max(S) − S (max over the whole set). Computed
    in float64 and returned as `dtype` (N, img_size, img_size). The maps are not smoothed.

    Both maxima are taken over the test set, so an image's map changes when other images join or leave it: use
    `inductive_maps` for numbers that must not depend on the rest of the test set.
    """
    levels = _levels(level_logliks)
    total = _likelihood_sum(levels, score_reference(levels), img_size)  # the test set is its own reference
    return (total.max() - total).astype(dtype, copy=False)


def score_reference(level_logliks: Sequence[ArrayLike]) -> list[float]:
    """m_l = max ℓ of each level over a reference set of normal images (the training images): the only
    statistic of the inductive score (`inductive_maps`)."""
    return [float(level.max()) for level in _levels(level_logliks)]


def inductive_maps(level_logliks: Sequence[ArrayLike], reference: Sequence[float], img_size: int,
                   dtype=np.float32) -> np.ndarray:
    """The book's default anomaly map: the official form with every statistic taken from training data.

    Per level exp(ℓ − m_l), with m_l = `score_reference(ℓ of the normal training images)` instead of the test-set
    maximum, upsampled and summed to S; map = L − S for L levels (a constant instead of the test-set max of S).
    Each image's map depends only on that image and the trained model: scored alone or inside any test set, it
    is the same. Within one test set it ranks pixels and images exactly as the official map would if the test
    set's level maxima equalled the training ones.
    """
    levels = _levels(level_logliks)
    if len(reference) != len(levels):
        raise BgadError(f"score reference has {len(reference)} levels, the log-likelihoods {len(levels)}")
    total = _likelihood_sum(levels, reference, img_size)
    return (len(levels) - total).astype(dtype, copy=False)


def nll_maps(level_logliks: Sequence[ArrayLike], img_size: int, dtype=np.float32) -> np.ndarray:
    """The alternative score: the mean over levels of the upsampled negative per-dimension log-likelihood −ℓ.

    No set-level normalisation. `reference/cpu_measurements.md` found that this score, with Gaussian smoothing
    (`smooth_maps(maps, 4)`), gave higher image AUROC than the official exp-normalised `anomaly_maps` on every
    synthetic category tried; the book reports the official score and says what this one gives.
    """
    levels = _levels(level_logliks)
    total = np.zeros((levels[0].shape[0], img_size, img_size), np.float64)
    for level in levels:
        for sl, up in _upsampled(-level, img_size):
            total[sl] += up.numpy()
    return (total / len(levels)).astype(dtype, copy=False)


def smooth_maps(maps: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing of each (H, W) map with standard deviation σ pixels (σ = 0 returns the maps as given).

    The official code smooths only for display (σ = 4 or 16); its metrics use unsmoothed maps.
    """
    from scipy.ndimage import gaussian_filter

    maps = np.asarray(maps)
    if sigma < 0:
        raise BgadError(f"smoothing sigma must be >= 0, got {sigma}")
    if sigma == 0:
        return maps
    out_dtype = maps.dtype if np.issubdtype(maps.dtype, np.floating) else np.float32
    return gaussian_filter(maps.astype(out_dtype, copy=False), sigma=(0, sigma, sigma)).astype(out_dtype, copy=False)


def image_scores(maps: np.ndarray) -> np.ndarray:
    """Image anomaly score = maximum of its anomaly map (official: no top-k, no smoothing): shape (N,)."""
    return np.asarray(maps).max(axis=(1, 2))


# ----------------------------------------------------------------------------------------------
# AUROC
# ----------------------------------------------------------------------------------------------
def _binary(masks: ArrayLike) -> np.ndarray:
    m = np.asarray(masks)
    return m if m.dtype == bool else m > 0.5


def _as_float(maps: ArrayLike) -> np.ndarray:
    a = np.asarray(maps)
    a = a if np.issubdtype(a.dtype, np.floating) else a.astype(np.float64)
    if not np.isfinite(a).all():
        raise BgadError("anomaly scores contain NaN or inf (did training diverge? try a lower lr)")
    return a


def image_auroc(labels: ArrayLike, scores: ArrayLike) -> Optional[float]:
    """Image AUROC (sklearn `roc_auc_score`); None when only one class is present."""
    from sklearn.metrics import roc_auc_score

    y = np.asarray(labels).astype(bool).ravel()
    if y.all() or not y.any():
        return None
    return float(roc_auc_score(y, _as_float(np.asarray(scores, dtype=np.float64)).ravel()))


def _auroc_sorted(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(s⁺ > s⁻) + ½·P(s⁺ = s⁻) = the trapezoidal ROC area that sklearn computes, from the two sorted classes."""
    small, large, sign = (pos, neg, 1) if pos.size <= neg.size else (neg, pos, -1)
    below = np.searchsorted(large, small, side="left").sum(dtype=np.float64)   # large < small
    at_most = np.searchsorted(large, small, side="right").sum(dtype=np.float64)  # large <= small
    wins = below + 0.5 * (at_most - below)  # pairs where the `small` element scores higher (ties ½)
    auc = wins / (float(pos.size) * float(neg.size))
    return float(auc if sign == 1 else 1.0 - auc)


def pixel_auroc(masks: Optional[ArrayLike], maps: ArrayLike) -> Optional[float]:
    """Pixel AUROC over all pixels of all images; None without masks or when only one class is present.

    Equal to `sklearn.metrics.roc_auc_score(masks.ravel(), maps.ravel())` (checked in the tests), but it sorts
    each class separately instead of arg-sorting every pixel: ~1.5 s instead of ~12 s for 300 maps of 256².
    Masks are binarised at 0.5.
    """
    if masks is None:
        return None
    y = _binary(masks)
    s = _as_float(maps)
    if y.shape != s.shape:
        raise BgadError(f"masks {y.shape} and maps {s.shape} differ in shape")
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == y.size:
        return None
    return _auroc_sorted(np.sort(s[y]), np.sort(s[~y]))


# ----------------------------------------------------------------------------------------------
# PRO
# ----------------------------------------------------------------------------------------------
def _region_weights(masks: np.ndarray) -> tuple[np.ndarray, int]:
    """For every defect pixel (in `maps[masks]` order): 1 / |its region|; and the number of regions.

    Regions are the 8-connected components (skimage `label`, connectivity 2) of each image's mask.
    """
    from skimage.measure import label

    weights, n_regions = [], 0
    for m in masks:
        if not m.any():
            continue
        lab, n = label(m, connectivity=2, return_num=True)
        sizes = np.bincount(lab.ravel())
        weights.append(1.0 / sizes[lab[m]])
        n_regions += n
    return (np.concatenate(weights) if weights else np.zeros(0)), n_regions


class _Classes:
    """Scores of defect pixels (with weights 1/(|r|·R)) and of normal pixels, for curves over thresholds."""

    def __init__(self, masks: ArrayLike, maps: ArrayLike):
        y = _binary(masks)
        s = _as_float(maps)
        if y.shape != s.shape or y.ndim != 3:
            raise BgadError(f"masks {y.shape} and maps {s.shape} must both be (N, H, W)")
        self.pos = s[y]
        w, self.n_regions = _region_weights(y)
        self.pos_w = w / max(self.n_regions, 1)
        self.neg = s[~y]
        self.valid = self.pos.size > 0 and self.neg.size > 0

    def cut(self, fpr_limit: float) -> float:
        """A threshold t_cut with FPR(t_cut) > fpr_limit (or −inf): thresholds below it are never needed."""
        k = int(np.floor(fpr_limit * self.neg.size)) + 1
        if k > self.neg.size:
            return -np.inf
        return float(np.partition(self.neg, self.neg.size - k)[self.neg.size - k])

    def curve_at(self, thresholds: np.ndarray, t_min: float = -np.inf, strict: bool = False):
        """FPR and mean per-region overlap at each threshold (predicted defect: s ≥ t, or s > t if strict)."""
        neg = np.sort(self.neg[self.neg >= t_min])
        keep = self.pos >= t_min
        pos, w = self.pos[keep], self.pos_w[keep]
        order = np.argsort(pos, kind="stable")
        pos, w = pos[order], w[order]
        suffix = np.concatenate([np.cumsum(w[::-1])[::-1], [0.0]])  # suffix[i] = Σ w[i:]
        side = "right" if strict else "left"
        fpr = (neg.size - np.searchsorted(neg, thresholds, side=side)) / self.neg.size
        pro = suffix[np.searchsorted(pos, thresholds, side=side)]
        return fpr, np.minimum(pro, 1.0)


def _trapezoid_to(x: np.ndarray, y: np.ndarray, x_max: float) -> float:
    """∫₀^x_max y dx of the piecewise-linear curve through (x, y), x non-decreasing from 0, interpolated at x_max."""
    i = int(np.searchsorted(x, x_max, side="right"))
    xs, ys = x[:i], y[:i]
    if i < x.size and xs[-1] < x_max:
        y_at = y[i - 1] + (y[i] - y[i - 1]) * (x_max - x[i - 1]) / (x[i] - x[i - 1])
        xs, ys = np.append(xs, x_max), np.append(ys, y_at)
    return float(np.sum(np.diff(xs) * (ys[1:] + ys[:-1]) / 2.0))


def pro_curve(masks: ArrayLike, maps: ArrayLike, fpr_limit: float = 1.0,
              num_thresholds: Optional[int] = None) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """The PRO curve (FPR, mean per-region overlap), from (0, 0), up to the first point with FPR ≥ fpr_limit.

    Exact (`num_thresholds=None`): one point per distinct score value. Else `num_thresholds` thresholds
    spaced linearly from the maximum to the minimum score. None when there is no defect or no normal pixel.
    """
    if not 0.0 < fpr_limit <= 1.0:
        raise BgadError(f"pro_fpr_limit must lie in (0, 1], got {fpr_limit}")
    c = _Classes(masks, maps)
    if not c.valid:
        return None
    if num_thresholds is None:
        t_cut = c.cut(fpr_limit)
        thresholds = np.unique(np.concatenate([c.neg[c.neg >= t_cut], c.pos[c.pos >= t_cut]]))[::-1]
    else:
        if num_thresholds < 2:
            raise BgadError(f"num_thresholds must be >= 2, got {num_thresholds}")
        t_cut = -np.inf
        hi, lo = max(c.neg.max(), c.pos.max()), min(c.neg.min(), c.pos.min())
        thresholds = np.linspace(hi, lo, num_thresholds)
    fpr, pro = c.curve_at(thresholds, t_min=t_cut)
    fpr, pro = np.concatenate([[0.0], fpr]), np.concatenate([[0.0], pro])
    stop = int(np.searchsorted(fpr, fpr_limit, side="left")) + 1
    return fpr[:stop], pro[:stop]


def pro_score(masks: Optional[ArrayLike], maps: ArrayLike, fpr_limit: float = 0.3,
              num_thresholds: Optional[int] = None) -> Optional[float]:
    """PRO (AUPRO): area under the per-region-overlap curve from FPR 0 to `fpr_limit`, divided by `fpr_limit`.

    The MVTec AD standard (Bergmann et al.): at a threshold t, a pixel is predicted defective if its score ≥ t;
    PRO(t) is the mean, over ALL ground-truth regions of all images (8-connected components of the masks),
    of the fraction of the region predicted defective; FPR(t) is the fraction of all normal pixels (mask 0, in
    every image) predicted defective. The curve is integrated with the trapezoid rule, exactly at `fpr_limit`
    (linear interpolation). Exact by default (every distinct score is a threshold; sort-based, about a second
    for 300 maps of 256²); `num_thresholds` uses that many linearly spaced thresholds instead.
    None without masks, or when there is no defect pixel (or no normal pixel).

    The official BGAD / CFlow code (copied from DFR) differs: 1 000 thresholds, `score > t`, it keeps the
    thresholds with FPR ≤ 0.3 and min-max rescales those FPRs to [0, 1] before `sklearn.metrics.auc`, which
    stretches the curve when the largest kept FPR is below 0.3. See `pro_score_official_style`.
    """
    if masks is None:
        return None
    curve = pro_curve(masks, maps, fpr_limit=fpr_limit, num_thresholds=num_thresholds)
    if curve is None:
        return None
    return _trapezoid_to(*curve, fpr_limit) / fpr_limit


def pro_score_official_style(masks: Optional[ArrayLike], maps: ArrayLike, fpr_limit: float = 0.3,
                             num_thresholds: int = 1000) -> Optional[float]:
    """PRO as the official BGAD / CFlow / DFR code computes it, for comparison with their numbers.

    Thresholds t_k = max − k·(max − min)/1000, k = 0..999; predicted defect: score > t; keep FPR ≤ 0.3; min-max
    rescale the kept FPRs to [0, 1]; `sklearn.metrics.auc`. One difference remains: the official code
    intersects the prediction with each region's *hole-filled* image (`prop.filled_image`) but divides by the
    region's area; here holes are not filled (identical for regions without holes).
    """
    from sklearn.metrics import auc

    if masks is None:
        return None
    c = _Classes(masks, maps)
    if not c.valid:
        return None
    hi, lo = max(c.neg.max(), c.pos.max()), min(c.neg.min(), c.pos.min())
    thresholds = hi - np.arange(num_thresholds) * ((hi - lo) / num_thresholds)
    fpr, pro = c.curve_at(thresholds, strict=True)
    keep = fpr <= fpr_limit
    f, p = fpr[keep], pro[keep]
    if f.size < 2 or f.max() == f.min():
        return None
    f = (f - f.min()) / (f.max() - f.min())
    return float(auc(f, p))


# ----------------------------------------------------------------------------------------------
# everything, per defect type, seen / unseen
# ----------------------------------------------------------------------------------------------
def metrics(maps: np.ndarray, masks: Optional[np.ndarray], labels: np.ndarray,
            fpr_limit: float = 0.3, official_pro: bool = False,
            scores: Optional[np.ndarray] = None) -> dict[str, Optional[float]]:
    """{image_auroc, pixel_auroc, pro} of one set of images (pixel metrics None without masks); with
    `official_pro`, also `pro_official_style` (the official code's PRO, for tables beside the paper's numbers).
    `scores`: the image scores (default: the maximum of each map)."""
    out = {
        "image_auroc": image_auroc(labels, image_scores(maps) if scores is None else scores),
        "pixel_auroc": pixel_auroc(masks, maps),
        "pro": pro_score(masks, maps, fpr_limit=fpr_limit),
    }
    if official_pro:
        out["pro_official_style"] = pro_score_official_style(masks, maps, fpr_limit=fpr_limit)
    return out


def evaluate(maps: np.ndarray, masks: Optional[np.ndarray], labels: Sequence[int], defect_types: Sequence[str],
             seen_types: Optional[Iterable[str]] = None, fpr_limit: float = 0.3, official_pro: bool = False,
             scores: Optional[Sequence[float]] = None) -> dict:
    """All metrics: over every test image, per defect type, and over seen / unseen types (JSON-ready).

    maps (N, H, W) anomaly maps, masks (N, H, W) or None (image-level labels only), labels (N,) 1 = defect,
    defect_types (N,) names (ignored for normal images). Per type, and for seen / unseen, the set is every
    normal test image plus that group's defect images. `metrics_seen` / `metrics_unseen` are None when
    `seen_types` is None or the group has no test image. `official_pro` adds `pro_official_style` everywhere.
    `scores` (N,) are the image scores when they are not the maxima of `maps` (e.g. of unsmoothed maps).
    """
    maps = np.asarray(maps)
    labels = np.asarray(labels).astype(bool)
    types = np.asarray([str(t) for t in defect_types])
    n = maps.shape[0]
    if not (labels.shape[0] == types.shape[0] == n) or (masks is not None and len(masks) != n):
        raise BgadError("maps, masks, labels and defect_types must describe the same number of images")
    normal = ~labels
    scores = image_scores(maps) if scores is None else np.asarray(scores)
    if scores.shape != (n,):
        raise BgadError(f"scores must hold one value per image ({n}), got shape {scores.shape}")

    def on(select: np.ndarray) -> Optional[dict]:
        if not (select & labels).any():
            return None
        idx = np.flatnonzero(select | normal)
        return metrics(maps[idx], None if masks is None else np.asarray(masks)[idx], labels[idx], fpr_limit,
                       official_pro, scores[idx])

    result: dict = {"metrics": metrics(maps, masks, labels, fpr_limit, official_pro, scores)}
    defect_names = sorted(set(types[labels].tolist()))
    result["metrics_by_type"] = {t: on(labels & (types == t)) for t in defect_names}
    if seen_types is None:
        result["metrics_seen"] = result["metrics_unseen"] = None
    else:
        seen = np.isin(types, list(seen_types)) & labels
        result["metrics_seen"] = on(seen)
        result["metrics_unseen"] = on(labels & ~seen)
    return result


def patch_logliks(level_logliks: Sequence[ArrayLike], masks: np.ndarray | None, rule: str = "nearest"
                  ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Split each level's ℓ (N, h, w) into normal and abnormal patch values by the masks (N, H, W) downsampled
    with the training rule. Used by the *Boundary* and *BG-SPP* chapters' histograms."""
    from .train import downsample_masks

    normal, abnormal = [], []
    for level in _levels(level_logliks):
        ll = level.numpy()
        if masks is None:
            normal.append(ll.ravel())
            abnormal.append(np.zeros(0, ll.dtype))
            continue
        abn = downsample_masks(torch.as_tensor(np.asarray(masks)), tuple(ll.shape[1:]), rule).numpy()
        normal.append(ll[~abn])
        abnormal.append(ll[abn])
    return normal, abnormal
