"""One run's work: data -> cached features -> flows (or a projection head) -> training -> evaluation.

`train_and_evaluate(cfg, data, folder)` does it into a run folder and returns the results dict; `runs.load_or_run`
decides whether it is needed (identity, reuse, lock) and writes results.json. An interrupted run resumes from its
last checkpoint.
"""
from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from .config import Config
from .data import Category, Split, load_items, read_category, split_known_anomalies
from .errors import BgadError
from .fingerprint import code_fingerprint
from .utils import Timer, peak_rss_mb, resolve_device, save_torch, seed_everything, set_threads

#: The results format; results.json of an older format are recomputed (the schema is part of a run's identity).
SCHEMA_VERSION = 2  # 2: inductive default score, metrics_official*, copy-paste per known anomaly



@dataclass
class RunData:
    """What a run reads: the category, the known-anomaly split, and the test images' masks and labels."""

    category: Category
    split: Split
    cfg: Config


def prepare_data(cfg: Config, verbose: bool = True) -> RunData:
    """Read the category and draw the known anomalies (the one-class default: the first defect type)."""
    cat = read_category(cfg.data_root, cfg.category)
    if not cat.defect_types:
        raise BgadError(f"category {cfg.category!r} has no defective test images; anomaly detection needs some to evaluate")
    if cfg.setting == "one-class" and not cfg.known_types:
        cfg = cfg.with_overrides(known_types=(cat.defect_types[0],))
        if verbose:
            print(f"one-class setting: known type defaults to {cat.defect_types[0]!r} (set --known-types to choose)")
    if not cat.has_masks and verbose:
        print(f"notice: {cfg.category} has no ground_truth/ folder; pixel AUROC and PRO will be null")
    split = split_known_anomalies(cat.test, cfg.n_known, cfg.setting, cfg.known_types, cfg.seed)
    return RunData(cat, split, cfg)


