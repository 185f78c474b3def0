"""Every chapter runs under papermill with the smoke profile, into a temporary folder, and is checked."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
import pytest
from nbutil import check_figures, code_sizes, glued, run_chapter, shown_images

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "book").glob("*.ipynb"))


def test_committed_notebooks_have_no_outputs_and_one_literal_parameters_cell():
    import ast

    assert CHAPTERS, "no chapters found"
    for path in CHAPTERS:
        nb = nbformat.read(path, as_version=4)
        params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(params) == 1, path.name
        for node in ast.parse(params[0].source).body:
            assert isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant), (path.name, ast.dump(node))
        for c in nb.cells:
            if c.cell_type == "code":
                assert c.outputs == [] and c.execution_count is None, path.name


def test_every_chapter_starts_with_the_colab_install_cell():
    import yaml

    repo = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    for path in CHAPTERS:
        nb = nbformat.read(path, as_version=4)
        first = next(c for c in nb.cells if c.cell_type == "code")
        assert "google.colab" in first.source and f"git+{repo}" in first.source, path.name
        assert "remove-cell" in first.metadata.get("tags", []), path.name
        exec(compile(first.source, path.name, "exec"), {})  # outside Colab: does nothing, raises nothing


def test_data_chapter(tmp_path, smoke_root):
    nb = run_chapter(ROOT / "book" / "data.ipynb", tmp_path / "data.ipynb", profile="smoke", data_root=str(smoke_root),
              n_known=3)
    g = glued(nb)
    assert g["n_train"] == "16" and g["n_types"] == "7" and int(g["n_families"]) >= 3
    assert g["n_known_multi"] == "3" and g["seen_type"] == "missing"
    # the montage and the mask-area plot: each numbered, captioned and referred to
    check_figures(nb, ["fig_montage", "fig_mask_areas"])
    assert not shown_images(nb)  # no figure outside its numbered block


def test_flows_chapter(tmp_path):
    nb = run_chapter(ROOT / "book" / "flows.ipynb", tmp_path / "flows.ipynb", profile="smoke")
    g = glued(nb)
    assert float(g["affine_err"]) < 1e-10  # the change-of-variables formula matches SciPy's Gaussian
    for flow in ("hand", "freia"):
        names = ("inv_err", "logdet_err", "integral", "ll")
        inv_err, logdet_err, integral, ll = (float(g[f"{flow}_{n}"]) for n in names)
        assert inv_err < 1e-4, flow  # f⁻¹(f(x)) = x
        assert logdet_err < 1e-4, flow  # coupling log-det = log|det| of autograd's Jacobian
        assert abs(integral - 1.0) < 0.05, flow  # the learned density integrates to 1
        assert ll > float(g["gauss_ll"]), flow  # training did something: better than one Gaussian
    # log p scales with C, ℓ = log p / C does not
    p5_first, p5_last, ell_first, ell_last = (float(g[n]) for n in ("p5_logp_first", "p5_logp_last", "p5_ell_first",
                                                                    "p5_ell_last"))
    assert p5_last < 3 * p5_first < 0
    assert abs(ell_last - ell_first) < 0.5
    # affine clouds, flow panels, comparison, log p vs ℓ: each numbered, captioned and referred to
    check_figures(nb, ["fig_affine", "fig_moons_flow", "fig_flow_compare", "fig_logp_dims"])
    assert not shown_images(nb)  # no figure outside its numbered block


def test_contrastive_chapter(tmp_path, smoke_root, chapter_runs, smoke_grid):
    nb = run_chapter(ROOT / "book" / "contrastive.ipynb", tmp_path / "contrastive.ipynb", profile="smoke",
                     data_root=str(smoke_root), n_known=1, results_root=str(smoke_grid), **chapter_runs)
    g = glued(nb)
    for key in ("g_bgad_firm", "g_firm_nf"):
        assert "of 4 pairs higher; Wilcoxon p = " in g[key], (key, g[key])
    # with the smoke profile's one known anomaly FIRM and SupCon can coincide: 4 pairs, possibly all tied
    assert "of 4 pairs higher" in g["g_firm_supcon"]
    assert float(g["mask_err"]) < 1e-12  # the masks in the text give exactly the package's three losses
    assert int(g["n_synthetic"]) == 3 * int(g["n_normal_train"])  # three rotations per normal image
    aurocs = [float(g[f"auroc_{o}"]) for o in ("simclr", "supcon", "firm", "pixels")]
    assert all(0.0 <= a <= 1.0 for a in aurocs)
    assert all(a > 0.6 for a in aurocs), aurocs  # well above chance even after the smoke profile's few steps
    for o in ("simclr", "supcon", "firm"):
        assert -1.0 <= float(g[f"compact_{o}"]) <= 1.0 and -1.0 <= float(g[f"rotcos_{o}"]) <= 1.0
    best = max(("SimCLR", "SupCon", "FIRM"), key=lambda o: float(g[f"auroc_{o.lower()}"]))
    assert best in g["auroc_verdict"]  # the sentence in the text names the objective the numbers put first
    # digits, positive masks, AUROC bars, embeddings: each numbered, captioned and referred to
    check_figures(nb, ["fig_digits", "fig_masks", "fig_auroc", "fig_embeddings"])
    assert not shown_images(nb)  # no figure outside its numbered block
    longest_cell, longest_line = code_sizes(nb)
    assert longest_cell <= 20 and longest_line <= 100  # no visible cell longer than the training loop
    # patch level: FIRM and SupCon heads trained on our data, next to the flow runs of the earlier chapters
    for m in ("firm", "supcon"):
        assert -1.0 <= float(g[f"{m}_cos_in_out"]) <= 1.0
        # with the smoke profile's single known anomaly there may be one outlier patch: no outlier pair
        assert g[f"{m}_cos_out_out"].startswith("undefined") or -1.0 <= float(g[f"{m}_cos_out_out"]) <= 1.0
    assert g["patch_known"] == "missing" and g["patch_best_unseen"]
    methods = {p.parent.name.split("_")[0] for p in Path(chapter_runs["runs_root"]).glob("*/results.json")}
    assert {"nf", "bgad", "firm", "supcon"} <= methods, methods


@pytest.fixture(scope="session")
def feature_cache(tmp_path_factory) -> str:
    """One feature cache for every chapter test: content-addressed, so it changes speed, never results."""
    return str(tmp_path_factory.mktemp("chapter_cache"))


@pytest.fixture
def chapter_runs(tmp_path, feature_cache) -> dict[str, str]:
    """A run cache of the chapter test's own: each chapter test stands alone, in any order."""
    return {"runs_root": str(tmp_path / "runs"), "cache_dir": feature_cache}


