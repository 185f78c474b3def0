"""One `Config` dataclass with three profiles (`smoke`, `book`, `paper`) and typed overrides.

Every knob of a run lives here; nothing else in the package keeps module-level settings.
Papermill parameters and the CLI's `--set key=value` both go through `Config.with_overrides`.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, fields
from typing import Any

from .errors import BgadError

PROFILES = ("smoke", "book", "paper")
METHODS = ("nf", "bgad", "pushpull", "firm", "supcon")
SETTINGS = ("multi-class", "one-class")
DEFAULT_DATA_ROOT = os.path.join("data", "synthetic")


@dataclass
class Config:
    """All settings of one run. Defaults are the `book` profile (CPU, synthetic data)."""

    profile: str = "book"
    # data
    data_root: str = DEFAULT_DATA_ROOT
    category: str = "brick"
    img_size: int = 256
    setting: str = "one-class"
    known_types: tuple[str, ...] = ()
    n_known: int = 10
    seed: int = 0
    # compute
    device: str = "auto"
    threads: int = 0  # 0: use every core this process may use
    cache_dir: str = ".cache"
    share_phase1: bool = True  # reuse phase 1 across runs that differ only in phase 2 (same weights either way)
    # backbone
    backbone: str = "efficientnet_lite0"
    stages: tuple[int, ...] = (2, 3)  # book: strides 8 and 16, chosen from bench/bench_schedule.py (official: 1, 2, 3)
    # flow (official: 8 AllInOneBlocks, clamp 1.9, 128-d positional condition)
    coupling_blocks: int = 8
    clamp_alpha: float = 1.9
    pos_dim: int = 128
    # optimisation
    method: str = "nf"
    lr: float = 2e-3  # book profile (from bench_schedule): few steps on a CPU; the paper profile uses the official 2e-4
    phase1_epochs: int = 8
    phase2_epochs: int = 4
    warmup_epochs: int = 1
    batch_images: int = 8
    patches_per_image: int = 0  # patches sampled per image per level per step (0 = all, as the official code)
    flow_batch: int = 512  # vectors per optimiser step (official: 4096)
    # boundary and losses (official run: beta 0.01, tau 0.1, normalizer 10, lambda 1, focal on)
    beta: float = 0.01
    tau: float = 0.1
    normalizer: float = 10.0
    lam: float = 1.0
    boundary: str = "batch"
    focal: bool = True
    # BGAD†'s push (method pushpull): "bce" = softplus(ℓ) on every anomaly (the book's BGAD†); "linear" = a push as
    # strong as BG-SPP's (w_a·ℓ/normalizer with its focal weights, on every anomaly, never stopping) beside the
    # focal-weighted L_ml, the control that isolates BG-SPP's margin
    push: str = "bce"
    mask_rule: str = "nearest"
    copy_paste: bool = True
    anomaly_repeats: int = 3  # each known anomaly appears this often per phase-2 epoch (official: 5)
    copy_paste_per_known: int = 5  # fresh copy-paste images per known anomaly per phase-2 epoch (official: 5, i.e. 5·N)
    # contrastive baselines (FIRM, SupCon)
    temperature: float = 0.2
    proj_dim: int = 128
    knn_k: int = 1
    contrastive_epochs: int = 4  # epochs of the projection head (one epoch = one pass over the normal patches)
    contrastive_lr: float = 1e-3  # Adam, cosine decay
    contrastive_batch: int = 1024  # patches per step (every outlier up to a quarter, the rest normal)
    view_pairs: int = 1  # photometric view pairs per training image, computed once per run
    aug_strength: float = 1.0  # scales the photometric jitter of the views (0 = identical views)
    bank_size: int = 20000  # normal patch embeddings kept for k-NN scoring (seeded random subset)
    # evaluation
    pro_fpr_limit: float = 0.3
    eval_smoothing_sigma: float = 0.0  # display-only smoothing of maps; 0 = none, as the official metric
    score_sigma: float = 4.0  # Gaussian σ (pixels) of the default score's maps for the pixel metrics; image scores
    #                           stay the maxima of the unsmoothed maps (anomalib's PatchCore: σ = 4); 0 = none
    alt_score_sigma: float = 4.0  # also report the −ℓ score smoothed with this σ ("metrics_alt"); 0 = skip

    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------
    def validate(self) -> None:
        """Raise `BgadError` with a one-line message on any value that cannot work."""
        if self.profile not in PROFILES:
            raise BgadError(f"unknown profile {self.profile!r}; choose one of {', '.join(PROFILES)}")
        if self.method not in METHODS:
            raise BgadError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.setting not in SETTINGS:
            raise BgadError(f"unknown setting {self.setting!r}; choose one of {', '.join(SETTINGS)}")
        if not 0.0 < self.beta < 1.0:
            raise BgadError(f"beta must lie in (0, 1), got {self.beta}; e.g. --set beta=0.01")
        if self.tau < 0:
            raise BgadError(f"tau must be >= 0, got {self.tau}; e.g. --set tau=0.1")
        if self.normalizer <= 0:
            raise BgadError(f"normalizer must be > 0, got {self.normalizer}")
        if self.lam < 0:
            raise BgadError(f"lambda must be >= 0, got {self.lam}")
        if self.boundary not in ("batch", "epoch"):
            raise BgadError(f"boundary must be 'batch' or 'epoch', got {self.boundary!r}")
        if self.push not in ("bce", "linear"):
            raise BgadError(f"push must be 'bce' or 'linear', got {self.push!r}; e.g. --set push=linear")
        if self.mask_rule not in ("nearest", "area"):
            raise BgadError(f"mask_rule must be 'nearest' or 'area', got {self.mask_rule!r}")
        if self.img_size < 32 or self.img_size % 16:
            raise BgadError(f"img_size must be a multiple of 16 and >= 32, got {self.img_size}")
        if self.n_known < 0:
            raise BgadError(f"n_known must be >= 0, got {self.n_known}")
        if self.anomaly_repeats < 1 or self.copy_paste_per_known < 0:
            raise BgadError("anomaly_repeats must be >= 1 and copy_paste_per_known >= 0")
        if self.temperature <= 0:
            raise BgadError(f"temperature must be > 0, got {self.temperature}")
        if self.view_pairs < 1 or self.bank_size < 1 or self.contrastive_batch < 2 or self.contrastive_epochs < 0:
            raise BgadError("view_pairs and bank_size must be >= 1, contrastive_batch >= 2, contrastive_epochs >= 0")
        if self.score_sigma < 0:
            raise BgadError(f"score_sigma must be >= 0, got {self.score_sigma}; e.g. --set score_sigma=4")
        if self.aug_strength < 0 or self.knn_k < 1:
            raise BgadError(f"aug_strength must be >= 0 and knn_k >= 1, got {self.aug_strength} and {self.knn_k}")

    # ------------------------------------------------------------------
    @classmethod
    def from_profile(cls, profile: str = "book", **overrides: Any) -> "Config":
        """The named profile's defaults, then `overrides` (typed by the field they set)."""
        if profile not in PROFILES:
            raise BgadError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
        base = dict(PROFILE_DEFAULTS[profile])
        base["profile"] = profile
        cfg = cls(**base)
        return cfg.with_overrides(**overrides) if overrides else cfg

    def with_overrides(self, **overrides: Any) -> "Config":
        """A copy with `overrides` applied; strings are parsed to the field's type."""
        names = {f.name: f for f in fields(self)}
        values = dataclasses.asdict(self)
        for key, value in overrides.items():
            key = ALIASES.get(key, key)
            if key not in names:
                raise BgadError(f"unknown setting {key!r}; known settings: {', '.join(sorted(names))}")
            values[key] = _coerce(key, value, values[key])
        return Config(**values)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["known_types"] = list(self.known_types)
        d["stages"] = list(self.stages)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Config":
        d = dict(d)
        d["known_types"] = tuple(d.get("known_types", ()))
        d["stages"] = tuple(d.get("stages", (1, 2, 3)))
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def identity(self) -> dict[str, Any]:
        """What a run computes: the config without runtime fields and without other methods' settings.

        Two configs with the same identity give the same results, so a finished run is reused for both.
        """
        d = self.to_dict()
        drop = set(RUNTIME_FIELDS) | (METHOD_PARAMS - set(RELEVANT_PARAMS.get(self.method, ())))
        return {k: v for k, v in d.items() if k not in drop}

    @property
    def total_epochs(self) -> int:
        return self.phase1_epochs + self.phase2_epochs


