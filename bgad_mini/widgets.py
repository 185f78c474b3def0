"""β and τ sliders over the boundary histogram: an ipywidgets version (live in Jupyter/Colab) and a
self-contained HTML + JavaScript version (works in the static book, no Python, no external library).

Introduced in the *Boundary* chapter. Both are thin wrappers: the numbers come from the pure function
`boundary_state` (which calls `boundary.boundary_counts`), the static figure from `viz.plot_boundary_hist`.
"""
from __future__ import annotations

import html
import json
from typing import Sequence

import numpy as np

from .boundary import boundary_counts


def counts_text(state: dict, beta: float, tau: float) -> str:
    """One line that says where the boundaries are and how many patches violate them."""
    n_n, n_a = state["n_normal"], state["n_abnormal"]
    return (f"β = {beta:g}, τ = {tau:g}: b_n = {state['b_n']:.3f}, b_a = {state['b_a']:.3f} | "
            f"normal ≤ b_n: {state['normal_below_bn']:,} of {n_n:,} ({100 * state['frac_normal_below_bn']:.2f}%) | "
            f"anomalous ≥ b_a: {state['abnormal_above_ba']:,} of {n_a:,} ({100 * state['frac_abnormal_above_ba']:.1f}%) | "
            f"in the margin: {state['normal_in_margin']:,} normal, {state['abnormal_in_margin']:,} anomalous")


def boundary_state(normal_ll: np.ndarray, abnormal_ll: np.ndarray, beta: float, tau: float,
                   normalizer: float = 10.0) -> dict:
    """What the sliders show at (β, τ): `boundary_counts` (b_n, b_a in ℓ/normaliser units and the counts)
    plus `beta`, `tau` and a one-line `text`. Pure: the widgets only draw this."""
    state = boundary_counts(normal_ll, abnormal_ll, beta, tau, normalizer)
    state.update(beta=float(beta), tau=float(tau), text=counts_text(state, beta, tau))
    return state


def boundary_grid(normal_ll: np.ndarray, abnormal_ll: np.ndarray, betas: Sequence[float], taus: Sequence[float],
                  normalizer: float = 10.0) -> dict[tuple[float, float], dict]:
    """`boundary_state` at every (β, τ) of a grid: {(β, τ): state}."""
    return {(b, t): boundary_state(normal_ll, abnormal_ll, b, t, normalizer) for b in betas for t in taus}


# ----------------------------------------------------------------------------------------------
# ipywidgets (live in Jupyter / Colab)
# ----------------------------------------------------------------------------------------------
def live_figure(draw, controls, text=None, dpi: int = 90):
    """`controls` (name -> ipywidgets control) above a PNG image that `draw(**values)` (a matplotlib figure)
    redraws whenever a control changes, and an optional caption line `text(**values)`.

    The figure goes into an `ipywidgets.Image`, never an `Output` widget: a notebook runner (nbclient, so
    papermill and Jupyter Book) redirects the messages of a cell that captures output into an `Output` widget,
    and can then wait forever for the cell to end (it did in this project's CI). Returns the VBox.
    """
    import io

    import ipywidgets as w
    import matplotlib.pyplot as plt

    image, caption = w.Image(format="png"), w.HTML()

    def refresh(_change=None) -> None:
        values = {name: c.value for name, c in controls.items()}
        fig = draw(**values)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
        plt.close(fig)
        image.value = buf.getvalue()
        if text is not None:
            caption.value = text(**values)

    for c in controls.values():
        c.observe(refresh, names="value")
    refresh()
    return w.VBox([w.HBox(list(controls.values())), image] + ([caption] if text is not None else []))


def boundary_widget(normal_ll: np.ndarray, abnormal_ll: np.ndarray, normalizer: float = 10.0, beta: float = 0.01,
                    tau: float = 0.1, beta_log10_range: tuple[float, float] = (-3.0, -0.7),
                    tau_range: tuple[float, float] = (0.0, 0.5), bins: int = 80):
    """β (log scale) and τ sliders that redraw `viz.plot_boundary_hist` and the counts line (`live_figure`)."""
    import ipywidgets as w

    from .viz import hist_range, plot_boundary_hist

    xn = np.asarray(normal_ll, dtype=np.float64).ravel() / normalizer
    xa = np.asarray(abnormal_ll, dtype=np.float64).ravel() / normalizer
    x_range = hist_range(xn, xa)
    s_beta = w.FloatLogSlider(value=beta, base=10, min=beta_log10_range[0], max=beta_log10_range[1], step=0.05,
                              description="β", readout_format=".4f", continuous_update=False)
    s_tau = w.FloatSlider(value=tau, min=tau_range[0], max=tau_range[1], step=0.01, description="τ",
                          readout_format=".2f", continuous_update=False)

    def draw(beta: float, tau: float):
        st = boundary_state(normal_ll, abnormal_ll, beta, tau, normalizer)
        return plot_boundary_hist(xn, xa, st["b_n"], st["b_a"], bins=bins, x_range=x_range)

    def text(beta: float, tau: float) -> str:
        return f"<code>{html.escape(boundary_state(normal_ll, abnormal_ll, beta, tau, normalizer)['text'])}</code>"

    return live_figure(draw, {"beta": s_beta, "tau": s_tau}, text)


