"""Pure plotting functions: arrays in, a matplotlib figure out. Nothing here trains or reads files."""
from __future__ import annotations

from typing import Sequence

import numpy as np


def _plt():
    import matplotlib.pyplot as plt

    return plt


def mask_outline(mask: np.ndarray) -> np.ndarray:
    """Boolean outline (1-pixel border) of a binary mask."""
    from scipy import ndimage

    m = mask.astype(bool)
    return m & ~ndimage.binary_erosion(m)


def plot_anomaly_maps(images: np.ndarray, maps: np.ndarray, masks: np.ndarray, titles: Sequence[str],
                      vmax: float | None = None, cmap: str = "inferno"):
    """Row 1: images with the ground-truth outline in cyan; row 2: anomaly maps on a shared colour scale."""
    plt = _plt()
    n = len(images)
    fig, axes = plt.subplots(2, n, figsize=(2.2 * n, 4.6), squeeze=False)
    vmax = float(np.max(maps)) if vmax is None else vmax
    for i in range(n):
        img = np.clip(images[i], 0, 1).copy()
        if masks is not None and masks[i].any():
            img[mask_outline(masks[i])] = (0.0, 1.0, 1.0)
        axes[0, i].imshow(img)
        axes[0, i].set_title(titles[i], fontsize=9)
        im = axes[1, i].imshow(maps[i], cmap=cmap, vmin=0.0, vmax=vmax)
        for ax in axes[:, i]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("image + mask")
    axes[1, 0].set_ylabel("anomaly map")
    fig.colorbar(im, ax=axes[1, :].tolist(), fraction=0.02, pad=0.01)
    return fig


def plot_defect_montage(images: np.ndarray, masks: np.ndarray, titles: Sequence[str], ncols: int = 8):
    """A grid of images, each with its ground-truth mask outlined in cyan (the Data chapter's montage)."""
    plt = _plt()
    n = len(images)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.9 * ncols, 2.1 * nrows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i in range(n):
        img = np.clip(images[i], 0, 1).copy()
        if masks is not None and masks[i].any():
            img[mask_outline(masks[i])] = (0.0, 1.0, 1.0)
        ax = axes.ravel()[i]
        ax.imshow(img)
        ax.set_title(titles[i], fontsize=8)
    fig.tight_layout()
    return fig


def plot_mask_areas(areas: dict[str, Sequence[float]]):
    """Strip plot of defect mask areas (fraction of the image, log scale) per defect type."""
    plt = _plt()
    names = sorted(areas)
    fig, ax = plt.subplots(figsize=(7, 2.8))
    rng = np.random.default_rng(0)
    for i, name in enumerate(names):
        a = np.asarray(areas[name], float) * 100
        ax.scatter(i + rng.uniform(-0.15, 0.15, len(a)), a, s=12, alpha=0.7)
    ax.set_xticks(range(len(names)), names)
    ax.set_yscale("log")
    ax.set_ylabel("mask area (% of image)")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig
