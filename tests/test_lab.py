"""The ablation lab: the grid a form makes, what is finished, the estimate, progress from a run's log, and
the panel itself: clicking Run trains a 2-run smoke grid and the table ends with its metrics; Stop ends a grid."""
from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import pytest

pytest.importorskip("ipywidgets")

from bgad_mini import lab  # noqa: E402
from bgad_mini.config import Config  # noqa: E402
from bgad_mini.errors import BgadError  # noqa: E402
from bgad_mini.runs import RUNS  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def tiny_base(root: Path, **kw) -> Config:
    return Config.from_profile("smoke", data_root=str(root), category="widget", setting="one-class",
                               known_types=("scratch",), **kw)


def test_a_form_makes_one_setting_at_a_time_or_the_full_product(tiny_root):
    base = tiny_base(tiny_root)
    form = lab.Form(methods=("bgad", "nf"), seeds=(0, 1), axes={"beta": (0.05,), "tau": (0.0, 0.2), "lambda": ()})
    runs = lab.form_configs(form, base)
    # base: 2 methods x 2 seeds; beta: bgad only (NF has no beta) x 2 seeds; tau: 2 values x 2 seeds
    assert len(runs) == 4 + 2 + 4
    assert sum(c.method == "nf" for c in runs) == 2
    assert [c.method for c in runs if c.seed == 0][0] == "nf"  # NF first: the others reuse its phase 1
    assert {(c.beta, c.tau) for c in runs if c.method == "bgad"} == {(0.01, 0.1), (0.05, 0.1), (0.01, 0.0),
                                                                      (0.01, 0.2)}
    product = lab.form_configs(lab.Form(methods=("bgad",), seeds=(0,), axes={"beta": (0.05,), "tau": (0.0, 0.2)},
                                        product=True), base)
    assert {(c.beta, c.tau) for c in product} == {(0.01, 0.1), (0.05, 0.0), (0.05, 0.2)}
    two_types = lab.form_configs(lab.Form(methods=("nf",), known_types=("scratch", "hole")), base)
    assert [c.known_types for c in two_types] == [("scratch",), ("hole",)]


def test_bad_form_values_are_one_line_errors(tiny_root):
    from bgad_mini.report import parse_list

    assert parse_list("0.01, 0.05, 0.01,", float, "β values") == [0.01, 0.05]
    with pytest.raises(BgadError, match=r"seeds: 'zero' is not a comma-separated list of int"):
        parse_list("zero", int, "seeds")
    with pytest.raises(BgadError, match="at least one method"):
        lab.form_configs(lab.Form(methods=()), tiny_base(tiny_root))
    with pytest.raises(BgadError, match=r"known type\(s\) dent not in category 'widget'"):
        lab.form_configs(lab.Form(known_types=("dent",)), tiny_base(tiny_root))


def test_estimate_from_finished_runs_of_the_same_profile_and_method(tiny_root):
    base = tiny_base(tiny_root)
    book = Config.from_profile("book", category="widget")
    known = {("book", "nf"): 90.0, ("book", "bgad"): 120.0}
    todo = [book.with_overrides(method="nf", seed=s) for s in (0, 1)] + [book.with_overrides(method="bgad")] * 2
    assert lab.estimate_seconds(todo, known, jobs=2) == pytest.approx((2 * 90 + 2 * 120) / 2)
    assert lab.estimate_seconds([book.with_overrides(method="firm")], known) == 105.0  # the profile's median
    assert lab.estimate_seconds([base], known) == lab.DEFAULT_SECONDS["smoke"]  # nothing of its profile known
    records = [{"results": {"timings": {"total": t}, "config": {"profile": "book", "method": "nf"}}}
               for t in (80.0, 90.0, 130.0)]
    assert lab.seconds_by_kind(records) == {("book", "nf"): 90.0}
    assert lab.duration(45) == "45 s" and lab.duration(600) == "10 min" and lab.duration(5400) == "1.5 h"


def test_progress_of_a_running_run_is_read_from_its_log():
    text = ("features: 100%|##########| 4/4 [00:01<00:00]\n"
            "train:   0%|          | 0/12 [00:00<?, ?epoch/s]\rtrain:  42%|####2     | 5/12 [00:10<00:14]")
    assert lab.log_progress(text) == ("train", 5, 12)
    assert lab.log_progress("reusing finished run\n") is None