# ----------------------------------------------------------------------------------------------
# self-contained HTML + JS (works in the static book)
# ----------------------------------------------------------------------------------------------
def explorer_data(normal_ll: np.ndarray, abnormal_ll: np.ndarray, betas: Sequence[float], taus: Sequence[float],
                  normalizer: float = 10.0, bins: int = 70) -> dict:
    """Everything the HTML explorer needs, precomputed: the two histograms (densities over common bins of
    x = ℓ/normaliser) and one frame per (β, τ) grid point, β-major (frame index = i·len(taus) + j)."""
    from .viz import hist_range

    xn = np.asarray(normal_ll, dtype=np.float64).ravel() / normalizer
    xa = np.asarray(abnormal_ll, dtype=np.float64).ravel() / normalizer
    frames = []
    for b in betas:
        for t in taus:
            st = boundary_state(normal_ll, abnormal_ll, b, t, normalizer)
            frames.append({k: st[k] for k in ("beta", "tau", "b_n", "b_a", "normal_below_bn", "frac_normal_below_bn",
                                                "abnormal_above_ba", "frac_abnormal_above_ba", "normal_in_margin",
                                                "abnormal_in_margin", "text")})
    lo, hi = hist_range(xn, xa)
    lo = min(lo, min(f["b_a"] for f in frames) - 0.03 * (hi - lo))  # every b_a of the grid stays visible
    edges = np.linspace(lo, hi, bins + 1)
    dn, _ = np.histogram(np.clip(xn, lo, hi), bins=edges, density=True)
    da, _ = np.histogram(np.clip(xa, lo, hi), bins=edges, density=True) if xa.size else (np.zeros(bins), None)
    return {"betas": [float(b) for b in betas], "taus": [float(t) for t in taus], "edges": edges.tolist(),
            "normal_density": dn.tolist(), "abnormal_density": da.tolist(), "n_normal": int(xn.size),
            "n_abnormal": int(xa.size), "frames": frames}


def _nice_ticks(lo: float, hi: float, n: int = 6) -> list[float]:
    from matplotlib.ticker import MaxNLocator

    return [float(t) for t in MaxNLocator(n).tick_values(lo, hi) if lo <= t <= hi]


