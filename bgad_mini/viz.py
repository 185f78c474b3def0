"""Pure plotting functions for every chapter: arrays in, a matplotlib figure out.

Nothing here trains, samples, reads files or touches a model; the chapters compute the arrays (features, ℓ, maps,
curves, boundaries, embeddings, ablation rows) and pass them in. `widgets.py` wraps `plot_boundary_hist` with β/τ
sliders. Sections follow the book: data, flows (toy), conditional flows, boundary, contrastive (toy), ablations.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np


def _plt():
    import matplotlib.pyplot as plt

    return plt


#: The book's one palette (colour-blind-safe Okabe-Ito hues): what a patch or image is, and which method made a
#: number. Every figure (and the Plotly explorers) takes its colours from here.
GROUP_COLOURS = {"normal": "#0072B2", "seen": "#E69F00", "unseen": "#D55E00", "anomalous": "#D55E00",
                 "margin": "#F0E442"}
METHOD_COLOURS = {"nf": "#7F7F7F", "pushpull": "#CC79A7", "bgad": "#009E73", "supcon": "#56B4E9",
                  "firm": "#8C564B", "cflow": "#000000", "patchcore": "#6A3D9A"}
NORMAL_COLOUR = GROUP_COLOURS["normal"]
ABNORMAL_COLOUR = GROUP_COLOURS["anomalous"]
MARGIN_COLOUR = GROUP_COLOURS["margin"]


def method_colour(name: str, fallback: int = 0) -> str:
    """The colour of a method, found by its key anywhere in `name` ("BGAD (BG-SPP)", "bgad β=0.05"); BGAD† and
    push-pull are `pushpull`. Other names get matplotlib's cycle colour `fallback`."""
    import re

    low = str(name).lower()
    if "†" in low or "push-pull" in low or "pushpull" in low:
        return METHOD_COLOURS["pushpull"]
    for key in ("patchcore", "cflow", "supcon", "firm", "bgad", "nf"):
        if re.search(rf"(?<![a-z]){key}(?![a-z])", low):  # a word: "inference" is not NF
            return METHOD_COLOURS[key]
    return f"C{fallback % 10}"


