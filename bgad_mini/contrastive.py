"""FIRM and SupCon at patch level: a projection head on frozen backbone patch features, scored by k-NN.

Introduced in the *Contrastive* chapter. The contrastive baselines do not use a flow. Each location of the
frozen multi-scale backbone features becomes one patch vector (`patch_features`). A small head
(`ProjectionHead`) maps it to a unit vector. The head is trained with the FIRM loss (or SupCon) on two
photometric views of the same images (`photometric_view`); both views keep the same geometry, so patch i of
view 1 and patch i of view 2 are the two views of one patch. Normal patches are inliers. Patches inside a
known anomaly's mask are outliers: for FIRM each one is its own class, for SupCon they all share one. Every
step draws a balanced batch that holds every available outlier (up to a quarter of the batch) plus a
random share of the normal patches (`train_contrastive`).

Scoring (`contrastive_maps`) follows PatchCore and FIRM's `evaluate_oneclass.py`. A bank holds the
embeddings of normal training patches. A test patch scores s = 1 − (mean of its k largest cosine
similarities to the bank), so s = 0 means the patch equals a bank patch. The patch-grid map is upsampled
bilinearly to the image, and the image score is the map's maximum (`evaluate.image_scores`).

Choices made here, not in the FIRM code (its public code is image-level only, see reference §3.5):
- Grid: the stride-8 grid (the second level's, 32×32 at 256 px) for all levels. Finer levels are
  average-pooled to it and coarser ones upsampled bilinearly, then concatenated (24 + 40 + 112 = 176
  channels for EfficientNet-Lite0). The stride-4 grid has 4× the patches and made k-NN scoring about 4× slower
  (measured: 84 s against 23 s for the 99 test images of a synthetic category on one thread) with no gain.
- Head: input standardisation (normal-patch mean and std, kept as buffers), then a linear map initialised
  to the top `proj_dim` principal axes, plus a residual MLP whose last layer starts at zero. Before training
  the head is therefore "standardised features, PCA-projected", a sensible k-NN embedding, so a trained head
  can be compared with the untrained one (`contrastive_epochs=0`).
- Views: brightness, contrast, gamma, slight blur and noise only. Hue/saturation jitter (used by FIRM) is
  left out because colour defects (stains, foreign matter) would otherwise be learned as a nuisance.
- Outlier patches: `train.downsample_masks(masks, grid, cfg.mask_rule)`. Patches that touch a defect without
  counting as abnormal are dropped (neither inlier nor outlier). Patches of anomalous images away from the
  defect are inliers.
"""
from __future__ import annotations

import math
import os
import time
from typing import Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import Config
from .errors import BgadError
from .utils import save_torch
NO_ANOMALIES = "firm and supcon need known anomalies: set --n-known > 0"
MAX_OUTLIER_SHARE = 0.25  # at most this share of a batch is outliers; the rest are normal patches
INIT_PATCHES = 20_000  # normal patches that set the head's standardisation and PCA start

FeatureLevels = Sequence[Union[np.ndarray, Tensor]]


# ----------------------------------------------------------------------------------------------
# Patch features on one grid
# ----------------------------------------------------------------------------------------------
def patch_grid(feats: FeatureLevels) -> tuple[int, int]:
    """The common grid: the second level's (h, w) (stride 8 for the default backbone), or the only level's."""
    if len(feats) == 0:
        raise BgadError("no feature levels given")
    ref = feats[min(1, len(feats) - 1)]
    return int(ref.shape[2]), int(ref.shape[3])


