"""The package helpers the Contrastive and Reproduction chapters call for their tables and figures."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

from bgad_mini import report, viz


def test_printed_keeps_the_papers_digits():
    assert report.printed(0.98) == "0.980"
    assert report.printed(0.9788) == "0.9788"  # FLOS on metal_nut/color: printed with four digits
    assert report.printed(0.996, 0.0002) == "0.996 ± 0.0002"
    assert report.printed(0.5, None) == "0.500"


def test_captioned_table_is_a_caption_line_then_the_table():
    md = report.captioned_table("Table X: pixel AUROC", ["a", "b"], [["x", 0.12345], ["y", None]], "a note").data
    lines = md.splitlines()
    assert lines[0] == "**Table X: pixel AUROC**" and lines[1] == ""
    assert lines[2:6] == ["| a | b |", "|---|---|", "| x | 0.123 |", "| y | – |"]
    assert lines[-1] == "a note" and lines[-2] == ""
    assert report.captioned_table("c", ["a"], [["1"]]).data.splitlines()[-1] == "| 1 |"  # no note, no blank line


@pytest.mark.parametrize("x, digits, text", [(2e-4, 0, "2e-4"), (9.87e-7, 1, "9.9e-7"), (0.001, 0, "1e-3"),
                                             (12.0, 1, "1.2e1")])
def test_sci(x, digits, text):
    assert report.sci(x, digits) == text


def test_objective_colours_come_from_the_palette():
    assert viz.objective_colour("SupCon") == viz.METHOD_COLOURS["supcon"]
    assert viz.objective_colour("FIRM") == viz.METHOD_COLOURS["firm"]
    assert viz.objective_colour("SimCLR") == "#000000"
    raw = viz.objective_colour("raw pixels")
    assert raw not in viz.METHOD_COLOURS.values() and raw not in viz.GROUP_COLOURS.values()


def test_gain_bars_one_bar_per_label_and_series():
    import matplotlib.pyplot as plt

    gains = {"pixel AUROC": [1.0, -0.5, 2.0], "PRO": [3.0, 0.0, 1.5]}
    fig = viz.plot_gain_bars(["a", "b", "c"], gains, "gain")
    ax = fig.axes[0]
    assert len(ax.patches) == 6 and [t.get_text() for t in ax.get_yticklabels()] == ["a", "b", "c"]
    widths = sorted(p.get_width() for p in ax.patches)
    assert widths == sorted(gains["pixel AUROC"] + gains["PRO"])
    assert ax.patches[0].get_edgecolor()[:3] == pytest.approx(matplotlib.colors.to_rgb(viz.METHOD_COLOURS["bgad"]))
    assert fig.get_figwidth() <= 10
    plt.close(fig)


def test_embeddings_2d_in_rows():
    import matplotlib.pyplot as plt

    xy = np.random.default_rng(0).normal(size=(30, 2))
    groups = np.repeat([0, 1, 2], 10)
    panels = {name: xy for name in ("a", "b", "c", "d")}
    fig = viz.plot_embeddings_2d(panels, groups, ["n", "s", "u"], ncols=2)
    shown = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in shown] == ["a", "b", "c", "d"] and fig.get_figwidth() <= 10
    assert len(fig.legends) == 1 and [t.get_text() for t in fig.legends[0].get_texts()] == ["n", "s", "u"]
    plt.close(fig)
    fig = viz.plot_embeddings_2d({"a": xy, "b": xy, "c": xy}, groups, ["n", "s", "u"], ncols=2)
    assert sum(ax.axison for ax in fig.axes) == 3  # the fourth panel is switched off
    plt.close(fig)