def boundary_explorer_html(normal_ll: np.ndarray, abnormal_ll: np.ndarray, betas: Sequence[float],
                           taus: Sequence[float], normalizer: float = 10.0, beta: float | None = None,
                           tau: float | None = None, bins: int = 70, prefix: str = "bt") -> str:
    """An HTML fragment: two range sliders (ids `<prefix>-beta`, `<prefix>-tau`) that step through the
    precomputed (β, τ) grid, an inline-SVG histogram whose b_n / b_a lines and shaded margin move, and a
    text element `<prefix>-counts` with the counts. The data sit in `<script type="application/json"
    id="<prefix>-data">`; a few lines of plain JavaScript do the rest (no external library, no network).
    Show it with `IPython.display.HTML`; one explorer per page (the ids must be unique)."""
    d = explorer_data(normal_ll, abnormal_ll, betas, taus, normalizer, bins)
    i0 = int(np.argmin([abs(b - (beta if beta is not None else betas[0])) for b in betas]))
    j0 = int(np.argmin([abs(t - (tau if tau is not None else taus[0])) for t in taus]))
    f0 = d["frames"][i0 * len(taus) + j0]
    W, H, L, R, T, B = 680, 250, 40, 12, 12, 34  # svg size and margins
    pw, ph = W - L - R, H - T - B
    lo, hi = d["edges"][0], d["edges"][-1]
    ymax = max(max(d["normal_density"]), max(d["abnormal_density"] or [0.0]), 1e-12) * 1.05

    def px(x: float) -> float:
        return L + (min(max(x, lo), hi) - lo) / (hi - lo) * pw

    def bars(dens: list, colour: str) -> str:
        out = []
        for k, v in enumerate(dens):
            if v <= 0:
                continue
            x0, x1 = px(d["edges"][k]), px(d["edges"][k + 1])
            h = v / ymax * ph
            out.append(f'<rect x="{x0:.1f}" y="{T + ph - h:.1f}" width="{max(x1 - x0 - 0.3, 0.3):.1f}" '
                       f'height="{h:.1f}" fill="{colour}" fill-opacity="0.55"/>')
        return "".join(out)

    ticks = "".join(f'<line x1="{px(t):.1f}" y1="{T + ph}" x2="{px(t):.1f}" y2="{T + ph + 4}" stroke="#333"/>'
                    f'<text x="{px(t):.1f}" y="{T + ph + 16}" font-size="11" text-anchor="middle">{t:g}</text>'
                    for t in _nice_ticks(lo, hi))
    p = prefix
    svg = (
        f'<svg id="{p}-svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" xmlns="http://www.w3.org/2000/svg" '
        f'style="max-width:100%;height:auto;font-family:sans-serif">'
        f'<rect id="{p}-margin" x="{px(f0["b_a"]):.1f}" y="{T}" width="{px(f0["b_n"]) - px(f0["b_a"]):.1f}" '
        f'height="{ph}" fill="gold" fill-opacity="0.35"/>'
        f'{bars(d["normal_density"], "#1f77b4")}{bars(d["abnormal_density"], "#d62728")}'
        f'<line x1="{L}" y1="{T + ph}" x2="{L + pw}" y2="{T + ph}" stroke="#333"/>{ticks}'
        f'<text x="{L + pw / 2}" y="{H - 2}" font-size="11" text-anchor="middle">x = ℓ / {normalizer:g}</text>'
        f'<line id="{p}-bn" x1="{px(f0["b_n"]):.1f}" y1="{T}" x2="{px(f0["b_n"]):.1f}" y2="{T + ph}" '
        f'stroke="navy" stroke-width="2"/>'
        f'<line id="{p}-ba" x1="{px(f0["b_a"]):.1f}" y1="{T}" x2="{px(f0["b_a"]):.1f}" y2="{T + ph}" '
        f'stroke="darkred" stroke-width="2" stroke-dasharray="5,3"/>'
        f'<text id="{p}-bn-label" x="{px(f0["b_n"]) + 3:.1f}" y="{T + ph * 0.5:.0f}" font-size="11" fill="navy">b_n</text>'
        f'<text id="{p}-ba-label" x="{px(f0["b_a"]) - 3:.1f}" y="{T + ph * 0.5:.0f}" font-size="11" fill="darkred" '
        f'text-anchor="end">b_a</text>'
        f'<rect x="{L + 6}" y="{T + 2}" width="10" height="10" fill="#1f77b4" fill-opacity="0.55"/>'
        f'<text x="{L + 20}" y="{T + 11}" font-size="11">normal patches ({d["n_normal"]:,})</text>'
        f'<rect x="{L + 6}" y="{T + 18}" width="10" height="10" fill="#d62728" fill-opacity="0.55"/>'
        f'<text x="{L + 20}" y="{T + 27}" font-size="11">known-anomaly patches ({d["n_abnormal"]:,})</text>'
        f'</svg>'
    )
    data_json = json.dumps(d, ensure_ascii=False).replace("</", "<\\/")
    controls = (
        f'<div style="display:flex;gap:2em;flex-wrap:wrap;align-items:center;margin:0.3em 0">'
        f'<label>β <input type="range" id="{p}-beta" min="0" max="{len(betas) - 1}" step="1" value="{i0}"> '
        f'<span id="{p}-beta-value">{betas[i0]:g}</span></label>'
        f'<label>τ <input type="range" id="{p}-tau" min="0" max="{len(taus) - 1}" step="1" value="{j0}"> '
        f'<span id="{p}-tau-value">{taus[j0]:g}</span></label></div>'
    )
    script = f"""
<script>
(function() {{
  var data = JSON.parse(document.getElementById("{p}-data").textContent);
  var sb = document.getElementById("{p}-beta"), st = document.getElementById("{p}-tau");
  var lo = {lo!r}, hi = {hi!r}, L = {L}, pw = {pw};
  function px(x) {{ return L + (Math.min(Math.max(x, lo), hi) - lo) / (hi - lo) * pw; }}
  function set(id, attrs) {{ var e = document.getElementById(id); for (var k in attrs) e.setAttribute(k, attrs[k]); }}
  function update() {{
    var i = parseInt(sb.value, 10), j = parseInt(st.value, 10);
    var f = data.frames[i * data.taus.length + j];
    var xn = px(f.b_n), xa = px(f.b_a);
    set("{p}-bn", {{x1: xn, x2: xn}});
    set("{p}-ba", {{x1: xa, x2: xa}});
    set("{p}-bn-label", {{x: xn + 3}});
    set("{p}-ba-label", {{x: xa - 3}});
    set("{p}-margin", {{x: xa, width: Math.max(xn - xa, 0)}});
    document.getElementById("{p}-beta-value").textContent = data.betas[i];
    document.getElementById("{p}-tau-value").textContent = data.taus[j];
    document.getElementById("{p}-counts").textContent = f.text;
  }}
  sb.addEventListener("input", update); st.addEventListener("input", update);
  sb.addEventListener("change", update); st.addEventListener("change", update);
  update();
}})();
</script>"""
    return (f'<div id="{p}-explorer" class="bt-explorer" style="border:1px solid #ccc;border-radius:6px;'
            f'padding:0.6em;margin:0.5em 0">{controls}{svg}'
            f'<p id="{p}-counts" style="font-family:monospace;font-size:0.85em;margin:0.3em 0">'
            f'{html.escape(f0["text"])}</p>'
            f'<script type="application/json" id="{p}-data">{data_json}</script>{script}</div>')
