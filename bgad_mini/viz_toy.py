"""Pure plotting functions for the toy chapters (*Flows* and *Contrastive*): arrays in, a figure out.

Nothing here trains, samples or reads files; the chapters compute every array and pass it in.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np


def _plt():
    import matplotlib.pyplot as plt

    return plt


def _square(ax, extent: Sequence[float] | None = None) -> None:
    if extent is not None:
        ax.set_xlim(extent[0], extent[1])
        ax.set_ylim(extent[2], extent[3])
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


# ----------------------------------------------------------------------------------------------
# Flows chapter
# ----------------------------------------------------------------------------------------------
def plot_point_clouds(clouds: Mapping[str, np.ndarray], extent: Sequence[float] | None = None, s: float = 3.0):
    """One scatter panel per (title, (N, 2) array), on the same axis limits when `extent` is given."""
    plt = _plt()
    n = len(clouds)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.2), squeeze=False)
    for ax, (title, pts) in zip(axes[0], clouds.items()):
        pts = np.asarray(pts)
        ax.scatter(pts[:, 0], pts[:, 1], s=s, alpha=0.5, color="C0", linewidths=0)
        ax.set_title(title, fontsize=10)
        _square(ax, extent)
    fig.tight_layout()
    return fig


def plot_flow_2d(data: np.ndarray, logp_grid: np.ndarray, extent: Sequence[float], samples: np.ndarray,
                 z: np.ndarray):
    """Four panels: data, learned density exp(log p) on a grid, samples x = f⁻¹(z), data mapped to z = f(x).

    `logp_grid[i, j]` is log p at (x = xs[j], y = ys[i]) of a regular grid covering `extent` = (x0, x1, y0, y1).
    """
    plt = _plt()
    fig, axes = plt.subplots(1, 4, figsize=(13.0, 3.4))
    axes[0].scatter(data[:, 0], data[:, 1], s=3, alpha=0.5, linewidths=0)
    axes[0].set_title("data (held out)", fontsize=10)
    axes[1].imshow(np.exp(logp_grid), origin="lower", extent=extent, cmap="magma", aspect="equal")
    axes[1].set_title("learned density p(x)", fontsize=10)
    axes[2].scatter(samples[:, 0], samples[:, 1], s=3, alpha=0.5, color="C1", linewidths=0)
    axes[2].set_title("samples x = f⁻¹(z), z ~ N(0, I)", fontsize=10)
    t = np.linspace(0, 2 * np.pi, 200)
    axes[3].scatter(z[:, 0], z[:, 1], s=3, alpha=0.5, color="C2", linewidths=0)
    for r in (1.0, 2.0, 3.0):
        axes[3].plot(r * np.cos(t), r * np.sin(t), color="0.5", lw=0.7)
    axes[3].set_title("data mapped to z = f(x)", fontsize=10)
    for ax in axes[:3]:
        _square(ax, extent)
    _square(axes[3], (-4, 4, -4, 4))
    fig.tight_layout()
    return fig


def plot_flow_comparison(curves: Mapping[str, np.ndarray], logp_grids: Mapping[str, np.ndarray],
                         extent: Sequence[float], window: int = 25):
    """Training curves (−mean log p per step, moving average over `window`) and one density panel per flow."""
    plt = _plt()
    n = 1 + len(logp_grids)
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n, 3.4))
    for name, c in curves.items():
        c = np.asarray(c, dtype=float)
        w = max(1, min(window, len(c)))
        smooth = np.convolve(c, np.ones(w) / w, mode="valid")
        axes[0].plot(np.arange(w - 1, len(c)), smooth, label=name)
    axes[0].set_xlabel("Adam step")
    axes[0].set_ylabel("− mean log p (nats per point)")
    axes[0].legend(fontsize=8)
    axes[0].set_title("training", fontsize=10)
    for ax, (name, g) in zip(axes[1:], logp_grids.items()):
        ax.imshow(np.exp(g), origin="lower", extent=extent, cmap="magma", aspect="equal")
        ax.set_title(name, fontsize=10)
        _square(ax, extent)
    fig.tight_layout()
    return fig


def plot_loglik_by_dim(dims: Sequence[int], logp: Sequence[np.ndarray], bins: int = 60):
    """Two density histograms on shared bins: total log p per vector, then ℓ = log p / C, one colour per C."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10.0, 3.2))
    logp = [np.asarray(lp, dtype=float) for lp in logp]
    edges_total = np.histogram_bin_edges(np.concatenate(logp), bins=3 * bins)
    edges_dim = np.histogram_bin_edges(np.concatenate([lp / c for c, lp in zip(dims, logp)]), bins=bins)
    for i, (c, lp) in enumerate(zip(dims, logp)):
        kw = dict(histtype="stepfilled", alpha=0.45, color=f"C{i}", label=f"C = {c}", density=True)
        axes[0].hist(lp, bins=edges_total, **kw)
        axes[1].hist(lp / c, bins=edges_dim, **kw)
    axes[0].set_xlabel("log p(x)  (nats per vector)")
    axes[1].set_xlabel("ℓ = log p(x) / C  (nats per dimension)")
    for ax in axes:
        ax.set_yticks([])
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------------------------
# Contrastive chapter
# ----------------------------------------------------------------------------------------------
def plot_digit_rows(rows: Mapping[str, np.ndarray]):
    """One row of small grey images per (row title, (n, h, w) array)."""
    plt = _plt()
    n_rows = len(rows)
    n_cols = max(len(v) for v in rows.values())
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.0 * n_cols + 1.2, 1.05 * n_rows), squeeze=False)
    for r, (title, imgs) in enumerate(rows.items()):
        for c in range(n_cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(imgs):
                ax.imshow(imgs[c], cmap="gray_r", vmin=0, vmax=1)
            else:
                ax.axis("off")
        axes[r, 0].set_ylabel(title, rotation=0, ha="right", va="center", fontsize=9)
    fig.tight_layout()
    return fig


def plot_positive_masks(masks: Mapping[str, np.ndarray], labels: Sequence[str]):
    """One heatmap per objective of its positive mask M (rows: anchors in view 1, columns: keys in view 2)."""
    plt = _plt()
    n = len(masks)
    fig, axes = plt.subplots(1, n, figsize=(3.0 * n, 3.1), squeeze=False)
    for ax, (name, m) in zip(axes[0], masks.items()):
        m = np.asarray(m, dtype=float)
        ax.imshow(m, cmap="Greens", vmin=0, vmax=1.3)
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                if m[i, j]:
                    ax.text(j, i, "+", ha="center", va="center", fontsize=10)
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(labels, fontsize=8)
        ax.set_yticks(range(len(labels)))
        ax.set_yticklabels(labels, fontsize=8)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("key j (view 2)", fontsize=8)
    axes[0, 0].set_ylabel("anchor i (view 1)", fontsize=8)
    fig.tight_layout()
    return fig


def plot_embeddings_2d(panels: Mapping[str, np.ndarray], groups: np.ndarray, group_names: Sequence[str],
                       colors: Sequence[str] = ("C0", "C1", "0.6")):
    """One scatter panel per (title, (N, 2) projected embeddings); point i is coloured by `groups[i]`.

    Groups are drawn from the last to the first, so group 0 (the normal class) is on top.
    """
    plt = _plt()
    n = len(panels)
    fig, axes = plt.subplots(1, n, figsize=(3.3 * n, 3.5), squeeze=False)
    groups = np.asarray(groups)
    for ax, (title, xy) in zip(axes[0], panels.items()):
        xy = np.asarray(xy)
        for g in reversed(range(len(group_names))):
            sel = groups == g
            ax.scatter(xy[sel, 0], xy[sel, 1], s=6, alpha=0.6, color=colors[g], linewidths=0, label=group_names[g])
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles[::-1], names[::-1], loc="lower center", ncol=len(group_names), fontsize=8, markerscale=2)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


def plot_bars(names: Sequence[str], means: Sequence[float], stds: Sequence[float] | None = None,
              ylabel: str = "AUROC", ylim: Sequence[float] | None = None, colors: Sequence[str] | None = None):
    """A small bar chart with optional error bars (± one standard deviation) and the value on each bar."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(1.2 * len(names) + 1.5, 3.0))
    x = np.arange(len(names))
    colors = list(colors) if colors is not None else [f"C{i}" for i in range(len(names))]
    ax.bar(x, means, yerr=stds, color=colors, capsize=4, alpha=0.85)
    tops = np.asarray(means, dtype=float) + (np.asarray(stds, dtype=float) if stds is not None else 0.0)
    for xi, m, top in zip(x, means, tops):
        ax.text(xi, top, f"{m:.3f}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x)
    ax.set_xticklabels(names, fontsize=9)
    ax.set_ylabel(ylabel)
    if ylim is not None:
        ax.set_ylim(*ylim)
    fig.tight_layout()
    return fig