def dataset_name(data_root: str) -> str:
    meta = Path(data_root) / "meta.json"
    if meta.is_file():
        try:
            return json.loads(meta.read_text()).get("name", "synthetic")
        except json.JSONDecodeError:
            pass
    return Path(data_root).resolve().name


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("bgad-mini", "torch", "torchvision", "timm", "FrEIA", "numpy", "scikit-learn", "scikit-image"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def features_for(cfg: Config, items, device: str, progress: bool, cache=None) -> list[np.ndarray]:
    """Backbone features of fixed images, from the on-disk cache (computed once per file list)."""
    from .backbone import FeatureCache

    if not items:
        return []
    cache = cache if cache is not None else FeatureCache(cfg.cache_dir)
    return cache.features(cfg.backbone, cfg.stages, cfg.img_size, items, device=device, progress=progress)


def anomaly_train_data(cfg: Config, data: RunData, train_feats: list[np.ndarray], cache, device: str,
                       progress: bool):
    """Phase-2 training data: the known anomalies (cached features, masks) and a copy-paste generator.

    Copy-paste images are new every epoch, so only they pass through the backbone during training.
    """
    from .backbone import extract
    from .data import copy_paste
    from .train import TrainData

    known_feats = features_for(cfg, data.split.known, device, progress, cache)
    known_images, known_masks = load_items(data.split.known, cfg.img_size)
    train_items = data.category.train

    def copy_paste_epoch(rng: np.random.Generator) -> tuple[list[np.ndarray], np.ndarray]:
        # as the official code: every known anomaly is the source of exactly `copy_paste_per_known` pastes
        sources = rng.permutation(np.repeat(np.arange(len(known_images)), cfg.copy_paste_per_known))
        normals = rng.integers(len(train_items), size=sources.size)
        base, _ = load_items([train_items[i] for i in normals], cfg.img_size)
        pairs = [copy_paste(base[j], known_images[s], known_masks[s], rng) for j, s in enumerate(sources)]
        images = np.stack([p[0] for p in pairs])
        feats = extract(cache.extractor(cfg.backbone, cfg.stages, device), images, device=device)
        return [f.numpy() for f in feats], np.stack([p[1] for p in pairs])

    return TrainData(train_feats, anomaly_feats=known_feats, anomaly_masks=known_masks,
                     anomaly_repeats=cfg.anomaly_repeats,
                     extra_anomalies=copy_paste_epoch if cfg.copy_paste and cfg.copy_paste_per_known > 0 else None)


def build_flows(cfg: Config, channels: list[int], device: str):
    from .flow import ConditionalFlows

    return ConditionalFlows(channels, cfg.pos_dim, cfg.coupling_blocks, cfg.clamp_alpha).to(device)


def train_and_evaluate(cfg: Config, data: RunData, folder, progress: bool = True) -> dict[str, Any]:
    """Train and evaluate `cfg.method` on `data` into `folder` (a `runs.RunFolder`: checkpoint, weights and map
    figure go to its paths); return the results dict (results.json is written by `runs.load_or_run`)."""
    from .backbone import FeatureCache
    from .train import TrainData, make_objective, train_flows

    timer = Timer()
    t_start = time.perf_counter()
    seed_everything(cfg.seed)
    threads = set_threads(cfg.threads)
    device = resolve_device(cfg.device)
    cache = FeatureCache(cfg.cache_dir)
    with timer("features"):
        train_feats = features_for(cfg, data.category.train, device, progress, cache)
        test_feats = features_for(cfg, data.split.test, device, progress, cache)
    if cfg.method in ("firm", "supcon"):
        return _run_contrastive(cfg, data, train_feats, test_feats, cache, device, progress, folder, timer, t_start,
                                threads)
    train_data = TrainData(train_feats)
    if cfg.method != "nf":
        with timer("features"):
            train_data = anomaly_train_data(cfg, data, train_feats, cache, device, progress)
    seed_everything(cfg.seed)  # again: building the backbone on a cache miss draws from torch's generator
    flows = build_flows(cfg, [f.shape[1] for f in train_feats], device)
    with timer("train"):
        history = train_flows(flows, train_data, cfg, phase2_objective=make_objective(cfg, len(train_feats)),
                              checkpoint=str(folder.checkpoint), device=device, progress=progress,
                              shared_phase1=phase1_path(cfg, train_feats) if cfg.share_phase1 else None)
    save_torch(flows.state_dict(), folder.flows)
    with timer("evaluate"):
        ev = evaluate_flows(flows, train_feats, test_feats, data, cfg)
    return _finish(cfg, data, ev, history.to_list(), timer, t_start, threads, device, folder, folder.flows)


def _finish(cfg: Config, data: RunData, ev: dict, history: list, timer: Timer, t_start: float, threads: int,
            device: str, folder, weights: Path) -> dict[str, Any]:
    """Assemble the results dict and draw the map figure."""
    timer.seconds["total"] = time.perf_counter() - t_start
    results = assemble_results(cfg, data, ev, history, timer.seconds, threads, device, folder, weights)
    with timer("figure"):
        save_map_figure(ev, data, cfg, folder.figure)
    results["timings"] = dict(timer.seconds)
    return results


def phase1_path(cfg: Config, train_feats: list[np.ndarray]) -> str:
    """Where runs with the same phase 1 (config without `PHASE2_ONLY` fields, same training features) share it."""
    import hashlib

    from .config import PHASE2_ONLY

    h = hashlib.sha256(json.dumps({k: v for k, v in cfg.to_dict().items() if k not in PHASE2_ONLY},
                                  sort_keys=True).encode())
    h.update(f"code-{code_fingerprint()}".encode())  # phase-1 training code changed: not reused
    for f in train_feats:
        h.update(str(f.shape).encode() + str(f.dtype).encode())
        h.update(np.ascontiguousarray(f).tobytes())
    return str(Path(cfg.cache_dir) / "phase1" / f"{cfg.category}_s{cfg.seed}_{h.hexdigest()[:16]}.pt")


def _run_contrastive(cfg: Config, data: RunData, train_feats, test_feats, cache, device: str, progress: bool,
                     folder, timer: Timer, t_start: float, threads: int) -> dict[str, Any]:
    """FIRM / SupCon at patch level: a projection head on frozen features, k-NN scoring (the *Contrastive* chapter)."""
    from .contrastive import contrastive_maps, train_contrastive

    with timer("train"):
        normal_images, _ = load_items(data.category.train, cfg.img_size)
        known_images, known_masks = load_items(data.split.known, cfg.img_size)
        seed_everything(cfg.seed)
        head, history = train_contrastive(cfg.method, normal_images, known_images, known_masks, cfg,
                                          extractor=cache.extractor(cfg.backbone, cfg.stages, device), device=device,
                                          progress=progress, checkpoint=str(folder.head))
    with timer("evaluate"):
        ev = evaluate_maps(contrastive_maps(head, train_feats, test_feats, cfg, device=device), data, cfg)
    return _finish(cfg, data, ev, history, timer, t_start, threads, device, folder, folder.head)


def evaluate_maps(maps: np.ndarray, data: RunData, cfg: Config, logliks=None,
                  official_maps: np.ndarray | None = None) -> dict[str, Any]:
    """Every metric of the test images' anomaly maps, overall, per type, seen/unseen. `metrics*`: the default
    score, i.e. `maps` smoothed with σ = `cfg.score_sigma` for the pixel metrics and the maxima of the unsmoothed
    `maps` as image scores; `metrics_official*`: the unsmoothed `official_maps` (the paper's transductive score; the
    raw `maps` where a method has none), with the official-style PRO beside the standard one. With flow
    log-likelihoods, also the alternative −ℓ score (`alt`). Returns the smoothed maps as `maps`."""
    from .evaluate import evaluate, image_scores, nll_maps, smooth_maps

    _, masks = load_items(data.split.test, cfg.img_size)
    labels = np.array([it.label for it in data.split.test])
    types = [it.defect_type for it in data.split.test]
    gt = masks if data.category.has_masks else None
    seen = data.split.seen_types if data.split.known else None

    def score(m: np.ndarray, **kw) -> dict:
        return evaluate(m, gt, labels, types, seen_types=seen, fpr_limit=cfg.pro_fpr_limit, **kw)

    official = score(maps if official_maps is None else official_maps, official_pro=True)
    alt = None
    if cfg.alt_score_sigma > 0 and logliks is not None:
        alt = {"score": f"mean over levels of -l, upsampled, Gaussian smoothing sigma={cfg.alt_score_sigma}",
               **score(smooth_maps(nll_maps(logliks, cfg.img_size), cfg.alt_score_sigma))}
    smoothed = smooth_maps(maps, cfg.score_sigma)
    return {"maps": smoothed, "masks": masks, "labels": labels, "types": types, "logliks": logliks, "alt": alt,
            **score(smoothed, scores=image_scores(maps)),
            **{key.replace("metrics", "metrics_official"): v for key, v in official.items()}}


def evaluate_flows(flows, train_feats: list[np.ndarray], test_feats: list[np.ndarray], data: RunData,
                   cfg: Config) -> dict[str, Any]:
    """Anomaly maps of the test images and every metric (`evaluate_maps`): the inductive score, its level maxima
    m_l from the normal training images (in `score_reference`), and the official transductive one."""
    from .evaluate import anomaly_maps, inductive_maps, score_reference
    from .flow import level_log_likelihoods

    flows.eval()
    reference = score_reference(level_log_likelihoods(flows, [np.asarray(f) for f in train_feats], cfg.pos_dim))
    logliks = level_log_likelihoods(flows, [np.asarray(f) for f in test_feats], cfg.pos_dim)
    ev = evaluate_maps(inductive_maps(logliks, reference, cfg.img_size), data, cfg, logliks,
                       official_maps=anomaly_maps(logliks, cfg.img_size))
    return {**ev, "score_reference": reference}


SCORE = ("inductive: per level exp(l - m_l) with m_l the max of l over the normal training images, bilinear "
         "upsampling, sum S; map = L - S (L levels); no statistic from test images")
SCORE_OFFICIAL = "official (transductive): per level exp(l - max over the test set), bilinear upsampling, sum; map = max - sum"
SCORE_KNN = "1 - cosine similarity to the nearest normal training patch embedding (k-NN), upsampled"
_METRIC_GROUPS = ("metrics", "metrics_seen", "metrics_unseen", "metrics_by_type")


def assemble_results(cfg: Config, data: RunData, ev: dict, history: list, timings: dict, threads: int,
                     device: str, folder, weights: Path) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "method": cfg.method,
        "dataset": dataset_name(cfg.data_root),
        "category": cfg.category,
        "setting": cfg.setting,
        "known_types": list(data.split.seen_types) if cfg.setting == "one-class" else [],
        "seen_types": list(data.split.seen_types),
        "unseen_types": list(data.split.unseen_types),
        "n_known": len(data.split.known),
        "known_images": [it.name for it in data.split.known],
        "n_train": len(data.category.train),
        "n_test": len(data.split.test),
        "seed": cfg.seed,
        "protocol": "final model (the paper reports the best epoch on the test set; not used here)",
        "score": (SCORE_KNN if cfg.method in ("firm", "supcon") else SCORE) + (
            f"; pixel metrics on maps smoothed with a Gaussian of sigma={cfg.score_sigma} px, image score = max of the "
            "unsmoothed map" if cfg.score_sigma else ""),
        "score_official": SCORE_OFFICIAL if cfg.method not in ("firm", "supcon") else SCORE_KNN,
        "score_reference": ev.get("score_reference"),
        **{key: ev[key] for key in _METRIC_GROUPS},
        **{key.replace("metrics", "metrics_official"): ev[key.replace("metrics", "metrics_official")]
           for key in _METRIC_GROUPS},
        "metrics_alt": ev["alt"],
        "timings": dict(timings),
        "peak_memory_mb": round(peak_rss_mb(), 1),
        "device": device,
        "threads": threads,
        "history": history,
        "config": cfg.to_dict(),
        "versions": package_versions(),
        "paths": {"results": str(folder.results), "figure": str(folder.figure), "flows": str(weights)},
    }