def patch_features(feats: FeatureLevels) -> Tensor:
    """Per-level maps (N, C_l, h_l, w_l) -> one float32 map (N, ΣC_l, h, w) on the `patch_grid`.

    Finer levels are average-pooled onto the grid and coarser ones upsampled bilinearly (align_corners=False,
    which keeps cell centres in place), then the levels are concatenated along channels.
    """
    h, w = patch_grid(feats)
    n = feats[0].shape[0]
    out = []
    for f in feats:
        t = f if torch.is_tensor(f) else torch.from_numpy(np.asarray(f))
        t = t.detach().to(torch.float32)
        if t.ndim != 4 or t.shape[0] != n:
            raise BgadError("every feature level must be an (N, C, h, w) array with the same N")
        if t.shape[2:] == (h, w):
            pass
        elif t.shape[2] >= h:
            t = F.adaptive_avg_pool2d(t, (h, w))
        else:
            t = F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False)
        out.append(t.cpu())
    return torch.cat(out, dim=1)


def _rows(maps: Tensor) -> Tensor:
    """(N, C, h, w) -> (N·h·w, C), locations in row-major order per image."""
    n, c, h, w = maps.shape
    return maps.permute(0, 2, 3, 1).reshape(n * h * w, c)


# ----------------------------------------------------------------------------------------------
# Two photometric views with the same geometry
# ----------------------------------------------------------------------------------------------
def photometric_view(images: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """One random photometric view of each image (N, H, W, 3) in [0, 1]; no geometric change.

    Per image, scaled by `strength`: contrast ×e^u (u ~ U(±0.2)) about the image mean, brightness + U(±0.08),
    gamma e^u (u ~ U(±0.2)), with probability 1/2 a Gaussian blur (σ ~ U(0.3, 1.0) px), and Gaussian noise
    (σ ~ U(0, 0.01)). Strength 0 returns an exact copy. Because the geometry never changes, location i of two
    views shows the same piece of the scene.
    """
    from scipy.ndimage import gaussian_filter

    images = np.asarray(images, dtype=np.float32)
    if strength < 0:
        raise BgadError(f"aug_strength must be >= 0, got {strength}")
    if strength == 0:
        return images.copy()
    out = np.empty_like(images)
    for i, img in enumerate(images):
        contrast = math.exp(rng.uniform(-0.2, 0.2) * strength)
        brightness = rng.uniform(-0.08, 0.08) * strength
        gamma = math.exp(rng.uniform(-0.2, 0.2) * strength)
        x = (img - img.mean()) * contrast + img.mean() + brightness
        x = np.clip(x, 0.0, 1.0) ** gamma
        if rng.random() < 0.5:
            x = gaussian_filter(x, sigma=(rng.uniform(0.3, 1.0) * strength,) * 2 + (0,))
        x = x + rng.normal(0.0, rng.uniform(0.0, 0.01) * strength, size=x.shape)
        out[i] = np.clip(x, 0.0, 1.0)
    return out


def view_pair_features(images: np.ndarray, extractor, pairs: int, strength: float, rng: np.random.Generator,
                       device: str = "cpu", batch_size: int = 8) -> tuple[Tensor, tuple[int, int]]:
    """Patch rows of `pairs` view pairs, float16 (pairs, 2, N·h·w, C), and the grid (h, w); kept in memory.

    Augmented views cannot come from the on-disk cache (their pixels are new), so the backbone runs
    2·pairs times per image, in batches, and each view keeps only its patch rows.
    """
    from .backbone import extract

    if len(images) == 0:
        raise BgadError("no images to make views of")
    out, grid = None, (0, 0)
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        views = []
        for _ in range(pairs):
            pair = []
            for _ in range(2):
                maps = patch_features(extract(extractor, photometric_view(chunk, rng, strength), device, batch_size))
                grid = (maps.shape[2], maps.shape[3])
                pair.append(_rows(maps).to(torch.float16))
            views.append(torch.stack(pair))
        rows = torch.stack(views)
        per_image = rows.shape[2] // len(chunk)
        if out is None:
            out = torch.empty(pairs, 2, len(images) * per_image, rows.shape[3], dtype=torch.float16)
        out[:, :, start * per_image:(start + len(chunk)) * per_image] = rows
    return out, grid


# ----------------------------------------------------------------------------------------------
# The head
# ----------------------------------------------------------------------------------------------
class ProjectionHead(nn.Module):
    """g(x) = normalise(W·x̃ + MLP(x̃)) with x̃ = (x − μ)/σ: a unit embedding of one patch vector x.

    W (in_dim → proj_dim, no bias) starts as the top principal axes of the normal patches (`init_from`);
    MLP = Linear(in_dim, hidden)-ReLU-Linear(hidden, proj_dim) with its last layer at zero. The untrained head
    is therefore the standardised, PCA-projected feature, and training learns a residual on top of it.
    """

    def __init__(self, in_dim: int, proj_dim: int = 128, hidden: int = 256) -> None:
        super().__init__()
        self.in_dim, self.proj_dim, self.hidden = int(in_dim), int(proj_dim), int(hidden)
        self.register_buffer("mean", torch.zeros(self.in_dim))
        self.register_buffer("scale", torch.ones(self.in_dim))
        self.linear = nn.Linear(self.in_dim, self.proj_dim, bias=False)
        self.mlp = nn.Sequential(nn.Linear(self.in_dim, self.hidden), nn.ReLU(), nn.Linear(self.hidden, self.proj_dim))
        nn.init.zeros_(self.mlp[2].weight)
        nn.init.zeros_(self.mlp[2].bias)

    @torch.no_grad()
    def init_from(self, x: Tensor) -> "ProjectionHead":
        """Set μ, σ from normal patch vectors x (n, in_dim) and W to their top principal axes."""
        x = x.to(self.mean.device, torch.float32)
        self.mean.copy_(x.mean(0))
        self.scale.copy_(x.std(0).clamp_min(1e-6))
        z = (x - self.mean) / self.scale
        _, _, vh = torch.linalg.svd(z, full_matrices=False)
        k = min(self.proj_dim, vh.shape[0])
        self.linear.weight[:k] = vh[:k]  # further rows (proj_dim > in_dim) keep their random init
        return self

    def forward(self, x: Tensor) -> Tensor:
        z = (x.to(self.mean.dtype) - self.mean) / self.scale
        return F.normalize(self.linear(z) + self.mlp(z), dim=-1)

    def config(self) -> dict:
        return {"in_dim": self.in_dim, "proj_dim": self.proj_dim, "hidden": self.hidden}


# ----------------------------------------------------------------------------------------------
# Patch labels and balanced batches
# ----------------------------------------------------------------------------------------------
def patch_labels(masks: np.ndarray | Tensor, grid: tuple[int, int], rule: str = "nearest") -> Tensor:
    """Labels of the grid's patches of (M, H, W) masks: +1 normal, −1 abnormal, 0 ambiguous (dropped).

    Abnormal follows `train.downsample_masks(rule)`. A defect too small or thin for the rule to mark any of
    its image's cells (common at 64 px) still gives one outlier: its image's most-covered cell. A patch whose
    cell contains defect pixels without being abnormal is ambiguous. Returns int8 (M·h·w,), in the row order
    of `_rows`.
    """
    from .train import downsample_masks

    m = torch.as_tensor(np.asarray(masks)) if not torch.is_tensor(masks) else masks
    m = (m > 0).to(torch.uint8)
    abnormal = downsample_masks(m, grid, rule)
    coverage = F.adaptive_avg_pool2d(m.float().unsqueeze(1), grid).squeeze(1)
    touched = coverage > 0
    for i in torch.nonzero(touched.flatten(1).any(1) & ~abnormal.flatten(1).any(1)).flatten().tolist():
        abnormal[i].view(-1)[coverage[i].argmax()] = True
    labels = torch.ones(abnormal.shape, dtype=torch.int8)
    labels[touched] = 0
    labels[abnormal] = -1
    return labels.reshape(-1)


def batch_sizes(n_inliers: int, n_outliers: int, batch: int) -> tuple[int, int]:
    """(inliers, outliers) per step: every outlier up to a quarter of the batch, the rest inliers."""
    n_out = min(n_outliers, int(batch * MAX_OUTLIER_SHARE))
    return min(n_inliers, batch - n_out), n_out


def _contrastive_loss(method: str):
    from .losses import firm_loss, supcon_loss

    if method == "firm":
        return firm_loss
    if method == "supcon":
        return supcon_loss
    raise BgadError(f"unknown contrastive method {method!r}; choose firm or supcon")


def _load_checkpoint(path: str, method: str, device: str) -> dict | None:
    if not (path and os.path.exists(path)):
        return None
    state = torch.load(path, map_location=device, weights_only=False)
    if state.get("method") != method:
        raise BgadError(f"{path} holds a {state.get('method')!r} head, not {method!r}; use another run folder")
    return state


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------
def train_contrastive(method: str, normal_images: np.ndarray, anomaly_images: np.ndarray | None,
                      anomaly_masks: np.ndarray | None, cfg: Config, extractor=None, device: str = "cpu",
                      progress: bool = True, checkpoint: str | None = None) -> tuple[ProjectionHead, list[dict]]:
    """Train a `ProjectionHead` with L_FIRM (`method="firm"`) or L_SupCon (`"supcon"`) on patch views.

    normal_images (N, H, W, 3) and anomaly_images (M, H, W, 3) in [0, 1], with anomaly_masks (M, H, W) in
    {0, 1}. The head starts from the plain normal patches (`ProjectionHead.init_from`); with
    `cfg.contrastive_epochs = 0` that untrained head is returned, a reference point. Otherwise
    `cfg.view_pairs` view pairs per image are computed once and the head is fitted for
    `cfg.contrastive_epochs` epochs: Adam, lr `cfg.contrastive_lr` with a cosine decay, τ `cfg.temperature`,
    `cfg.contrastive_batch` patches per step. One epoch is one pass over the inlier patches; each step adds
    every outlier patch, or a random subset when they exceed a quarter of the batch. Each patch uses a random
    one of its view pairs. With `checkpoint` (a file path), the head is saved there after every epoch, and
    a rerun resumes after the last finished one. Returns the head (eval mode) and one record per epoch.
    """
    from tqdm import tqdm

    from .train import learning_rate

    loss_fn = _contrastive_loss(method)
    if anomaly_images is None or anomaly_masks is None or len(anomaly_images) == 0:
        raise BgadError(NO_ANOMALIES)
    if len(normal_images) == 0:
        raise BgadError("firm and supcon need normal training images")
    if len(anomaly_images) != len(anomaly_masks):
        raise BgadError("anomaly_images and anomaly_masks must hold the same number of images")
    ckpt_path = checkpoint or ""
    state = _load_checkpoint(ckpt_path, method, device)
    if state is not None and state["epoch"] + 1 >= cfg.contrastive_epochs:  # finished: no backbone pass needed
        head = ProjectionHead(**state["head_config"]).to(device)
        head.load_state_dict(state["head"])
        return head.eval(), list(state["history"])

    from .backbone import extract

    if extractor is None:
        from .backbone import build_extractor

        extractor = build_extractor(cfg.backbone, cfg.stages, device)
    # the head starts from the plain (un-augmented) normal patches, which are also what the bank holds
    t0 = time.perf_counter()
    plain = []
    for start in range(0, len(normal_images), 8):
        maps = patch_features(extract(extractor, normal_images[start:start + 8], device))
        plain.append(_rows(maps))
    plain, grid = torch.cat(plain), (maps.shape[2], maps.shape[3])
    labels = patch_labels(anomaly_masks, grid, cfg.mask_rule)
    if not (labels == -1).any():
        raise BgadError(NO_ANOMALIES + " (the known anomalies' masks cover no patch)")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        head = ProjectionHead(plain.shape[1], cfg.proj_dim).to(device)
        sample = torch.randperm(plain.shape[0])[:INIT_PATCHES]
    head.init_from(plain[sample].to(device))
    del plain

    # view pairs of every training image, computed once; their patch rows split into inliers and outliers
    rng = np.random.default_rng([cfg.seed, 17])
    pairs = cfg.view_pairs if cfg.contrastive_epochs > 0 else 0
    if pairs:
        normal_rows, _ = view_pair_features(normal_images, extractor, pairs, cfg.aug_strength, rng, device)
        anomaly_rows, _ = view_pair_features(anomaly_images, extractor, pairs, cfg.aug_strength, rng, device)
        inliers = torch.cat([normal_rows, anomaly_rows[:, :, labels == 1]], dim=2)
        outliers = anomaly_rows[:, :, labels == -1]
        del normal_rows, anomaly_rows
    else:  # nothing to train: the untrained head, for reference
        inliers = outliers = torch.zeros(0, 2, 1, head.in_dim, dtype=torch.float16)
    setup_seconds = time.perf_counter() - t0

    n_in_pool, n_out_pool = inliers.shape[2], outliers.shape[2]
    n_in, n_out = batch_sizes(n_in_pool, n_out_pool, cfg.contrastive_batch)
    steps = math.ceil(n_in_pool / n_in) if n_in else 0
    step_labels = torch.cat([torch.ones(n_in, dtype=torch.long), -torch.ones(n_out, dtype=torch.long)]).to(device)
    opt = torch.optim.Adam(head.parameters(), lr=cfg.contrastive_lr)
    history: list[dict] = []
    start_epoch = 0
    if state is not None:
        head.load_state_dict(state["head"])
        opt.load_state_dict(state["optim"])
        history = list(state["history"])
        start_epoch = state["epoch"] + 1
        if progress:
            print(f"resuming {method} head from epoch {start_epoch} of {cfg.contrastive_epochs} ({ckpt_path})")

    def rows(pool: Tensor, idx: Tensor, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        pair = torch.randint(cfg.view_pairs, (idx.numel(),), generator=gen)
        return pool[pair, 0, idx].float(), pool[pair, 1, idx].float()

    head.train()
    bar = tqdm(range(start_epoch, cfg.contrastive_epochs), desc=f"train {method} head", unit="epoch",
               disable=not progress, initial=start_epoch, total=cfg.contrastive_epochs)
    for epoch in bar:
        t_epoch = time.perf_counter()
        gen = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)  # a resumed run draws the same batches
        order = torch.randperm(n_in_pool, generator=gen)
        total = 0.0
        for step in range(steps):
            idx_in = order[step * n_in:(step + 1) * n_in]
            if idx_in.numel() < n_in:  # the last step of an epoch tops up with a random draw
                idx_in = torch.cat([idx_in, order[torch.randint(n_in_pool, (n_in - idx_in.numel(),), generator=gen)]])
            idx_out = torch.randperm(n_out_pool, generator=gen)[:n_out]
            a_in, b_in = rows(inliers, idx_in, gen)
            a_out, b_out = rows(outliers, idx_out, gen)
            f1 = head(torch.cat([a_in, a_out]).to(device))
            f2 = head(torch.cat([b_in, b_out]).to(device))
            lr = learning_rate(epoch + step / steps, cfg.contrastive_epochs, 0, cfg.contrastive_lr)
            for group in opt.param_groups:
                group["lr"] = lr
            loss = loss_fn(f1, f2, step_labels, cfg.temperature)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach())
        with torch.no_grad():  # how the last batch sits: cosines inlier–inlier, inlier–outlier, outlier–outlier
            sim = (f1 @ f2.T).detach()
            ii, oo = sim[:n_in, :n_in], sim[n_in:, n_in:]
            off = ~torch.eye(n_out, dtype=torch.bool, device=sim.device)
            record = {
                "epoch": epoch, "method": method, "loss": total / steps, "lr": lr, "steps": steps,
                "seconds": time.perf_counter() - t_epoch, "n_inlier_patches": n_in_pool,
                "n_outlier_patches": n_out_pool, "batch_inliers": n_in, "batch_outliers": n_out,
                "cos_in_in": float(ii.mean()), "cos_in_out": float(sim[:n_in, n_in:].mean()),
                "cos_out_out": float(oo[off].mean()) if n_out > 1 else float("nan"),
                "cos_out_twin": float(oo.diagonal().mean()),
            }
        if epoch == start_epoch:
            record["setup_seconds"] = setup_seconds  # backbone passes: plain normals (head start) and views
        history.append(record)
        bar.set_postfix(loss=f"{record['loss']:.3f}")
        if ckpt_path:
            save_torch({"epoch": epoch, "method": method, "head_config": head.config(), "head": head.state_dict(),
                        "optim": opt.state_dict(), "history": history}, ckpt_path)
    if ckpt_path and not os.path.exists(ckpt_path):  # zero epochs: still save the (initialised) head
        save_torch({"epoch": -1, "method": method, "head_config": head.config(), "head": head.state_dict(),
                    "optim": opt.state_dict(), "history": history}, ckpt_path)
    return head.eval(), history


