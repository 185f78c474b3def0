"""Ablation grids and `bgad-mini ablate` / `reproduce`: expansion, run keys, reuse, parallel jobs, failures,
CSV contents, plots, one real smoke `nf` grid, and the paper's transcribed numbers.

Most tests use `fake_run`, a stand-in for `runs.load_or_run` that writes a results.json with known numbers in
milliseconds; one test trains for real on the smoke synthetic dataset.
"""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import pytest

from bgad_mini import grid, paper_tables as pt, reproduce as rp, runs, summary as sm
from bgad_mini.config import METHOD_PARAMS, METHODS, RELEVANT_PARAMS
from bgad_mini.grid import expand_grid, run_grid
from bgad_mini.runs import run_key
from bgad_mini.summary import collect, summarize, write_outputs
from bgad_mini.cli import main
from bgad_mini.config import Config
from bgad_mini.errors import BgadError

#: The tables of seed 001 (the BGAD source document), kept verbatim so the transcription test runs anywhere.
SEED_001_TABLES = Path(__file__).parent / "data" / "seed001_tables.txt"


# ----------------------------------------------------------------------------------------------
# A fake runs.load_or_run with known numbers (module level: picklable for spawned workers)
# ----------------------------------------------------------------------------------------------
def fake_metrics(cfg: Config) -> dict:
    """image AUROC 0.5 + 0.1·seed, pixel 0.6 + 0.05·seed, PRO 0.3 + beta + 0.01·n_known."""
    return {"image_auroc": 0.5 + 0.1 * cfg.seed, "pixel_auroc": 0.6 + 0.05 * cfg.seed,
            "pro": 0.3 + cfg.beta + 0.01 * cfg.n_known}


def fake_official(m: dict | None) -> dict | None:
    """The official score's metrics of a fake run: image +0.02, pixel +0.01, official-style PRO = PRO + 0.05."""
    return None if m is None else {"image_auroc": m["image_auroc"] + 0.02, "pixel_auroc": m["pixel_auroc"] + 0.01,
                                   "pro": m["pro"], "pro_official_style": m["pro"] + 0.05}


def fake_run(cfg: Config, out, progress: bool = False) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg_path = out / "config.json"
    if cfg_path.exists() and json.loads(cfg_path.read_text()) != cfg.to_dict():  # as runs._check_config
        raise BgadError(f"run folder {out} holds a run with a different config")
    if cfg.extra.get("fail_seed") == cfg.seed:
        raise BgadError(f"boom on seed {cfg.seed}\nsecond line")
    cfg_path.write_text(json.dumps(cfg.to_dict()))
    with open(out.parent.parent / "calls.log", "a") as f:
        f.write(f"{out.name} {os.getpid()}\n")
    m = fake_metrics(cfg)
    one = cfg.setting == "one-class"
    res = {
        "method": cfg.method, "dataset": "fake", "category": cfg.category, "setting": cfg.setting,
        "known_types": list(cfg.known_types) if one else [], "n_known": cfg.n_known, "seed": cfg.seed,
        "metrics": m, "metrics_seen": {k: min(1.0, v + 0.2) for k, v in m.items()},
        "metrics_unseen": {k: v - 0.1 for k, v in m.items()} if one else None, "metrics_by_type": {},
        "timings": {"total": 2.0 + cfg.seed}, "config": cfg.to_dict(),
        "identity": json.loads(json.dumps(runs.identity(cfg), default=str)),  # what runs.finished compares
        "worker": {"pid": os.getpid(), "omp": os.environ.get("OMP_NUM_THREADS"), "threads": cfg.threads},
    }
    if not cfg.extra.get("no_official"):  # a results.json of an older bgad_mini has no official score
        res.update({k.replace("metrics", "metrics_official"): fake_official(res[k])
                    for k in ("metrics", "metrics_seen", "metrics_unseen")})
    (out / "results.json").write_text(json.dumps(res))
    return res


def calls(out: Path) -> list[str]:
    log = Path(out) / "calls.log"
    return log.read_text().split("\n")[:-1] if log.exists() else []


def base_cfg(**kw) -> Config:
    return Config.from_profile("smoke", data_root="nowhere", **kw)


# ----------------------------------------------------------------------------------------------
# Grid expansion
# ----------------------------------------------------------------------------------------------
def test_grid_counts_and_collapsing_of_axes_a_method_ignores():
    grid = {"beta": ["0.01", "0.05"], "tau": ["0.1", "0.5"], "lambda": ["0.5", "1"]}
    cfgs = expand_grid(methods=("nf", "bgad", "pushpull"), settings=("one-class",), categories=("brick", "grass"),
                       known_types=("crack", "hole"), seeds=(0, 1), grid=grid, base=base_cfg(), check_data=False)
    by = {m: [c for c in cfgs if c.method == m] for m in ("nf", "bgad", "pushpull")}
    # known types 2 × categories 2 × seeds 2 = 8 per parameter combination
    assert len(by["nf"]) == 8  # beta, tau, lambda all collapsed
    assert len(by["bgad"]) == 8 * 2 * 2 * 2
    assert len(by["pushpull"]) == 8 * 2  # only lambda matters
    assert {(c.beta, c.tau, c.lam) for c in by["nf"]} == {(0.01, 0.1, 1.0)}
    assert {c.lam for c in by["pushpull"]} == {0.5, 1.0} and {c.beta for c in by["pushpull"]} == {0.01}
    assert {c.beta for c in by["bgad"]} == {0.01, 0.05} and {c.tau for c in by["bgad"]} == {0.1, 0.5}
    assert len({run_key(c) for c in cfgs}) == len(cfgs)
    # multi-class ignores known types; n_known multiplies every method
    cfgs = expand_grid(methods=("nf", "bgad"), settings=("one-class", "multi-class"), categories=("brick",),
                       known_types=("crack", "hole,stain"), seeds=(0,), grid={"n_known": [1, 2, 4], "beta": [0.01, 0.1]},
                       base=base_cfg(), check_data=False)
    one = [c for c in cfgs if c.setting == "one-class"]
    multi = [c for c in cfgs if c.setting == "multi-class"]
    assert len(multi) == 3 + 3 * 2 and all(c.known_types == () for c in multi)
    assert len(one) == 2 * (3 + 3 * 2)
    assert {c.known_types for c in one} == {("crack",), ("hole", "stain")}