def _html_outputs(nb) -> list[str]:
    return [o["data"]["text/html"] for c in nb.cells for o in c.get("outputs", []) if "text/html" in o.get("data", {})]


def test_conditional_flows_chapter(tmp_path, smoke_root, chapter_runs):
    nb = run_chapter(ROOT / "book" / "conditional_flows.ipynb", tmp_path / "conditional_flows.ipynb", profile="smoke",
              data_root=str(smoke_root), n_known=1, **chapter_runs)
    g = glued(nb)
    assert g["img_size"] == "64" and g["n_train_images"] == "16" and g["channels"] == "24, 40, 112"
    assert int(g["epochs_total"]) == int(g["epochs_p1"]) + int(g["epochs_p2"])  # the fair NF baseline's length
    assert float(g["curve_check"]) < 1e-9  # the plotted ROC curves have the areas the run stored
    for key in ("all", "seen", "unseen"):
        for metric in ("image_auroc", "pixel_auroc", "pro"):
            assert 0.0 <= float(g[f"{key}_{metric}"]) <= 1.0, (key, metric)
    assert int(g["n_seen_test"]) >= 1 and g["seen_types"] == "missing"
    # per-dimension ℓ puts the levels closer together than log p
    assert 0 <= float(g["ell_spread"]) < float(g["logp_spread"])
    # the sentence about the alternative score agrees with the signs of the differences
    diffs = {k: float(g[f"alt_diff_{k}"]) for k in ("image_auroc", "pixel_auroc", "pro")}
    if all(d > 0 for d in diffs.values()):
        assert "all three" in g["alt_verdict"] and "higher than the default" in g["alt_verdict"]
    elif not any(d > 0 for d in diffs.values()):
        assert "default score is at least as high" in g["alt_verdict"]
    else:
        assert "higher on" in g["alt_verdict"]
    # the official score moves when other images are scored beside the test set; the inductive default does not
    assert float(g["inductive_change"]) < 1e-5 and float(g["official_change"]) >= 0.0
    assert list(Path(chapter_runs["runs_root"]).glob("nf_*/results.json"))  # the run cache the Boundary chapter reuses in the book
    # features, encoding, history, log p vs ℓ, loss, score levels, maps, curves: numbered, captioned, referred to
    check_figures(nb, ["fig_feature_levels", "fig_pos_enc", "fig_history", "fig_logp_ell", "fig_ml_loss",
                       "fig_score_levels", "fig_anomaly_maps", "fig_roc_pro"])
    assert not shown_images(nb)  # no figure outside its numbered block
    # the chapter's per-level maps are the package's: no exp(ℓ − m) or upsampling of its own
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "showcase.level_maps" in code and "interpolate" not in code and "np.exp(l" not in code


