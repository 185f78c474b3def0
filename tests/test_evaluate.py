"""Metrics on tiny cases whose answers are known by hand, and PRO against a slow reference loop."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from skimage.measure import label
from sklearn.metrics import roc_auc_score

from bgad_mini.errors import BgadError
from bgad_mini.evaluate import (anomaly_maps, evaluate, image_auroc, image_scores, inductive_maps, nll_maps,
                                pixel_auroc, pro_curve, pro_score, pro_score_official_style, score_reference,
                                smooth_maps)


def _blobs(n: int = 6, size: int = 32, seed: int = 0):
    """Masks with a few rectangles (some images normal) and noisy maps that are higher inside the defects."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, size, size), bool)
    for i in range(n):
        if i % 3 == 0:
            continue
        for _ in range(rng.integers(1, 3)):
            y, x = rng.integers(0, size - 6, 2)
            h, w = rng.integers(1, 7, 2)
            masks[i, y:y + h, x:x + w] = True
    maps = rng.normal(size=masks.shape) + 1.5 * masks
    return masks, maps


def _slow_pro(masks: np.ndarray, maps: np.ndarray, thresholds: np.ndarray, fpr_limit: float,
              strict: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The straightforward loop: for each threshold, binarise, then average the overlap over every region."""
    regions = []
    for i, m in enumerate(masks):
        lab = label(m, connectivity=2)
        regions += [(i, lab == r) for r in range(1, lab.max() + 1)]
    fprs, pros = [], []
    for t in thresholds:
        pred = maps > t if strict else maps >= t
        fprs.append((pred & ~masks).sum() / (~masks).sum())
        pros.append(np.mean([(pred[i] & r).sum() / r.sum() for i, r in regions]))
    return np.array(fprs), np.array(pros)


def _area(fprs: np.ndarray, pros: np.ndarray, fpr_limit: float) -> float:
    """Trapezoid area from (0, 0) to fpr_limit, interpolated at fpr_limit, then / fpr_limit (written separately)."""
    x = np.concatenate([[0.0], fprs])
    y = np.concatenate([[0.0], pros])
    grid_x = np.concatenate([x[x <= fpr_limit], [fpr_limit]])
    # the right-continuous value at fpr_limit: interpolate between the last point <= and first point > limit
    j = np.searchsorted(x, fpr_limit, side="right")
    y_lim = y[j - 1] if j == x.size else y[j - 1] + (y[j] - y[j - 1]) * (fpr_limit - x[j - 1]) / (x[j] - x[j - 1])
    grid_y = np.concatenate([y[x <= fpr_limit], [y_lim]])
    area = sum((grid_x[k + 1] - grid_x[k]) * (grid_y[k + 1] + grid_y[k]) / 2 for k in range(grid_x.size - 1))
    return float(area) / fpr_limit


# --- anomaly maps -------------------------------------------------------------------------------
def test_anomaly_map_of_a_constant_level_is_zero():
    maps = anomaly_maps([np.full((3, 4, 4), -2.5)], img_size=16)
    assert maps.shape == (3, 16, 16) and maps.dtype == np.float32
    assert np.allclose(maps, 0, atol=1e-12)  # bilinear weights sum to 1 up to rounding


def test_anomaly_map_peaks_at_the_unlikely_location():
    ll = np.zeros((2, 4, 4))
    ll[1, 1, 2] = -5.0
    maps = anomaly_maps([torch.tensor(ll, dtype=torch.float32)], img_size=16)
    # align_corners=True puts source pixel i at output pixel i·(16−1)/(4−1) = 5i
    assert np.unravel_index(np.argmax(maps), maps.shape) == (1, 5, 10)
    assert maps[1, 5, 10] == pytest.approx(1 - math.exp(-5), rel=1e-6)
    assert np.allclose(maps[0], 0, atol=1e-12)
    assert image_scores(maps).tolist() == pytest.approx([0.0, 1 - math.exp(-5)])


def test_anomaly_map_formula_without_upsampling():
    rng = np.random.default_rng(0)
    l1, l2 = rng.normal(size=(3, 8, 8)), rng.normal(size=(3, 8, 8)) - 3
    s = np.exp(l1 - l1.max()) + np.exp(l2 - l2.max())
    expected = s.max() - s
    got = anomaly_maps([l1, l2], img_size=8, dtype=np.float64)
    assert np.allclose(got, expected, atol=1e-12)
    # two levels of different sizes are both upsampled to img_size
    assert anomaly_maps([l1, rng.normal(size=(3, 4, 4))], img_size=16).shape == (3, 16, 16)
    with pytest.raises(BgadError):
        anomaly_maps([l1, rng.normal(size=(2, 4, 4))], img_size=16)


# --- the inductive score: nothing from the test set ---------------------------------------------
def _levels_of(rng, n):
    return [rng.normal(size=(n, 8, 8)) - 1, rng.normal(size=(n, 4, 4)) - 3]


def test_inductive_map_formula():
    rng = np.random.default_rng(3)
    train, test = _levels_of(rng, 5), _levels_of(rng, 3)
    ref = score_reference(train)
    assert ref == [pytest.approx(train[0].max()), pytest.approx(train[1].max())]
    got = inductive_maps([test[0]], ref[:1], img_size=8, dtype=np.float64)
    assert np.allclose(got, 1 - np.exp(test[0] - train[0].max()), atol=1e-12)
    with pytest.raises(BgadError, match="reference has 1 levels"):
        inductive_maps(test, ref[:1], img_size=16)


def test_an_image_scored_alone_equals_it_scored_inside_the_test_set():
    rng = np.random.default_rng(4)
    ref = score_reference(_levels_of(rng, 6))
    test = _levels_of(rng, 7)
    full = inductive_maps(test, ref, img_size=16)
    for i in range(7):
        alone = inductive_maps([level[i:i + 1] for level in test], ref, img_size=16)
        assert np.allclose(alone[0], full[i], atol=1e-6)
    # the official score is transductive: the same image alone gets another map
    official_alone = anomaly_maps([level[:1] for level in test], img_size=16)
    assert not np.allclose(official_alone[0], anomaly_maps(test, img_size=16)[0], atol=1e-3)


def test_removing_a_defect_type_leaves_the_other_types_metrics_unchanged():
    """Type "bright" holds the most normal-looking locations of the set: the official maxima come from it."""
    rng = np.random.default_rng(5)
    n_good, n_a, n_b = 6, 4, 4
    n = n_good + n_a + n_b
    ll = [rng.normal(-1.0, 0.3, size=(n, 8, 8)), rng.normal(-2.0, 0.3, size=(n, 4, 4))]
    masks = np.zeros((n, 32, 32), bool)
    labels = np.array([0] * n_good + [1] * (n_a + n_b))
    types = ["good"] * n_good + ["dent"] * n_a + ["bright"] * n_b
    for i in range(n_good, n):
        masks[i, 8:16, 8:16] = True
        ll[0][i, 2:4, 2:4] -= 1.0  # the defect: lower likelihood on level 0 only
        ll[1][i, 1, 1] -= 0.5
    ll[0][n_good + n_a:, 6:, 6:] += 4.0  # "bright" images: far more likely corners than any other image
    ref = score_reference([rng.normal(-1.0, 0.3, size=(5, 8, 8)), rng.normal(-2.0, 0.3, size=(5, 4, 4))])
    keep = np.array([t != "bright" for t in types])

    def dent(maps_all, maps_kept):
        full = evaluate(maps_all, masks, labels, types)["metrics_by_type"]["dent"]
        kept = evaluate(maps_kept, masks[keep], labels[keep], [t for t, k in zip(types, keep) if k])
        return full, kept["metrics_by_type"]["dent"]

    full, kept = dent(inductive_maps(ll, ref, 32), inductive_maps([l[keep] for l in ll], ref, 32))
    assert full == pytest.approx(kept, abs=1e-9)
    full, kept = dent(anomaly_maps(ll, 32), anomaly_maps([l[keep] for l in ll], 32))
    assert abs(full["pixel_auroc"] - kept["pixel_auroc"]) > 0.01  # the official score moves


def test_official_pro_is_stored_beside_the_standard_pro():
    maps, masks, labels, types = _dataset()
    out = evaluate(maps, masks, labels, types, seen_types=["scratch"], official_pro=True)
    for m in [out["metrics"], out["metrics_seen"], out["metrics_unseen"], *out["metrics_by_type"].values()]:
        assert set(m) == {"image_auroc", "pixel_auroc", "pro", "pro_official_style"}
    assert out["metrics"]["pro_official_style"] == pytest.approx(pro_score_official_style(masks, maps))
    assert set(evaluate(maps, masks, labels, types)["metrics"]) == {"image_auroc", "pixel_auroc", "pro"}


def test_nll_maps_is_the_mean_negative_loglikelihood():
    rng = np.random.default_rng(1)
    l1, l2 = rng.normal(size=(2, 8, 8)), rng.normal(size=(2, 8, 8))
    assert np.allclose(nll_maps([l1, l2], img_size=8), -(l1 + l2) / 2, atol=1e-6)
    assert np.allclose(nll_maps([np.full((1, 2, 2), -3.0)], img_size=5), 3.0)


def test_smooth_maps():
    rng = np.random.default_rng(2)
    maps = rng.random((2, 16, 16)).astype(np.float32)
    assert smooth_maps(maps, 0) is maps
    out = smooth_maps(maps, 2.0)
    assert out.shape == maps.shape and out.dtype == np.float32 and out.std() < maps.std()
    assert np.allclose(smooth_maps(np.full((1, 8, 8), 3.0), 4.0), 3.0)
    # images are smoothed independently
    one = np.zeros((2, 9, 9))
    one[0, 4, 4] = 1
    assert np.all(smooth_maps(one, 1.0)[1] == 0)


# --- AUROC --------------------------------------------------------------------------------------
def test_image_auroc_by_hand_and_undefined_cases():
    assert image_auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert image_auroc([0, 1], [1.0, 0.0]) == 0.0
    assert image_auroc([1, 1], [1.0, 0.0]) is None and image_auroc([0, 0], [1.0, 0.0]) is None


def test_pixel_auroc_matches_sklearn_with_ties():
    rng = np.random.default_rng(3)
    masks = rng.random((4, 16, 16)) < 0.1
    maps = np.round(rng.normal(size=masks.shape) + masks, 1).astype(np.float32)  # many ties
    assert pixel_auroc(masks, maps) == pytest.approx(roc_auc_score(masks.ravel(), maps.ravel()), abs=1e-12)
    dense = rng.random((2, 8, 8)) < 0.7  # more defect than normal pixels
    m2 = rng.normal(size=dense.shape)
    assert pixel_auroc(dense, m2) == pytest.approx(roc_auc_score(dense.ravel(), m2.ravel()), abs=1e-12)
    assert pixel_auroc(masks.astype(np.uint8) * 255, maps) == pixel_auroc(masks, maps)


def test_non_finite_scores_are_a_clear_error():
    maps = np.zeros((1, 4, 4))
    maps[0, 1, 1] = np.nan
    masks = np.zeros((1, 4, 4), bool)
    masks[0, 0, 0] = True
    for fn in (pixel_auroc, pro_score):
        with pytest.raises(BgadError, match="NaN"):
            fn(masks, maps)
    with pytest.raises(BgadError, match="NaN"):
        image_auroc([0, 1], [0.0, np.inf])


def test_pixel_auroc_undefined_cases():
    maps = np.random.default_rng(0).random((2, 4, 4))
    assert pixel_auroc(None, maps) is None
    assert pixel_auroc(np.zeros((2, 4, 4)), maps) is None
    assert pixel_auroc(np.ones((2, 4, 4)), maps) is None


# --- PRO ----------------------------------------------------------------------------------------
def test_perfect_and_inverted_maps():
    masks, _ = _blobs()
    perfect = masks.astype(np.float32)
    assert pixel_auroc(masks, perfect) == 1.0 and pro_score(masks, perfect) == pytest.approx(1.0)
    assert image_auroc(masks.any(axis=(1, 2)), image_scores(perfect)) == 1.0
    inverted = 1.0 - perfect
    assert pixel_auroc(masks, inverted) == 0.0 and pro_score(masks, inverted) == 0.0


def test_pro_is_none_without_defect_pixels_or_masks():
    maps = np.random.default_rng(0).random((2, 8, 8))
    assert pro_score(np.zeros((2, 8, 8), bool), maps) is None
    assert pro_score(None, maps) is None
    assert pro_curve(np.zeros((2, 8, 8), bool), maps) is None
    with pytest.raises(BgadError):
        pro_score(np.ones((2, 8, 8), bool), maps, fpr_limit=0.0)


def test_pro_one_region_found_one_missed_gives_one_half():
    # two images, one region each: a 1-pixel region scored above every normal pixel, a 9-pixel region below
    masks = np.zeros((2, 10, 10), bool)
    masks[0, 2, 2] = True
    masks[1, 4:7, 4:7] = True
    rng = np.random.default_rng(0)
    maps = rng.uniform(0.0, 1.0, size=masks.shape)
    maps[0, 2, 2] = 2.0
    maps[1, 4:7, 4:7] = -1.0
    # the curve jumps to PRO 1/2 at FPR 0 and stays there until FPR 1: averaged over regions, not pixels (0.1)
    assert pro_score(masks, maps) == pytest.approx(0.5)
    assert pro_score(masks, maps, fpr_limit=1.0) == pytest.approx(0.5)
    fpr, pro = pro_curve(masks, maps, fpr_limit=1.0)
    assert fpr[0] == 0 and pro[0] == 0 and pro[1] == pytest.approx(0.5) and fpr[-1] == 1.0


def test_pro_regions_are_8_connected():
    # (0,0) touches (1,1) only diagonally: one region of 3 pixels with 8-connectivity, two regions with 4
    masks = np.zeros((1, 6, 6), bool)
    masks[0, 0, 0] = masks[0, 1, 1] = masks[0, 1, 2] = True
    maps = np.full(masks.shape, 0.5)
    maps[0, 0, 0], maps[0, 1, 1], maps[0, 1, 2] = 2.0, -1.0, -1.0
    assert pro_score(masks, maps) == pytest.approx(1 / 3)  # 4-connectivity would give (1 + 0) / 2


def test_pro_linear_sweep_integrates_analytically():
    # 10 defect and 10 normal pixels tied in pairs: the curve is the diagonal PRO = FPR
    masks = np.zeros((1, 4, 5), bool)
    masks[0, :2] = True
    maps = np.zeros((1, 4, 5))
    maps[0, :2] = np.arange(10).reshape(2, 5)
    maps[0, 2:] = np.arange(10).reshape(2, 5)
    assert pro_score(masks, maps, fpr_limit=0.3) == pytest.approx(0.15)  # (0.3² / 2) / 0.3
    assert pro_score(masks, maps, fpr_limit=0.25) == pytest.approx(0.125)  # interpolated between 0.2 and 0.3
    assert pro_score(masks, maps, fpr_limit=1.0) == pytest.approx(0.5)


def test_pro_staircase_with_interpolation_at_the_limit():
    # one region of 4 pixels; normals at FPR steps of 1/8; defect pixels interleaved: PRO 1/4 at FPR 0, ...
    masks = np.zeros((1, 3, 4), bool)
    masks[0, 0] = True
    maps = np.zeros((1, 3, 4))
    maps[0, 0] = [10, 8, 6, 4]             # defects
    maps[0, 1:] = [[9, 7, 5, 3], [2, 1, 0, -1]]  # normals (8)
    # curve: (0,0)->(0,.25)->(.125,.25)->(.125,.5)->(.25,.5)->(.25,.75)->(.375,.75)->(.375,1)->...
    # area to 0.3: .125·.25 + .125·.5 + .05·.75 = .03125 + .0625 + .0375 = .13125
    assert pro_score(masks, maps, fpr_limit=0.3) == pytest.approx(0.13125 / 0.3)


@pytest.mark.parametrize("seed,fpr_limit", [(0, 0.3), (1, 0.3), (2, 0.05), (3, 1.0)])
def test_pro_matches_slow_loop_on_random_data(seed, fpr_limit):
    masks, maps = _blobs(n=6, size=24, seed=seed)
    maps = maps.astype(np.float32)
    # exact: every distinct score as a threshold
    thresholds = np.unique(maps)[::-1]
    fprs, pros = _slow_pro(masks, maps, thresholds, fpr_limit)
    assert pro_score(masks, maps, fpr_limit=fpr_limit) == pytest.approx(_area(fprs, pros, fpr_limit), abs=1e-9)
    # linear grid of thresholds (the official style of sweeping): same thresholds, same answer
    grid = np.linspace(maps.max(), maps.min(), 200)
    fprs_g, pros_g = _slow_pro(masks, maps, grid, fpr_limit)
    got = pro_score(masks, maps, fpr_limit=fpr_limit, num_thresholds=200)
    assert got == pytest.approx(_area(fprs_g, pros_g, fpr_limit), abs=1e-9)
    assert got == pytest.approx(pro_score(masks, maps, fpr_limit=fpr_limit), abs=0.02)


def test_pro_1000_thresholds_is_close_to_exact():
    masks, maps = _blobs(n=9, size=32, seed=5)
    thresholds = np.linspace(maps.max(), maps.min(), 1000)
    fprs, pros = _slow_pro(masks, maps, thresholds, 0.3)
    assert pro_score(masks, maps) == pytest.approx(_area(fprs, pros, 0.3), abs=5e-3)


def test_pro_official_style_matches_the_dfr_loop():
    masks, maps = _blobs(n=6, size=24, seed=4)
    k = np.arange(100)
    hi, lo = maps.max(), maps.min()
    thresholds = hi - k * (hi - lo) / 100
    fprs, pros = _slow_pro(masks, maps, thresholds, 0.3, strict=True)
    keep = fprs <= 0.3
    f = (fprs[keep] - fprs[keep].min()) / (fprs[keep].max() - fprs[keep].min())
    from sklearn.metrics import auc

    assert pro_score_official_style(masks, maps, num_thresholds=100) == pytest.approx(auc(f, pros[keep]), abs=1e-9)
    assert pro_score_official_style(masks, maps) == pytest.approx(pro_score(masks, maps), abs=0.01)


def test_pro_official_style_stretches_a_coarse_curve():
    # 4 defect and 4 normal pixels tied in pairs: the curve is the diagonal, with FPR steps of 1/4.
    masks = np.zeros((1, 2, 4), bool)
    masks[0, 0] = True
    maps = np.zeros((1, 2, 4))
    maps[0, 0] = maps[0, 1] = [3, 2, 1, 0]
    assert pro_score(masks, maps) == pytest.approx(0.15)  # (0.3² / 2) / 0.3
    # official: keeps (0, 0) and (0.25, 0.25) only, rescales FPR 0.25 to 1, so the area is 0.25 / 2
    assert pro_score_official_style(masks, maps) == pytest.approx(0.125)


# --- evaluate -----------------------------------------------------------------------------------
def _dataset():
    """4 normal images, 2 'scratch' (found), 2 'hole' (missed): 8×8 maps."""
    n = 8
    masks = np.zeros((n, 8, 8), bool)
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    types = ["good"] * 4 + ["scratch", "scratch", "hole", "hole"]
    rng = np.random.default_rng(0)
    maps = rng.uniform(0, 1, size=masks.shape)
    for i in (4, 5):
        masks[i, 2:4, 2:4] = True
        maps[i, 2:4, 2:4] = 5.0
    for i in (6, 7):
        masks[i, 5:7, 5:7] = True
        maps[i] = rng.uniform(0, 0.5, size=(8, 8))
        maps[i, 5:7, 5:7] = -1.0
    return maps, masks, labels, types


def test_evaluate_per_type_and_seen_unseen():
    maps, masks, labels, types = _dataset()
    out = evaluate(maps, masks, labels, types, seen_types=["scratch"])
    json.dumps(out)  # JSON-ready
    assert set(out) == {"metrics", "metrics_by_type", "metrics_seen", "metrics_unseen"}
    assert set(out["metrics_by_type"]) == {"scratch", "hole"}
    scratch, hole = out["metrics_by_type"]["scratch"], out["metrics_by_type"]["hole"]
    assert scratch == {"image_auroc": 1.0, "pixel_auroc": 1.0, "pro": pytest.approx(1.0)}
    assert hole["pixel_auroc"] == 0.0 and hole["pro"] == 0.0
    assert out["metrics_seen"] == scratch and out["metrics_unseen"] == hole
    overall = out["metrics"]
    assert overall["pro"] == pytest.approx(0.5)  # half of the regions found at FPR 0, the rest never below FPR 1
    assert all(isinstance(v, float) for v in overall.values())
    assert overall["image_auroc"] == pytest.approx(image_auroc(labels, image_scores(maps)))


def test_evaluate_without_masks_and_without_seen_types():
    maps, _, labels, types = _dataset()
    out = evaluate(maps, None, labels, types)
    assert out["metrics"]["pixel_auroc"] is None and out["metrics"]["pro"] is None
    assert out["metrics"]["image_auroc"] is not None
    assert out["metrics_seen"] is None and out["metrics_unseen"] is None
    all_seen = evaluate(maps, None, labels, types, seen_types=["scratch", "hole"])
    assert all_seen["metrics_unseen"] is None and all_seen["metrics_seen"] == all_seen["metrics"]
    json.dumps(out)
    with pytest.raises(BgadError):
        evaluate(maps, None, labels[:3], types)


def test_image_scores_can_come_from_other_maps_than_the_pixel_metrics():
    maps, masks, labels, types = _dataset()
    smoothed = smooth_maps(maps, 1.0)
    out = evaluate(smoothed, masks, labels, types, seen_types=["scratch"], scores=image_scores(maps))
    raw = evaluate(maps, masks, labels, types, seen_types=["scratch"])
    assert out["metrics"]["image_auroc"] == raw["metrics"]["image_auroc"]
    assert out["metrics_unseen"]["image_auroc"] == raw["metrics_unseen"]["image_auroc"]
    assert out["metrics"]["pixel_auroc"] == pixel_auroc(masks, smoothed)
    with pytest.raises(BgadError, match="one value per image"):
        evaluate(maps, masks, labels, types, scores=np.zeros(3))
