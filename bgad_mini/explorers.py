"""Kernel-free interactive figures (Plotly) for the rendered book: the β/τ boundary explorer, the λ loss curves and
the result-grid explorer. Every state a control can reach is computed here, in Python, and stored in the figure;
the page only switches between them, so the static HTML book needs no kernel.

Introduced in the *Boundary* chapter (β/τ), used again in *BG-SPP* (λ) and *Ablations* (the result grid).

**Where plotly.js comes from.** An `Explorer` shows as HTML (`Explorer.html`). In the book build the page loads the
plotly.js that the installed `plotly` wheel ships (`plotlyjs_path`), copied into `_static/` by `_ext/bookfixes.py`,
which also sets `BGAD_PLOTLYJS=page` for the kernels the build starts: the figures then leave plotly.js out and
nothing is fetched from a CDN. Anywhere else (Jupyter, JupyterLab, Colab, VS Code) `BGAD_PLOTLYJS` is unset and the
output carries plotly.js inline (about 4.8 MB per explorer): it works offline and in Colab's one-iframe-per-output.
The output also holds a PNG of the starting state (matplotlib), which PDF/LaTeX builds and viewers without HTML use.

Two sliders or three dropdowns cannot be combined by Plotly alone (each control restyles on its own), so the
figure's `layout.meta.states` maps the controls' active indices ("i,j,...", sliders first, then menus) to a
`Plotly.update`, and a few lines of JavaScript (`UPDATE_SCRIPT`) apply the one that matches.
"""
from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .viz import ABNORMAL_COLOUR, MARGIN_COLOUR, METHOD_COLOURS, NORMAL_COLOUR  # the book's one palette

#: Environment variable: "page" when the page loads plotly.js itself (set by the book build), else inline.
PLOTLYJS_ENV = "BGAD_PLOTLYJS"
SHORT_NAMES = {"nf": "NF", "pushpull": "BGAD†", "bgad": "BGAD", "supcon": "SupCon", "firm": "FIRM"}
CONFIG = {"displaylogo": False, "responsive": True,
          "modeBarButtonsToRemove": ["select2d", "lasso2d", "autoScale2d", "toggleSpikelines"]}
#: Applies `layout.meta.states[<active indices>]` whenever a slider or a dropdown moves ({plot_id}: Plotly's div).
UPDATE_SCRIPT = """
var gd = document.getElementById('{plot_id}'), shown = null;
function actives(list) { return (list || []).map(function (c) { return c.active || 0; }); }
function show() {
  var key = actives(gd.layout.sliders).concat(actives(gd.layout.updatemenus)).join(',');
  var state = gd.layout.meta.states[key];
  if (key === shown || !state) { return; }
  shown = key;
  Plotly.update(gd, state.data || {}, state.layout || {});
}
gd.on('plotly_sliderchange', show);
gd.on('plotly_buttonclicked', show);
show();
"""


def plotlyjs_path() -> Path:
    """plotly.min.js as the installed `plotly` package ships it (what the book vendors into `_static/`)."""
    import plotly

    return Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"


def _png(fig, dpi: int = 110) -> str:
    """A matplotlib figure as base64 PNG (`viz.png_bytes`: closed, it must not show a second time)."""
    from .viz import png_bytes

    return base64.b64encode(png_bytes(fig, dpi)).decode("ascii")


@dataclass
class Explorer:
    """A Plotly figure with its controls, its update script and a static PNG; shows itself in Jupyter and glues.

    `element_id` is the id of the wrapping <div> (the Plotly div is `<element_id>-plot`): one per page."""

    figure: Any
    element_id: str
    script: str | None = None
    png: str | None = None  # base64, the starting state for print and PDF
    title: str = "interactive figure"

    def html(self, include_plotlyjs: bool | None = None) -> str:
        """The HTML fragment; plotly.js inline unless `BGAD_PLOTLYJS=page` (the book build) or told otherwise."""
        if include_plotlyjs is None:
            include_plotlyjs = os.environ.get(PLOTLYJS_ENV, "inline") != "page"
        plot = self.figure.to_html(full_html=False, include_plotlyjs=include_plotlyjs, post_script=self.script,
                                   div_id=f"{self.element_id}-plot", config=CONFIG, default_width="100%",
                                   default_height=f"{self.figure.layout.height or 450}px")
        return f'<div id="{self.element_id}" class="bgad-explorer">{plot}</div>'

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict[str, str]:
        bundle = {"text/html": self.html(), "text/plain": f"<{self.title}: #{self.element_id}>"}
        if self.png:
            bundle["image/png"] = self.png
        return bundle


