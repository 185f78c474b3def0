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


def run_logliks(run_dir: str | Path, view: TestView, known_feats: list | None = None) -> dict[str, list]:
    """ℓ of every level for the test images ("test"), the normal training images ("train") and, given their
    features, the known anomalies ("known"); the run's flows are loaded once."""
    from .flow import level_log_likelihoods
    from .runs import load_flows

    flows, c = load_flows(run_dir)
    sets = {"test": view.feats, "train": view.train_feats, "known": known_feats}
    return {k: level_log_likelihoods(flows, f, c.pos_dim) for k, f in sets.items() if f is not None}


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


def level_maps(level_logliks: list, img_size: int, reference: list[float] | None = None) -> list[np.ndarray]:
    """Each level's normality exp(ℓ − m_l), upsampled to the image: the terms that `evaluate` sums, one (N, S, S)
    float64 array per level. With `reference` (a run's `score_reference`, m_l from the training images) the
    default map is L − Σ_l of them (`evaluate.inductive_maps`); with None, m_l is the maximum over these images
    and max Σ − Σ is the official map (`evaluate.anomaly_maps`). Built on evaluate's own `_levels`/`_upsampled`."""
    import torch

    from .errors import BgadError
    from .evaluate import _levels, _upsampled, score_reference

    levels = _levels(level_logliks)
    shifts = score_reference(levels) if reference is None else list(reference)
    if len(shifts) != len(levels):
        raise BgadError(f"score reference has {len(shifts)} levels, the log-likelihoods {len(levels)}")
    out = []
    for level, m in zip(levels, shifts):
        up = np.zeros((level.shape[0], img_size, img_size), np.float64)
        for sl, part in _upsampled(torch.exp(level - float(m)), img_size):
            up[sl] = part.numpy()
        out.append(up)
    return out


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
    if not len(valid):
        from .errors import BgadError

        raise BgadError(f"no unseen test image with a mask and normal pixels in {view.cfg.category}; the front "
                        "example needs one (choose a category with unseen defect types)")
    j = int(valid[len(valid) // 2])
    images, masks = load_items([view.items[idx[j]]], size)
    return {"image": images[0], "mask": masks[0], "type": str(view.types[idx[j]]),
            "maps": {name_a: m_a[j], name_b: m_b[j]}, "gain": float(gain[j]),
            "median_gain": float(np.nanmedian(gain)), "n_unseen": int(len(idx)),
            "groups": {name: patch_groups(ll[name], view) for name in (name_a, name_b)}}


def chunk_boundaries(normal_ll: np.ndarray, cfg: Config, beta: float | None = None, n_chunks: int = 300,
                     rng: np.random.Generator | int = 0, sizes: tuple[int, ...] = (512, 4096)) -> dict[str, Any]:
    """b_n of one chunk against b_n of the whole set: how much the official per-chunk ("batch" scope) boundary moves.

    `normal_ll`: one level's normal ℓ, (images, h, w) or (images, locations). b_n (`boundary.normal_boundary`, β =
    `beta` or cfg.beta, cfg.normalizer) of the whole set, of `n_chunks` random chunks of each of `sizes` patches
    (a size is left out when the set holds fewer than two chunks of it), and of `n_chunks` chunks drawn as
    `train.train_flows` draws them: batches of cfg.batch_images images in a shuffled order, `train.sample_patches`
    (cfg.patches_per_image locations per image), `train.split_chunks` (chunks of about cfg.flow_batch).

    Returns {"whole": b_n of all values, "chunks": {kind: per-chunk b_n}, "sizes": {kind: chunk sizes},
    "labels": {kind: what the chunks are}, "summary": {kind: {"bias", "std", "p5", "p95", "size"}}}; the kinds are
    "512", "4096" (`sizes`) and "trainer". Introduced in the *Boundary* chapter.
    """
    import torch

    from .boundary import normal_boundary
    from .train import sample_patches, split_chunks

    beta = cfg.beta if beta is None else beta
    rng = np.random.default_rng(rng)
    values = np.asarray(normal_ll, dtype=np.float64)
    n_img = values.shape[0]
    pool = values.reshape(-1)

    def b_n(v) -> float:
        return float(normal_boundary(torch.as_tensor(v), beta, cfg.normalizer))

    chunks: dict[str, list[float]] = {}
    chunk_sizes: dict[str, list[int]] = {}
    labels: dict[str, str] = {}
    for size in sizes:
        if 2 * size <= pool.size:
            key = str(size)
            chunks[key] = [b_n(rng.choice(pool, size, replace=False)) for _ in range(n_chunks)]
            chunk_sizes[key], labels[key] = [size] * n_chunks, f"random chunks of {size}"

    # as the trainer draws them: one epoch = the images in a shuffled order, in batches of cfg.batch_images
    per_image = torch.from_numpy(values.reshape(n_img, 1, 1, -1))  # (B, C=1, h=1, w=locations): ℓ as a feature
    n_loc = per_image.shape[-1]
    no_anomaly, no_pos = torch.zeros(n_img, 1, n_loc, dtype=torch.bool), torch.zeros(1, 1, n_loc)
    gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
    trainer: list[float] = []
    trainer_sizes: list[int] = []
    while len(trainer) < n_chunks:
        order = rng.permutation(n_img)
        for start in range(0, n_img, cfg.batch_images):
            idx = torch.from_numpy(np.sort(order[start:start + cfg.batch_images]))
            x, _, _ = sample_patches(per_image[idx], no_anomaly[idx], cfg.patches_per_image, no_pos, gen)
            for chunk in split_chunks(x.shape[0], cfg.flow_batch, gen):
                trainer.append(b_n(x[chunk]))
                trainer_sizes.append(int(chunk.numel()))
    chunks["trainer"], chunk_sizes["trainer"] = trainer[:n_chunks], trainer_sizes[:n_chunks]
    take = n_loc if cfg.patches_per_image <= 0 else min(cfg.patches_per_image, n_loc)
    labels["trainer"] = (f"the trainer's chunks ({min(cfg.batch_images, n_img)} images × {take} patches, "
                         f"chunks of ~{int(np.median(chunk_sizes['trainer']))})")

    whole = b_n(pool)
    out = {k: np.array(v) for k, v in chunks.items()}
    summary = {k: {"bias": float(v.mean() - whole), "std": float(v.std()), "p5": float(np.percentile(v, 5)),
                   "p95": float(np.percentile(v, 95)), "size": int(np.median(chunk_sizes[k]))}
               for k, v in out.items()}
    return {"whole": whole, "chunks": out, "sizes": {k: np.array(v) for k, v in chunk_sizes.items()},
            "labels": labels, "summary": summary}


def known_view(cfg: Config, device: str = "cpu") -> tuple[list, np.ndarray]:
    """The split's known anomalies, the images phase 2 trains on: their features per level (M, C, h, w) and their
    masks (M, H, W)."""
    from .data import load_items
    from .pipeline import features_for, prepare_data

    data = prepare_data(cfg, verbose=False)
    _, masks = load_items(data.split.known, data.cfg.img_size)
    return features_for(data.cfg, data.split.known, device, progress=False), masks


def level_groups(run_dir: str | Path, view: TestView, known: tuple[list, np.ndarray]
                 ) -> tuple[dict[str, list], list[dict[str, Any]]]:
    """A run's ℓ (`run_logliks`) and, at every level, its `patch_groups` plus "known": x = ℓ/normaliser of the
    known anomalies' defect patches (`known_view`), the patches BG-SPP pushes in training. Introduced in the
    *BG-SPP* chapter."""
    from .evaluate import patch_logliks

    ll = run_logliks(run_dir, view, known[0])
    known_x = patch_logliks(ll["known"], known[1])[1]
    norm = view.cfg.normalizer
    return ll, [{**patch_groups(ll, view, level), "known": known_x[level] / norm} for level in range(len(ll["test"]))]


def margin_shares(group: Mapping[str, Any], key: str) -> tuple[float, float, float]:
    """The shares of `group[key]` (x values) at or above b_n, inside the margin (b_a, b_n), at or below b_a."""
    x = np.asarray(group[key], dtype=np.float64)
    if not x.size:
        return (float("nan"),) * 3
    b_n, b_a = group["b_n"], group["b_a"]
    return float(np.mean(x >= b_n)), float(np.mean((x > b_a) & (x < b_n))), float(np.mean(x <= b_a))
