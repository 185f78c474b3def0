"""Pure plotting functions of the *Conditional flows* and *Boundary* chapters: arrays in, a matplotlib figure out.

Nothing here trains, reads files or touches a model; the chapters compute the arrays (features, ℓ, maps,
curves, boundaries) and pass them in. `widgets.py` wraps `plot_boundary_hist` with β/τ sliders.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from .viz import mask_outline

NORMAL_COLOUR = "tab:blue"
ABNORMAL_COLOUR = "tab:red"
MARGIN_COLOUR = "gold"


def _plt():
    import matplotlib.pyplot as plt

    return plt


def _clean(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


# ----------------------------------------------------------------------------------------------
# Conditional flows chapter
# ----------------------------------------------------------------------------------------------
def feature_pca_image(feature_map: np.ndarray) -> np.ndarray:
    """The first principal component of a (C, h, w) feature map over its h·w locations, as an (h, w) image.

    The sign is fixed so that the component correlates positively with the channel mean (reproducible colours).
    """
    f = np.asarray(feature_map, dtype=np.float64)
    c, h, w = f.shape
    x = f.reshape(c, h * w).T
    x = x - x.mean(axis=0, keepdims=True)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    pc = x @ vt[0]
    if np.corrcoef(pc, x.mean(axis=1))[0, 1] < 0:
        pc = -pc
    return pc.reshape(h, w)


def plot_feature_levels(image: np.ndarray, feature_maps: Sequence[np.ndarray], titles: Sequence[str]):
    """The image, then for each level the first principal component of its (C, h, w) feature map (one pixel per
    location, so the grids' coarseness is visible)."""
    plt = _plt()
    n = len(feature_maps) + 1
    fig, axes = plt.subplots(1, n, figsize=(2.5 * n, 2.8))
    axes[0].imshow(np.clip(image, 0, 1))
    axes[0].set_title("input image", fontsize=9)
    for ax, f, t in zip(axes[1:], feature_maps, titles):
        ax.imshow(feature_pca_image(f), cmap="viridis", interpolation="nearest")
        ax.set_title(t, fontsize=9)
    for ax in axes:
        _clean(ax)
    fig.tight_layout()
    return fig


def plot_positional_encoding(pe: np.ndarray, channels: Sequence[int], titles: Sequence[str] | None = None):
    """Selected channels of a (D, h, w) positional encoding, each as an h×w image in [−1, 1]."""
    plt = _plt()
    pe = np.asarray(pe)
    n = len(channels)
    fig, axes = plt.subplots(1, n, figsize=(1.9 * n, 2.3), squeeze=False)
    for i, (ax, ch) in enumerate(zip(axes[0], channels)):
        im = ax.imshow(pe[ch], cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
        ax.set_title(titles[i] if titles else f"channel {ch}", fontsize=8)
        _clean(ax)
    fig.colorbar(im, ax=axes[0].tolist(), fraction=0.02, pad=0.01)
    return fig


def plot_ml_loss(ell: np.ndarray, normal_ell: np.ndarray | None = None):
    """L_ml = softplus(−ℓ) against the plain per-dimension NLL −ℓ, its gradient magnitude σ(−ℓ), and (optional)
    a histogram of where the normal patches' ℓ lie."""
    plt = _plt()
    ell = np.asarray(ell, dtype=np.float64)
    fig, ax = plt.subplots(1, 2, figsize=(9.5, 3.2))
    ax[0].plot(ell, np.logaddexp(0.0, -ell), label="softplus(−ℓ) = −log σ(ℓ)  (official)")
    ax[0].plot(ell, -ell, "--", label="−ℓ  (plain NLL per dimension)")
    ax[0].set_xlabel("ℓ = log p / C")
    ax[0].set_ylabel("loss per patch")
    ax[0].set_ylim(-1, max(2.0, float(-ell.min()) + 0.5))
    ax[0].legend(fontsize=8)
    ax[1].plot(ell, 1.0 / (1.0 + np.exp(ell)), color="tab:green", label="|∂L/∂ℓ| = σ(−ℓ)")
    ax[1].set_xlabel("ℓ = log p / C")
    ax[1].set_ylabel("gradient weight")
    ax[1].set_ylim(0, 1.05)
    if normal_ell is not None:
        twin = ax[1].twinx()
        twin.hist(np.asarray(normal_ell), bins=60, range=(ell.min(), ell.max()), color="0.6", alpha=0.5,
                  density=True, label="normal patches (trained flow)")
        twin.set_yticks([])
        lines = ax[1].get_legend_handles_labels()
        bars = twin.get_legend_handles_labels()
        ax[1].legend(lines[0] + bars[0], lines[1] + bars[1], fontsize=8, loc="center left")
    else:
        ax[1].legend(fontsize=8)
    for a in ax:
        a.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_history(history: Sequence[Mapping], level_names: Sequence[str] | None = None, key: str = "loss"):
    """Training curve: the mean loss (`key`) per epoch and level from a run's `history`; phase 2 shaded."""
    plt = _plt()
    epochs = [int(r["epoch"]) + 1 for r in history]
    n_levels = len(history[0]["levels"]) if history else 0
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    for l in range(n_levels):
        ys = [r["levels"][l].get(key, np.nan) for r in history]
        ax.plot(epochs, ys, marker="o", ms=3, label=level_names[l] if level_names else f"level {l}")
    p2 = [e for e, r in zip(epochs, history) if int(r.get("phase", 1)) == 2]
    if p2:
        ax.axvspan(min(p2) - 0.5, max(p2) + 0.5, color="0.9", zorder=0, label="phase 2 (NF: ML continues)")
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"mean {key} per chunk")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_logp_vs_ell(logp: Sequence[np.ndarray], channels: Sequence[int], names: Sequence[str]):
    """Box plots of log p (left) and ℓ = log p / C (right) per level: the first differs by level, the second lines up."""
    plt = _plt()
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.0))
    lp = [np.asarray(a, dtype=np.float64) for a in logp]
    kw = dict(showfliers=False, whis=(5, 95))
    ax[0].boxplot(lp, **kw)
    ax[1].boxplot([a / c for a, c in zip(lp, channels)], **kw)
    ax[0].set_ylabel("log p  (nats per vector)")
    ax[1].set_ylabel("ℓ = log p / C  (nats per dimension)")
    for a in ax:
        a.set_xticks(range(1, len(names) + 1), names, fontsize=8)
        a.grid(axis="y", alpha=0.3)
    ax[0].set_title("whiskers: 5th-95th percentile", fontsize=8)
    fig.tight_layout()
    return fig