# ----------------------------------------------------------------------------------------------
# Scoring
# ----------------------------------------------------------------------------------------------
def knn_scores(queries: Tensor, bank: Tensor, k: int = 1, chunk: int = 2048) -> Tensor:
    """s = 1 − mean of the k largest cosine similarities of each query (n, D) to the bank (m, D).

    Inputs are L2-normalised here; computed in chunks of queries with one matmul each. s = 0 for a query
    equal to a bank vector, 1 for one orthogonal to every bank vector.
    """
    if bank.shape[0] == 0:
        raise BgadError("the k-NN bank is empty")
    k = max(1, min(int(k), bank.shape[0]))
    bank = F.normalize(bank.float(), dim=1)
    out = torch.empty(queries.shape[0], dtype=torch.float32)
    for start in range(0, queries.shape[0], chunk):
        q = F.normalize(queries[start:start + chunk].float().to(bank.device), dim=1)
        sim = q @ bank.T
        top = sim.max(dim=1).values if k == 1 else sim.topk(k, dim=1).values.mean(dim=1)
        out[start:start + q.shape[0]] = (1.0 - top).cpu()
    return out


@torch.no_grad()
def embed(head: ProjectionHead, x: Tensor, device: str = "cpu", chunk: int = 8192) -> Tensor:
    """head(x) for patch rows x (n, C), in chunks, on `device`."""
    head.eval()
    if x.shape[0] == 0:
        return torch.zeros(0, head.proj_dim, device=device)
    return torch.cat([head(x[s:s + chunk].to(device)) for s in range(0, x.shape[0], chunk)])