def committed_run(prefix: str) -> tuple[dict, str, dict, Config]:
    """The committed grid's provenance, the first run whose key starts with `prefix`, its results and its config
    with the data folder spelled as an absolute path (the grid recorded `data/synthetic`)."""
    prov = json.loads((REPO / "results" / "PROVENANCE.json").read_text())
    key = next(k for k in sorted(prov["run_keys"]) if k.startswith(prefix))
    saved = json.loads((REPO / "results" / RUNS / key / "results.json").read_text())
    if not (REPO / "data" / "synthetic").is_dir():
        pytest.skip("data/synthetic is made by `make data`")
    return prov, key, saved, Config.from_dict(dict(saved["config"], data_root=str(REPO / "data" / "synthetic")))


def test_the_committed_grid_counts_as_finished_from_another_data_folder_spelling(tmp_path):
    _, _, saved, cfg = committed_run("bgad_brick_missing_s0_")
    (rec,) = lab.plan_lab([cfg], tmp_path / "runs", REPO / "results")
    assert rec["status"] == "reused" and rec["where"] == "committed grid"
    assert rec["results"]["metrics"] == saved["metrics"]
    (other,) = lab.plan_lab([cfg.with_overrides(seed=99)], tmp_path / "runs", REPO / "results")
    assert other["status"] is None  # not in the grid: to train
    assert lab.plan_text([rec, other], 120.0, 2) == "2 runs: 1 finished (1 from the committed grid), 1 to " \
                                                    "train, about 2 min in 1 process"


def _records(base: Config) -> list[dict]:
    def res(method, seed, pro, **cfg):
        c = base.with_overrides(method=method, seed=seed, **cfg)
        m = {"image_auroc": 0.9, "pixel_auroc": 0.8, "pro": pro}
        return {"results": {"method": method, "category": c.category, "setting": c.setting,
                            "known_types": list(c.known_types), "n_known": c.n_known, "seed": seed,
                            "config": c.to_dict(), "metrics": m, "metrics_seen": m, "metrics_unseen": m,
                            "timings": {"total": 1.0}}, "run_dir": f"r{method}{seed}{cfg}", "status": "trained"}

    return [res("nf", 0, 0.5), res("nf", 1, 0.7), res("bgad", 0, 0.8), res("bgad", 0, 0.9, beta=0.05)]


def test_table_and_figures_from_records(tiny_root):
    base = tiny_base(tiny_root)
    rows = lab.result_rows(_records(base))
    table = lab.table_html(rows, base)
    assert "<td>nf</td>" in table and "0.600 ± 0.141" in table  # NF's two seeds: mean and sample std
    assert "<td>bgad β=0.05</td>" in table and "<td>0.900</td>" in table
    bars = lab.draw(rows, base, "bars", "pro")
    assert len(bars.axes[0].patches) == 2 * len(rows)  # a seen and an unseen bar per row
    axes = lab.draw(rows, base, "axes", "pro")
    assert len(axes.axes) == 1 and axes.axes[0].get_xlabel().startswith("β")  # beta: two values, one panel
    assert lab.draw(rows[:2], base, "axes", "pro") is None and lab.table_html([], base).startswith("<i>")


def test_clicking_run_trains_a_two_run_smoke_grid_and_the_table_ends_with_its_metrics(smoke_root, tmp_path):
    base = Config.from_profile("smoke", data_root=str(smoke_root), category="brick", setting="one-class",
                               known_types=("missing",), seed=0)
    panel = lab.Lab(base, runs_root=tmp_path / "runs", poll=0.2, methods=("nf",))
    panel.seeds.value = "0, 1"
    assert panel.plan_label.value.startswith("2 runs: 0 finished, 2 to train")
    panel.run_button.click()
    assert panel.run_button.disabled  # the kernel is free, the grid runs in the background
    assert panel.wait(600)
    assert [r["status"] for r in panel.records] == ["trained", "trained"], panel.errors.value
    saved = [json.loads((Path(r["run_dir"]) / "results.json").read_text()) for r in panel.records]
    pro = [s["metrics_unseen"]["pro"] for s in saved]
    assert f"{statistics.fmean(pro):.3f} ± {statistics.stdev(pro):.3f}" in panel.table.value
    assert panel.overall.value == 2 and "2 trained" in panel.overall_label.value
    assert panel.figure.value[:4] == b"\x89PNG" and not panel.run_button.disabled
    panel.run_button.click()  # again: nothing to train
    assert panel.wait(60)
    assert panel.plan_label.value == "2 runs: 2 finished"


