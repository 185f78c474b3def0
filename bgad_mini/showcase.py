"""What trained runs do to the test images, for the chapters' figures: per-level ℓ, anomaly maps, patch ℓ by group.

    view = test_view(cfg)                                  # the split's test images, features, masks and groups
    ll = run_logliks(run_dir, view)                        # ℓ of every level: test images and normal training images
    front = front_example(view, {"NF": (res_nf, dir_nf), "BGAD": (res_bgad, dir_bgad)})

Every number comes from the package's own functions (`flow.level_log_likelihoods`, `evaluate.inductive_maps`,
`evaluate.patch_logliks`, `boundary.boundaries`), so a figure cannot drift from what the runs compute. Nothing here
trains; `runs.load_or_run` makes the runs.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .config import Config


@dataclass
class TestView:
    """The test set of a run's split and the features a trained flow reads."""

    cfg: Config
    items: list
    feats: list  # per level (N, C, h, w)
    train_feats: list  # per level, `n_train` normal training images (for b_n and the score reference)
    masks: np.ndarray  # (N, H, W)
    types: np.ndarray  # defect type per test image ("good" for normal)
    seen: np.ndarray  # bool: a seen (known) type
    unseen: np.ndarray  # bool: a defective image of an unseen type


def test_view(cfg: Config, n_train: int = 40, device: str = "cpu") -> TestView:
    """The split of `cfg` (as its runs draw it), the test features and `n_train` training images' features."""
    from .data import load_items
    from .pipeline import features_for, prepare_data

    data = prepare_data(cfg, verbose=False)
    feats = features_for(cfg, data.split.test, device, progress=False)
    train = data.category.train
    pick = np.sort(np.random.default_rng(cfg.seed).choice(len(train), size=min(n_train, len(train)), replace=False))
    train_feats = [f[pick] for f in features_for(cfg, train, device, progress=False)]
    _, masks = load_items(data.split.test, cfg.img_size)
    types = np.array([it.defect_type for it in data.split.test])
    seen = np.isin(types, data.split.seen_types)
    return TestView(data.cfg, list(data.split.test), feats, train_feats, masks, types, seen,
                    (types != "good") & ~seen)


def run_logliks(run_dir: str | Path, view: TestView) -> dict[str, list]:
    """ℓ of every level for the test images ("test") and the normal training images ("train")."""
    from .flow import level_log_likelihoods
    from .runs import load_flows

    flows, c = load_flows(run_dir)
    return {"test": level_log_likelihoods(flows, view.feats, c.pos_dim),
            "train": level_log_likelihoods(flows, view.train_feats, c.pos_dim)}


def patch_groups(ll: Mapping[str, list], view: TestView, level: int = 0) -> dict[str, Any]:
    """x = ℓ/normaliser at one level: normal test patches, unseen and seen anomalous patches, and (b_n, b_a) from
    the normal training patches with the config's β and τ (the batch-scope boundary of the whole set)."""
    import torch

    from .boundary import boundaries
    from .evaluate import patch_logliks

    cfg, norm = view.cfg, view.cfg.normalizer
    lvl = ll["test"][level]
    normal = patch_logliks([lvl], view.masks)[0][0] / norm
    pick = lambda m: patch_logliks([lvl[torch.from_numpy(m)]], view.masks[m])[1][0] / norm  # noqa: E731
    b_n, b_a = boundaries(ll["train"][level].reshape(-1), cfg.beta, cfg.tau, norm)
    return {"normal": normal, "unseen": pick(view.unseen), "seen": pick(view.seen), "b_n": float(b_n),
            "b_a": float(b_a)}


def maps(results: Mapping[str, Any], ll: Mapping[str, list], index: np.ndarray | list[int], img_size: int
         ) -> np.ndarray:
    """The default (inductive) anomaly maps of the test images `index`, from a run's stored score reference."""
    from .evaluate import inductive_maps

    return inductive_maps([level[index] for level in ll["test"]], results["score_reference"], img_size)


def contrast(maps_: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Per image: (mean score inside the mask − mean outside) / std of the map; how well a map separates."""
    inside = masks > 0
    out = []
    for m, k in zip(maps_, inside):
        sd = float(m.std()) or 1.0
        out.append((float(m[k].mean()) - float(m[~k].mean())) / sd if k.any() and (~k).any() else np.nan)
    return np.array(out)


def front_example(view: TestView, runs: Mapping[str, tuple[Mapping[str, Any], str | Path]]) -> dict[str, Any]:
    """The book's front figure for two runs (e.g. NF and BGAD): a *typical* unseen test image, the one whose map
    contrast gain (second run − first, `contrast`) is the median over all unseen images, with both maps; and the
    finest level's patch groups of both runs. Returns what `viz.plot_front` draws."""
    from .data import load_items

    (name_a, (res_a, dir_a)), (name_b, (res_b, dir_b)) = list(runs.items())
    ll = {name_a: run_logliks(dir_a, view), name_b: run_logliks(dir_b, view)}
    idx = np.flatnonzero(view.unseen)
    size = view.cfg.img_size
    m_a, m_b = maps(res_a, ll[name_a], idx, size), maps(res_b, ll[name_b], idx, size)
    gain = contrast(m_b, view.masks[idx]) - contrast(m_a, view.masks[idx])
    order = np.argsort(np.nan_to_num(gain, nan=-np.inf))
    valid = order[~np.isnan(gain[order])]
    j = int(valid[len(valid) // 2])
    images, masks = load_items([view.items[idx[j]]], size)
    return {"image": images[0], "mask": masks[0], "type": str(view.types[idx[j]]),
            "maps": {name_a: m_a[j], name_b: m_b[j]}, "gain": float(gain[j]),
            "median_gain": float(np.nanmedian(gain)), "n_unseen": int(len(idx)),
            "groups": {name: patch_groups(ll[name], view) for name in (name_a, name_b)}}