def _go():
    import plotly.graph_objects as go

    return go


def _r(values, digits: int = 5) -> list:
    """Rounded floats (smaller pages); None stays None."""
    return [None if v is None or not np.isfinite(v) else round(float(v), digits) for v in values]


# ----------------------------------------------------------------------------------------------
# Boundary chapter: β and τ
# ----------------------------------------------------------------------------------------------
def _counts_title(state: Mapping[str, Any]) -> str:
    """`widgets.counts_text`, one clause a line."""
    first, *rest = state["text"].split(" | ")
    return "<br>".join([f"<b>{first}</b>", " · ".join(rest[:2]), *rest[2:]])


def boundary_states(normal_ll: np.ndarray, abnormal_ll: np.ndarray, betas: Sequence[float], taus: Sequence[float],
                    normalizer: float = 10.0) -> dict[str, dict[str, Any]]:
    """`layout.meta.states` of the β/τ explorer: "i,j" (β index, τ index) -> the relayout that puts b_n, b_a, the
    margin and the counts of `widgets.boundary_state` at (betas[i], taus[j]), and those `values`."""
    from .widgets import boundary_state

    states = {}
    for i, b in enumerate(betas):
        for j, t in enumerate(taus):
            st = boundary_state(normal_ll, abnormal_ll, b, t, normalizer)
            b_n, b_a = st["b_n"], st["b_a"]
            states[f"{i},{j}"] = {
                "layout": {"shapes[0].x0": b_a, "shapes[0].x1": b_n, "shapes[1].x0": b_n, "shapes[1].x1": b_n,
                           "shapes[2].x0": b_a, "shapes[2].x1": b_a, "annotations[0].x": b_n,
                           "annotations[1].x": b_a, "title.text": _counts_title(st)},
                "values": {k: st[k] for k in ("b_n", "b_a", "normal_below_bn", "abnormal_above_ba",
                                              "normal_in_margin", "abnormal_in_margin")}}
    return states


def boundary_explorer(normal_ll: np.ndarray, abnormal_ll: np.ndarray, betas: Sequence[float],
                      taus: Sequence[float], normalizer: float = 10.0, beta: float | None = None,
                      tau: float | None = None, bins: int = 70, element_id: str = "bt-explorer") -> Explorer:
    """Histograms of normal and known-anomaly x = ℓ/normaliser, b_n and b_a with the margin, the counts of
    `widgets.boundary_state`, and a β and a τ slider over the grid `betas` × `taus` (starting at `beta`, `tau`)."""
    from .viz import hist_range, plot_boundary_hist

    go = _go()
    states = boundary_states(normal_ll, abnormal_ll, betas, taus, normalizer)
    i0 = int(np.argmin([abs(b - (betas[0] if beta is None else beta)) for b in betas]))
    j0 = int(np.argmin([abs(t - (taus[0] if tau is None else tau)) for t in taus]))
    start = states[f"{i0},{j0}"]
    xn = np.asarray(normal_ll, dtype=np.float64).ravel() / normalizer
    xa = np.asarray(abnormal_ll, dtype=np.float64).ravel() / normalizer
    lo, hi = hist_range(xn, xa)
    lo = min(lo, min(s["values"]["b_a"] for s in states.values()) - 0.03 * (hi - lo))  # every b_a stays visible
    edges = np.linspace(lo, hi, bins + 1)
    fig = go.Figure()
    top = 0.0
    for x, colour, name in ((xn, NORMAL_COLOUR, "normal patches"), (xa, ABNORMAL_COLOUR, "known-anomaly patches")):
        if not x.size:
            continue
        dens, _ = np.histogram(np.clip(x, lo, hi), bins=edges, density=True)
        top = max(top, float(dens.max()))
        fig.add_trace(go.Bar(x=_r((edges[:-1] + edges[1:]) / 2), y=_r(dens, 4), width=float(edges[1] - edges[0]),
                             marker_color=colour, opacity=0.55, name=f"{name} ({x.size:,})",
                             hovertemplate="x = %{x:.3f}<br>density %{y:.2f}<extra></extra>"))
    lay = start["layout"]
    line = dict(type="line", xref="x", yref="paper", y0=0, y1=1)
    fig.update_layout(
        height=560, template="plotly_white", barmode="overlay", bargap=0, font=dict(size=12),
        title=dict(text=lay["title.text"], x=0.01, xanchor="left", font=dict(size=12)),
        margin=dict(l=50, r=20, t=95, b=150), legend=dict(x=0.01, y=0.99, bgcolor="rgba(255,255,255,0.7)"),
        xaxis=dict(title=f"x = ℓ / {normalizer:g}", range=[lo, hi]), yaxis=dict(title="density", range=[0, 1.08 * top]),
        shapes=[dict(type="rect", xref="x", yref="paper", x0=lay["shapes[0].x0"], x1=lay["shapes[0].x1"], y0=0, y1=1,
                     fillcolor=MARGIN_COLOUR, opacity=0.3, line_width=0, layer="below"),
                dict(line, x0=lay["shapes[1].x0"], x1=lay["shapes[1].x1"], line=dict(color="navy", width=2)),
                dict(line, x0=lay["shapes[2].x0"], x1=lay["shapes[2].x1"],
                     line=dict(color="darkred", width=2, dash="dash"))],
        annotations=[dict(x=lay["annotations[0].x"], y=0.62, xref="x", yref="paper", text="b_n", showarrow=False,
                          xanchor="left", xshift=3, font=dict(color="navy")),
                     dict(x=lay["annotations[1].x"], y=0.62, xref="x", yref="paper", text="b_a", showarrow=False,
                          xanchor="right", xshift=-3, font=dict(color="darkred"))],
        sliders=[_slider("β = ", betas, i0, y=-0.17), _slider("τ = ", taus, j0, y=-0.45)],
        meta={"states": states})
    png = _png(plot_boundary_hist(xn, xa, start["values"]["b_n"], start["values"]["b_a"], bins=bins,
                                  x_range=(lo, hi), title=start["layout"]["title.text"].replace("<br>", "\n")
                                  .replace("<b>", "").replace("</b>", "")))
    return Explorer(fig, element_id, UPDATE_SCRIPT, png, "β/τ boundary explorer")


