"""The two-phase training loop: phase 1 maximum likelihood on normal patches, phase 2 with known anomalies.

Introduced in the *Conditional flows* chapter (phase 1) and completed in the *BG-SPP* chapter (phase 2).
Backbone features arrive precomputed (see `backbone.FeatureCache`): the loop never runs the backbone for
fixed images. Every epoch ends with a checkpoint; a rerun with the same run folder resumes after the last
finished epoch.
"""
from __future__ import annotations

import math
import os
import random
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .config import Config
from .flow import positional_encoding_2d
from .losses import ml_loss
from .utils import save_torch


# ----------------------------------------------------------------------------------------------
# What one training step sees
# ----------------------------------------------------------------------------------------------
@dataclass
class TrainData:
    """Per-level features of the normal training images and, for phase 2, of the known anomalies.

    feats[l]: (N, C_l, h_l, w_l), float16 or float32. anomaly_feats[l]: (M, C_l, h_l, w_l) with
    anomaly_masks (M, H, W) in {0, 1} at image resolution. `extra_anomalies(rng)`, if given, returns freshly
    made anomalous samples (features, masks) for one epoch, e.g. copy-paste of the known defects.
    """

    feats: list[np.ndarray]
    anomaly_feats: list[np.ndarray] | None = None
    anomaly_masks: np.ndarray | None = None
    anomaly_repeats: int = 1
    extra_anomalies: Callable[[np.random.Generator], tuple[list[np.ndarray], np.ndarray]] | None = None

    @property
    def n_levels(self) -> int:
        return len(self.feats)


class Objective(Protocol):
    """A phase's loss on one chunk of patches of one level."""

    def __call__(self, level: int, loglik: torch.Tensor, abnormal: torch.Tensor) -> tuple[torch.Tensor, dict]:
        ...


