"""Patch-level FIRM / SupCon: aligned views, the head, one training step, k-NN scores, maps, errors, resume."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bgad_mini.backbone import extract
from bgad_mini.config import Config
from bgad_mini.contrastive import (ProjectionHead, batch_sizes, contrastive_maps, knn_scores, patch_features,
                                   patch_labels, photometric_view, train_contrastive, view_pair_features)
from bgad_mini.errors import BgadError
from bgad_mini.losses import firm_loss


class TinyExtractor(nn.Module):
    """A stand-in for the frozen backbone: three random conv levels at strides 4, 8, 16 (fast, deterministic)."""

    channels = [4, 6, 8]

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.convs = nn.ModuleList([nn.Conv2d(3, 4, 4, stride=4), nn.Conv2d(4, 6, 3, 2, 1), nn.Conv2d(6, 8, 3, 2, 1)])
        for conv in self.convs:
            conv.weight.data = torch.randn(conv.weight.shape, generator=g) / math.sqrt(conv.weight[0].numel())
            conv.bias.data.zero_()
        self.eval()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for conv in self.convs:
            x = conv(x)
            out.append(x)
            x = torch.tanh(x)
        return out


def smooth_images(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """Random low-frequency colour images in [0, 1], so that neighbouring patches differ but are not noise."""
    rng = np.random.default_rng(seed)
    coarse = torch.from_numpy(rng.random((n, 3, size // 4, size // 4), dtype=np.float32))
    return F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False).permute(0, 2, 3, 1).numpy()


def cfg(**kw) -> Config:
    base = dict(img_size=32, contrastive_batch=32, contrastive_epochs=1, view_pairs=1, bank_size=10_000,
                contrastive_lr=1e-2, proj_dim=8, device="cpu")
    return Config.from_profile("smoke", **{**base, **kw})


def block_masks(n: int, size: int = 32) -> np.ndarray:
    m = np.zeros((n, size, size), np.uint8)
    m[:, 8:24, 8:24] = 1  # 2×2 cells of the 4×4 stride-8 grid
    return m


# --- patch features on one grid ---------------------------------------------------------------------------
def test_patch_features_pool_fine_keep_grid_upsample_coarse():
    g = torch.Generator().manual_seed(0)
    l1, l2, l3 = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 6, 4, 4, generator=g), torch.ones(2, 8, 2, 2)
    out = patch_features([l1.numpy().astype(np.float16), l2, l3])
    assert out.shape == (2, 18, 4, 4) and out.dtype == torch.float32
    assert torch.allclose(out[:, :4, 1, 2], l1.half().float()[:, :, 2:4, 4:6].mean(dim=(2, 3)))  # 2×2 average
    assert torch.equal(out[:, 4:10], l2)  # the grid level is kept as it is
    assert torch.allclose(out[:, 10:], torch.ones(2, 8, 4, 4))  # a constant coarse map stays constant


def test_views_are_patch_aligned_and_identical_at_zero_strength():
    images = smooth_images(3)
    ext = TinyExtractor()
    same, grid = view_pair_features(images, ext, 2, 0.0, np.random.default_rng(0), batch_size=2)
    assert grid == (4, 4) and same.shape == (2, 2, 3 * 16, 18) and same.dtype == torch.float16
    assert torch.equal(same[0, 0], same[0, 1]) and torch.equal(same[0, 0], same[1, 1])
    plain = patch_features(extract(ext, images)).permute(0, 2, 3, 1).reshape(-1, 18)  # row = (image, y, x)
    assert torch.allclose(same[0, 0].float(), plain, rtol=1e-2, atol=1e-3)
    views, _ = view_pair_features(images, ext, 2, 1.0, np.random.default_rng(0), batch_size=2)
    assert views.shape == same.shape and not torch.equal(views[0, 0], views[0, 1])
    # patch i of view 1 is closest (cosine) to patch i of view 2: the views share their geometry
    a, b = F.normalize(views[0, 0].float(), dim=1), F.normalize(views[0, 1].float(), dim=1)
    p = F.normalize(plain, dim=1)
    for x, y in ((a, b), (a, p)):
        match = ((x @ y.T).argmax(dim=1) == torch.arange(x.shape[0])).float().mean()
        assert match > 0.9


def test_photometric_view_keeps_range_and_is_seeded():
    images = smooth_images(2)
    v1 = photometric_view(images, np.random.default_rng(3), 1.0)
    v2 = photometric_view(images, np.random.default_rng(3), 1.0)
    assert v1.shape == images.shape and v1.min() >= 0 and v1.max() <= 1
    assert np.array_equal(v1, v2) and not np.allclose(v1, images)
    with pytest.raises(BgadError):
        photometric_view(images, np.random.default_rng(0), -1.0)


# --- the head ---------------------------------------------------------------------------------------------
def test_head_is_unit_norm_and_starts_as_standardised_pca():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(500, 6, generator=g) * torch.tensor([1.0, 2, 3, 4, 5, 6]) + 7.0
    head = ProjectionHead(6, proj_dim=6, hidden=16).init_from(x)
    y = head(x)
    assert torch.allclose(y.norm(dim=1), torch.ones(500), atol=1e-5)
    # with proj_dim = in_dim the PCA map is a rotation, so the untrained head keeps the standardised cosines
    z = F.normalize((x - x.mean(0)) / x.std(0), dim=1)
    assert torch.allclose(y @ y.T, z @ z.T, atol=1e-4)
    small = ProjectionHead(6, proj_dim=3).init_from(x)
    assert small(x[:4]).shape == (4, 3)


def test_one_step_lowers_the_firm_loss_on_a_fixed_batch():
    g = torch.Generator().manual_seed(1)
    x1 = torch.randn(64, 10, generator=g)
    x2 = x1 + 0.1 * torch.randn(64, 10, generator=g)
    labels = torch.ones(64, dtype=torch.long)
    labels[:8] = -1
    torch.manual_seed(0)
    head = ProjectionHead(10, proj_dim=8, hidden=32).init_from(x1)
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    before = firm_loss(head(x1), head(x2), labels, 0.2)
    opt.zero_grad()
    before.backward()
    opt.step()
    after = firm_loss(head(x1), head(x2), labels, 0.2)
    assert after.item() < before.item() - 1e-3


# --- k-NN scores and maps ---------------------------------------------------------------------------------
def test_knn_scores_hand_case():
    bank = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]])
    q = torch.tensor([[1.0, 0, 0], [0, 0, 2.0], [1.0, 1.0, 0], [3.0, 0, 0]])
    s = knn_scores(q, bank, k=1, chunk=3)  # two chunks
    assert s.tolist() == pytest.approx([0.0, 1.0, 1 - 1 / math.sqrt(2), 0.0], abs=1e-6)
    s2 = knn_scores(q, bank, k=2)  # mean of the two largest cosines
    assert s2.tolist() == pytest.approx([0.5, 1.0, 1 - 1 / math.sqrt(2), 0.5], abs=1e-6)
    assert knn_scores(q, bank, k=5).tolist() == pytest.approx(s2.tolist(), abs=1e-6)  # k capped at the bank size


def feature_levels(n: int, seed: int) -> list[np.ndarray]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, 4, 8, 8, generator=g).numpy().astype(np.float16),
            torch.randn(n, 6, 4, 4, generator=g).numpy().astype(np.float16),
            torch.randn(n, 8, 2, 2, generator=g).numpy().astype(np.float16)]


def test_maps_are_zero_on_bank_patches_and_find_a_planted_anomaly():
    c = cfg()
    train = feature_levels(6, 0)
    head = ProjectionHead(18, proj_dim=18).init_from(patch_features(train).permute(0, 2, 3, 1).reshape(-1, 18))
    same = contrastive_maps(head, train, train, c)  # every patch is in the bank
    assert same.shape == (6, 32, 32) and same.dtype == np.float32
    assert np.abs(same).max() < 1e-4
    test = [f[:3].copy() for f in train]
    direction = np.zeros(6, np.float16)
    direction[2] = 60.0
    test[1][1, :, 1, 2] = direction  # one stride-8 cell (row 1, col 2) of test image 1, far from every normal patch
    maps = contrastive_maps(head, train, test, c)
    assert maps.shape == (3, 32, 32)
    assert maps.reshape(3, -1).max(axis=1).argmax() == 1
    r, col = np.unravel_index(maps[1].argmax(), (32, 32))
    assert 8 <= r < 16 and 16 <= col < 24  # inside the planted cell's pixels
    assert maps[1].max() > 0.2 and np.abs(maps[[0, 2]]).max() < 1e-4  # the copies of bank images stay at 0


# --- labels, batches, training --------------------------------------------------------------------------
def test_patch_labels_abnormal_ambiguous_normal():
    m = np.zeros((1, 32, 32), np.uint8)
    m[0, 0:8, 0:8] = 1    # cell (0, 0) fully defective -> -1
    m[0, 9, 9] = 1        # one pixel of cell (1, 1), not its top-left -> 0 (dropped) under the nearest rule
    lab = patch_labels(m, (4, 4), "nearest").reshape(4, 4)
    assert lab[0, 0] == -1 and lab[1, 1] == 0 and (lab == 1).sum() == 14
    small = np.zeros((2, 32, 32), np.uint8)
    small[0, 9:11, 17:20] = 1  # 6 px: no cell is abnormal under either rule...
    small[0, 12, 9] = 1
    lab = patch_labels(small, (4, 4), "area").reshape(2, 4, 4)
    assert lab[0, 1, 2] == -1 and lab[0, 1, 1] == 0  # ...so its most-covered cell becomes the outlier
    assert (lab[0] == 1).sum() == 14 and (lab[1] == 1).all()  # a defect-free mask stays all normal
    assert batch_sizes(1000, 10, 64) == (54, 10) and batch_sizes(1000, 100, 64) == (48, 16)


def test_no_known_anomalies_is_a_clear_error():
    normal = smooth_images(2)
    with pytest.raises(BgadError, match="n-known > 0"):
        train_contrastive("firm", normal, np.zeros((0, 32, 32, 3), np.float32), np.zeros((0, 32, 32), np.uint8),
                          cfg(), TinyExtractor(), progress=False)
    with pytest.raises(BgadError, match="n-known > 0"):
        train_contrastive("supcon", normal, None, None, cfg(), TinyExtractor(), progress=False)
    with pytest.raises(BgadError, match="n-known > 0"):  # masks that cover no patch
        train_contrastive("firm", normal, smooth_images(1), np.zeros((1, 32, 32), np.uint8), cfg(),
                          TinyExtractor(), progress=False)
    with pytest.raises(BgadError, match="firm or supcon"):
        train_contrastive("simclr", normal, smooth_images(1), block_masks(1), cfg(), TinyExtractor(), progress=False)


@pytest.mark.parametrize("method", ["firm", "supcon"])
def test_training_records_epochs_and_resumes_exactly(tmp_path, monkeypatch, method):
    import bgad_mini.contrastive as contrastive

    normal, anomalies, masks = smooth_images(6, seed=1), smooth_images(2, seed=2), block_masks(2)
    ext, c = TinyExtractor(), cfg(contrastive_epochs=2)
    full, hist = train_contrastive(method, normal, anomalies, masks, c, ext, progress=False)
    assert [h["epoch"] for h in hist] == [0, 1] and all(math.isfinite(h["loss"]) for h in hist)
    assert hist[0]["n_outlier_patches"] == 2 * 4 and hist[0]["batch_outliers"] == 8  # 2×2 cells per anomaly
    assert hist[0]["n_inlier_patches"] == 6 * 16 + 2 * 12

    # interrupt the run while it writes its second checkpoint, then rerun: it resumes after epoch 0
    real_replace, calls = contrastive.os.replace, []

    def replace_once(src, dst):
        calls.append(dst)
        if len(calls) > 1:
            raise KeyboardInterrupt
        real_replace(src, dst)

    run = tmp_path / "run"
    ckpt = str(run / "contrastive.pt")
    monkeypatch.setattr(contrastive.os, "replace", replace_once)
    with pytest.raises(KeyboardInterrupt):
        train_contrastive(method, normal, anomalies, masks, c, ext, progress=False, checkpoint=ckpt)
    monkeypatch.setattr(contrastive.os, "replace", real_replace)
    assert torch.load(run / "contrastive.pt", weights_only=False)["epoch"] == 0
    resumed, hist2 = train_contrastive(method, normal, anomalies, masks, c, ext, progress=False, checkpoint=ckpt)
    assert [h["epoch"] for h in hist2] == [0, 1] and hist2[1]["loss"] == pytest.approx(hist[1]["loss"], abs=1e-6)
    for key, value in full.state_dict().items():
        assert torch.allclose(value, resumed.state_dict()[key], atol=1e-6), key
    # a finished run is loaded without touching the backbone
    again, hist3 = train_contrastive(method, normal, anomalies, masks, c, None, progress=False, checkpoint=ckpt)
    assert len(hist3) == 2 and torch.equal(again.linear.weight, resumed.linear.weight)


def test_zero_epochs_give_the_untrained_head_started_from_plain_normal_patches():
    normal = smooth_images(4, seed=5)
    ext = TinyExtractor()
    head, hist = train_contrastive("firm", normal, smooth_images(1), block_masks(1), cfg(contrastive_epochs=0),
                                   ext, progress=False)
    assert hist == [] and not head.training
    plain = patch_features(extract(ext, normal)).permute(0, 2, 3, 1).reshape(-1, 18)
    assert torch.allclose(head.mean, plain.mean(0), atol=1e-5) and torch.allclose(head.scale, plain.std(0), atol=1e-5)
    assert torch.count_nonzero(head.mlp[2].weight) == 0  # the residual branch is still off