def plot_score_levels(image: np.ndarray, mask: np.ndarray | None, level_maps: Sequence[np.ndarray],
                      level_titles: Sequence[str], final_map: np.ndarray, vmax: float | None = None):
    """How the official score is built for one image: exp(ℓ − max) of each level (upsampled), then the map."""
    plt = _plt()
    n = len(level_maps) + 2
    fig, axes = plt.subplots(1, n, figsize=(2.3 * n, 2.7))
    img = np.clip(image, 0, 1).copy()
    if mask is not None and np.asarray(mask).any():
        img[mask_outline(np.asarray(mask))] = (0.0, 1.0, 1.0)
    axes[0].imshow(img)
    axes[0].set_title("image + mask", fontsize=9)
    for ax, m, t in zip(axes[1:-1], level_maps, level_titles):
        ax.imshow(m, cmap="viridis", vmin=0, vmax=1)
        ax.set_title(t, fontsize=9)
    axes[-1].imshow(final_map, cmap="inferno", vmin=0, vmax=vmax)
    axes[-1].set_title("anomaly map", fontsize=9)
    for ax in axes:
        _clean(ax)
    fig.tight_layout()
    return fig


def plot_roc_pro(image_roc: tuple[np.ndarray, np.ndarray], pixel_roc: tuple[np.ndarray, np.ndarray],
                 pro: tuple[np.ndarray, np.ndarray] | None, values: Mapping[str, float | None] | None = None,
                 fpr_limit: float = 0.3):
    """Three panels: image ROC, pixel ROC (each (fpr, tpr)), and the PRO curve (fpr, pro) up to `fpr_limit`.

    `values` may carry image_auroc, pixel_auroc and pro to print in the titles.
    """
    plt = _plt()
    values = values or {}
    fig, ax = plt.subplots(1, 3, figsize=(11, 3.4))

    def title(name, key):
        v = values.get(key)
        return name if v is None else f"{name} = {v:.3f}"

    for a, (fpr, tpr), name, key in ((ax[0], image_roc, "image AUROC", "image_auroc"),
                                     (ax[1], pixel_roc, "pixel AUROC", "pixel_auroc")):
        a.plot(fpr, tpr, color="tab:blue")
        a.fill_between(fpr, tpr, alpha=0.15, color="tab:blue")
        a.plot([0, 1], [0, 1], ":", color="0.5")
        a.set_xlabel("false-positive rate")
        a.set_ylabel("true-positive rate")
        a.set_title(title(name, key), fontsize=10)
        a.set_xlim(0, 1)
        a.set_ylim(0, 1.01)
    if pro is not None:
        f, p = pro
        ax[2].plot(f, p, color="tab:purple")
        keep = f <= fpr_limit
        ax[2].fill_between(f[keep], p[keep], alpha=0.15, color="tab:purple")
        ax[2].axvline(fpr_limit, ls="--", color="0.4")
    ax[2].set_xlim(0, fpr_limit * 1.05)
    ax[2].set_ylim(0, 1.01)
    ax[2].set_xlabel("false-positive rate (pixels)")
    ax[2].set_ylabel("mean per-region overlap")
    ax[2].set_title(title(f"PRO (area to FPR {fpr_limit:g}, / {fpr_limit:g})", "pro"), fontsize=10)
    for a in ax:
        a.grid(alpha=0.3)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------------------------
