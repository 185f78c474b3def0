"""The book's one palette: groups (normal / seen / unseen) and methods keep their colours in every figure; the
introduction's figures draw what showcase computes."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402

from bgad_mini import viz  # noqa: E402


def test_method_colours_follow_the_method_in_any_label():
    c = viz.METHOD_COLOURS
    assert viz.method_colour("NF baseline") == c["nf"] and viz.method_colour("nf β=0.05") == c["nf"]
    assert viz.method_colour("BGAD† (push-pull)") == c["pushpull"] and viz.method_colour("strong push-pull") \
        == c["pushpull"]
    assert viz.method_colour("BGAD (BG-SPP)") == c["bgad"] and viz.method_colour("FIRM + k-NN") == c["firm"]
    assert viz.method_colour("anomalib CFlow") == c["cflow"] and viz.method_colour("SimCLR", 3) == "C3"
    assert viz.method_colour("inference", 2) == "C2"  # a word, not a substring
    assert len(set(c.values())) == len(c)  # one colour per method


def test_seen_and_unseen_bars_use_the_group_colours_and_three_decimals():
    rows = [{"label": "NF", "seen_pro_mean": 0.9123, "unseen_pro_mean": 0.8456},
            {"label": "BGAD", "seen_pro_mean": 0.9301, "unseen_pro_mean": 0.8612}]
    fig = viz.plot_seen_unseen_bars(rows, "pro")
    ax = fig.axes[0]
    colours = {to_hex(p.get_facecolor()) for p in ax.patches}
    assert colours == {viz.GROUP_COLOURS["seen"].lower(), viz.GROUP_COLOURS["unseen"].lower()}
    assert {t.get_text() for t in ax.texts} == {"0.912", "0.846", "0.930", "0.861"}


def test_front_figure_and_pipeline_draw():
    rng = np.random.default_rng(0)
    group = {"normal": rng.normal(-0.3, 0.02, 500), "unseen": rng.normal(-0.5, 0.1, 100), "seen": np.zeros(0),
             "b_n": -0.34, "b_a": -0.44}
    mask = np.zeros((32, 32), bool)
    mask[10:20, 10:20] = True
    front = {"image": rng.random((32, 32, 3)), "mask": mask, "type": "hole",
             "maps": {"NF": rng.random((32, 32)), "BGAD": rng.random((32, 32))}, "groups": {"NF": group, "BGAD": group}}
    fig = viz.plot_front(front)
    titles = [a.get_title() for a in fig.axes]
    assert "NF: anomaly map" in titles and "BGAD: test patches, finest level" in titles
    texts = [t.get_text() for t in viz.plot_pipeline().axes[0].texts]
    assert "boundary" in texts and "training only" in texts


def test_front_example_is_the_median_unseen_image_of_two_smoke_runs(smoke_root, tmp_path):
    import torch

    from bgad_mini import showcase
    from bgad_mini.boundary import boundaries
    from bgad_mini.config import Config
    from bgad_mini.runs import load_or_run

    base = Config.from_profile("smoke", data_root=str(smoke_root), category="brick", known_types="missing",
                               cache_dir=str(tmp_path / "cache"))
    nf, bgad = (load_or_run(base.with_overrides(method=m), runs_root=tmp_path / "runs", progress=False)
                for m in ("nf", "bgad"))
    view = showcase.test_view(base)
    front = showcase.front_example(view, {"NF": (nf.results, nf.run_dir), "BGAD": (bgad.results, bgad.run_dir)})
    assert front["n_unseen"] == int(view.unseen.sum()) > 0 and front["type"] not in ("good", "missing")
    idx = np.flatnonzero(view.unseen)
    ll = {k: showcase.run_logliks(d, view) for k, d in (("NF", nf.run_dir), ("BGAD", bgad.run_dir))}
    m = {k: showcase.maps(r, ll[k], idx, base.img_size) for k, r in (("NF", nf.results), ("BGAD", bgad.results))}
    gains = showcase.contrast(m["BGAD"], view.masks[idx]) - showcase.contrast(m["NF"], view.masks[idx])
    valid = np.sort(gains[~np.isnan(gains)])
    assert front["gain"] == valid[len(valid) // 2]  # the median image, not a chosen one
    b_n, b_a = boundaries(ll["BGAD"]["train"][0].reshape(-1), base.beta, base.tau, base.normalizer)
    g = front["groups"]["BGAD"]
    assert (g["b_n"], g["b_a"]) == (float(b_n), float(b_a))
    assert g["normal"].size + g["unseen"].size + g["seen"].size == torch.numel(ll["BGAD"]["test"][0])  # each once


def test_series_of_one_method_keep_its_colour_and_differ_in_marker():
    rows = [{"series": f"bgad {cat}", "beta": b, "image_auroc_mean": 0.9 + b, "image_auroc_std": 0.0}
            for cat in ("brick", "grass") for b in (0.01, 0.05)]
    ax = viz.plot_sensitivity(rows, "beta").axes[0]
    lines = [l for l in ax.get_lines() if l.get_marker() in tuple("osD^v")]  # not the error bars' caps
    assert {to_hex(l.get_color()) for l in lines} == {viz.METHOD_COLOURS["bgad"].lower()}
    assert len({(l.get_marker(), l.get_linestyle()) for l in lines}) == 2