def ml_objective(level: int, loglik: torch.Tensor, abnormal: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """Phase 1 (and the NF baseline): L_ml over the normal patches only."""
    loss = ml_loss(loglik[~abnormal])
    return loss, {"ml": float(loss.detach())}


class BGSPPObjective:
    """Phase 2 of BGAD: L = L_ml(normal patches, focal-weighted) + λ·L_bg-spp (seed 001, Eq. of L_bg-spp).

    Boundary scope "batch" (the official code): b_n is the β-quantile of the chunk's own normal ℓ.
    Scope "epoch" (one possible reading of the paper, whose P_n uses the same N as the mini-batch sum of
    L_bg-spp): b_n comes from all normal ℓ of the previous epoch, which the trainer feeds through `observe` from
    the last phase-1 epoch on. Introduced in the *BG-SPP* chapter.
    """

    def __init__(self, cfg: Config, n_levels: int) -> None:
        from .boundary import EpochBoundary

        self.cfg = cfg
        self.epoch_boundaries = [EpochBoundary(cfg.beta, cfg.tau, cfg.normalizer, seed=cfg.seed + l)
                                 for l in range(n_levels)] if cfg.boundary == "epoch" else None
        self._stats: dict[str, list[float]] = {}

    def observe(self, level: int, loglik: torch.Tensor, abnormal: torch.Tensor) -> None:
        if self.epoch_boundaries is not None:
            self.epoch_boundaries[level].update(loglik.detach()[~abnormal])

    def _boundary(self, level: int, loglik: torch.Tensor, abnormal: torch.Tensor):
        from .boundary import boundaries

        if self.epoch_boundaries is not None:
            fixed = self.epoch_boundaries[level].current()
            if fixed is not None:
                return fixed
        return boundaries(loglik.detach()[~abnormal], self.cfg.beta, self.cfg.tau, self.cfg.normalizer)

    def __call__(self, level: int, loglik: torch.Tensor, abnormal: torch.Tensor) -> tuple[torch.Tensor, dict]:
        from .losses import bg_spp_loss, normal_focal_weights

        self.observe(level, loglik, abnormal)
        normal = loglik[~abnormal]
        weights = normal_focal_weights(normal, self.cfg.normalizer) if self.cfg.focal else None
        l_ml = ml_loss(normal, weights)
        if not bool(abnormal.any()) or normal.numel() == 0:
            return l_ml, {"ml": float(l_ml.detach())}
        b_n, b_a = self._boundary(level, loglik, abnormal)
        l_spp, st = bg_spp_loss(loglik, abnormal, b_n, b_a, self.cfg.normalizer, focal=self.cfg.focal)
        stats = {"ml": float(l_ml.detach()), "bg_spp": float(l_spp.detach()), "b_n": float(b_n), "b_a": float(b_a),
                 "frac_abnormal_above_ba": st["n_violating_abnormal"] / max(int(abnormal.sum()), 1)}
        return l_ml + self.cfg.lam * l_spp, stats

    def on_epoch_end(self, epoch: int) -> dict:
        if self.epoch_boundaries is None:
            return {}
        pairs = [eb.finish_epoch() for eb in self.epoch_boundaries]
        return {"epoch_boundary_bn": [None if p is None else float(p[0]) for p in pairs]}

    def state_dict(self) -> dict:
        if self.epoch_boundaries is None:
            return {}
        return {"fixed": [eb.current() for eb in self.epoch_boundaries]}

    def load_state_dict(self, state: dict) -> None:
        for eb, fixed in zip(self.epoch_boundaries or [], state.get("fixed", [])):
            eb._fixed = fixed


class PushPullObjective:
    """BGAD† ("conventional contrastive loss"): L_ml on normals + λ·L_push on every anomalous patch.

    No explicit boundary and no margin. `push="bce"` (default): `losses.pushpull_loss`, introduced in the *BG-SPP*
    chapter. `push="linear"`: focal-weighted L_ml (as BGAD's phase 2) + λ·`losses.linear_push_loss`, a push as
    strong as BG-SPP's that never stops: the control that leaves BG-SPP's boundary as the only difference.
    """

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg

    def __call__(self, level: int, loglik: torch.Tensor, abnormal: torch.Tensor) -> tuple[torch.Tensor, dict]:
        from .losses import linear_push_loss, normal_focal_weights, pushpull_loss

        if self.cfg.push == "linear":
            normal = loglik[~abnormal]
            weights = normal_focal_weights(normal, self.cfg.normalizer) if self.cfg.focal else None
            l_ml = ml_loss(normal, weights)
            l_push, st = linear_push_loss(loglik, abnormal, self.cfg.normalizer, focal=self.cfg.focal)
            return l_ml + self.cfg.lam * l_push, {"ml": float(l_ml.detach()), "push": st["l_push"]}
        loss, st = pushpull_loss(loglik, abnormal, self.cfg.normalizer, push_weight=self.cfg.lam)
        return loss, {"ml": st["l_pull"], "push": st["l_push"]}


def make_objective(cfg: Config, n_levels: int) -> Objective | None:
    """The phase-2 objective of a method: BG-SPP for bgad, push-pull for pushpull, None (ML only) for nf."""
    if cfg.method == "bgad":
        return BGSPPObjective(cfg, n_levels)
    if cfg.method == "pushpull":
        return PushPullObjective(cfg)
    return None


# ----------------------------------------------------------------------------------------------
# Small pieces, each testable on its own
# ----------------------------------------------------------------------------------------------
def learning_rate(t: float, total: float, warmup: float, base_lr: float, min_ratio: float = 1e-3) -> float:
    """Cosine decay from `base_lr` to `base_lr·min_ratio` over `total` epochs (t may be fractional), with a
    linear warm-up from base_lr/10 that ends exactly on the cosine curve at `warmup` epochs (the official FAS
    engine's warm-up overshoots; see the Reproduction chapter). min_ratio 10⁻³ is the official eta_min, but the
    official cosine is evaluated once per meta-epoch and so never reaches it: its last meta-epoch (24 of 25)
    runs at about 4.9·10⁻³·lr, while this per-batch curve ends close to base_lr·min_ratio."""
    total = max(total, 1e-9)
    eta_min = base_lr * min_ratio
    cosine = eta_min + (base_lr - eta_min) * 0.5 * (1.0 + math.cos(math.pi * min(t, total) / total))
    if t < warmup:
        start = base_lr / 10.0
        return start + (cosine - start) * t / warmup
    return cosine


def downsample_masks(masks: torch.Tensor, size: tuple[int, int], rule: str = "nearest") -> torch.Tensor:
    """Which patches of a level are abnormal: (B, H, W) {0,1} -> (B, h, w) bool.

    nearest: the official rule, `F.interpolate(mode='nearest')`, i.e. the top-left pixel of each cell.
    area: a patch is abnormal when at least a quarter of its cell is defective (thin defects survive at /16).
    """
    m = masks.float().unsqueeze(1)
    if rule == "nearest":
        return F.interpolate(m, size=size, mode="nearest").squeeze(1) > 0.5
    return F.adaptive_avg_pool2d(m, size).squeeze(1) >= 0.25


def sample_patches(
    feats: torch.Tensor, abnormal: torch.Tensor, per_image: int, pos: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pick `per_image` random locations per image (0 = all), plus every abnormal location.

    Keeping every abnormal location makes the anomalous share of the sampled vectors (and so of every chunk) far
    higher than with all locations, as the official code takes, whenever per_image < h·w: more chunks contain an
    anomalous patch and so take a BG-SPP step (a deviation listed in the Reproduction chapter).

    feats (B, C, h, w), abnormal (B, h, w) bool, pos (P, h, w) -> vectors (n, C), conditions (n, P), labels (n,).
    """
    b, c, h, w = feats.shape
    flat_abn = abnormal.reshape(b, h * w)
    if per_image <= 0 or per_image >= h * w:
        chosen = torch.ones(b, h * w, dtype=torch.bool)
    else:
        ranks = torch.rand(b, h * w, generator=generator).argsort(dim=1).argsort(dim=1)
        chosen = (ranks < per_image) | flat_abn
    x = feats.permute(0, 2, 3, 1).reshape(b * h * w, c)
    cond = pos.permute(1, 2, 0).reshape(1, h * w, -1).expand(b, -1, -1).reshape(b * h * w, -1)
    keep = chosen.reshape(-1)
    return x[keep], cond[keep], flat_abn.reshape(-1)[keep]


def split_chunks(n: int, flow_batch: int, generator: torch.Generator) -> list[torch.Tensor]:
    """Shuffle n indices into chunks of about `flow_batch` (no vector is dropped, unlike the official code)."""
    perm = torch.randperm(n, generator=generator)
    n_chunks = max(1, round(n / flow_batch))
    return list(torch.chunk(perm, n_chunks))


# ----------------------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------------------
@dataclass
class History:
    """Per-epoch records: phase, lr, mean loss per level, extra statistics from the objective, seconds."""

    epochs: list[dict] = field(default_factory=list)

    def to_list(self) -> list[dict]:
        return list(self.epochs)


def _to_tensor(a: np.ndarray, idx: np.ndarray, device: str) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a[idx])).to(device=device, dtype=torch.float32)


def _rng_state() -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def _restore(path: str, flows: torch.nn.Module, optims: list, device: str) -> dict:
    """Load a saved training state into `flows` and `optims` and set the RNGs; return it (epoch, history, ...)."""
    state = torch.load(path, map_location=device, weights_only=False)
    flows.load_state_dict(state["flows"])
    for opt, s in zip(optims, state["optims"]):
        opt.load_state_dict(s)
    _set_rng_state(state["rng"])
    return state




def train_flows(
    flows: torch.nn.Module,
    data: TrainData,
    cfg: Config,
    phase2_objective: Objective | None = None,
    checkpoint: str | None = None,
    device: str = "cpu",
    progress: bool = True,
    on_epoch_end: Callable[[int, dict], None] | None = None,
    shared_phase1: str | None = None,
) -> History:
    """Train `flows` (one conditional flow per level) for `cfg.total_epochs` epochs.

    Epochs [0, phase1_epochs) use L_ml on normal images only. Later epochs use `phase2_objective` on normal
    images plus the known anomalies (BG-SPP, push-pull), or, when it is None, keep L_ml on normals only: the
    fair NF baseline trains exactly as long as the method it is compared with.

    `shared_phase1` is a file shared by runs that differ only in what phase 2 does (method, β, τ, λ, N, ...):
    the state after epoch `phase1_epochs - 2` is written there by the first such run and loaded by the others,
    which then train only the last phase-1 epoch (it feeds the epoch-scope boundary) and phase 2. Every epoch
    draws from its own seeded stream, so a run that loads it ends with the same weights as one that does not.
    """
    from tqdm import tqdm

    n_levels = data.n_levels
    optims = [torch.optim.Adam(flows.flows[l].parameters(), lr=cfg.lr) for l in range(n_levels)]
    n_images = data.feats[0].shape[0]
    pos = [positional_encoding_2d(cfg.pos_dim, f.shape[2], f.shape[3]).to(device) for f in data.feats]
    history = History()
    start_epoch = 0
    ckpt_path = checkpoint

    if ckpt_path and os.path.exists(ckpt_path):
        state = _restore(ckpt_path, flows, optims, device)
        history.epochs = state["history"]
        if phase2_objective is not None and hasattr(phase2_objective, "load_state_dict"):
            phase2_objective.load_state_dict(state.get("objective", {}))
        start_epoch = state["epoch"] + 1
        if progress and start_epoch < cfg.total_epochs:
            print(f"resuming from epoch {start_epoch} of {cfg.total_epochs} ({ckpt_path})")
    share_epoch = cfg.phase1_epochs - 2 if shared_phase1 else -1
    if start_epoch == 0 and share_epoch >= 0 and os.path.exists(shared_phase1):
        state = _restore(shared_phase1, flows, optims, device)
        history.epochs = [dict(r, shared=True) for r in state["history"]]
        start_epoch = state["epoch"] + 1
        if progress:
            print(f"phase-1 epochs 1-{start_epoch} loaded from {shared_phase1} (same data, flows and schedule)")

    flows.train()
    bar = tqdm(range(start_epoch, cfg.total_epochs), desc="train", unit="epoch", disable=not progress,
               initial=start_epoch, total=cfg.total_epochs)
    for epoch in bar:
        t0 = time.perf_counter()
        # one fresh stream per epoch: a resumed run draws exactly what an uninterrupted one would
        gen = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
        np_rng = np.random.default_rng([cfg.seed, epoch])
        phase = 1 if epoch < cfg.phase1_epochs else 2
        use_anomalies = phase == 2 and phase2_objective is not None
        objective = phase2_objective if use_anomalies else ml_objective
        # the epoch-scope boundary needs the normal ℓ of the epoch before phase 2 starts
        observe = getattr(phase2_objective, "observe", None) if epoch == cfg.phase1_epochs - 1 else None

        # the epoch's samples: normal images, then (phase 2) known anomalies and fresh copy-paste ones
        level_feats = list(data.feats)
        masks = None
        n_abn = 0
        if use_anomalies and data.anomaly_feats is not None:
            extra_feats, extra_masks = [data.anomaly_feats], [data.anomaly_masks]
            if data.extra_anomalies is not None:
                ef, em = data.extra_anomalies(np_rng)
                extra_feats.append(ef)
                extra_masks.append(em)
            level_feats = [np.concatenate([data.feats[l]] + [np.repeat(e[l], data.anomaly_repeats, 0) if i == 0 else e[l]
                                                               for i, e in enumerate(extra_feats)]) for l in range(n_levels)]
            abn_masks = np.concatenate([np.repeat(extra_masks[0], data.anomaly_repeats, 0)] + extra_masks[1:])
            n_abn = abn_masks.shape[0]
            masks = np.concatenate([np.zeros((n_images,) + abn_masks.shape[1:], np.uint8), abn_masks])
        order = np_rng.permutation(n_images + n_abn)
        sums: list[dict[str, float]] = [dict() for _ in range(n_levels)]
        counts: list[dict[str, int]] = [dict() for _ in range(n_levels)]

        n_batches = math.ceil(len(order) / cfg.batch_images)
        for b, start in enumerate(range(0, len(order), cfg.batch_images)):
            idx = np.sort(order[start:start + cfg.batch_images])
            lr = learning_rate(epoch + b / n_batches, cfg.total_epochs, cfg.warmup_epochs, cfg.lr)
            batch_masks = torch.from_numpy(masks[idx]) if masks is not None else None
            for l in range(n_levels):
                for g in optims[l].param_groups:
                    g["lr"] = lr
                f = _to_tensor(level_feats[l], idx, device)
                h, w = f.shape[2:]
                if batch_masks is not None:
                    abn = downsample_masks(batch_masks, (h, w), cfg.mask_rule).to(device)
                else:
                    abn = torch.zeros(f.shape[0], h, w, dtype=torch.bool, device=device)
                x, cond, lab = sample_patches(f, abn, cfg.patches_per_image, pos[l], gen)
                for chunk in split_chunks(x.shape[0], cfg.flow_batch, gen):
                    chunk = chunk.to(device)
                    loglik = flows.log_likelihood(l, x[chunk], cond[chunk])
                    loss, stats = objective(l, loglik, lab[chunk])
                    if observe is not None:
                        observe(l, loglik, lab[chunk])
                    optims[l].zero_grad(set_to_none=True)
                    loss.backward()
                    optims[l].step()
                    stats = {"loss": float(loss.detach()), **stats}
                    for k, v in stats.items():
                        sums[l][k] = sums[l].get(k, 0.0) + v
                        counts[l][k] = counts[l].get(k, 0) + 1

        record = {
            "epoch": epoch, "phase": phase, "lr": lr, "seconds": time.perf_counter() - t0,
            "n_normal_images": n_images, "n_anomalous_images": n_abn,
            "levels": [{k: v / counts[l][k] for k, v in sums[l].items()} for l in range(n_levels)],
        }
        if hasattr(phase2_objective, "on_epoch_end") and (use_anomalies or observe is not None):
            record.update(phase2_objective.on_epoch_end(epoch) or {})
        history.epochs.append(record)
        bar.set_postfix(phase=phase, loss=np.mean([r.get("loss", 0.0) for r in record["levels"]]))
        state = {"epoch": epoch, "flows": flows.state_dict(), "optims": [o.state_dict() for o in optims],
                 "history": history.epochs, "rng": _rng_state()}
        if ckpt_path:
            save_torch({**state, "objective": phase2_objective.state_dict()
                          if hasattr(phase2_objective, "state_dict") else {}}, ckpt_path)
        if epoch == share_epoch and not os.path.exists(shared_phase1):
            os.makedirs(os.path.dirname(shared_phase1) or ".", exist_ok=True)
            save_torch(state, shared_phase1)
        if on_epoch_end is not None:
            on_epoch_end(epoch, record)
    flows.eval()
    return history


def level_sizes(feats: Sequence[np.ndarray]) -> list[tuple[int, int]]:
    return [(f.shape[2], f.shape[3]) for f in feats]