def test_boundary_chapter(tmp_path, smoke_root, chapter_runs):
    beta, tau = 0.02, 0.15
    nb = run_chapter(ROOT / "book" / "boundary.ipynb", tmp_path / "boundary.ipynb", profile="smoke",
              data_root=str(smoke_root), n_known=1, beta=beta, tau=tau, **chapter_runs)
    g = glued(nb)
    assert g["run_reused"].startswith("had to train")  # an empty run cache of its own (the book reuses the
    # Conditional flows chapter's run: tests/test_runs.py checks reuse)
    count = {k: int(g[k].replace(",", "")) for k in ("n_normal", "normal_below_bn", "n_abnormal", "abnormal_above_ba",
                                                      "abnormal_in_margin")}
    n, below = count["n_normal"], count["normal_below_bn"]
    assert n > 0 and below >= int(n * beta) + 1  # the quantile element itself counts
    assert abs(float(g["frac_normal_below_bn"]) - beta) <= 1.0 / n + 1e-3  # ≈ β on the training patches
    assert float(g["b_a"]) == pytest.approx(float(g["b_n"]) - tau, abs=2e-3)  # b_a = b_n − τ (3 decimals glued)
    n_abn = count["n_abnormal"]
    assert n_abn > 0 and 0 <= count["abnormal_above_ba"] <= n_abn and 0 <= count["abnormal_in_margin"] <= n_abn
    assert float(g["grid_bn_lo"]) < float(g["grid_bn_hi"])  # larger β moves b_n right
    assert float(g["bn_std_512"]) > 0 and float(g["bn_std_trainer"]) > 0  # per-chunk boundaries do move
    assert float(g["b_n"]) < float(g["x_p90"])  # b_n sits in the low tail of the normal distribution
    pages = [h for h in _html_outputs(nb) if 'id="bt-explorer"' in h]  # the Plotly β/τ explorer
    assert len(pages) == 1 and 'class="plotly-graph-div"' in pages[0] and "plotly_sliderchange" in pages[0]
    assert pages[0].count('"values":{"b_n":') == int(g["n_frames"])  # one precomputed state per (β, τ)
    assert f'"label":"{beta:g}"' in pages[0] and f'"label":"{tau:g}"' in pages[0]
    assert "plotly.js v" in pages[0]  # outside the book build plotly.js travels inline (Jupyter, Colab)
    widgets_out = [o for c in nb.cells for o in c.get("outputs", [])
                   if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert widgets_out  # the live β/τ sliders were built
    import re

    # per-level histograms, β×τ grid, the explorer, per-chunk b_n: each numbered, captioned and referred to
    check_figures(nb, ["fig_levels", "fig_grid", "bt_explorer", "fig_chunks"], glued_images=False)
    for key in ("fig_levels", "fig_grid", "fig_chunks"):  # "<Figure size 900x350 ...>" at 100 dpi: ≤ 10 in
        assert int(re.search(r"size (\d+)x", g[key]).group(1)) <= 1000, g[key]
    shown = [o for c in nb.cells if "remove-output" not in c.metadata.get("tags", [])
             for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert not shown  # no figure outside its numbered block
    assert float(g["bn_std_512"]) > float(g["bn_std_4096"] if g["bn_std_4096"] != "n/a" else 0)
    longest_cell, longest_line = code_sizes(nb)
    assert longest_cell <= 15 and longest_line <= 100  # what a reader sees is short


def test_bgspp_chapter(tmp_path, smoke_root, chapter_runs, smoke_grid):
    nb = run_chapter(ROOT / "book" / "bgspp.ipynb", tmp_path / "bgspp.ipynb", profile="smoke", data_root=str(smoke_root),
              n_known=1, results_root=str(smoke_grid), toy_seeds="0, 1", **chapter_runs)
    g = glued(nb)
    # the 2-D toy: two seeds, the typical one drawn, shares in %, every comparison phrase from the numbers
    assert g["toy_n_seeds"] == "2" and g["toy_shown"] in ("0", "1") and g["toy_half"] in ("pull", "push")
    assert (g["toy_steps1"], g["toy_steps2"]) == ("100", "100")
    flagged = {m: float(g[f"toy_{m}_unseen"].rstrip("%")) for m in ("nf", "pushpull", "bgad", "bgad_pull", "bgad_push")}
    assert all(0.0 <= v <= 100.0 for v in flagged.values())
    assert g["toy_half"] == min(("pull", "push"), key=lambda h: flagged[f"bgad_{h}"])
    assert 0 <= int(g["toy_fewer_nf"]) <= 2 and 0 <= int(g["toy_fewer_pp"]) <= 2
    assert float(g["toy_bgad_ba"]) < float(g["toy_bgad_bn"])
    assert g["toy_far"] == ("further than" if float(g["toy_pushpull_seen_x"]) < float(g["toy_bgad_seen_x"])
                            else "less far than")
    assert float(g["spp_push"]) == pytest.approx(0.1) and float(g["pp_push_0"]) == pytest.approx(0.5)
    for key in ("g_bgad_nf", "g_bgad_pp", "g_bgad_strong"):  # the grid's paired tests: 2 categories × 2 seeds
        assert "of 4 pairs higher; Wilcoxon p = " in g[key], (key, g[key])
    assert g["grid_line"].startswith("32 of 32 runs (complete)")
    # the worked example: pull mean over {-1.2} = 0.20, push mean over {-1.05, -0.1, 0.5} = (0.05+1.0+1.6)/3
    assert (g["toy_ln"], g["toy_la"], g["toy_loss"]) == ("0.20", "0.88", "1.08")
    assert int(g["n_phase1"]) == 2 and int(g["n_phase2"]) == 1
    for short in ("nf", "pp", "bgad"):
        for key in ("seen", "unseen"):
            for what in ("above", "margin"):
                assert 0.0 <= float(g[f"{short}_{key}_{what}"].rstrip("%")) <= 100.0
    for group in ("seen", "unseen"):
        d = float(g[f"d_bgad_nf_{group}_pro"])
        assert (f"on {group} types BGAD is above" in g["verdict"]) == (d > 0)
    assert g["seen_type"] == "missing"
    assert g["push_level"] in ("/4", "/8", "/16", "/32") and ("less than" in g["train_vs_test"] or "as much as" in g["train_vs_test"])
    methods = {p.parent.name.split("_")[0] for p in Path(chapter_runs["runs_root"]).glob("*/results.json")}
    assert {"nf", "bgad", "pushpull"} <= methods, methods
    # every figure numbered, captioned (≥ 15 words), referred to in the text, and shown only in its block
    check_figures(nb, ["fig_roles", "fig_toy", "fig_gradients", "fig_history", "fig_hists", "fig_maps",
                       "fig_lambda", "lambda_explorer"])
    loose = [o for o in shown_images(nb) if o.get("metadata", {}).get("scrapbook", {}).get("name") != "lambda_explorer"]
    assert not loose  # no figure outside its numbered block (the explorer's cell is remove-output)
    # the reader's code: short visible cells, no code line over 100 characters, b_n from the package
    longest_cell, longest_line = code_sizes(nb)
    assert longest_cell <= 15 and longest_line <= 100
    assert not any("np.sort" in c.source for c in nb.cells if c.cell_type == "code")
    # the λ curves use the trained BGAD model's boundaries (b_a = b_n − τ), and a slider that works in the page
    assert float(g["lam_ba"]) == pytest.approx(float(g["lam_bn"]) - 0.1, abs=2e-3)
    assert any('id="lambda-explorer"' in h and '"label":"4"' in h for h in _html_outputs(nb))


def test_ablations_chapter(tmp_path, smoke_root, chapter_runs):
    nb = run_chapter(ROOT / "book" / "ablations.ipynb", tmp_path / "ablations.ipynb", profile="smoke",
                     data_root=str(smoke_root), n_known=1, n_knowns="1", lams="0.25, 1.0",
                     boundaries="batch, epoch", ablation_root="", **chapter_runs)
    g = glued(nb)
    # 5 methods at the defaults + bgad at seed 1 + one other value of beta, tau, lambda, boundary
    assert g["n_runs"] == "10" and int(g["n_trained"]) + int(g["n_reused"]) == 10
    assert "this build's grid" in g["source"] and g["axis_seeds"] == "0" and g["n_moves"] == "4"
    runs = [json.loads(p.read_text())["config"] for p in Path(chapter_runs["runs_root"]).glob("bgad_*/results.json")]
    assert {(c["seed"], c["beta"], c["tau"], c["lam"], c["boundary"]) for c in runs} >= {
        (0, 0.01, 0.1, 1.0, "batch"), (1, 0.01, 0.1, 1.0, "batch"), (0, 0.1, 0.1, 1.0, "batch"),
        (0, 0.01, 0.0, 1.0, "batch"), (0, 0.01, 0.1, 0.25, "batch"), (0, 0.01, 0.1, 1.0, "epoch")}
    noise = float(g["noise_unseen_pro"])
    assert 0.0 <= noise <= 1.0
    # each verdict states the sign of its difference and compares it with the seed noise correctly
    for key in ("v_bgad_nf_unseen_pro", "v_bgad_pushpull_unseen_pro", "v_pushpull_nf_unseen_pro"):
        d = float(g[key].split(",")[0])
        assert ("within the seed noise" in g[key]) == (abs(d) <= noise), g[key]
    assert g["seen_types"] == "missing" and g["widest_gap"] in g["gaps"]
    for name in ("fig_axes_pro", "fig_axes_pix"):
        fig = [o for c in nb.cells for o in c.get("outputs", [])
               if o.get("metadata", {}).get("scrapbook", {}).get("name") == name]
        assert fig and any(k.endswith("image/png") for k in fig[0]["data"]), name
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 1  # the seen/unseen bars (the two glued figures are shown where the text places them)
    # no axes and no second seed (the GPU workflow's setting): the method comparison alone, noise "not measured"
    nb = run_chapter(ROOT / "book" / "ablations.ipynb", tmp_path / "ablations_methods.ipynb", profile="smoke",
                     data_root=str(smoke_root), n_known=1, noise_seeds="", betas="", taus="", lams="", n_knowns="",
                     boundaries="", ablation_root="", **chapter_runs)
    g = glued(nb)
    assert g["n_runs"] == "5" and g["n_trained"] == "0"  # every method's run is reused from the first execution
    assert g["noise_unseen_pro"] == "not measured (one seed)" and "noise not measured" in g["v_bgad_nf_unseen_pro"]
    assert g["n_moves"] == "0" and g["largest_move"] == "no setting was varied"


@pytest.fixture(scope="module")
def smoke_grid(smoke_root, tmp_path_factory) -> Path:
    """A published result grid on the smoke data: 5 methods × brick, grass × seen type crack × seeds 0, 1, and
    three one-at-a-time runs (λ = 0, the strong push-pull, τ = 0) per cell: 32 runs, as `make results` on a small scale."""
    from bgad_mini.cli import main

    grid_dir = tmp_path_factory.mktemp("smoke_grid") / "results"
    cache = tmp_path_factory.mktemp("smoke_grid_cache")
    assert main(["ablate", "--data-root", str(smoke_root), "--categories", "brick", "grass", "--methods", "nf",
                 "pushpull", "bgad", "firm", "supcon", "--known-types", "crack", "--seeds", "0", "1", "--profile",
                 "smoke", "--set", "n_known=1", f"cache_dir={cache}", "--axes", "bgad:lambda=0",
                 "pushpull:push=linear", "bgad:tau=0", "--jobs", "2", "--publish", "--no-progress",
                 "--out", str(grid_dir)]) == 0
    return grid_dir


def test_ablations_chapter_on_a_published_grid(tmp_path, smoke_root, chapter_runs, smoke_grid):
    grid_dir = tmp_path / "results"
    shutil.copytree(smoke_grid, grid_dir)  # this test makes it stale below
    nb = run_chapter(ROOT / "book" / "ablations.ipynb", tmp_path / "ablations.ipynb", profile="smoke",
                     data_root=str(smoke_root), known_types="crack", n_known=1, methods="nf, pushpull, bgad",
                     ablation_root=str(grid_dir), live_param="tau", live_value="0.05", **chapter_runs)
    g = glued(nb)
    assert "the committed grid (32 of 32 runs (complete)" in g["source"] and g["n_runs"] == "32"
    assert g["n_pairs"] == "4"  # 2 categories × 1 seen type × 2 seeds
    for key in ("t_bgad_nf", "t_bgad_pp", "c_0", "c_2"):
        assert "of 4 pairs higher; Wilcoxon p = " in g[key], (key, g[key])
    assert g["c_1"] == "not measured (no paired runs)"  # focal off is not in this grid
    assert g["axis_seeds"] == "0, 1" and g["live_status"] == "trained" and g["noise_unseen_pro"] != ""
    explorer = [h for h in _html_outputs(nb) if 'id="grid-explorer"' in h]  # every run of the grid, in the page
    assert len(explorer) == 1 and '"label":"grass"' in explorer[0] and '"label":"\\u03c4"' in explorer[0]
    # the check refuses a grid made by other code: the chapter fails with the line naming make results
    prov = json.loads((grid_dir / "PROVENANCE.json").read_text())
    prov["code_fingerprint"] = "0" * 16
    (grid_dir / "PROVENANCE.json").write_text(json.dumps(prov))
    with pytest.raises(Exception, match="make results"):
        run_chapter(ROOT / "book" / "ablations.ipynb", tmp_path / "stale.ipynb", profile="smoke",
                    data_root=str(smoke_root), ablation_root=str(grid_dir), **chapter_runs)


def _reproduce_run(run_dir: Path, seed: int, image: float) -> None:
    """A finished `reproduce` run whose default and official scores differ (0.5 everywhere vs the paper's protocol)."""
    run_dir.mkdir(parents=True)
    default = {"image_auroc": 0.5, "pixel_auroc": 0.5, "pro": 0.5}
    official = {"image_auroc": image, "pixel_auroc": 0.9, "pro": 0.7, "pro_official_style": 0.8}
    run_dir.joinpath("results.json").write_text(json.dumps({
        "method": "bgad", "dataset": "mvtec", "category": "carpet", "setting": "multi-class", "known_types": [],
        "n_known": 10, "seed": seed, "metrics": default, "metrics_seen": default, "metrics_unseen": None,
        "metrics_official": official, "metrics_official_seen": official, "metrics_official_unseen": None,
        "timings": {"total": 1.0},
        "config": {"profile": "paper", "method": "bgad", "category": "carpet", "setting": "multi-class",
                   "beta": 0.01, "tau": 0.1, "lam": 1.0, "boundary": "batch"},
    }))


def test_reproduction_chapter_puts_the_official_score_beside_the_paper(tmp_path, smoke_root, smoke_grid):
    from bgad_mini.config import Config

    rdir = tmp_path / "reproduce"
    _reproduce_run(rdir / "runs" / "bgad_carpet_multi_s0_x", 0, 0.95)
    _reproduce_run(rdir / "runs" / "bgad_carpet_multi_s1_x", 1, 0.97)
    nb = run_chapter(ROOT / "book" / "reproduction.ipynb", tmp_path / "reproduction.ipynb", profile="smoke",
                     reproduce_dir=str(rdir), results_root=str(smoke_grid), data_root=str(smoke_root))
    # our one-class column from the grid: one row per category and seen type, three methods
    grid_md = [o["data"]["text/markdown"] for c in nb.cells for o in c.get("outputs", [])
               if "unseen image / pixel AUROC" in o.get("data", {}).get("text/markdown", "")]
    assert grid_md and "| brick | crack |" in grid_md[0] and "| grass | crack |" in grid_md[0]
    assert glued(nb)["grid_one_class"].startswith("32 of 32 runs (complete)")
    md = [o["data"]["text/markdown"] for c in nb.cells for o in c.get("outputs", [])
          if "finished run(s)" in o.get("data", {}).get("text/markdown", "")]
    assert md and "official score, official-style PRO" in md[0] and "‡" not in md[0]
    # metrics_official and its pro_official_style beside the paper's carpet cell; the default score nowhere
    assert "| textures | carpet | 0.960 ± 0.014 | 0.900 ± 0.000 / 0.800 ± 0.000 | 0.996 ± 0.0002" in md[0]
    assert "0.500" not in md[0]
    # the deviations' numbers are computed: the official cosine's last meta-epoch (24 of 25), the anomalous share
    g = glued(nb)
    assert float(g["official_last_lr"]) == pytest.approx(9.9e-7, rel=0.01)
    assert float(g["official_last_lr_ratio"]) == pytest.approx(4.9e-3, rel=0.01)
    share_all, share_book = ([float(x) for x in g[k].rstrip(" %").split(" / ")] for k in ("share_all", "share_book"))
    assert share_book[0] > 5 * share_all[0] and share_book[-1] >= share_all[-1]
    book = Config.from_profile("book")
    assert g["book_cp"] == str(book.copy_paste_per_known)
    md_cells = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "one other possible reading of" in md_cells and "copy_paste_per_known" in md_cells
    # the paper's gains: one numbered, captioned figure that the text refers to, and no other image
    blocks = check_figures(nb, ["fig_paper_gains"])
    assert blocks[0][1] == "fig-paper-gains" and not shown_images(nb)
    assert code_sizes(nb)[1] <= 100