@torch.no_grad()
def normal_bank(head: ProjectionHead, train_feats: FeatureLevels, cfg: Config, device: str = "cpu") -> Tensor:
    """Embeddings of the normal training patches, at most `cfg.bank_size` of them (a seeded random subset)."""
    rows = _rows(patch_features(train_feats))
    if rows.shape[0] > cfg.bank_size:
        keep = torch.randperm(rows.shape[0], generator=torch.Generator().manual_seed(cfg.seed))[:cfg.bank_size]
        rows = rows[keep]
    return embed(head, rows, device)


@torch.no_grad()
def contrastive_maps(head: ProjectionHead, train_feats: FeatureLevels, test_feats: FeatureLevels, cfg: Config,
                     device: str = "cpu", image_chunk: int = 16) -> np.ndarray:
    """Anomaly maps (N_test, img_size, img_size) float32: k-NN cosine distance (k = `cfg.knn_k`) to the bank.

    The patch-grid scores are upsampled bilinearly (align_corners=False) to `cfg.img_size`; no smoothing.
    """
    bank = normal_bank(head, train_feats, cfg, device)
    n = test_feats[0].shape[0]
    maps = np.empty((n, cfg.img_size, cfg.img_size), np.float32)
    for start in range(0, n, image_chunk):
        part = patch_features([f[start:start + image_chunk] for f in test_feats])
        b, _, h, w = part.shape
        scores = knn_scores(embed(head, _rows(part), device), bank, cfg.knn_k).reshape(b, 1, h, w)
        up = F.interpolate(scores, size=(cfg.img_size, cfg.img_size), mode="bilinear", align_corners=False)
        maps[start:start + b] = up[:, 0].numpy()
    return maps