def _slider(prefix: str, values: Sequence[Any], active: int, y: float, method: str = "skip",
            args: Sequence[Any] | None = None) -> dict[str, Any]:
    steps = [dict(method=method, label=f"{v:g}" if isinstance(v, (int, float)) else str(v),
                  **({"args": args[k]} if args is not None else {})) for k, v in enumerate(values)]
    return dict(active=active, steps=steps, x=0.0, len=1.0, y=y, yanchor="top", pad=dict(t=10, b=0),
                currentvalue=dict(prefix=prefix, font=dict(size=13)), font=dict(size=10))


# ----------------------------------------------------------------------------------------------
# BG-SPP chapter: λ
# ----------------------------------------------------------------------------------------------
def lambda_explorer(curves: Callable[[float], tuple[np.ndarray, np.ndarray, np.ndarray]], lams: Sequence[float],
                    b_n: float, b_a: float, lam: float = 1.0, static=None,
                    element_id: str = "lambda-explorer") -> Explorer:
    """The loss one patch contributes against its x, `curves(λ) -> (x, normal, anomalous)`, with a λ slider
    over `lams` (starting at `lam`), b_n, b_a and the margin drawn; `static`: a matplotlib figure for print.
    One slider needs no script: each step restyles the two curves."""
    go = _go()
    data = [curves(float(v)) for v in lams]
    k0 = int(np.argmin([abs(v - lam) for v in lams]))
    x, n0, a0 = data[k0]
    top = max(float(np.max(np.r_[n, a])) for _, n, a in data)
    fig = go.Figure([go.Scatter(x=_r(x), y=_r(n0), name="normal patch: L_ml + λ·pull", line_color=NORMAL_COLOUR),
                     go.Scatter(x=_r(x), y=_r(a0), name="anomalous patch: λ·push", line_color=ABNORMAL_COLOUR)])
    args = [[{"y": [_r(n), _r(a)]}, {"title.text": f"λ = {v:g}"}] for v, (_, n, a) in zip(lams, data)]
    line = dict(type="line", xref="x", yref="paper", y0=0, y1=1)
    fig.update_layout(
        height=430, template="plotly_white", title=dict(text=f"λ = {lams[k0]:g}", x=0.01, xanchor="left"),
        margin=dict(l=50, r=20, t=45, b=120), legend=dict(x=0.01, y=0.98, bgcolor="rgba(255,255,255,0.7)"),
        xaxis=dict(title="x = ℓ / normaliser", range=[float(x[0]), float(x[-1])]),
        yaxis=dict(title="loss of one patch", range=[0, 1.05 * top]),
        shapes=[dict(type="rect", xref="x", yref="paper", x0=b_a, x1=b_n, y0=0, y1=1, fillcolor=MARGIN_COLOUR,
                     opacity=0.3, line_width=0, layer="below"),
                dict(line, x0=b_n, x1=b_n, line=dict(color="navy", width=1.5)),
                dict(line, x0=b_a, x1=b_a, line=dict(color="darkred", width=1.5, dash="dash"))],
        annotations=[dict(x=b_n, y=0.5, xref="x", yref="paper", text=f"b_n = {b_n:.3f}", showarrow=False,
                          xanchor="left", xshift=3, font=dict(color="navy")),
                     dict(x=b_a, y=0.4, xref="x", yref="paper", text=f"b_a = {b_a:.3f}", showarrow=False,
                          xanchor="right", xshift=-3, font=dict(color="darkred"))],
        sliders=[_slider("λ = ", lams, k0, y=-0.2, method="update", args=args)])
    return Explorer(fig, element_id, None, _png(static) if static is not None else None, "λ explorer")