#: Method-specific Config fields that each method reads. A grid axis over a method-specific field that a method
#: does not read is collapsed to the base value for that method (no duplicate runs): β, τ, the boundary scope,
#: matter only for `bgad`; λ, the normaliser and the focal weights for `bgad` and `pushpull` (BGAD†, whose
#: default `push="bce"` reads neither the normaliser nor the focal weights; `push="linear"` reads both);
#: the projection head's settings (temperature, size, epochs, views, bank, k-NN) for the contrastive baselines
#: `firm` and `supcon`; how known anomalies are fed (mask rule, copy-paste, repeats) for every method but `nf`,
#: which reads none of them (it ignores known anomalies). Fields outside `METHOD_PARAMS` (n_known, epochs,
#: image size, ...) multiply runs for every method.
_ANOMALY_DATA = ("mask_rule", "copy_paste", "copy_paste_per_known", "anomaly_repeats")
_CONTRASTIVE = ("temperature", "proj_dim", "knn_k", "contrastive_epochs", "contrastive_lr", "contrastive_batch",
                "view_pairs", "aug_strength", "bank_size")
RELEVANT_PARAMS: dict[str, tuple[str, ...]] = {
    "nf": (),
    "bgad": ("beta", "tau", "lam", "boundary", "normalizer", "focal") + _ANOMALY_DATA,
    "pushpull": ("lam", "push", "normalizer", "focal") + _ANOMALY_DATA,
    "firm": _CONTRASTIVE + _ANOMALY_DATA,
    "supcon": _CONTRASTIVE + _ANOMALY_DATA,
}
METHOD_PARAMS: frozenset[str] = frozenset(f for fields_ in RELEVANT_PARAMS.values() for f in fields_)
#: Fields that change how a run is computed but not what it computes: not part of a run's identity.
#: (`share_phase1` loads phase 1 from another run with the same phase-1 config: same weights, less time.)
RUNTIME_FIELDS = ("threads", "cache_dir", "share_phase1")