def test_stop_ends_the_grid_and_a_failed_run_is_one_line(tiny_root, tmp_path):
    from test_ablation import slow_run  # picklable for the worker processes

    base = tiny_base(tiny_root, extra={"sleep": 60})
    panel = lab.Lab(base, runs_root=tmp_path / "runs", poll=0.1, runner=slow_run, methods=("nf",))
    panel.seeds.value = "0, 1, 2"
    panel.jobs.value = 1
    panel.run_button.click()
    end = time.monotonic() + 60
    while not any(r["status"] == "running" for r in panel.records) and time.monotonic() < end:
        time.sleep(0.05)
    panel.stop_button.click()
    assert panel.wait(60)
    assert [r["status"] for r in panel.records] == ["stopped"] * 3
    assert "3 stopped" in panel.overall_label.value and "3 left" in panel.plan_label.value

    failing = lab.Lab(tiny_base(tiny_root, extra={"fail_seed": 1}), runs_root=tmp_path / "runs2", poll=0.1,
                      runner=slow_run, methods=("nf",))
    failing.seeds.value = "0, 1"
    failing.run_button.click()
    assert failing.wait(120)
    assert [r["status"] for r in failing.records] == ["trained", "failed"]
    assert "failed nf_widget_scratch_s1_" in failing.errors.value and "BgadError: boom on seed 1 second line" \
        in failing.errors.value and "Traceback" not in failing.errors.value


def test_report_helpers_of_the_ablations_chapter(tiny_root):
    from bgad_mini import report

    assert report.parse_list("0.01, 0.1,", float) == [0.01, 0.1] and report.parse_list("") == []
    base = tiny_base(tiny_root)
    rows = [dict(r, **{"unseen_pro": p}) for r, p in zip(
        [{"method": "nf", "category": "widget", "known_types": "scratch", "n_known": base.n_known, "seed": s}
         for s in (0, 1, 2)], (0.50, 0.56, 0.52))]
    _, noise = report.seed_noise(rows, base, ["nf"], {"unseen_pro": "unseen PRO"})
    assert noise["unseen_pro"] == pytest.approx(0.06)  # max − min over the seeds
    assert report.against_noise(0.01, 0.06) == "+0.0100, within the seed noise (0.0600)"
    assert report.against_noise(-0.07, 0.06) == "-0.0700, below by more than the seed noise (0.0600)"
    assert report.against_noise(None, 0.06) == "not measured" and report.noise_text(None).startswith("not")


def test_only_runs_the_provenance_lists_count_and_an_ablate_folder_is_read_too(tmp_path):
    import shutil

    from test_ablation import fake_run

    prov, key, _, cfg = committed_run("nf_brick_missing_s0_")
    grid_root = tmp_path / "grid"
    shutil.copytree(REPO / "results" / RUNS / key, grid_root / RUNS / key)
    for listed, status in (([], None), ([key], "reused")):
        (grid_root / "PROVENANCE.json").write_text(json.dumps(dict(prov, run_keys=listed)))
        (rec,) = lab.plan_lab([cfg], tmp_path / "runs", grid_root)
        assert rec["status"] == status  # a run that finished after the grid was published is not part of it
    # a plain `bgad-mini ablate --out` folder (no PROVENANCE.json) is read as it is
    from bgad_mini.grid import run_grid

    small = Config.from_profile("smoke", data_root=str(REPO / "data" / "synthetic"), category="brick",
                                known_types=("missing",))
    run_grid([small], tmp_path / "ablate", progress=False, runner=fake_run)
    (rec,) = lab.plan_lab([small], tmp_path / "runs", tmp_path / "ablate")
    assert rec["status"] == "reused" and rec["where"] == str(tmp_path / "ablate")