# Boundary chapter
# ----------------------------------------------------------------------------------------------
def hist_range(normal_x: np.ndarray, abnormal_x: np.ndarray, lo_q: float = 0.0005, hi_q: float = 0.9995,
               pad: float = 0.05) -> tuple[float, float]:
    """A common x range for the boundary histograms: robust quantiles of both sets, padded."""
    parts = [np.asarray(normal_x, dtype=np.float64).ravel(), np.asarray(abnormal_x, dtype=np.float64).ravel()]
    allx = np.concatenate([p for p in parts if p.size])
    lo, hi = float(np.quantile(allx, lo_q)), float(np.quantile(allx, hi_q))
    if abnormal_x is not None and np.asarray(abnormal_x).size:
        lo = min(lo, float(np.min(abnormal_x)))
    span = max(hi - lo, 1e-6)
    return lo - pad * span, hi + pad * span


def plot_boundary_hist(normal_x: np.ndarray, abnormal_x: np.ndarray, b_n: float, b_a: float, ax=None,
                       bins: int = 80, x_range: tuple[float, float] | None = None, title: str | None = None,
                       legend: bool = True, xlabel: str = "x = ℓ / normaliser",
                       abnormal_label: str = "known-anomaly patches"):
    """Histograms (each normalised to unit area) of normal and abnormal x = ℓ/normaliser, with b_n, b_a and the
    margin (b_a, b_n) shaded. Returns the figure (a new one unless `ax` is given)."""
    plt = _plt()
    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 3.3))
    else:
        fig = ax.figure
    normal_x = np.asarray(normal_x, dtype=np.float64).ravel()
    abnormal_x = np.asarray(abnormal_x, dtype=np.float64).ravel()
    x_range = x_range or hist_range(normal_x, abnormal_x)
    ax.hist(np.clip(normal_x, *x_range), bins=bins, range=x_range, density=True, alpha=0.55, zorder=2,
            color=NORMAL_COLOUR, label=f"normal patches ({normal_x.size:,})")
    if abnormal_x.size:
        ax.hist(np.clip(abnormal_x, *x_range), bins=bins, range=x_range, density=True, alpha=0.55, zorder=2,
                color=ABNORMAL_COLOUR, label=f"{abnormal_label} ({abnormal_x.size:,})")
    ax.axvspan(b_a, b_n, color=MARGIN_COLOUR, alpha=0.3, zorder=0, label="margin (b_a, b_n)")
    ax.axvline(b_n, color="navy", lw=1.5, zorder=3, label=f"b_n = {b_n:.3f}")
    ax.axvline(b_a, color="darkred", lw=1.5, ls="--", zorder=3, label=f"b_a = {b_a:.3f}")
    ax.set_xlim(*x_range)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    if title:
        ax.set_title(title, fontsize=9)
    if legend:
        ax.legend(fontsize=7, loc="upper left")
    ax.grid(alpha=0.3)
    return fig


