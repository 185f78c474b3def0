"""Phase-1 training: learning-rate schedule, mask downsampling, patch sampling, ML loss, checkpoint/resume."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bgad_mini.config import Config
from bgad_mini.flow import ConditionalFlows
from bgad_mini.losses import ml_loss
from bgad_mini.train import (TrainData, downsample_masks, learning_rate, sample_patches, split_chunks,
                             train_flows)


def test_warmup_starts_at_a_tenth_and_joins_the_cosine_curve():
    base = 2e-4
    assert learning_rate(0, 10, 2, base) == pytest.approx(base / 10)
    no_warm = lambda t: learning_rate(t, 10, 0, base)
    assert learning_rate(2, 10, 2, base) == pytest.approx(no_warm(2))
    assert learning_rate(1, 10, 2, base) == pytest.approx((base / 10 + no_warm(1)) / 2)
    ramp = [learning_rate(t / 10, 10, 2, base) for t in range(0, 21)]
    assert all(b > a for a, b in zip(ramp, ramp[1:]))  # warm-up rises monotonically, no overshoot
    assert max(learning_rate(t / 10, 10, 2, base) for t in range(101)) <= base + 1e-12
    assert learning_rate(10, 10, 2, base) == pytest.approx(base * 1e-3)
    assert learning_rate(5, 10, 0, base) == pytest.approx(base * 1e-3 + (base - base * 1e-3) * 0.5)


def test_nearest_mask_rule_takes_the_top_left_pixel_area_rule_a_quarter():
    m = torch.zeros(1, 8, 8, dtype=torch.uint8)
    m[0, 1, 1] = 1          # inside cell (0, 0) but not its top-left pixel
    m[0, 4:6, 4:6] = 1      # a quarter of cell (1, 1), including its top-left pixel (4, 4)
    near = downsample_masks(m, (2, 2), "nearest")
    area = downsample_masks(m, (2, 2), "area")
    assert near.tolist() == [[[False, False], [False, True]]]
    assert area.tolist() == [[[False, False], [False, True]]]
    m[0, 0:2, 0:2] = 1  # 4 of 16 pixels of cell (0,0) -> area says abnormal; top-left is abnormal too
    assert downsample_masks(m, (2, 2), "area")[0, 0, 0]


def test_sample_patches_keeps_every_abnormal_location():
    g = torch.Generator().manual_seed(0)
    feats = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    abn = torch.zeros(2, 4, 4, dtype=torch.bool)
    abn[1, 2, 3] = True
    pos = torch.randn(8, 4, 4)
    x, c, lab = sample_patches(feats, abn, 3, pos, g)
    assert x.shape[1] == 3 and c.shape[1] == 8
    assert 6 <= x.shape[0] <= 7 and lab.sum() == 1
    assert torch.equal(x[lab][0], feats[1, :, 2, 3])
    assert torch.equal(c[lab][0], pos[:, 2, 3])
    x_all, _, _ = sample_patches(feats, abn, 0, pos, g)
    assert x_all.shape[0] == 32


def test_chunks_cover_every_vector_once():
    chunks = split_chunks(10_000, 4096, torch.Generator().manual_seed(1))
    joined = torch.cat(chunks).sort().values
    assert torch.equal(joined, torch.arange(10_000)) and len(chunks) == 2


def test_ml_loss_is_softplus_of_minus_loglik():
    l = torch.tensor([-5.0, 0.0, 3.0])
    assert ml_loss(l).item() == pytest.approx(np.mean(np.log1p(np.exp([5.0, 0.0, -3.0]))))
    assert ml_loss(torch.tensor([-50.0])).item() == pytest.approx(50.0, rel=1e-6)
    assert ml_loss(torch.tensor([])).item() == 0.0


def _toy(seed=0):
    rng = np.random.default_rng(seed)
    # two levels: 4-dim features on 4x4 and 8-dim on 2x2 grids, shifted away from N(0, I)
    return [(rng.normal(2.0, 0.5, (12, 4, 4, 4))).astype(np.float16),
            (rng.normal(-1.0, 2.0, (12, 8, 2, 2))).astype(np.float16)]


def _cfg(**kw):
    base = dict(coupling_blocks=2, pos_dim=8, phase1_epochs=3, phase2_epochs=0, warmup_epochs=1, batch_images=4,
                patches_per_image=8, flow_batch=64, lr=2e-3, seed=5)
    base.update(kw)
    return Config.from_profile("smoke", **base)


def _mean_loglik(flows, feats, cfg):
    from bgad_mini.flow import level_log_likelihoods

    return [float(l.mean()) for l in level_log_likelihoods(flows, [torch.from_numpy(f.astype(np.float32)) for f in feats],
                                                           cfg.pos_dim)]


def test_phase1_raises_the_likelihood_of_normal_patches(tmp_path):
    torch.manual_seed(0)
    cfg = _cfg(phase1_epochs=6)
    feats = _toy()
    flows = ConditionalFlows([4, 8], cfg.pos_dim, cfg.coupling_blocks, cfg.clamp_alpha)
    before = _mean_loglik(flows, feats, cfg)
    hist = train_flows(flows, TrainData(feats), cfg, checkpoint=str(tmp_path / "checkpoint.pt"), progress=False)
    after = _mean_loglik(flows, feats, cfg)
    assert len(hist.epochs) == 6 and all(r["phase"] == 1 for r in hist.epochs)
    assert all(a > b + 0.05 for a, b in zip(after, before)), (before, after)
    assert hist.epochs[-1]["levels"][0]["loss"] < hist.epochs[0]["levels"][0]["loss"]


def test_interrupted_training_resumes_to_the_same_weights(tmp_path):
    feats = _toy(1)
    cfg = _cfg(phase1_epochs=4)

    torch.manual_seed(0)
    full = ConditionalFlows([4, 8], cfg.pos_dim, cfg.coupling_blocks, cfg.clamp_alpha)
    init = {k: v.clone() for k, v in full.state_dict().items()}
    train_flows(full, TrainData(feats), cfg, checkpoint=str(tmp_path / "a" / "checkpoint.pt"), progress=False)

    class Stop(Exception):
        pass

    def stop_after_two(epoch, record):
        if epoch == 1:
            raise Stop

    part = ConditionalFlows([4, 8], cfg.pos_dim, cfg.coupling_blocks, cfg.clamp_alpha)
    part.load_state_dict(init)
    with pytest.raises(Stop):
        train_flows(part, TrainData(feats), cfg, checkpoint=str(tmp_path / "b" / "checkpoint.pt"), progress=False,
                    on_epoch_end=stop_after_two)
    resumed = ConditionalFlows([4, 8], cfg.pos_dim, cfg.coupling_blocks, cfg.clamp_alpha)
    hist = train_flows(resumed, TrainData(feats), cfg, checkpoint=str(tmp_path / "b" / "checkpoint.pt"), progress=False)
    assert [r["epoch"] for r in hist.epochs] == [0, 1, 2, 3]
    for k, v in full.state_dict().items():
        assert torch.allclose(v, resumed.state_dict()[k], atol=1e-6), k


# ---- phase 2 -------------------------------------------------------------------------------------
def test_two_phase_switch_brings_in_the_anomalies_only_in_phase_2(tmp_path):
    feats = _toy(2)
    anomaly_feats = [f[:2].copy() for f in feats]
    masks = np.zeros((2, 8, 8), np.uint8)
    masks[:, :4, :4] = 1  # top-left quarter defective
    calls = []

    def recording(level, loglik, abnormal):
        calls.append((level, int(abnormal.sum()), int(abnormal.numel())))
        return ml_loss(loglik[~abnormal]), {}

    cfg = _cfg(phase1_epochs=2, phase2_epochs=2)
    flows = ConditionalFlows([4, 8], cfg.pos_dim, cfg.coupling_blocks, cfg.clamp_alpha)
    hist = train_flows(flows, TrainData(feats, anomaly_feats=anomaly_feats, anomaly_masks=masks, anomaly_repeats=3),
                       cfg, phase2_objective=recording, progress=False)
    assert [r["phase"] for r in hist.epochs] == [1, 1, 2, 2]
    assert [r["n_anomalous_images"] for r in hist.epochs] == [0, 0, 6, 6]
    # level 0 grid is 4x4: a quarter is 4 abnormal patches per anomalous image, 6 images per epoch, 2 epochs
    assert sum(c[1] for c in calls if c[0] == 0) == 4 * 6 * 2
    assert sum(c[1] for c in calls if c[0] == 1) == 1 * 6 * 2  # 2x2 grid: one abnormal patch per image


def test_bgspp_objective_is_ml_plus_lambda_times_bgspp_by_hand():
    from bgad_mini.train import BGSPPObjective

    cfg = Config.from_profile("book", focal=False, lam=2.0, beta=0.25, tau=0.1)
    obj = BGSPPObjective(cfg, 1)
    # normals x = l/10: [-1.2, -0.8, -0.3, -0.1]; beta .25 of 4 -> k = 1 -> b_n = -0.8; b_a = -0.9
    l = torch.tensor([-12.0, -8.0, -3.0, -1.0, 5.0, -20.0], requires_grad=True)
    abn = torch.tensor([False, False, False, False, True, True])
    loss, st = obj(0, l, abn)
    sp = lambda v: math.log1p(math.exp(v))
    ml = (sp(12) + sp(8) + sp(3) + sp(1)) / 4
    # pull: normals with x <= -0.8: -1.2 (0.4) and -0.8 (0.0) -> mean 0.2; push: x >= -0.9: 0.5 -> 1.4
    assert st["b_n"] == pytest.approx(-0.8) and st["b_a"] == pytest.approx(-0.9)
    assert loss.item() == pytest.approx(ml + 2.0 * (0.2 + 1.4), rel=1e-5)


def test_epoch_boundary_is_fixed_from_the_last_phase_1_epoch(tmp_path):
    from bgad_mini.train import BGSPPObjective

    feats = _toy(3)
    masks = np.zeros((2, 8, 8), np.uint8)
    masks[:, :4, :4] = 1
    cfg = _cfg(phase1_epochs=2, phase2_epochs=1, boundary="epoch")
    obj = BGSPPObjective(cfg, 2)
    flows = ConditionalFlows([4, 8], cfg.pos_dim, cfg.coupling_blocks, cfg.clamp_alpha)
    hist = train_flows(flows, TrainData(feats, anomaly_feats=[f[:2] for f in feats], anomaly_masks=masks), cfg,
                       phase2_objective=obj, progress=False)
    assert "epoch_boundary_bn" not in hist.epochs[0]
    fixed_after_phase1 = hist.epochs[1]["epoch_boundary_bn"]
    assert all(b is not None for b in fixed_after_phase1)
    # phase 2 used the boundary fixed at the end of phase 1, for every chunk of the epoch
    assert hist.epochs[2]["levels"][0]["b_n"] == pytest.approx(fixed_after_phase1[0], abs=1e-6)


def test_copy_paste_moves_exactly_the_masked_pixels():
    from bgad_mini.data import copy_paste

    rng = np.random.default_rng(0)
    normal = np.zeros((32, 32, 3), np.float32)
    anomaly = np.ones((32, 32, 3), np.float32)
    mask = np.zeros((32, 32), np.uint8)
    mask[2:6, 3:10] = 1
    for _ in range(20):
        img, m = copy_paste(normal, anomaly, mask, rng)
        assert m.sum() == mask.sum()
        assert np.array_equal(m.astype(bool), (img != normal).any(-1))
    assert copy_paste(normal, anomaly, np.zeros_like(mask), rng)[1].sum() == 0


def test_a_run_that_loads_the_shared_phase_1_ends_with_the_same_weights(tmp_path):
    """nf writes the state after phase-1 epoch P-2; bgad loads it and matches a bgad run trained from scratch."""
    from bgad_mini.train import BGSPPObjective

    feats = _toy(4)
    masks = np.zeros((2, 8, 8), np.uint8)
    masks[:, :4, :4] = 1
    data = lambda: TrainData(feats, anomaly_feats=[f[:2] for f in feats], anomaly_masks=masks)
    cfg = _cfg(phase1_epochs=3, phase2_epochs=2, boundary="epoch", method="bgad")
    shared = str(tmp_path / "phase1" / "shared.pt")

    def fresh():
        torch.manual_seed(0)
        return ConditionalFlows([4, 8], cfg.pos_dim, cfg.coupling_blocks, cfg.clamp_alpha)

    alone = fresh()
    h_alone = train_flows(alone, data(), cfg, phase2_objective=BGSPPObjective(cfg, 2), progress=False)
    nf = fresh()
    train_flows(nf, TrainData(feats), cfg.with_overrides(method="nf"), progress=False, shared_phase1=shared)
    assert torch.load(shared, weights_only=False)["epoch"] == 1  # epochs 0 and 1 of 3 phase-1 epochs

    loaded = fresh()
    h = train_flows(loaded, data(), cfg, phase2_objective=BGSPPObjective(cfg, 2), progress=False,
                    shared_phase1=shared)
    assert [r.get("shared", False) for r in h.epochs] == [True, True, False, False, False]
    # the epoch boundary was fixed from the (retrained) last phase-1 epoch, as in the run without sharing
    assert h.epochs[2]["epoch_boundary_bn"] == pytest.approx(h_alone.epochs[2]["epoch_boundary_bn"], abs=1e-6)
    for k, v in alone.state_dict().items():
        assert torch.allclose(v, loaded.state_dict()[k], atol=1e-6), k
    # and it really is a different model from the nf continuation
    assert any(not torch.allclose(v, loaded.state_dict()[k], atol=1e-4) for k, v in nf.state_dict().items())
