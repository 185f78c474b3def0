"""`bgad-mini run` / `eval` end to end on the smoke synthetic dataset: schema, determinism, reuse, resume."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bgad_mini.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _run(smoke_root, out, cache, *extra, method="nf"):
    code = main(["run", "--method", method, "--data-root", str(smoke_root), "--category", "brick", "--profile",
                 "smoke", "--seed", "0", "--out", str(out), "--set", f"cache_dir={cache}", "--no-progress", *extra])
    assert code == 0
    return json.loads((Path(out) / "results.json").read_text())


@pytest.fixture(scope="module")
def first_run(smoke_root, tmp_path_factory):
    base = tmp_path_factory.mktemp("runs")
    return base, _run(smoke_root, base / "a", base / "cache")


def test_results_json_follows_the_schema(first_run, smoke_root):
    base, res = first_run
    for key in ("method", "dataset", "category", "setting", "known_types", "n_known", "seed", "metrics",
                "metrics_seen", "metrics_unseen", "metrics_by_type", "timings", "peak_memory_mb", "config", "versions"):
        assert key in res, key
    assert res["method"] == "nf" and res["category"] == "brick" and res["dataset"] == "synthetic"
    assert res["setting"] == "one-class" and res["known_types"] == ["crack"] and res["n_known"] == 1
    assert "crack" not in res["unseen_types"] and len(res["unseen_types"]) == 6
    assert set(res["metrics_by_type"]) == {"crack", "foreign", "hole", "misplaced", "missing", "scratch", "stain"}
    for m in [res["metrics"], res["metrics_seen"], res["metrics_unseen"], *res["metrics_by_type"].values()]:
        assert set(m) == {"image_auroc", "pixel_auroc", "pro"}
        assert all(0.0 <= v <= 1.0 for v in m.values())
    official = [res["metrics_official"], res["metrics_official_seen"], res["metrics_official_unseen"],
                *res["metrics_official_by_type"].values()]
    for m in official:
        assert set(m) == {"image_auroc", "pixel_auroc", "pro", "pro_official_style"}
        assert all(0.0 <= v <= 1.0 for v in m.values())
    assert set(res["metrics_official_by_type"]) == set(res["metrics_by_type"])
    assert res["score"].startswith("inductive") and res["score_official"].startswith("official")
    assert len(res["score_reference"]) == 3
    assert {"data", "features", "train", "evaluate"} <= set(res["timings"]) and res["peak_memory_mb"] > 0
    assert len(res["history"]) == res["config"]["phase1_epochs"] + res["config"]["phase2_epochs"]
    assert res["n_test"] == 8 + 7 * 2 - 1  # the known anomaly is held out of the test set
    assert (base / "a" / "anomaly_maps.png").stat().st_size > 1000
    assert res["versions"]["torch"] != "not installed"


def test_same_seed_same_result_and_finished_runs_are_reused(first_run, smoke_root, capsys):
    base, res = first_run
    again = _run(smoke_root, base / "b", base / "cache")
    assert again["metrics"] == res["metrics"] and again["metrics_by_type"] == res["metrics_by_type"]
    capsys.readouterr()
    reused = _run(smoke_root, base / "a", base / "cache")
    assert reused == res


def test_eval_reproduces_the_saved_metrics(first_run):
    base, res = first_run
    assert main(["eval", "--run", str(base / "a"), "--no-progress"]) == 0
    re = json.loads((base / "a" / "results.json").read_text())
    assert re["metrics"] == res["metrics"] and re["history"] == res["history"]


def test_both_scores_are_recomputed_from_the_saved_flows(first_run):
    """`metrics` is the inductive score (reference from the training images), `metrics_official` the official
    transductive score of the same log-likelihoods: both follow from the saved flows alone."""
    import numpy as np

    from bgad_mini.evaluate import (anomaly_maps, evaluate, image_scores, inductive_maps, score_reference,
                                    smooth_maps)
    from bgad_mini.flow import level_log_likelihoods
    from bgad_mini.pipeline import features_for, prepare_data
    from bgad_mini.runs import load_flows
    from bgad_mini.data import load_items

    base, res = first_run
    flows, cfg = load_flows(base / "a")
    data = prepare_data(cfg, verbose=False)
    train_ll = level_log_likelihoods(flows, features_for(cfg, data.category.train, "cpu", False), cfg.pos_dim)
    test_ll = level_log_likelihoods(flows, features_for(cfg, data.split.test, "cpu", False), cfg.pos_dim)
    assert score_reference(train_ll) == pytest.approx(res["score_reference"], abs=1e-6)
    _, masks = load_items(data.split.test, cfg.img_size)
    labels = [it.label for it in data.split.test]
    types = [it.defect_type for it in data.split.test]
    raw = inductive_maps(test_ll, res["score_reference"], cfg.img_size)
    assert cfg.score_sigma > 0  # pixel metrics on smoothed maps, image scores from the unsmoothed ones
    ind = evaluate(smooth_maps(raw, cfg.score_sigma), masks, labels, types, scores=image_scores(raw))
    off = evaluate(anomaly_maps(test_ll, cfg.img_size), masks, labels, types, official_pro=True)
    assert ind["metrics"] == pytest.approx(res["metrics"], abs=1e-6)
    assert off["metrics"] == pytest.approx(res["metrics_official"], abs=1e-6)
    assert np.isfinite(list(res["metrics_official"].values())).all()


def test_a_run_folder_with_another_config_is_refused(first_run, smoke_root, capsys):
    base, _ = first_run
    code = main(["run", "--method", "nf", "--data-root", str(smoke_root), "--category", "brick", "--profile", "smoke",
                 "--seed", "1", "--out", str(base / "a"), "--set", f"cache_dir={base / 'cache'}", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "different config (seed)" in err


def test_eval_of_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["eval", "--run", str(tmp_path)]) == 2
    assert "is not a finished run" in capsys.readouterr().err


def test_data_scripts_are_thin_wrappers(tmp_path):
    out = tmp_path / "syn"
    r = subprocess.run([sys.executable, str(ROOT / "data_scripts" / "make_synthetic.py"), "--out", str(out),
                        "--profile", "smoke", "--categories", "gravel"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (out / "gravel" / "train" / "good").is_dir() and (out / "meta.json").is_file()
    r = subprocess.run([sys.executable, "-m", "bgad_mini", "data", "synth", "--out", str(out), "--profile", "tiny"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "invalid choice" in r.stderr
    r = subprocess.run([sys.executable, "-m", "bgad_mini", "run", "--out", str(tmp_path / "r"), "--profile", "smoke",
                        "--data-root", str(out), "--category", "gravel", "--set", "beta=2"], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.strip() == "bgad-mini: error: beta must lie in (0, 1), got 2.0; e.g. --set beta=0.01"


@pytest.mark.parametrize("method,key", [("bgad", "bg_spp"), ("pushpull", "push")])
def test_bgad_and_pushpull_train_in_two_phases(first_run, smoke_root, method, key):
    base, nf = first_run
    res = _run(smoke_root, base / method, base / "cache", method=method)
    assert res["method"] == method and [h["phase"] for h in res["history"]] == [1, 1, 2]
    last = res["history"][-1]
    assert last["n_anomalous_images"] == 1 * 2 + 4  # 1 known anomaly x 2 repeats + 4 copy-paste (smoke profile)
    assert all(key in lvl for lvl in last["levels"])
    assert res["n_test"] == nf["n_test"] and res["known_images"] == nf["known_images"]  # same held-out test set
    assert [h.get("shared", False) for h in res["history"]] == [True, False, False]  # phase 1 shared with nf
    if method == "bgad":
        lvl = last["levels"][0]
        assert lvl["b_a"] == pytest.approx(lvl["b_n"] - 0.1, abs=1e-5)


def test_sharing_phase_1_does_not_change_the_results(first_run, smoke_root):
    base, _ = first_run
    shared = _run(smoke_root, base / "bgad_shared", base / "cache", method="bgad")
    alone = _run(smoke_root, base / "bgad_alone", base / "cache", "--set", "share_phase1=false", method="bgad")
    assert shared["history"][0].get("shared") and not alone["history"][0].get("shared")
    assert alone["metrics"] == pytest.approx(shared["metrics"], abs=1e-6)
    for t, m in alone["metrics_by_type"].items():
        assert m == pytest.approx(shared["metrics_by_type"][t], abs=1e-6), t
    # another seed or learning rate is another phase 1
    from bgad_mini.config import Config
    from bgad_mini.pipeline import phase1_path

    feats = [__import__("numpy").zeros((2, 3, 4, 4), "float16")]
    cfg = Config.from_profile("smoke")
    assert phase1_path(cfg, feats) == phase1_path(cfg.with_overrides(method="bgad", beta=0.2, n_known=3), feats)
    assert phase1_path(cfg, feats) != phase1_path(cfg.with_overrides(seed=1), feats)
    assert phase1_path(cfg, feats) != phase1_path(cfg.with_overrides(phase2_epochs=5), feats)  # the lr schedule
    assert phase1_path(cfg, feats) != phase1_path(cfg, [feats[0] + 1])


def test_methods_that_need_anomalies_refuse_n_known_zero(smoke_root, tmp_path, capsys):
    code = main(["run", "--method", "bgad", "--data-root", str(smoke_root), "--category", "brick", "--profile", "smoke",
                 "--n-known", "0", "--out", str(tmp_path / "r"), "--no-progress"])
    assert code == 2 and "needs known anomalies" in capsys.readouterr().err


@pytest.mark.parametrize("method", ["firm", "supcon"])
def test_patch_level_contrastive_methods_run_and_reevaluate(first_run, smoke_root, method):
    base, nf = first_run
    res = _run(smoke_root, base / method, base / "cache", method=method)
    assert res["method"] == method and res["n_test"] == nf["n_test"] and res["metrics_alt"] is None
    assert len(res["history"]) == res["config"]["contrastive_epochs"] and "k-NN" in res["score"]
    assert all(0.0 <= v <= 1.0 for v in res["metrics"].values())
    assert main(["eval", "--run", str(base / method), "--no-progress"]) == 0
    again = json.loads((base / method / "results.json").read_text())
    assert again["metrics"] == res["metrics"] and again["score"] == res["score"]


def test_set_takes_several_pairs_as_the_readme_shows():
    from bgad_mini.cli import _parse_sets, build_parser

    for command in (["run", "--method", "bgad", "--out", "r"], ["ablate", "--out", "a"], ["reproduce", "--data-root", "d", "--out", "o"]):
        args = build_parser().parse_args(command + ["--set", "beta=0.01", "tau=0.1", "--set", "lambda=0.5"])
        assert _parse_sets(args.sets) == {"beta": "0.01", "tau": "0.1", "lambda": "0.5"}, command