def save_map_figure(ev: dict, data: RunData, cfg: Config, path: Path) -> None:
    """One good image and the highest-scoring image of each defect type, with map and mask outline."""
    from . import viz

    types = ev["types"]
    chosen: list[int] = []
    scores = ev["maps"].reshape(len(types), -1).max(1)
    for t in ["good"] + sorted(set(types) - {"good"}):
        idx = [i for i, tt in enumerate(types) if tt == t]
        if idx:
            chosen.append(max(idx, key=lambda i: scores[i]) if t != "good" else idx[0])
    images, _ = load_items([data.split.test[i] for i in chosen], cfg.img_size)
    fig = viz.plot_anomaly_maps(images, ev["maps"][chosen], ev["masks"][chosen], [types[i] for i in chosen],
                                vmax=float(np.quantile(ev["maps"], 0.999)))
    fig.savefig(path, dpi=80, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)


def reevaluate_into(cfg: Config, model, folder, old: dict[str, Any], progress: bool = True) -> dict[str, Any]:
    """Evaluate a trained `model` (flows, or a FIRM / SupCon head) again; return the new results dict, keeping the
    history and training timings of `old` (`runs.reevaluate` writes it)."""
    device = resolve_device(cfg.device)
    model = model.to(device)
    timer = Timer()
    with timer("data"):
        data = prepare_data(cfg, verbose=False)
    threads = set_threads(cfg.threads)
    with timer("features"):
        train_feats = features_for(cfg, data.category.train, device, progress)
        test_feats = features_for(cfg, data.split.test, device, progress)
    with timer("evaluate"):
        if cfg.method in ("firm", "supcon"):
            from .contrastive import contrastive_maps

            ev = evaluate_maps(contrastive_maps(model, train_feats, test_feats, cfg, device=device), data, cfg)
        else:
            ev = evaluate_flows(model, train_feats, test_feats, data, cfg)
    weights = folder.head if cfg.method in ("firm", "supcon") else folder.flows
    results = assemble_results(cfg, data, ev, old.get("history", []), {**old.get("timings", {}), **{
        f"reeval_{k}": v for k, v in timer.seconds.items()}}, threads, device, folder, weights)
    save_map_figure(ev, data, cfg, folder.figure)
    return results