def test_relevant_params_name_config_fields():
    fields = set(Config.__dataclass_fields__)
    assert set(RELEVANT_PARAMS) == set(METHODS)
    assert METHOD_PARAMS <= fields, METHOD_PARAMS - fields  # a renamed field would slip through
    cfgs = expand_grid(methods=("nf", "bgad", "firm"), seeds=(0,), base=base_cfg(), check_data=False,
                       known_types=("crack",), grid={"temperature": [0.1, 0.2], "contrastive_epochs": [1, 2]})
    assert [c.method for c in cfgs].count("firm") == 4 and len(cfgs) == 6


def test_expand_grid_reads_the_data_and_fills_the_one_class_default(tiny_root):
    cfgs = expand_grid(methods=("nf",), categories=("widget",), seeds=(0,), profile="smoke", data_root=str(tiny_root))
    assert [c.known_types for c in cfgs] == [("hole",)]  # the first type, as the pipeline would pick
    with pytest.raises(BgadError, match="not in category 'widget'; types found: hole, scratch"):
        expand_grid(methods=("nf",), categories=("widget",), known_types=("crack",), profile="smoke",
                    data_root=str(tiny_root))
    with pytest.raises(BgadError, match="unknown category"):
        expand_grid(methods=("nf",), categories=("nope",), profile="smoke", data_root=str(tiny_root))


@pytest.mark.parametrize("kwargs, message", [
    (dict(methods=("nf", "foo")), "unknown method 'foo'"),
    (dict(settings=("two-class",)), "unknown setting 'two-class'"),
    (dict(grid={"betta": [1]}), "unknown grid key 'betta'"),
    (dict(grid={"seed": [1, 2]}), "use --seeds"),
    (dict(grid={"threads": [1, 2]}), "not a --grid axis"),
    (dict(grid={"beta": ["x"]}), "not a valid float"),
    (dict(grid={"beta": [2.0]}), "beta must lie in"),
])
def test_bad_grid_input_is_one_line_error(kwargs, message):
    with pytest.raises(BgadError, match=message) as err:
        expand_grid(base=base_cfg(), check_data=False, **kwargs)
    assert "\n" not in str(err.value)


def test_cli_bad_input_exits_2_with_one_line(capsys, tiny_root):
    for extra in (["--methods", "foo"], ["--settings", "two-class"], ["--grid", "betta=1,2"], ["--grid", "beta"]):
        code = main(["ablate", "--data-root", str(tiny_root), "--categories", "widget", "--out", "x", *extra])
        err = capsys.readouterr().err.strip()
        assert code == 2 and err.startswith("bgad-mini: error:") and "\n" not in err, err


def test_parse_grid():
    assert grid.parse_grid(["beta=0.01,0.05", "boundary=batch,epoch", "beta=0.1"]) == {
        "beta": ["0.01", "0.05", "0.1"], "boundary": ["batch", "epoch"]}


# ----------------------------------------------------------------------------------------------
# Run keys
# ----------------------------------------------------------------------------------------------
def test_run_keys_are_readable_stable_and_ignore_runtime_fields():
    cfg = base_cfg(method="bgad", category="brick", known_types=("crack",), seed=0)
    key = run_key(cfg)
    assert re.fullmatch(r"bgad_brick_crack_s0_[0-9a-f]{12}", key)
    assert run_key(cfg.with_overrides(threads=2, cache_dir="/elsewhere")) == key
    assert run_key(cfg.with_overrides(seed=1)) != key and run_key(cfg.with_overrides(beta=0.02)) != key
    assert run_key(cfg.with_overrides(setting="multi-class", known_types=())).startswith("bgad_brick_multi_s0_")
    assert run_key(cfg.with_overrides(known_types=("hole", "stain"))).startswith("bgad_brick_hole+stain_s0_")
    # the same in a fresh interpreter (no dependence on hash randomisation or process state)
    code = ("from bgad_mini.config import Config; from bgad_mini.runs import run_key; "
            "print(run_key(Config.from_profile('smoke', data_root='nowhere', method='bgad', category='brick', "
            "known_types=('crack',), seed=0)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONHASHSEED": "123"})
    assert out.stdout.strip() == key


