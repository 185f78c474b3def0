"""Pure plotting functions: arrays in, a matplotlib figure out. Nothing here trains or reads files."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

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


# --- ablation charts (the *Ablations* chapter; rows are dicts from `ablation.summarize`) ----------------------
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
                   color="tab:blue" if group == "seen_" else "tab:orange", label=group.rstrip("_") + " types")
            for px, m, e in zip(pos[ok], mean[ok], std[ok]):
                ax.text(px, m + e, f"{m:.2f}", ha="center", va="bottom", fontsize=7)
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
        for k, (name, members) in enumerate(series.items()):
            members = sorted(members, key=lambda r: pos[r.get(param)])
            xs = np.array([pos[r.get(param)] for r in members])
            mean = np.array([_num(r.get(f"{metric}_mean")) for r in members])
            std = np.nan_to_num(np.array([_num(r.get(f"{metric}_std")) for r in members]))
            colour, marker = f"C{k % 10}", "osD^v"[(k // 10) % 5]
            if len(set(xs.tolist())) == 1:
                if not np.isnan(mean[0]):
                    ax.axhline(mean[0], ls="--", color=colour, lw=1, label=f"{name} (not varied)")
                continue
            ax.errorbar(xs, mean, yerr=std, marker=marker, capsize=3, color=colour, label=name)
        if numeric and all(v > 0 for v in values) and max(values) / min(values) >= 20:
            ax.set_xscale("log")
        if not numeric:
            ax.set_xticks(list(pos.values()), [str(v) for v in values])
        elif len(values) <= 8:
            ax.set_xticks([pos[v] for v in values], [f"{v:g}" for v in values])
        ax.set_xlabel(xlabel or _PARAM_NAMES.get(param, param))
        ax.set_title(_metric_title(metric), fontsize=10)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(3, len(labels)), fontsize=8,
                   bbox_to_anchor=(0.5, 1.0))
    fig.tight_layout()
    return fig


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
                ax.axhline(float(value), ls="--", lw=1, color=f"C{j + 1}", label=name if k == 0 else None)
        ax.errorbar(xs, mean, yerr=std, color="C0", marker="o", capsize=3, mfc="white", zorder=3,
                    label="BGAD" if k == 0 else None)
        ax.plot(xs[is_default], mean[is_default], "o", color="C0", ms=8, zorder=4,
                label="default" if k == 0 else None)
        ax.set_xticks(xs, [f"{r.get(col):g}" if isinstance(r.get(col), (int, float)) else str(r.get(col))
                           for r in rows])
        ax.set_xlim(-0.5, len(rows) - 0.5)
        ax.set_xlabel(_PARAM_NAMES.get(col, col), fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(_metric_title(metric))
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(5, len(labels)), fontsize=8,
                   bbox_to_anchor=(0.5, 1.0))
    fig.tight_layout()
    return fig