#: Fields phase 1 (ML on normal images) does not read: runs differing only in these share phase 1.
PHASE2_ONLY = (frozenset({"method", "setting", "known_types", "n_known", "pro_fpr_limit", "eval_smoothing_sigma",
                          "alt_score_sigma", "score_sigma"}) | METHOD_PARAMS | frozenset(RUNTIME_FIELDS))

ALIASES = {"lambda": "lam", "boundary_scope": "boundary"}

PROFILE_DEFAULTS: dict[str, dict[str, Any]] = {
    # tiny and fast: tests and papermill smoke runs (< 60 s per chapter on 2 CPU cores)
    "smoke": dict(
        data_root=os.path.join("data", "synthetic_smoke"), img_size=64, stages=(1, 2, 3), coupling_blocks=2, pos_dim=32,
        phase1_epochs=2, phase2_epochs=1, warmup_epochs=0, batch_images=8, patches_per_image=64,
        flow_batch=1024, lr=1e-3, n_known=1, anomaly_repeats=2, copy_paste_per_known=4,
        contrastive_epochs=2, contrastive_batch=256, view_pairs=1, bank_size=2000,
    ),
    # the rendered book on 2 CPU cores (see bench/ for measured times)
    "book": dict(),
    # the paper and the official script (GPU runner, real MVTecAD)
    "paper": dict(
        data_root=os.path.join("data", "mvtec"), category="bottle", backbone="tf_efficientnet_b6", stages=(1, 2, 3),
        setting="multi-class", img_size=256, phase1_epochs=8, phase2_epochs=192, warmup_epochs=16,
        batch_images=32, patches_per_image=0, flow_batch=4096, lr=2e-4, n_known=10,
        anomaly_repeats=5, copy_paste_per_known=5,
    ),
}


def _coerce(key: str, value: Any, current: Any) -> Any:
    """Parse `value` (often a string from the CLI or papermill) to the type of `current`."""
    if not isinstance(value, str):
        if isinstance(current, tuple) and isinstance(value, (list, tuple)):
            return tuple(value)
        return value
    text = value.strip()
    try:
        if isinstance(current, bool):
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if isinstance(current, int):
            return int(text)
        if isinstance(current, float):
            return float(text)
        if isinstance(current, tuple):
            parts = [p for p in text.replace(";", ",").split(",") if p.strip()]
            if key == "stages":
                return tuple(int(p) for p in parts)
            return tuple(p.strip() for p in parts)
    except ValueError:
        raise BgadError(f"setting {key}={value!r} is not a valid {type(current).__name__}") from None
    return text