# ----------------------------------------------------------------------------------------------
# Ablations chapter: the result grid
# ----------------------------------------------------------------------------------------------
METRIC_LABELS = {"pro": "PRO", "pixel_auroc": "pixel AUROC", "image_auroc": "image AUROC"}
AXIS_LABELS = {"": "methods at the defaults", "beta": "β", "tau": "τ", "lambda": "λ", "n_known": "N known",
               "boundary": "boundary scope", "focal": "focal weights", "push": "push"}


def _value_label(axis: str, value: Any) -> str:
    if axis == "focal":
        return "focal on" if str(value).lower() == "true" else "focal off"
    if axis == "push":
        return {"bce": "BCE push", "linear": "linear push"}.get(str(value), str(value))
    return f"{AXIS_LABELS[axis]} = {value:g}" if isinstance(value, (int, float)) else f"{AXIS_LABELS[axis]}: {value}"


def _stats(values: Sequence[Any]) -> tuple[float | None, float | None]:
    vals = [float(v) for v in values if v is not None and v == v]
    if not vals:
        return None, None
    return float(np.mean(vals)), float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0


def grid_groups(rows: Sequence[Mapping[str, Any]], base, methods: Sequence[str], axis: str,
                category: str | None = None) -> list[dict[str, Any]]:
    """The bar groups of one view: `axis` "" = every method at `base`'s settings (`report.at_defaults`), else
    each method that the grid varies along `axis`, one group per value (`summary.axis_rows`), its default value
    restricted to the category/seen type/seed cells where the other values ran. `category` None = all categories.
    Each group: label, method, value, default (bool), rows."""
    from .report import FREE, at_defaults
    from .summary import at_base, axis_rows

    def in_category(rs):
        return [r for r in rs if category is None or r["category"] == category]

    groups = []
    for m in methods:
        if not axis:
            rs = in_category(at_defaults(rows, base, m))
            if rs:
                groups.append(dict(label=SHORT_NAMES.get(m, m), method=m, value=None, default=True, rows=rs))
            continue
        rs = in_category(axis_rows(rows, base, m, axis, free=FREE))
        default = getattr(base, {"lambda": "lam"}.get(axis, axis))
        values = list(dict.fromkeys(r[axis] for r in rs))
        if len(values) < 2:
            continue
        varied = {(r["category"], r["known_types"], r["seed"]) for r in rs if not at_base(r[axis], default)}
        for v in values:
            is_default = at_base(v, default)
            members = [r for r in rs if str(r[axis]) == str(v)
                       and (not is_default or (r["category"], r["known_types"], r["seed"]) in varied)]
            label = _value_label(axis, v) + ("<br>(default)" if is_default else "")
            groups.append(dict(label=label, method=m, value=v, default=is_default, rows=members))
    if len({g["method"] for g in groups}) > 1 and axis:  # two methods vary along the axis: name them
        for g in groups:
            g["label"] = f"{SHORT_NAMES.get(g['method'], g['method'])}: {g['label']}"
    return groups


def grid_state(groups: Sequence[Mapping[str, Any]], metric: str) -> dict[str, Any]:
    """The bar trace of one view: per group a seen and an unseen bar (mean ± std over its rows of
    `seen_<metric>` / `unseen_<metric>`); colour per method, seen bars hatched."""
    xs, ys, err, colours, shapes, hover = [[], []], [], [], [], [], []
    for g in groups:
        for split in ("seen", "unseen"):
            mean, std = _stats([r.get(f"{split}_{metric}") for r in g["rows"]])
            xs[0].append(g["label"])
            xs[1].append(split)
            ys.append(mean)
            err.append(std)
            colours.append(METHOD_COLOURS.get(g["method"], "#333333"))
            shapes.append("/" if split == "seen" else "")
            hover.append(f"{len(g['rows'])} runs")
    return {"x": xs, "y": _r(ys, 4), "error": _r(err, 4), "colour": colours, "pattern": shapes, "hover": hover}