def plot_boundary_grid(normal_x: np.ndarray, abnormal_x: np.ndarray, grid: Mapping[tuple[float, float], Mapping],
                       betas: Sequence[float], taus: Sequence[float], bins: int = 60):
    """Small multiples: one `plot_boundary_hist` per (β, τ); `grid[(β, τ)]` holds b_n, b_a and the counts
    (`boundary.boundary_counts` output, in x units). Rows: β; columns: τ."""
    plt = _plt()
    lo, hi = hist_range(normal_x, abnormal_x)
    b_min = min(float(grid[(b, t)]["b_a"]) for b in betas for t in taus)
    x_range = (min(lo, b_min - 0.03 * (hi - lo)), hi)  # every b_a stays visible
    fig, axes = plt.subplots(len(betas), len(taus), figsize=(2.9 * len(taus), 2.1 * len(betas)),
                             sharex=True, squeeze=False)
    for i, beta in enumerate(betas):
        for j, tau in enumerate(taus):
            c = grid[(beta, tau)]
            ax = axes[i, j]
            plot_boundary_hist(normal_x, abnormal_x, c["b_n"], c["b_a"], ax=ax, bins=bins, x_range=x_range,
                               legend=False, xlabel="")
            ax.set_ylabel("")
            ax.set_yticks([])
            ax.set_title(f"β={beta:g}, τ={tau:g}", fontsize=8)
            ax.text(0.02, 0.97, f"normal ≤ b_n: {100 * c['frac_normal_below_bn']:.1f}%\n"
                    f"anom. ≥ b_a: {100 * c['frac_abnormal_above_ba']:.0f}%",
                    transform=ax.transAxes, va="top", fontsize=7,
                    bbox=dict(boxstyle="round", fc="white", alpha=0.8, lw=0))
    for ax in axes[-1]:
        ax.set_xlabel("x = ℓ / normaliser", fontsize=8)
    fig.tight_layout()
    return fig


def plot_chunk_boundaries(whole: float, chunk_bn: Mapping[str, np.ndarray], tau: float | None = None):
    """Distribution of per-chunk b_n (one histogram per kind of chunk) around the whole-set b_n.

    With `tau` > 0 the x axis is the offset (b_n − whole) / τ, i.e. in units of the margin width.
    """
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.0))
    scale = tau if tau else 1.0
    offs = {k: (np.asarray(v, dtype=np.float64) - whole) / scale for k, v in chunk_bn.items()}
    allv = np.concatenate(list(offs.values()) + [np.zeros(1)])
    lo, hi = float(allv.min()), float(allv.max())
    span = max(hi - lo, 1e-9)
    rng = (lo - 0.05 * span, hi + 0.05 * span)
    for k, (name, v) in enumerate(offs.items()):
        std = f"{v.std():.2f}·τ" if tau else f"{v.std():.4f}"
        ax.hist(v, bins=40, range=rng, alpha=0.5, color=f"C{k}", label=f"{name}, std {std}")
    ax.axvline(0.0, color="k", lw=2, label=f"whole-set b_n = {whole:.3f}")
    ax.set_xlabel("(b_n − whole-set b_n) / τ" if tau else "b_n − whole-set b_n  (ℓ / normaliser)")
    ax.set_ylabel("chunks")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_boundary_levels(normal_x: Sequence[np.ndarray], abnormal_x: Sequence[np.ndarray],
                         counts: Sequence[Mapping], titles: Sequence[str], bins: int = 60):
    """One `plot_boundary_hist` panel per feature level; `counts[l]` holds that level's b_n and b_a."""
    plt = _plt()
    n = len(counts)
    fig, axes = plt.subplots(1, n, figsize=(4.6 * n, 3.2), squeeze=False)
    for i, (ax, xn, xa, c, t) in enumerate(zip(axes[0], normal_x, abnormal_x, counts, titles)):
        plot_boundary_hist(xn, xa, c["b_n"], c["b_a"], ax=ax, bins=bins, title=t, legend=i == 0)
    fig.tight_layout()
    return fig
