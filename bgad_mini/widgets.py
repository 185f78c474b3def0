"""β and τ sliders over the boundary histogram, live in Jupyter/Colab (ipywidgets), and `live_figure`, which the
BG-SPP and Ablations chapters use for theirs. The kernel-free explorers of the static book are in `explorers`.

Introduced in the *Boundary* chapter. Thin wrappers: the numbers come from the pure function `boundary_state`
(which calls `boundary.boundary_counts`), the figure from `viz.plot_boundary_hist`.
"""
from __future__ import annotations

import html
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
    import ipywidgets as w

    from .viz import png_bytes

    image, caption = w.Image(format="png"), w.HTML()

    def refresh(_change=None) -> None:
        values = {name: c.value for name, c in controls.items()}
        image.value = png_bytes(draw(**values), dpi)
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