def grid_explorer(rows: Sequence[Mapping[str, Any]], base, methods: Sequence[str],
                  metrics: Sequence[str] = ("pro", "pixel_auroc", "image_auroc"),
                  axes: Sequence[str] = ("", "beta", "tau", "lambda", "n_known", "boundary", "focal", "push"),
                  element_id: str = "grid-explorer") -> Explorer:
    """A result grid as bars, seen and unseen types per method, with three dropdowns: the metric, the category
    (or all pooled) and what is compared (the methods at the defaults, or one setting at a time). Bars are means
    ± std over seeds and seen types (and categories when pooled); `rows` as `published.load` / `summary.collect`
    give them, `base` the defaults. Axes the grid does not vary are left out of the dropdown."""
    from .viz import plot_seen_unseen_bars

    go = _go()
    categories = [None] + sorted({r["category"] for r in rows})
    axes = [a for a in axes if not a or grid_groups(rows, base, methods, a)]
    states, views = {}, {}
    for ci, cat in enumerate(categories):
        for ai, axis in enumerate(axes):
            views[ci, ai] = grid_groups(rows, base, methods, axis, cat)
    for mi, metric in enumerate(metrics):
        for (ci, ai), groups in views.items():
            s = grid_state(groups, metric)
            lows = [y - (e or 0) for y, e in zip(s["y"], s["error"]) if y is not None]
            low = max(0.0, np.floor((min(lows) - 0.05) * 10) / 10) if lows else 0.0
            where = categories[ci] or "all categories"
            states[f"{mi},{ci},{ai}"] = {
                "data": {"x": [s["x"]], "y": [s["y"]], "error_y.array": [s["error"]], "marker.color": [s["colour"]],
                         "marker.pattern.shape": [s["pattern"]], "hovertext": [s["hover"]]},
                "layout": {"yaxis.range": [low, 1.0], "yaxis.title.text": METRIC_LABELS.get(metric, metric),
                           "title.text": f"{METRIC_LABELS.get(metric, metric)}, {where}: "
                                         f"{AXIS_LABELS[axes[ai]]} (hatched: seen types, solid: unseen)"}}
    start = states["0,0,0"]
    d = start["data"]
    fig = go.Figure(go.Bar(x=d["x"][0], y=d["y"][0], error_y=dict(type="data", array=d["error_y.array"][0]),
                           marker=dict(color=d["marker.color"][0], pattern=dict(
                               shape=d["marker.pattern.shape"][0], fillmode="overlay", fgcolor="white")),
                           hovertext=d["hovertext"][0], hovertemplate="%{x}: %{y:.3f}, %{hovertext}<extra></extra>",
                           showlegend=False))

    def menu(x: float, labels: Sequence[str]) -> dict[str, Any]:
        return dict(type="dropdown", active=0, x=x, y=1.16, xanchor="left", yanchor="bottom", showactive=True,
                    buttons=[dict(method="skip", label=lab) for lab in labels], pad=dict(t=0, b=0))

    def label(x: float, text: str) -> dict[str, Any]:
        return dict(text=text, x=x, y=1.3, xref="paper", yref="paper", xanchor="left", yanchor="bottom",
                    showarrow=False, font=dict(size=11, color="#555"))

    lay = start["layout"]
    fig.update_layout(
        height=540, template="plotly_white", bargap=0.25, font=dict(size=12),
        title=dict(text=lay["title.text"], x=0.01, xanchor="left", yref="paper", y=1, yanchor="bottom", pad=dict(b=10),
                   font=dict(size=13)),
        margin=dict(l=55, r=20, t=140, b=90), yaxis=dict(title=lay["yaxis.title.text"], range=lay["yaxis.range"]),
        updatemenus=[menu(0.0, [METRIC_LABELS.get(m, m) for m in metrics]),
                     menu(0.3, [c or "all categories" for c in categories]),
                     menu(0.6, [AXIS_LABELS[a] for a in axes])],
        annotations=[label(0.0, "metric"), label(0.3, "category"), label(0.6, "compare")],
        meta={"states": states})
    bars = [{"label": g["label"].replace("<br>", " "), **{f"{split}_{metrics[0]}_{k}": v for split in ("seen", "unseen")
             for k, v in zip(("mean", "std"), _stats([r.get(f"{split}_{metrics[0]}") for r in g["rows"]]))}}
            for g in views[0, 0]]
    png = _png(plot_seen_unseen_bars(bars, (metrics[0],), title="all categories, methods at the defaults"))
    return Explorer(fig, element_id, UPDATE_SCRIPT, png, "result-grid explorer")