def png_bytes(fig, dpi: int = 90) -> bytes:
    """A figure as PNG bytes, closed first, so it never shows a second time in a notebook's inline output (a
    closed figure still saves). Used by the live widgets, the lab and the explorers' print images."""
    import io

    _plt().close(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def _clean(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def _square(ax, extent: Sequence[float] | None = None) -> None:
    if extent is not None:
        ax.set_xlim(extent[0], extent[1])
        ax.set_ylim(extent[2], extent[3])
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


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


def plot_anomaly_map_grid(images: np.ndarray, maps: np.ndarray, masks: np.ndarray, titles: Sequence[str],
                          groups: Sequence[str] | None = None, vmax: float | None = None, ncols: int = 4,
                          cmap: str = "inferno"):
    """`plot_anomaly_maps` wrapped to `ncols` images per row, so that many images read at the page width: each
    image (ground truth outlined in cyan) above its map, one colour scale; `groups` ("normal" / "seen" /
    "unseen" per image) colours each title from the palette (`GROUP_COLOURS`). Introduced in the *Conditional
    flows* chapter."""
    plt = _plt()
    n = len(images)
    ncols = min(ncols, n)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(2 * nrows, ncols, figsize=(2.2 * ncols + 0.8, 4.5 * nrows), squeeze=False)
    vmax = float(np.max(maps)) if vmax is None else vmax
    for ax in axes.ravel():
        _clean(ax)
    for i in range(n):
        r, c = 2 * (i // ncols), i % ncols
        img = np.clip(images[i], 0, 1).copy()
        if masks is not None and masks[i].any():
            img[mask_outline(masks[i])] = (0.0, 1.0, 1.0)
        axes[r, c].imshow(img)
        colour = GROUP_COLOURS.get(groups[i], "black") if groups is not None else "black"
        axes[r, c].set_title(titles[i], fontsize=9, color=colour)
        im = axes[r + 1, c].imshow(maps[i], cmap=cmap, vmin=0.0, vmax=vmax)
    for i in range(n, nrows * ncols):
        axes[2 * (i // ncols), i % ncols].axis("off")
        axes[2 * (i // ncols) + 1, i % ncols].axis("off")
    for r in range(nrows):
        axes[2 * r, 0].set_ylabel("image + mask", fontsize=9)
        axes[2 * r + 1, 0].set_ylabel("anomaly map", fontsize=9)
    fig.subplots_adjust(left=0.06, right=0.88, bottom=0.02, top=0.95, wspace=0.06, hspace=0.2)
    cax = fig.add_axes((0.9, 0.1, 0.02, 0.8))
    fig.colorbar(im, cax=cax)
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
        ax.set_title(titles[i], fontsize=9)
    fig.tight_layout()
    return fig


def plot_mask_areas(areas: dict[str, Sequence[float]], groups: Mapping[str, str] | None = None):
    """Strip plot of defect mask areas (fraction of the image, log scale) per defect type; `groups` (type ->
    "seen" / "unseen") colours each type by its group, with a legend; without it every type is "anomalous"."""
    plt = _plt()
    names = sorted(areas)
    fig, ax = plt.subplots(figsize=(7, 2.8))
    rng = np.random.default_rng(0)
    shown = set()
    for i, name in enumerate(names):
        a = np.asarray(areas[name], float) * 100
        group = (groups or {}).get(name, "anomalous")
        label = f"{group} type" if groups and group not in shown else None
        shown.add(group)
        ax.scatter(i + rng.uniform(-0.15, 0.15, len(a)), a, s=12, alpha=0.7, color=GROUP_COLOURS[group],
                   label=label)
    ax.set_xticks(range(len(names)), names, rotation=20 if len(names) > 6 else 0)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:g}"))  # 0.5, 1, 2, not 5×10⁻¹
    ax.yaxis.set_minor_formatter(plt.FuncFormatter(
        lambda v, _: f"{v:g}" if v > 0 and round(v / 10 ** np.floor(np.log10(v))) in (2, 5) else ""))
    ax.set_ylabel("mask area (% of image)")
    ax.grid(axis="y", alpha=0.3)
    if groups:
        ax.legend(fontsize=9, loc="best")
    fig.tight_layout()
    return fig


# --- ablation charts (the *Ablations* chapter; rows are dicts from `summary.summarize`) -----------------------
_PARAM_NAMES = {"beta": "β (normal-boundary quantile)", "tau": "τ (margin)", "lambda": "λ (BG-SPP weight)",
                "boundary": "boundary scope", "n_known": "N known anomalies"}
_METRIC_NAMES = {"image_auroc": "image AUROC", "pixel_auroc": "pixel AUROC", "pro": "PRO"}


def _metric_title(metric: str) -> str:
    for prefix, word in (("unseen_", "unseen types: "), ("seen_", "seen types: ")):
        if metric.startswith(prefix):
            return word + _METRIC_NAMES.get(metric[len(prefix):], metric[len(prefix):])
    return _METRIC_NAMES.get(metric, metric)


def _panels(n: int, ncols: int = 3, width: float = 4.2, height: float = 3.2):
    plt = _plt()
    ncols = min(ncols, n)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    return fig, axes.ravel()[:n]


def _num(v) -> float:
    return np.nan if v is None or v == "" else float(v)


def _legend_above(fig, ax, max_cols: int):
    """One legend for the whole figure, above its panels, from `ax`'s labelled artists; then tight layout."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(max_cols, len(labels)), fontsize=8,
                   bbox_to_anchor=(0.5, 1.0))
    fig.tight_layout()
    return fig


def plot_seen_unseen_bars(rows: Sequence[dict], metrics: str | Sequence[str] = ("image_auroc", "pixel_auroc", "pro"),
                          label_key: str = "label", title: str | None = None):
    """Seen vs unseen defect types: one panel per metric, a pair of bars (mean ± std over seeds) per row.

    Each row needs `seen_<metric>_mean`, `seen_<metric>_std`, `unseen_<metric>_mean`, `unseen_<metric>_std`
    (None where absent: no bar; in the multi-class setting every type is seen) and a label (`label_key`, else
    the method). The y axis starts just below the lowest bar, so read the printed values.
    """
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    labels = [str(r.get(label_key, r.get("method", i))) for i, r in enumerate(rows)]
    many = len(rows) > 6  # many groups: one panel per line, as wide as the groups need
    fig, axes = _panels(len(metrics), ncols=1 if many else 3, width=max(4.2, 0.55 * len(rows) + 1.5),
                        height=3.6 if many else 3.2)
    x = np.arange(len(rows))
    for ax, metric in zip(axes, metrics):
        lows = []
        groups = [g for g in ("seen_", "unseen_") if any(r.get(f"{g}{metric}_mean") is not None for r in rows)]
        w = 0.76 / max(1, len(groups))
        for j, group in enumerate(groups):
            mean = np.array([_num(r.get(f"{group}{metric}_mean")) for r in rows])
            std = np.nan_to_num(np.array([_num(r.get(f"{group}{metric}_std")) for r in rows]))
            pos = x + (j - (len(groups) - 1) / 2) * w
            ok = ~np.isnan(mean)
            ax.bar(pos[ok], mean[ok], w, yerr=std[ok], capsize=3,
                   color=GROUP_COLOURS[group.rstrip("_")], label=group.rstrip("_") + " types")
            for px, m, e in zip(pos[ok], mean[ok], std[ok]):  # 3 decimals: the differences are in the third
                ax.text(px, m + e, f"{m:.3f}", ha="center", va="bottom", fontsize=7, rotation=90 if many else 0)
            lows += list(mean[ok] - std[ok])
        low = max(0.0, np.floor((min(lows) - 0.05) * 10) / 10) if lows else 0.0
        ax.set_ylim(low, 1.02)
        ax.set_xticks(x, labels, rotation=30 if len(rows) > 3 else 0, ha="right" if len(rows) > 3 else "center",
                      fontsize=8)
        ax.set_xlim(-0.6, len(rows) - 0.4)
        ax.set_title(_metric_title(metric), fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    if axes[0].get_legend_handles_labels()[0]:
        axes[0].legend(fontsize=8, loc="lower left")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def plot_sensitivity(rows: Sequence[dict], param: str, metrics: str | Sequence[str] = ("image_auroc",),
                     series_key: str = "series", xlabel: str | None = None):
    """Metric (mean ± std over seeds) against one parameter, one line per series, one panel per metric.

    Rows need `param`, `<metric>_mean`, `<metric>_std` and a series name (`series_key`, else the method).
    A series with a single value of `param` (a method that ignores it, e.g. `nf` for β) is drawn as a dashed
    horizontal reference line. Non-numeric values (boundary = batch / epoch) are placed in order on the x axis.
    """
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    values = list(dict.fromkeys(r.get(param) for r in rows))
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    if numeric:
        pos = {v: float(v) for v in values}
    else:
        values = sorted(values, key=str)
        pos = {v: float(i) for i, v in enumerate(values)}
    series: dict[str, list[dict]] = {}
    for r in rows:
        series.setdefault(str(r.get(series_key, r.get("method"))), []).append(r)
    fig, axes = _panels(len(metrics))
    for ax, metric in zip(axes, metrics):
        used: dict[str, int] = {}  # series of one method share its colour: marker and line style tell them apart
        for k, (name, members) in enumerate(series.items()):
            members = sorted(members, key=lambda r: pos[r.get(param)])
            xs = np.array([pos[r.get(param)] for r in members])
            mean = np.array([_num(r.get(f"{metric}_mean")) for r in members])
            std = np.nan_to_num(np.array([_num(r.get(f"{metric}_std")) for r in members]))
            colour = method_colour(name, k)
            n = used[colour] = used.get(colour, -1) + 1
            marker, style = "osD^v"[n % 5], ("-", "--", ":", "-.")[(n // 5) % 4]
            if len(set(xs.tolist())) == 1:
                if not np.isnan(mean[0]):
                    ax.axhline(mean[0], ls="--", color=colour, lw=1, label=f"{name} (not varied)")
                continue
            ax.errorbar(xs, mean, yerr=std, marker=marker, ls=style, capsize=3, color=colour, label=name)
        if numeric and all(v > 0 for v in values) and max(values) / min(values) >= 20:
            ax.set_xscale("log")
        if not numeric:
            ax.set_xticks(list(pos.values()), [str(v) for v in values])
        elif len(values) <= 8:
            ax.set_xticks([pos[v] for v in values], [f"{v:g}" for v in values])
        ax.set_xlabel(xlabel or _PARAM_NAMES.get(param, param))
        ax.set_title(_metric_title(metric), fontsize=10)
        ax.grid(alpha=0.3)
    return _legend_above(fig, axes[0], max_cols=3)


def plot_n_known(rows: Sequence[dict], metrics: str | Sequence[str] = ("image_auroc",), series_key: str = "series"):
    """Metric (mean ± std over seeds) against the number N of known anomalies, one line per series."""
    return plot_sensitivity(rows, "n_known", metrics, series_key=series_key, xlabel="N known anomalies")


def plot_one_at_a_time(panels: Mapping[str, Sequence[dict]], metric: str, default: Mapping[str, Any],
                       references: Mapping[str, float] | None = None, noise: float | None = None):
    """One panel per axis of a one-at-a-time grid: `<metric>_mean` (± `_std`) against the axis value.

    `panels` maps an axis (a results.csv column: beta, tau, lambda, boundary, n_known) to its rows, sorted;
    the `default` value of each axis is the filled marker; `references` (name -> value, e.g. the NF baseline)
    are dashed lines; `noise` draws a band of ± noise around the default's value (e.g. the seed-to-seed
    difference), so a change inside the band is not a finding. Introduced in the *Ablations* chapter.
    """
    plt = _plt()
    n = max(1, len(panels))
    fig, axes = plt.subplots(1, n, figsize=(2.7 * n + 0.6, 3.0), sharey=True, squeeze=False)
    axes = axes[0]
    for k, (ax, (col, rows)) in enumerate(zip(axes, panels.items())):
        xs = np.arange(len(rows))
        mean = np.array([_num(r.get(f"{metric}_mean")) for r in rows])
        std = np.nan_to_num(np.array([_num(r.get(f"{metric}_std")) for r in rows]))
        is_default = np.array([str(r.get(col)) == str(default.get(col)) for r in rows])
        if noise is not None and is_default.any():
            centre = mean[is_default][0]
            ax.axhspan(centre - noise, centre + noise, color="0.85", zorder=0,
                       label="± seed-to-seed difference" if k == 0 else None)
        for j, (name, value) in enumerate((references or {}).items()):
            if value is not None and not np.isnan(_num(value)):
                ax.axhline(float(value), ls="--", lw=1, color=method_colour(name, j + 1), label=name if k == 0 else None)
        ax.errorbar(xs, mean, yerr=std, color=METHOD_COLOURS["bgad"], marker="o", capsize=3, mfc="white", zorder=3,
                    label="BGAD" if k == 0 else None)
        ax.plot(xs[is_default], mean[is_default], "o", color=METHOD_COLOURS["bgad"], ms=8, zorder=4,
                label="default" if k == 0 else None)
        ax.set_xticks(xs, [f"{r.get(col):g}" if isinstance(r.get(col), (int, float)) else str(r.get(col))
                           for r in rows])
        ax.set_xlim(-0.5, len(rows) - 0.5)
        ax.set_xlabel(_PARAM_NAMES.get(col, col), fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(_metric_title(metric))
    return _legend_above(fig, axes[0], max_cols=5)


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
    fig, axes = plt.subplots(2, 2, figsize=(7.2, 6.8))
    axes = axes.ravel()
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
    fig, axes = plt.subplots(1, n, figsize=(3.3 * n, 3.4))
    for name, c in curves.items():
        c = np.asarray(c, dtype=float)
        w = max(1, min(window, len(c)))
        smooth = np.convolve(c, np.ones(w) / w, mode="valid")
        axes[0].plot(np.arange(w - 1, len(c)), smooth, label=name)
    axes[0].set_xlabel("Adam step")
    axes[0].set_ylabel("− mean log p (nats per point)")
    axes[0].legend(fontsize=9)
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
        ax.legend(fontsize=9)
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
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(0.85 * n_cols + 1.4, 0.9 * n_rows), squeeze=False)
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
                       colors: Sequence[str] = ("C0", "C1", "0.6"), ncols: int | None = None):
    """One scatter panel per (title, (N, 2) projected embeddings); point i is coloured by `groups[i]`.

    Groups are drawn from the last to the first, so group 0 (the normal class) is on top. `ncols` panels per row
    (default: all in one row); the legend is below the panels.
    """
    plt = _plt()
    n = len(panels)
    ncols = ncols or n
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.3 * ncols, 3.2 * nrows + 0.4), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    groups = np.asarray(groups)
    for ax, (title, xy) in zip(axes.flat, panels.items()):
        xy = np.asarray(xy)
        for g in reversed(range(len(group_names))):
            sel = groups == g
            ax.scatter(xy[sel, 0], xy[sel, 1], s=6, alpha=0.75, color=colors[g], linewidths=0, label=group_names[g])
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles[::-1], names[::-1], loc="lower center", ncol=len(group_names), fontsize=9, markerscale=2)
    fig.tight_layout(rect=(0, 0.4 / fig.get_figheight(), 1, 1))
    return fig


def plot_bars(names: Sequence[str], means: Sequence[float], stds: Sequence[float] | None = None,
              ylabel: str = "AUROC", ylim: Sequence[float] | None = None, colors: Sequence[str] | None = None):
    """A small bar chart with optional error bars (± one standard deviation) and the value on each bar."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(1.2 * len(names) + 1.5, 3.0))
    x = np.arange(len(names))
    colors = list(colors) if colors is not None else [method_colour(n, i) for i, n in enumerate(names)]
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


def objective_colour(name: str) -> str:
    """A contrastive objective of the Contrastive chapter's toy in the palette: SupCon and FIRM in their methods'
    colours (`method_colour`), SimCLR black (as cflow, which never shares a figure with it), anything else (raw
    pixels) light grey."""
    low = str(name).lower()
    if "simclr" in low:
        return "#000000"
    if "supcon" in low or "firm" in low:
        return method_colour(low)
    return "#BBBBBB"


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


def plot_positional_encoding(pe: np.ndarray, channels: Sequence[int], titles: Sequence[str] | None = None,
                             ncols: int = 4):
    """Selected channels of a (D, h, w) positional encoding, each as an h×w image in [−1, 1], `ncols` per row."""
    plt = _plt()
    pe = np.asarray(pe)
    n = len(channels)
    ncols = min(ncols, n)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.2 * ncols + 0.6, 2.3 * nrows), squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    for i, (ax, ch) in enumerate(zip(axes.ravel(), channels)):
        im = ax.imshow(pe[ch], cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
        ax.set_title(titles[i] if titles else f"channel {ch}", fontsize=9)
        _clean(ax)
    fig.colorbar(im, ax=axes.ravel().tolist(), fraction=0.03, pad=0.02)
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
    ax[0].legend(fontsize=9)
    ax[1].plot(ell, 1.0 / (1.0 + np.exp(ell)), color="tab:green", label="|∂L/∂ℓ| = σ(−ℓ)")
    ax[1].set_xlabel("ℓ = log p / C")
    ax[1].set_ylabel("gradient weight")
    ax[1].set_ylim(0, 1.05)
    if normal_ell is not None:
        twin = ax[1].twinx()
        twin.hist(np.asarray(normal_ell), bins=60, range=(ell.min(), ell.max()), color=NORMAL_COLOUR, alpha=0.35,
                  density=True, label="normal patches (trained flow)")
        twin.set_yticks([])
        lines = ax[1].get_legend_handles_labels()
        bars = twin.get_legend_handles_labels()
        ax[1].legend(lines[0] + bars[0], lines[1] + bars[1], fontsize=9, loc="center left")
    else:
        ax[1].legend(fontsize=9)
    for a in ax:
        a.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_history(history: Sequence[Mapping], level_names: Sequence[str] | None = None, key: str = "loss",
                 phase2_label: str = "phase 2"):
    """Training curve: the mean loss (`key`) per epoch and level from a run's `history`; phase 2 shaded and
    labelled `phase2_label` (say what the method does there: "phase 2: L_ml + BG-SPP" for BGAD)."""
    plt = _plt()
    epochs = [int(r["epoch"]) + 1 for r in history]
    n_levels = len(history[0]["levels"]) if history else 0
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    for l in range(n_levels):
        ys = [r["levels"][l].get(key, np.nan) for r in history]
        ax.plot(epochs, ys, marker="o", ms=3, label=level_names[l] if level_names else f"level {l}")
    p2 = [e for e, r in zip(epochs, history) if int(r.get("phase", 1)) == 2]
    if p2:
        ax.axvspan(min(p2) - 0.5, max(p2) + 0.5, color="0.9", zorder=0, label=phase2_label)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"mean {key} per chunk")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig

# ----------------------------------------------------------------------------------------------
# BG-SPP chapter
# ----------------------------------------------------------------------------------------------
def plot_toy_boundaries(grids: Mapping[str, np.ndarray], levels: Mapping[str, tuple[float, float]],
                        points: Mapping[str, np.ndarray], extent: Sequence[float],
                        notes: Mapping[str, str] | None = None):
    """The 2-D toy, one panel per training (its title the key of `grids`): the points (`points` "normal", "seen",
    "unseen", each (n, 2), in the group colours), the level sets of ℓ at b_n (solid) and b_a (dashed) with the
    margin between them shaded. `grids[k]`: ℓ on a regular grid over `extent` (rows along y); `levels[k]`: (ℓ at
    b_a, ℓ at b_n); `notes[k]`: a line under the title. Introduced in the *BG-SPP* chapter."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    plt = _plt()
    n = len(grids)
    fig, axes = plt.subplots(1, n, figsize=(3.1 * n + 0.2, 3.9), squeeze=False)
    style = {"normal": dict(s=4, alpha=0.35, marker="o"), "seen": dict(s=16, alpha=0.9, marker="o"),
             "unseen": dict(s=16, alpha=0.8, marker="^")}
    for ax, (name, grid) in zip(axes[0], grids.items()):
        ell_ba, ell_bn = levels[name]
        ax.contourf(grid, levels=[ell_ba, ell_bn], extent=extent, colors=[MARGIN_COLOUR], alpha=0.5)
        ax.contour(grid, levels=[ell_ba], extent=extent, colors="darkred", linewidths=1.3, linestyles="--")
        ax.contour(grid, levels=[ell_bn], extent=extent, colors="navy", linewidths=1.3, linestyles="solid")
        for group, pts in points.items():
            pts = np.asarray(pts)
            ax.scatter(pts[:, 0], pts[:, 1], color=GROUP_COLOURS[group], linewidths=0, **style[group])
        title = name + (f"\n{notes[name]}" if notes and name in notes else "")
        ax.set_title(title, fontsize=10)
        _square(ax, extent)
    handles = [Line2D([], [], ls="", marker=style[g]["marker"], color=GROUP_COLOURS[g], label=label)
               for g, label in (("normal", "normal"), ("seen", "seen anomalies (trained on)"),
                                ("unseen", "unseen anomalies"))]
    handles += [Line2D([], [], color="navy", label="ℓ = b_n"),
                Line2D([], [], color="darkred", ls="--", label="ℓ = b_a"),
                Patch(color=MARGIN_COLOUR, alpha=0.5, label="margin")]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0.14, 1, 1))
    return fig


def plot_spp_roles(normal_x: Sequence[float], anomalous_x: Sequence[float], b_n: float, b_a: float):
    """Who is pulled, who is pushed, who is left alone, on the x = ℓ/normaliser axis: BG-SPP (top; normals below
    b_n pulled up to it, anomalies above b_a pushed down to it, everyone else left alone) against a conventional
    push-pull (bottom; every normal pulled up, every anomaly pushed down, no stopping point). A schematic: the
    arrows show direction and where a pull or push ends, not its strength. Introduced in the *BG-SPP* chapter."""
    plt = _plt()
    xn, xa = np.asarray(normal_x, dtype=float), np.asarray(anomalous_x, dtype=float)
    lo, hi = min(xn.min(), xa.min(), b_a), max(xn.max(), xa.max(), b_n)
    span = hi - lo
    step = 0.12 * span  # a push-pull arrow: no end point, so a fixed length
    fig, axes = plt.subplots(2, 1, figsize=(8.5, 4.4), sharex=True)
    arrow = lambda colour: dict(arrowstyle="-|>", color=colour, lw=1.6, shrinkA=5, shrinkB=0)  # noqa: E731
    for ax, semi in zip(axes, (True, False)):
        ax.axvspan(b_a, b_n, color=MARGIN_COLOUR, alpha=0.45, zorder=0)
        ax.axvline(b_n, color="navy", lw=1.3)
        ax.axvline(b_a, color="darkred", lw=1.3, ls="--")
        for xs, y, kind in ((xn, 0.45, "normal"), (xa, -0.45, "anomalous")):
            colour = GROUP_COLOURS[kind]
            for x in xs:
                if kind == "normal":
                    moved, target = (x <= b_n, b_n) if semi else (True, x + step)
                else:
                    moved, target = (x >= b_a, b_a) if semi else (True, x - step)
                ax.scatter([x], [y], s=60, zorder=3, color=colour if moved else "white", edgecolors=colour, lw=1.5)
                if moved and abs(target - x) > 1e-9:
                    ax.annotate("", xy=(target, y), xytext=(x, y), arrowprops=arrow(colour), zorder=2)
                label = ("pulled up" if kind == "normal" else "pushed down") if moved else "left alone"
                ax.text(x, y + (0.2 if kind == "normal" else -0.2), label, ha="center",
                        va="bottom" if kind == "normal" else "top", fontsize=8.5, color=colour if moved else "0.45")
        ax.set_ylim(-1.05, 1.05)
        ax.set_yticks([0.45, -0.45], ["normal", "anomalous"])
        ax.set_title("BG-SPP: pull to b_n, push to b_a, then stop" if semi
                     else "conventional push-pull (BGAD†): every normal up, every anomaly down", fontsize=10)
        ax.text(b_n, -1.0, " b_n", color="navy", va="bottom", fontsize=9)
        ax.text(b_a, -1.0, "b_a ", color="darkred", va="bottom", ha="right", fontsize=9)
    axes[1].set_xlim(lo - 0.2 * span, hi + 0.2 * span)
    axes[1].set_xlabel("x = ℓ / normaliser   (low: unlikely, anomalous → high: likely, normal)")
    fig.tight_layout()
    return fig


def plot_patch_gradients(ell: np.ndarray, grads: Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray]]],
                         ell_bn: float, ell_ba: float):
    """dL/dℓ of one normal (left) and one anomalous patch (right) against its ℓ, one line per loss (`grads[name]
    [kind] = (loss, dL/dℓ)`, as `toy.patch_losses` returns), with ℓ at b_n, b_a and the margin. Gradient descent
    moves ℓ against the gradient: below 0 the patch is pulled up, above 0 pushed down. Introduced in the *BG-SPP*
    chapter."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharey=True)
    for ax, kind in zip(axes, ("normal", "anomalous")):
        ax.axvspan(ell_ba, ell_bn, color=MARGIN_COLOUR, alpha=0.45, zorder=0, label="margin")
        ax.axvline(ell_bn, color="navy", lw=1.2, label="b_n")
        ax.axvline(ell_ba, color="darkred", lw=1.2, ls="--", label="b_a")
        ax.axhline(0.0, color="k", lw=0.7)
        for k, (name, by_kind) in enumerate(grads.items()):
            ax.plot(ell, by_kind[kind][1], color=method_colour(name, k), lw=2.2 if k == 0 else 1.6, label=name,
                    ls="-" if k == 0 else "--", zorder=3 + k)
        ax.set_title(f"{kind} patch", fontsize=10, color=GROUP_COLOURS[kind])
        ax.set_xlabel("ℓ (nats per dimension)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("dL/dℓ   (< 0: pulled up, > 0: pushed down)", fontsize=9)
    axes[1].legend(fontsize=9, loc="lower right")
    fig.tight_layout()
    return fig


def plot_loss_curves(curves, lams: Sequence[float], b_n: float, b_a: float, normalizer: float = 10.0):
    """The loss one normal patch (L_ml + λ·pull) and one anomalous patch (λ·push) contribute against its x, one
    panel per λ (`curves(λ) -> (x, normal, anomalous)`, e.g. `toy.loss_curves`), the margin shaded. Introduced
    in the *BG-SPP* chapter; the λ explorer draws the same curves."""
    plt = _plt()
    rows, cols = (len(lams) + 1) // 2, min(2, len(lams))
    fig, axes = plt.subplots(rows, cols, figsize=(4.4 * cols, 2.9 * rows), sharex=True, sharey=True, squeeze=False)
    for ax, lam in zip(axes.ravel(), lams):
        x, normal, anomalous = curves(float(lam))
        ax.plot(x, normal, color=NORMAL_COLOUR, lw=2, label="normal patch: L_ml + λ·pull")
        ax.plot(x, anomalous, color=ABNORMAL_COLOUR, lw=2, label="anomalous patch: λ·push")
        ax.axvspan(b_a, b_n, color=MARGIN_COLOUR, alpha=0.35)
        ax.set_title(f"λ = {lam:g}", fontsize=10)
        ax.grid(alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel(f"x = ℓ / {normalizer:g}")
    axes[0, 0].legend(fontsize=9)
    fig.tight_layout()
    return fig


def plot_group_hists(groups: Mapping[str, Mapping[str, Any]], x_range: tuple[float, float],
                     keys: Sequence[str] = ("seen", "unseen"), bins: int = 80):
    """Columns: models (`groups[name]` as `showcase.patch_groups` returns: normal, seen, unseen x, b_n, b_a); rows:
    the seen type's and the unseen types' test patches against the normal ones (`plot_boundary_hist`), on one x
    range. Introduced in the *BG-SPP* chapter."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    plt = _plt()
    names = list(groups)
    fig, axes = plt.subplots(len(keys), len(names), figsize=(3.1 * len(names), 2.6 * len(keys)), sharex=True,
                             squeeze=False)
    titles = {"seen": "seen type", "unseen": "unseen types", "known": "known anomalies"}
    for col, name in enumerate(names):
        v = groups[name]
        for row, key in enumerate(keys):
            ax = axes[row, col]
            plot_boundary_hist(v["normal"], v[key], v["b_n"], v["b_a"], ax=ax, bins=bins, x_range=x_range,
                               title=f"{name}: {titles.get(key, key)}", legend=False,
                               xlabel="x = ℓ / normaliser" if row == len(keys) - 1 else "")
            for bar in ax.containers[-1] if len(ax.containers) > 1 else []:  # the anomalous histogram
                bar.set_facecolor(GROUP_COLOURS.get(key, ABNORMAL_COLOUR))
            if col:
                ax.set_ylabel("")
    handles = [Patch(color=NORMAL_COLOUR, alpha=0.55, label="normal test patches")]
    patches = {"seen": "seen-type patches", "unseen": "unseen-type patches", "known": "known-anomaly patches"}
    handles += [Patch(color=GROUP_COLOURS.get(k, ABNORMAL_COLOUR), alpha=0.55, label=patches.get(k, k))
                for k in keys]
    handles += [Patch(color=MARGIN_COLOUR, alpha=0.3, label="margin"), Line2D([], [], color="navy", label="b_n"),
                Line2D([], [], color="darkred", ls="--", label="b_a")]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
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
        a.set_xticks(range(1, len(names) + 1), names, fontsize=9)
        a.grid(axis="y", alpha=0.3)
    ax[0].set_title("whiskers: 5th-95th percentile", fontsize=9)
    fig.tight_layout()
    return fig


def plot_score_levels(image: np.ndarray, mask: np.ndarray | None, level_maps: Sequence[np.ndarray],
                      level_titles: Sequence[str], final_map: np.ndarray, vmax: float | None = None):
    """How the official score is built for one image: exp(ℓ − max) of each level (upsampled), then the map."""
    plt = _plt()
    n = len(level_maps) + 2
    fig, axes = plt.subplots(1, n, figsize=(min(10.0, 2.3 * n), 2.7))
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
                 fpr_limit: float = 0.3, colour: str | None = None):
    """Three panels: image ROC, pixel ROC (each (fpr, tpr)), and the PRO curve (fpr, pro) up to `fpr_limit`.

    `values` may carry image_auroc, pixel_auroc and pro to print in the titles; `colour` (e.g. the method's,
    `method_colour`) draws all three curves.
    """
    plt = _plt()
    values = values or {}
    fig, ax = plt.subplots(1, 3, figsize=(10, 3.4))

    def title(name, key):
        v = values.get(key)
        return name if v is None else f"{name} = {v:.3f}"

    for a, (fpr, tpr), name, key in ((ax[0], image_roc, "image AUROC", "image_auroc"),
                                     (ax[1], pixel_roc, "pixel AUROC", "pixel_auroc")):
        a.plot(fpr, tpr, color=colour or "tab:blue")
        a.fill_between(fpr, tpr, alpha=0.15, color=colour or "tab:blue")
        a.plot([0, 1], [0, 1], ":", color="0.5")
        a.set_xlabel("false-positive rate")
        a.set_ylabel("true-positive rate")
        a.set_title(title(name, key), fontsize=10)
        a.set_xlim(0, 1)
        a.set_ylim(0, 1.01)
    if pro is not None:
        f, p = pro
        ax[2].plot(f, p, color=colour or "tab:purple")
        keep = f <= fpr_limit
        ax[2].fill_between(f[keep], p[keep], alpha=0.15, color=colour or "tab:purple")
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


def plot_boundary_by_level(normal_x: Sequence[np.ndarray], abnormal_x: Sequence[np.ndarray],
                           counts: Sequence[Mapping], titles: Sequence[str], ncols: int = 2, bins: int = 60):
    """`plot_boundary_hist` per feature level at the page width: at most `ncols` panels a row (9 in wide), one legend
    above them, type at 11-12 pt; `counts[l]` holds level l's b_n and b_a. Introduced in the *Boundary* chapter."""
    plt = _plt()
    n = len(counts)
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.5 * ncols, 3.1 * nrows + 0.4), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax, xn, xa, c, title in zip(axes.flat, normal_x, abnormal_x, counts, titles):
        plot_boundary_hist(xn, xa, c["b_n"], c["b_a"], ax=ax, bins=bins, legend=False)
        ax.set_title(f"{title}: b_n = {c['b_n']:.3f}", fontsize=12)
        ax.tick_params(labelsize=11)
        ax.xaxis.label.set_size(12)
        ax.yaxis.label.set_size(12)
    handles, _ = axes[0, 0].get_legend_handles_labels()
    names = ["normal patches", "known-anomaly patches", "margin (b_a, b_n)", "b_n", "b_a = b_n − τ"]
    fig.legend(handles, names[:len(handles)], loc="upper center", ncol=5, fontsize=11, frameon=False,
               handlelength=1.5, columnspacing=1.2)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.4 / fig.get_figheight()))
    return fig


def plot_beta_tau_grid(normal_x: np.ndarray, abnormal_x: np.ndarray, grid: Mapping[tuple[float, float], Mapping],
                       betas: Sequence[float], taus: Sequence[float], bins: int = 50):
    """Small multiples of `plot_boundary_hist` at the page width (3 × 3 reads at 9.5 in): rows β, columns τ, each
    panel with the share of normal patches at or below b_n and of anomalous patches at or above b_a;
    `grid[(β, τ)]` is `boundary.boundary_counts` output (x units). Introduced in the *Boundary* chapter."""
    plt = _plt()
    lo, hi = hist_range(normal_x, abnormal_x)
    b_min = min(float(grid[(b, t)]["b_a"]) for b in betas for t in taus)
    x_range = (min(lo, b_min - 0.05 * (hi - lo)), hi)  # every b_a stays visible
    size = (min(9.5, 3.0 * len(taus) + 0.5), 2.2 * len(betas) + 0.6)
    fig, axes = plt.subplots(len(betas), len(taus), figsize=size, sharex=True, squeeze=False)
    for i, beta in enumerate(betas):
        for j, tau in enumerate(taus):
            c, ax = grid[(beta, tau)], axes[i, j]
            plot_boundary_hist(normal_x, abnormal_x, c["b_n"], c["b_a"], ax=ax, bins=bins, x_range=x_range,
                               legend=False, xlabel="")
            ax.set_ylabel(f"β = {beta:g}" if j == 0 else "", fontsize=12)
            ax.set_yticks([])
            ax.tick_params(labelsize=11)
            if i == 0:
                ax.set_title(f"τ = {tau:g}", fontsize=12)
            ax.set_ylim(0, 1.4 * ax.get_ylim()[1])  # headroom for the shares, above the bars and lines
            for line in ax.lines:
                line.set_ydata([0, 0.72])
            ax.text(0.03, 0.97, f"{100 * c['frac_normal_below_bn']:.1f}% normal ≤ b_n\n"
                    f"{100 * c['frac_abnormal_above_ba']:.0f}% anom. ≥ b_a", transform=ax.transAxes, va="top",
                    fontsize=11)
    for ax in axes[-1]:
        ax.set_xlabel("x = ℓ / normaliser", fontsize=12)
    fig.tight_layout()
    return fig


def plot_chunk_spread(whole: float, chunk_bn: Mapping[str, np.ndarray], labels: Mapping[str, str] | None = None,
                      tau: float | None = None, bins: int = 40):
    """Per-chunk b_n around the whole-set b_n: one panel per kind of chunk on a shared x axis (the offset in units
    of τ when τ > 0), in the normal patches' colour; the narrower a panel, the steadier that boundary.
    Introduced in the *Boundary* chapter."""
    plt = _plt()
    labels = labels or {}
    scale = tau if tau else 1.0
    offs = {k: (np.asarray(v, dtype=np.float64) - whole) / scale for k, v in chunk_bn.items()}
    m = 1.05 * max(float(np.abs(v).max()) for v in offs.values()) or 1.0
    fig, axes = plt.subplots(len(offs), 1, figsize=(8.5, 1.45 * len(offs) + 0.9), sharex=True, squeeze=False)
    for ax, (k, v) in zip(axes[:, 0], offs.items()):
        ax.hist(v, bins=bins, range=(-m, m), color=NORMAL_COLOUR, alpha=0.75)
        ax.axvline(0.0, color="k", lw=1.5)
        std = f"{v.std():.2f}·τ" if tau else f"{v.std():.4f}"
        ax.set_title(f"{labels.get(k, k)}: std {std}", fontsize=11, loc="left")
        ax.set_yticks([])
        ax.tick_params(labelsize=11)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel(("(b_n of a chunk − whole-set b_n) / τ" if tau else
                            "b_n of a chunk − whole-set b_n  (ℓ / normaliser)") + f";  whole-set b_n = {whole:.3f}",
                           fontsize=12)
    fig.tight_layout()
    return fig


def plot_time_to_quality(runs: Sequence[Mapping[str, Any]], peers: Mapping[str, Mapping[str, Any]] | None = None,
                         metrics: Sequence[str] = ("image_auroc", "pixel_auroc", "pro"), group: str = "metrics_unseen"):
    """Metric (of `group`, e.g. the unseen types) against CPU seconds per run, one marker per method and schedule
    point (`runs`: rows of `bench/bench_schedule.py`); `peers` (name -> {cpu_s, metrics...}) as labelled stars."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.4 * len(metrics), 3.6), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for method, marker in (("nf", "o"), ("bgad", "s"), ("pushpull", "^")):
            rows = [r for r in runs if r["method"] == method and r.get("cpu_s") and r.get(group)]
            if not rows:
                continue
            ax.scatter([r["cpu_s"] for r in rows], [r[group][metric] for r in rows], marker=marker, label=method,
                       color=METHOD_COLOURS[method])
            for r in rows:
                ax.annotate(r["point"], (r["cpu_s"], r[group][metric]), fontsize=7, xytext=(3, 2),
                            textcoords="offset points")
        for name, p in (peers or {}).items():
            if p.get("cpu_s") and p.get(group):
                ax.scatter([p["cpu_s"]], [p[group][metric]], marker="*", s=120, label=name,
                           color=method_colour(name))
        ax.set_xlabel("CPU seconds per run (train + evaluate)")
        ax.set_title(f"{_metric_title(metric)}, {group.replace('metrics_', '').replace('metrics', 'all')} types",
                     fontsize=10)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------------------------
# Introduction: the front figure and the pipeline diagram
# ----------------------------------------------------------------------------------------------
def plot_front(front: Mapping[str, Any], bins: int = 70):
    """The book's claim in one figure (`showcase.front_example`): top, an unseen defect with its mask and the two
    runs' anomaly maps on one colour scale; bottom, each run's normal and unseen-anomalous patch x = ℓ/normaliser
    at the finest level with b_n, b_a and the margin."""
    plt = _plt()
    names = list(front["maps"])
    fig = plt.figure(figsize=(10, 6.4))
    grid = fig.add_gridspec(2, 6, height_ratios=[1.15, 1], hspace=0.42, wspace=0.5)
    img = np.clip(front["image"], 0, 1).copy()
    img[mask_outline(front["mask"])] = (0.0, 1.0, 1.0)
    ax = fig.add_subplot(grid[0, 0:2])
    ax.imshow(img)
    ax.set_title(f"unseen defect: {front['type']}\n(cyan: ground truth)", fontsize=10)
    _clean(ax)
    vmax = float(max(np.quantile(m, 0.999) for m in front["maps"].values()))
    for k, name in enumerate(names):
        ax = fig.add_subplot(grid[0, 2 + 2 * k: 4 + 2 * k])
        im = ax.imshow(front["maps"][name], cmap="inferno", vmin=0.0, vmax=vmax)
        ax.contour(front["mask"] > 0, levels=[0.5], colors="cyan", linewidths=0.8)
        ax.set_title(f"{name}: anomaly map", fontsize=10)
        _clean(ax)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    groups = [front["groups"][n] for n in names]
    lo = min(float(np.quantile(np.concatenate([g["normal"], g["unseen"]]), 0.002)) for g in groups)
    hi = max(float(np.quantile(g["normal"], 0.9995)) for g in groups)
    lo = min(lo, min(g["b_a"] for g in groups) - 0.05)
    for k, (name, g) in enumerate(zip(names, groups)):
        ax = fig.add_subplot(grid[1, 3 * k: 3 * k + 3])
        plot_boundary_hist(g["normal"], g["unseen"], g["b_n"], g["b_a"], ax=ax, bins=bins, x_range=(lo, hi),
                           title=f"{name}: test patches, finest level", legend=k == 0,
                           abnormal_label="unseen-defect patches")
    return fig


def plot_pipeline():
    """The pipeline as boxes and arrows: images → features → conditional flow → ℓ → boundary → loss / map."""
    from matplotlib.patches import FancyBboxPatch

    plt = _plt()
    steps = [("images", "normal + a few\nknown anomalies"), ("features", "frozen CNN,\n2-3 levels"),
             ("conditional\nflow", "one per level,\n+ position"), ("log-likelihood\nℓ", "per patch,\nℓ = log p / C"),
             ("boundary", "b_n: β-quantile,\nb_a = b_n − τ"), ("BG-SPP\nloss", "pull normals < b_n,\npush anom. > b_a")]
    fig, ax = plt.subplots(figsize=(11, 2.6))
    w, gap = 1.7, 0.3
    for i, (title, text) in enumerate(steps):
        x = i * (w + gap)
        colour = "#dbe8f5" if i < 4 else "#fbe3c9"
        ax.add_patch(FancyBboxPatch((x, 0.25), w, 1.2, boxstyle="round,pad=0.04", fc=colour, ec="0.35"))
        ax.text(x + w / 2, 1.1, title, ha="center", va="center", fontsize=10, weight="bold")
        ax.text(x + w / 2, 0.55, text, ha="center", va="center", fontsize=9)
        if i:
            ax.annotate("", xy=(x - 0.02, 0.85), xytext=(x - gap + 0.02, 0.85),
                        arrowprops=dict(arrowstyle="-|>", color="0.3", lw=1.4))
    x_map = 3 * (w + gap)
    ax.annotate("test time: the anomaly map from ℓ (low ℓ: anomalous), upsampled and summed over levels", xy=(x_map + w / 2, 0.22),
                xytext=(x_map + w / 2, -0.25), ha="center", fontsize=8.5, color="0.25",
                arrowprops=dict(arrowstyle="<|-", color="0.3", lw=1.2))
    ax.text(4 * (w + gap) + w + gap / 2, 1.58, "training only", ha="center", fontsize=9, color="#a0522d")
    ax.set_xlim(-0.1, len(steps) * (w + gap))
    ax.set_ylim(-0.45, 1.7)
    ax.axis("off")
    return fig


# ----------------------------------------------------------------------------------------------
# Reproduction chapter
# ----------------------------------------------------------------------------------------------
def plot_gain_bars(labels: Sequence[str], gains: Mapping[str, Sequence[float]], xlabel: str,
                   colour: str | None = None):
    """Horizontal bars of a gain per label, one bar per series (solid, then lighter), and the zero line; the
    first label on top. `colour` is the method whose gain it is (default BGAD's)."""
    from matplotlib.colors import to_rgba

    plt = _plt()
    colour = colour or METHOD_COLOURS["bgad"]
    n = len(gains)
    height = 0.8 / n
    y = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(labels) + 1.1))
    for i, (name, values) in enumerate(gains.items()):
        face = to_rgba(colour, 1.0 - 0.6 * i / max(1, n - 1))
        ax.barh(y + (i - (n - 1) / 2) * height, values, height=height, color=face, edgecolor=colour, label=name)
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel(xlabel)
    ax.legend(loc="best")
    fig.tight_layout()
    return fig