def test_threads_per_job(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert [grid.threads_per_job(j, cores=2) for j in (1, 2, 3)] == [2, 1, 1]
    assert grid.threads_per_job(2, cores=8) == 4
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert grid.threads_per_job(1, cores=2) == 1


# ----------------------------------------------------------------------------------------------
# Running: reuse, parallel jobs, failures
# ----------------------------------------------------------------------------------------------
def _grid(n_seeds=2, **kw):
    return expand_grid(methods=("nf", "bgad"), categories=("brick",), known_types=("crack",),
                       seeds=tuple(range(n_seeds)), base=base_cfg(), check_data=False, **kw)


def test_finished_runs_are_reused_without_new_training(tmp_path, monkeypatch):
    monkeypatch.setattr(grid, "_load_or_run", fake_run)
    cfgs = _grid()
    recs = run_grid(cfgs, tmp_path, progress=False)
    assert [r["status"] for r in recs] == ["trained"] * 4 and len(calls(tmp_path)) == 4
    assert [r["key"] for r in recs] == [run_key(c) for c in cfgs]
    assert all(Path(r["run_dir"]).parent == tmp_path / "runs" for r in recs)
    again = run_grid(cfgs, tmp_path, progress=False, jobs=2)
    assert [r["status"] for r in again] == ["reused"] * 4 and len(calls(tmp_path)) == 4  # zero new trainings
    assert [r["results"] for r in again] == [r["results"] for r in recs]
    # one more seed: only the missing runs train
    recs3 = run_grid(_grid(n_seeds=3), tmp_path, progress=False)
    assert [r["status"] for r in recs3].count("trained") == 2 and len(calls(tmp_path)) == 6


def test_a_run_folder_saved_with_other_threads_is_resumed_and_another_config_refused(tmp_path):
    cfg = next(c for c in _grid(n_seeds=1) if c.method == "bgad")
    folder = runs.RunFolder(tmp_path / "run")
    folder.path.mkdir()
    folder.config.write_text(json.dumps(cfg.with_overrides(threads=7, cache_dir="old").to_dict()))
    runs._check_config(folder, cfg)  # runtime fields differ only: the same run
    with pytest.raises(BgadError, match=r"different config \(beta\)"):
        runs._check_config(folder, cfg.with_overrides(beta=0.5))


def test_parallel_jobs_in_separate_processes_with_a_thread_budget(tmp_path):
    cfgs = _grid()
    recs = run_grid(cfgs, tmp_path, jobs=2, progress=False, runner=fake_run)
    assert [r["status"] for r in recs] == ["trained"] * 4, [r["error"] for r in recs]
    workers = [r["results"]["worker"] for r in recs]
    per_job = grid.threads_per_job(2)
    assert all(w["threads"] == per_job and w["omp"] == str(per_job) for w in workers)
    assert 2 * per_job <= max(2, grid.available_cores())
    assert os.getpid() not in {w["pid"] for w in workers}
    assert len(calls(tmp_path)) == 4


def test_a_failing_job_is_reported_and_the_others_finish(tmp_path, capsys):
    cfgs = expand_grid(methods=("nf",), categories=("brick",), known_types=("crack",), seeds=(0, 1, 2),
                       base=base_cfg(extra={"fail_seed": 1}), check_data=False)
    recs = run_grid(cfgs, tmp_path, jobs=2, progress=True, runner=fake_run)
    assert [r["status"] for r in recs] == ["trained", "failed", "trained"]
    assert recs[1]["error"] == "BgadError: boom on seed 1 second line"
    assert "Traceback" in (Path(recs[1]["run_dir"]) / "error.txt").read_text()
    err = capsys.readouterr().err
    assert f"FAILED {recs[1]['key']}: BgadError: boom on seed 1 second line" in err


def slow_run(cfg: Config, out, progress: bool = False) -> dict:
    """fake_run after `extra["sleep"]` seconds, with a progress line as tqdm would write it."""
    print(f"train:  50%|#####     | 1/2 [00:01<00:01, progress={progress}]", file=sys.stderr)
    time.sleep(float(cfg.extra.get("sleep", 0)))
    return fake_run(cfg, out, progress)


def test_updates_in_order_and_each_run_logs_its_progress(tmp_path):
    cfgs = _grid(n_seeds=1)
    updates = []
    recs = run_grid(cfgs, tmp_path, progress=False, runner=slow_run, log=True,
                    on_update=lambda r: updates.append((r["key"], r["status"])))
    keys = [r["key"] for r in recs]
    assert updates == [(keys[0], "running"), (keys[0], "trained"), (keys[1], "running"), (keys[1], "trained")]
    log = (Path(recs[0]["run_dir"]) / "run.log").read_text()
    assert "1/2" in log and "progress=True" in log  # the run's bars go to its log, not to this process


def stop_at_first_start(stop: threading.Event, statuses: list) -> Callable[[dict], None]:
    """An `on_update` that records each status and sets `stop` once a run starts, as the lab's Stop button does."""
    def on_update(rec: dict) -> None:
        statuses.append(rec["status"])
        if rec["status"] == "running":
            stop.set()

    return on_update


def test_stop_ends_a_process_grid_cleanly(tmp_path):
    cfgs = expand_grid(methods=("nf",), categories=("brick",), known_types=("crack",), seeds=(0, 1, 2),
                       base=base_cfg(extra={"sleep": 60}), check_data=False)
    stop = threading.Event()
    updates: list = []
    on_update = stop_at_first_start(stop, updates)
    t0 = time.perf_counter()
    recs = run_grid(cfgs, tmp_path, processes=True, progress=False, runner=slow_run, on_update=on_update,
                    stop=stop)
    assert time.perf_counter() - t0 < 45  # the 60 s run was ended, not waited for
    assert [r["status"] for r in recs] == ["stopped"] * 3 and updates[0] == "running"
    assert not calls(tmp_path) and not any((Path(r["run_dir"]) / "results.json").exists() for r in recs)
    again = run_grid(_grid(n_seeds=1), tmp_path, progress=False, runner=fake_run)  # the grid runs on afterwards
    assert [r["status"] for r in again] == ["trained"] * 2


def test_cli_exit_code_1_when_a_job_fails(tmp_path, monkeypatch, capsys, tiny_root):
    def failing(cfg, out, progress=False):
        if cfg.seed == 1:
            raise RuntimeError("out of patience")
        return fake_run(cfg, out, progress)

    monkeypatch.setattr(grid, "_load_or_run", failing)
    code = main(["ablate", "--data-root", str(tiny_root), "--categories", "widget", "--methods", "nf",
                 "--seeds", "0", "1", "--profile", "smoke", "--out", str(tmp_path), "--no-progress"])
    out = capsys.readouterr().out
    assert code == 1
    assert "2 runs: 0 reused, 1 trained, 1 failed" in out and "RuntimeError: out of patience" in out
    rows = list(csv.DictReader(open(tmp_path / "results.csv")))
    assert [r["seed"] for r in rows] == ["0"]


# ----------------------------------------------------------------------------------------------
# results.csv, summary.csv, plots
# ----------------------------------------------------------------------------------------------
def test_results_and_summary_csv_hold_the_right_numbers(tmp_path, monkeypatch):
    monkeypatch.setattr(grid, "_load_or_run", fake_run)
    cfgs = _grid(n_seeds=3, grid={"beta": [0.01, 0.05]})
    run_grid(cfgs, tmp_path, progress=False)
    rows = collect(tmp_path, cfgs)
    assert len(rows) == 3 * 3  # nf: 3 seeds; bgad: 2 betas × 3 seeds
    assert collect(tmp_path) == rows  # every run under out/runs, same order
    paths = write_outputs(rows, tmp_path)
    res = list(csv.DictReader(open(paths["results_csv"])))
    assert len(res) == 9
    for col in ("method", "category", "setting", "known_types", "n_known", "seed", "beta", "tau", "lambda",
                "boundary", "image_auroc", "pixel_auroc", "pro", "seen_image_auroc", "unseen_pro",
                "total_seconds", "run_dir"):
        assert col in res[0], col
    r = next(r for r in res if r["method"] == "bgad" and r["seed"] == "2" and r["beta"] == "0.05")
    assert float(r["image_auroc"]) == pytest.approx(0.7) and float(r["pro"]) == pytest.approx(0.36)
    assert float(r["unseen_pixel_auroc"]) == pytest.approx(0.6) and r["known_types"] == "crack"
    assert Path(r["run_dir"]).name.startswith("bgad_brick_crack_s2_") and r["total_seconds"] == "4.0"

    summ = list(csv.DictReader(open(paths["summary_csv"])))
    assert len(summ) == 3  # nf, bgad β=0.01, bgad β=0.05
    for s in summ:
        assert s["n_seeds"] == "3" and s["seeds"] == "0 1 2"
        assert float(s["image_auroc_mean"]) == pytest.approx(0.6)
        assert float(s["image_auroc_std"]) == pytest.approx(0.1)  # sample std of 0.5, 0.6, 0.7
        assert float(s["pixel_auroc_std"]) == pytest.approx(0.05)
        assert float(s["unseen_image_auroc_mean"]) == pytest.approx(0.5)
        assert float(s["pro_std"]) == pytest.approx(0.0, abs=1e-12)
        assert float(s["total_seconds_mean"]) == pytest.approx(3.0)
    assert {(s["method"], s["beta"]) for s in summ} == {("nf", "0.01"), ("bgad", "0.01"), ("bgad", "0.05")}
    one_seed = summarize([rows[0]])
    assert one_seed[0]["image_auroc_std"] is None and one_seed[0]["n_seeds"] == 1


def test_one_at_a_time_grid_and_axis_rows(tmp_path, monkeypatch):
    """Σ values runs, not Π; axis_rows finds each axis with the rest at the base, and the base runs."""
    monkeypatch.setattr(grid, "_load_or_run", fake_run)
    base = base_cfg(category="brick", known_types=("crack",), n_known=2)
    axes = {"beta": [0.01, 0.1, 0.2], "tau": [0.0, 0.1], "n_known": [1, 2], "boundary": ["batch", "epoch"]}
    cfgs = grid.one_at_a_time(base, axes, method="bgad", known_types=[("crack",)], check_data=False)
    # the base (β .01, τ .1, N 2, batch) once, plus 2 + 1 + 1 + 1 other values
    assert len(cfgs) == 1 + 2 + 1 + 1 + 1
    cfgs = grid.dedupe(cfgs + expand_grid(methods=("nf", "bgad"), seeds=(0, 1), base=base,
                                              known_types=[("crack",)], check_data=False))
    assert len(cfgs) == 6 + 1 + 2  # nf seeds 0, 1 and bgad seed 1 are new; bgad seed 0 is the base again
    run_grid(cfgs, tmp_path, progress=False, runs_dir=tmp_path / "cache")
    assert not (tmp_path / "runs").exists() and len(list((tmp_path / "cache").iterdir())) == 9
    summary = summarize(collect(tmp_path, runs_dir=tmp_path / "cache"))
    betas = sm.axis_rows(summary, base, "bgad", "beta")
    assert [r["beta"] for r in betas] == [0.01, 0.1, 0.2]
    # fake PRO = 0.3 + beta + 0.01 N, mean over the seeds present (the base has seeds 0 and 1)
    assert [r["pro_mean"] for r in betas] == pytest.approx([0.33, 0.42, 0.52])
    assert [r["n_seeds"] for r in betas] == [2, 1, 1]
    assert [r["n_known"] for r in sm.axis_rows(summary, base, "bgad", "n_known")] == [1, 2]
    assert [r["boundary"] for r in sm.axis_rows(summary, base, "bgad", "boundary")] == ["batch", "epoch"]
    (nf,) = sm.axis_rows(summary, base, "nf", "")
    assert nf["n_seeds"] == 2 and nf["pro_mean"] == pytest.approx(0.33)
    assert sm.axis_rows(summary, base.with_overrides(tau=0.5), "bgad", "beta") == []

    from bgad_mini import viz

    panels = {c: sm.axis_rows(summary, base, "bgad", c) for c in ("beta", "tau", "n_known", "boundary")}
    fig = viz.plot_one_at_a_time(panels, "pro", {"beta": 0.01, "tau": 0.1, "n_known": 2, "boundary": "batch"},
                                 references={"NF": nf["pro_mean"]}, noise=0.01)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.01", "0.1", "0.2"]
    band = [p for p in ax.patches if p.get_facecolor()[:3] == pytest.approx((0.85, 0.85, 0.85))]
    assert len(band) == 1 and band[0].get_extents().height > 0  # the noise band around the default's 0.33
    assert [t.get_text() for t in fig.axes[3].get_xticklabels()] == ["batch", "epoch"]


def test_standard_plots_are_written(tmp_path, monkeypatch):
    monkeypatch.setattr(grid, "_load_or_run", fake_run)
    cfgs = _grid(n_seeds=2, grid={"beta": [0.01, 0.05], "tau": [0.1, 0.3], "n_known": [1, 2],
                                  "boundary": ["batch", "epoch"]})
    cfgs += expand_grid(methods=("bgad",), settings=("multi-class",), categories=("brick",), seeds=(0, 1),
                        base=base_cfg(), check_data=False)
    run_grid(cfgs, tmp_path, progress=False)
    paths = write_outputs(collect(tmp_path, cfgs), tmp_path)
    names = sorted(p.name for p in paths["plots"])
    assert names == ["n_known.png", "seen_unseen_multi-class_brick.png", "seen_unseen_one-class_brick.png",
                     "sensitivity_beta.png", "sensitivity_boundary.png", "sensitivity_tau.png"]
    for p in paths["plots"]:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000
    # nothing varied: only the seen/unseen bars
    out2 = tmp_path / "plain"
    run_grid(_grid(), out2, progress=False)
    assert [p.name for p in write_outputs(collect(out2), out2)["plots"]] == ["seen_unseen_one-class_brick.png"]


def test_viz_functions_take_plain_rows():
    import matplotlib.pyplot as plt

    from bgad_mini import viz

    rows = [{"method": m, "series": m, "beta": b, "image_auroc_mean": 0.8 + b, "image_auroc_std": 0.01,
             "seen_image_auroc_mean": 0.9, "seen_image_auroc_std": None, "unseen_image_auroc_mean": 0.7,
             "unseen_image_auroc_std": 0.02, "n_known": 1}
            for m, betas in (("bgad", (0.01, 0.05, 0.1)), ("nf", (0.01,))) for b in betas]
    for fig in (viz.plot_seen_unseen_bars(rows, "image_auroc"), viz.plot_sensitivity(rows, "beta", "image_auroc"),
                viz.plot_n_known(rows, ["image_auroc", "unseen_image_auroc"])):
        assert fig.axes
        plt.close(fig)


# ----------------------------------------------------------------------------------------------
# One real smoke ablation, end to end through the CLI (trains: ~10 s per run on one thread)
# ----------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_real_smoke_nf_ablation_through_the_cli(smoke_root, tmp_path, capsys):
    argv = ["ablate", "--data-root", str(smoke_root), "--categories", "brick", "--methods", "nf",
            "--settings", "one-class", "--known-types", "crack", "--seeds", "0", "1", "--profile", "smoke",
            "--out", str(tmp_path / "abl"), "--set", f"cache_dir={tmp_path / 'cache'}", "--jobs", "1", "--no-progress"]
    assert main(argv) == 0
    assert "2 runs: 0 reused, 2 trained, 0 failed" in capsys.readouterr().out
    rows = list(csv.DictReader(open(tmp_path / "abl" / "results.csv")))
    assert [(r["method"], r["known_types"], r["seed"]) for r in rows] == [("nf", "crack", "0"), ("nf", "crack", "1")]
    for r in rows:
        assert 0.0 <= float(r["image_auroc"]) <= 1.0 and 0.0 <= float(r["unseen_pro"]) <= 1.0
        res = json.loads((Path(r["run_dir"]) / "results.json").read_text())
        assert res["config"]["threads"] == grid.threads_per_job(1)
    summ = list(csv.DictReader(open(tmp_path / "abl" / "summary.csv")))
    assert len(summ) == 1 and summ[0]["n_seeds"] == "2" and summ[0]["image_auroc_std"] != ""
    assert (tmp_path / "abl" / "plots" / "seen_unseen_one-class_brick.png").exists()
    assert main(argv) == 0  # rerun: everything reused
    assert "2 runs: 2 reused, 0 trained, 0 failed" in capsys.readouterr().out


# ----------------------------------------------------------------------------------------------
# bgad-mini reproduce on a fake MVTec root
# ----------------------------------------------------------------------------------------------
@pytest.fixture
def fake_mvtec(smoke_root, tmp_path) -> Path:
    """Smoke categories renamed as MVTecAD's: brick -> carpet (crack renamed color), grass -> metal_nut, gravel -> tile."""
    root = tmp_path / "mvtec"
    for src, dst in (("brick", "carpet"), ("grass", "metal_nut"), ("gravel", "tile")):
        shutil.copytree(smoke_root / src, root / dst)
    for sub in ("test", "ground_truth"):
        (root / "carpet" / sub / "crack").rename(root / "carpet" / sub / "color")
    return root


def test_reproduce_writes_tables_with_the_papers_numbers_labelled(fake_mvtec, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(grid, "_load_or_run", fake_run)
    out = tmp_path / "rep"
    argv = ["reproduce", "--data-root", str(fake_mvtec), "--profile", "paper", "--out", str(out),
            "--seeds", "0", "1", "--no-progress"]
    assert main(argv) == 0
    n_types = 7  # each of carpet's and metal_nut's defect types is the seen type once
    assert len(calls(out)) == 2 * (3 + 2 * n_types)
    md = (out / "reproduce.md").read_text()
    assert "paper (Yao et al. 2023, Table 1)" in md and "paper (Yao et al. 2023, one-class table)" in md
    lines = md.splitlines()
    row = lambda *start: next(l for l in lines if l.startswith("| " + " | ".join(start) + " |"))
    # ours, beside the paper: the official score (metrics_official) and the official-style PRO, labelled;
    # image 0.52 + 0.1·seed -> 0.570 ± 0.071; pixel 0.61 + 0.05·seed -> 0.635 ± 0.035; PRO 0.35 + β + 0.01·10
    assert "official score, official-style PRO" in md and "‡" not in md
    assert "ours bgad: pixel AUROC / PRO (official-style)" in md
    assert row("textures", "carpet") == ("| textures | carpet | 0.570 ± 0.071 | 0.635 ± 0.035 / 0.460 ± 0.000 | "
                                          "0.996 ± 0.0002 / 0.989 ± 0.0004 |")
    assert "0.994 ± 0.0077 / 0.978 ± 0.0021" in row("textures", "tile")
    assert "0.996 ± 0.0003 / 0.970 ± 0.0012" in row("objects", "metal_nut")
    assert [l.split(" | ")[1] for l in lines if l.startswith("| textures") or l.startswith("| objects")] == [
        "carpet", "tile", "metal_nut"]  # the paper's order
    assert "paper cells averaged over these categories" in row("", "mean (3 categories)")
    assert "0.993 ± 0.0012 (image AUROC, mean over all 15 categories)" in row("", "image-level mean")
    # one-class: the paper's pair for carpet/color is image / pixel AUROC 1.000 / 0.993
    color = row("carpet", "color")
    assert color.endswith("| 1.000 / 0.993 |") and "0.470 ± 0.071 / 0.535 ± 0.035" in color  # ours, unseen types
    assert row("carpet", "foreign").endswith("| – |")  # a type the paper does not have
    assert row("metal_nut", "mean").endswith("| – |")  # the paper's mean is over other types
    multi = list(csv.DictReader(open(out / "reproduce_multi_class.csv")))
    carpet = next(r for r in multi if r["category"] == "carpet")
    assert float(carpet["paper_BGAD_pixel_auroc"]) == 0.996 and float(carpet["paper_BGAD_pro_std"]) == 0.0004
    assert carpet["paper_BGAD_source"] == pt.LABEL_TABLE1
    assert float(carpet["ours_bgad_image_auroc_mean"]) == pytest.approx(0.57)
    assert float(carpet["ours_bgad_pro_mean"]) == pytest.approx(0.46) and carpet["ours_bgad_score"] == "official"
    # results.csv keeps the default (inductive) score and the standard PRO
    default = [r for r in csv.DictReader(open(out / "results.csv"))
               if r["category"] == "carpet" and r["setting"] == "multi-class"]
    assert sorted(float(r["image_auroc"]) for r in default) == pytest.approx([0.5, 0.6])
    assert [float(r["pro"]) for r in default] == pytest.approx([0.41, 0.41]) and "score" not in default[0]
    one = list(csv.DictReader(open(out / "reproduce_one_class.csv")))
    assert float(next(r for r in one if r["known_type"] == "color")["paper_BGAD_image_auroc"]) == 1.0
    assert (out / "results.csv").exists() and (out / "summary.csv").exists()
    capsys.readouterr()
    assert main(argv) == 0 and len(calls(out)) == 2 * (3 + 2 * n_types)  # rerun: all reused
    assert "34 runs: 34 reused" in capsys.readouterr().out


def test_reproduce_tables_on_btad_products_use_the_btad_table():
    summary = [{"method": "bgad", "category": c, "setting": "multi-class", "known_types": "", "n_known": 10,
                "n_seeds": 1, "seeds": "0", "image_auroc_mean": 0.9, "pixel_auroc_mean": 0.95, "pro_mean": 0.7,
                "score": sm.SCORE_OFFICIAL} for c in ("01", "02", "03")]
    md, multi, one = rp.reproduce_tables(summary)
    assert "paper (Yao et al. 2023, BTAD table) BGAD: pixel AUROC / PRO" in md and "Table 1" not in md
    assert "| 02 | 0.900 | 0.950 / 0.700 | 0.979 ± 0.0018 / 0.648 ± 0.0173 |" in md
    assert "0.986 ± 0.0015 / 0.824 ± 0.0163 (printed mean)" in md
    assert one == [] and [r["category"] for r in multi] == ["01", "02", "03", "mean (3 categories)",
                                                            "image-level mean"]


def test_official_score_rows_and_the_labelled_fallback(tmp_path):
    cfg = base_cfg(method="bgad", category="carpet", setting="one-class", known_types=("color",), seed=0)
    res = fake_run(cfg, tmp_path / "runs" / "a")
    row = sm.results_row(res, score="official")
    assert row["score"] == sm.SCORE_OFFICIAL
    assert (row["image_auroc"], row["pro"]) == (res["metrics_official"]["image_auroc"],
                                                res["metrics_official"]["pro_official_style"])
    assert row["unseen_pro"] == res["metrics_official_unseen"]["pro_official_style"]
    assert sm.results_row(res)["pro"] == res["metrics"]["pro"] and "score" not in sm.results_row(res)
    with pytest.raises(BgadError, match="unknown score"):
        sm.results_row(res, score="transductive")
    # a results.json without metrics_official: the default score, and the table says so (‡ and a note)
    old = fake_run(cfg.with_overrides(extra={"no_official": True}), tmp_path / "runs" / "b")
    row = sm.results_row(old, score="official")
    assert row["score"] == sm.SCORE_FALLBACK and row["pro"] == old["metrics"]["pro"]
    summary = summarize([dict(row, seed=0), dict(row, seed=1)])
    md, _, one = rp.reproduce_tables(summary)
    color = next(l for l in md.splitlines() if l.startswith("| carpet | color |"))
    assert color.count("‡") == 3 and "‡ Not the official score, official-style PRO" in md
    assert one[0]["ours_bgad_score"] == sm.SCORE_FALLBACK


def test_reproduce_configs_and_errors(fake_mvtec, tmp_path):
    cfgs = rp.reproduce_configs(str(fake_mvtec), "paper", categories=["tile", "carpet"])
    assert [c.category for c in cfgs if c.setting == "multi-class"] == ["carpet", "tile"]
    assert all(c.method == "bgad" and c.n_known == 10 and c.backbone == "tf_efficientnet_b6" for c in cfgs)
    assert sorted(c.known_types[0] for c in cfgs if c.setting == "one-class") == [
        "color", "foreign", "hole", "misplaced", "missing", "scratch", "stain"]
    with pytest.raises(BgadError, match="not under"):
        rp.reproduce_configs(str(fake_mvtec), categories=["bottle"])
    with pytest.raises(BgadError, match="no categories"):
        rp.reproduce_configs(str(tmp_path / "empty"))


# ----------------------------------------------------------------------------------------------
# The paper's numbers
# ----------------------------------------------------------------------------------------------
def test_paper_table_spot_checks():
    assert pt.MVTEC_MULTI_CLASS["carpet"]["BGAD"] == (0.996, 0.989)
    assert pt.MVTEC_MULTI_CLASS["transistor"]["NFAD"] == (0.923, 0.788)
    assert pt.MVTEC_MULTI_CLASS["cable"]["BGAD_wo"] == (0.980, 0.968)
    assert pt.MVTEC_MULTI_CLASS_STD["tile"] == (0.0077, 0.0021)
    assert pt.MVTEC_MULTI_CLASS_MEAN["BGAD"] == (0.992, 0.976) and pt.MVTEC_IMAGE_MEAN == {
        "NFAD": 0.968, "BGAD_wo": 0.974, "BGAD": 0.993}
    assert pt.BTAD["02"]["BGAD"] == (0.979, 0.648) and pt.BTAD_STD["01"] == (0.0027, 0.0318)
    assert pt.MVTEC_ONE_CLASS["carpet"]["metal_contamination"]["BGAD"] == (1.000, 0.994)
    assert pt.MVTEC_ONE_CLASS["metal_nut"]["flip"]["NFAD"] == (0.976, 0.977)
    assert pt.ONE_CLASS_OTHERS["carpet"]["hole"]["DRA"] == 0.922
    assert pt.SEMI_PUSH_PULL["screw"] == {"NFAD": (0.885, 0.989), "BGAD_dagger": (0.823, 0.980),
                                          "BGAD": (0.947, 0.991)}
    assert pt.HARD_SUBSETS["unseen"]["BGAD"] == {"image_auroc": 0.971, "pixel_auroc": 0.982, "pro": 0.930}
    assert set(pt.MVTEC_MULTI_CLASS) == set(pt.MVTEC_ORDER) and len(pt.MVTEC_ORDER) == 15


def test_paper_tables_are_self_consistent():
    """Printed means agree with the cells (to rounding), and tables that repeat a number agree."""
    for name in pt.TABLE1_METHODS:
        for i in (0, 1):
            mean = sum(pt.MVTEC_MULTI_CLASS[c][name][i] for c in pt.MVTEC_ORDER) / 15
            assert mean == pytest.approx(pt.MVTEC_MULTI_CLASS_MEAN[name][i], abs=0.0015), (name, i)
    for cat, types in pt.MVTEC_ONE_CLASS.items():
        for name in ("NFAD", "BGAD"):
            for i in (0, 1):
                cells = [v[name][i] for t, v in types.items() if t != "mean"]
                assert sum(cells) / len(cells) == pytest.approx(types["mean"][name][i], abs=0.0015)
            # the semi-push-pull ablation repeats the one-class means (image / pixel AUROC)
            assert pt.SEMI_PUSH_PULL[cat][name] == types["mean"][name]
    # the hard-subsets ablation repeats Table 1's means (pixel AUROC, PRO)
    for name in ("NFAD", "BGAD"):
        h = pt.HARD_SUBSETS["mvtecad"][name]
        assert (h["pixel_auroc"], h["pro"]) == pt.MVTEC_MULTI_CLASS_MEAN[name]
    assert pt.HARD_SUBSETS["mvtecad"]["NFAD"]["image_auroc"] == pt.MVTEC_IMAGE_MEAN["NFAD"]


def test_table1_transcription_matches_the_seed_text():
    """Every NFAD / BGAD w/o / BGAD cell of Table 1 against seed 001's text (first table in the file)."""
    text = SEED_001_TABLES.read_text()
    names = {c: c.replace("_", " ").capitalize() for c in pt.MVTEC_ORDER}
    for cat, shown in names.items():
        line = next(l for l in text.splitlines() if re.match(rf"^(\S*\t)?\t?{shown}\t", l))
        cells = line.split("\t")[-3:]
        nums = [[float(x) for x in re.findall(r"\d\.\d+", c)] for c in cells]
        assert tuple(nums[0]) == pt.MVTEC_MULTI_CLASS[cat]["NFAD"], cat
        assert tuple(nums[1]) == pt.MVTEC_MULTI_CLASS[cat]["BGAD_wo"], cat
        assert (nums[2][0], nums[2][2]) == pt.MVTEC_MULTI_CLASS[cat]["BGAD"], cat
        assert (nums[2][1], nums[2][3]) == pt.MVTEC_MULTI_CLASS_STD[cat], cat
    for label, key in (("Carpet", "carpet"), ("Metal_nut", "metal_nut")):
        assert label in text
    assert "0.999/0.995" in text and "0.998/0.975" in text and "0.823/0.980" in text


def test_paired_test_pairs_cells_and_gives_the_exact_wilcoxon_p_and_effect_size():
    from bgad_mini.summary import paired_test, verdict

    def rows(values, category="brick"):
        return [{"category": category, "known_types": "missing", "seed": s, "unseen_pro": v}
                for s, v in enumerate(values)]

    a = rows([0.52, 0.53, 0.54, 0.55, 0.56, 0.57]) + rows([0.9], "grass")  # grass has no partner in b
    b = rows([0.50, 0.51, 0.52, 0.53, 0.54, None])
    t = paired_test(a, b, "unseen_pro")
    assert t["n"] == 5 and t["wins"] == 5 and t["mean_diff"] == pytest.approx(0.02)
    assert t["p"] == pytest.approx(2 / 2 ** 5)  # exact two-sided signed-rank p, all 5 differences positive
    assert t["r"] == pytest.approx(1.0) and t["mean_a"] == pytest.approx(0.54)
    # d = +1, -2, +3 (in hundredths): ranks 1, 2, 3, W+ = 4, W- = 2 -> r = (4 - 2) / 6
    t = paired_test(rows([0.51, 0.48, 0.53]), rows([0.50, 0.50, 0.50]), "unseen_pro")
    assert t["r"] == pytest.approx(1 / 3) and t["wins"] == 2 and t["p"] > 0.5
    assert "not distinguishable" in verdict(t) and verdict(paired_test([], [], "unseen_pro")).startswith("not measured")


def test_a_new_try_starts_a_fresh_run_log(tmp_path):
    cfgs = _grid(n_seeds=1)[:1]
    old = Path(run_grid(cfgs, tmp_path, progress=False, runner=slow_run, log=True)[0]["run_dir"]) / "run.log"
    (Path(old).parent / "results.json").unlink()  # the run must train again
    old.write_text("train:  50%|#####     | 6/12 [an interrupted try]\n")
    run_grid(cfgs, tmp_path, progress=False, runner=slow_run, log=True)
    assert "interrupted try" not in old.read_text() and "1/2" in old.read_text()
