"""A published result grid (`make results`): results.json only, PROVENANCE.json, the fingerprint check, and
`verify` rerunning a sample from scratch; the one-at-a-time axes and the training order of `ablate`."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bgad_mini import grid, published, synthetic
from bgad_mini.cli import main
from bgad_mini.config import Config
from bgad_mini.errors import BgadError


def base_cfg(**kw) -> Config:
    return Config.from_profile("smoke", data_root="nowhere", **kw)


def test_axes_are_one_at_a_time_per_method_and_collapse_what_a_method_ignores():
    axes = grid.parse_axes(["bgad:beta=0.005,0.05", "nf+bgad:n_known=1", "pushpull:push=linear", "tau=0"])
    assert axes[0] == (("bgad",), "beta", ["0.005", "0.05"]) and axes[3] == ((), "tau", ["0"])
    cfgs = grid.axes_configs(axes, ("nf", "pushpull", "bgad"), categories=("brick",), known_types=["missing"],
                             seeds=(0,), base=base_cfg(), check_data=False)
    got = {(c.method, c.beta, c.n_known, c.push, c.tau) for c in grid.dedupe(cfgs)}
    d = base_cfg()
    assert got == {("bgad", 0.005, d.n_known, "bce", d.tau), ("bgad", 0.05, d.n_known, "bce", d.tau),
                   ("nf", d.beta, 1, "bce", d.tau), ("bgad", d.beta, 1, "bce", d.tau),
                   ("pushpull", d.beta, d.n_known, "linear", d.tau), ("bgad", d.beta, d.n_known, "bce", 0.0),
                   # the unprefixed τ axis collapses to each method's base for nf and pushpull (they ignore τ)
                   ("nf", d.beta, d.n_known, "bce", d.tau), ("pushpull", d.beta, d.n_known, "bce", d.tau)}
    with pytest.raises(BgadError, match="unknown method"):
        grid.parse_axes(["bgadx:beta=0.1"])


def test_training_order_is_seed_major_with_nf_first():
    cfgs = grid.expand_grid(methods=("bgad", "firm", "nf"), categories=("brick", "grass"), known_types=("a", "b"),
                            seeds=(0, 1), base=base_cfg(), check_data=False)
    order = grid.training_order(cfgs)
    assert [c.seed for c in order] == [0] * 12 + [1] * 12
    assert [c.method for c in order[:3]] == ["nf", "firm", "bgad"]
    assert [(c.known_types, c.category) for c in order[:6:3]] == [(("a",), "brick"), (("a",), "grass")]


@pytest.fixture(scope="module")
def smoke_copy(smoke_root, tmp_path_factory) -> Path:
    """A copy of the smoke data (brick only) that a test may regenerate."""
    root = tmp_path_factory.mktemp("published_data") / "synthetic_smoke"
    shutil.copytree(smoke_root / "brick", root / "brick")
    return root


@pytest.fixture(scope="module")
def published_grid(smoke_copy, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("published") / "results"
    cache = tmp_path_factory.mktemp("published_cache")
    argv = ["ablate", "--data-root", str(smoke_copy), "--categories", "brick", "--methods", "nf", "bgad",
            "--known-types", "crack", "--seeds", "0", "1", "--profile", "smoke", "--out", str(out),
            "--set", f"cache_dir={cache}", "--axes", "bgad:tau=0", "--publish", "--no-progress"]
    assert main(argv) == 0
    return out


def test_a_published_grid_keeps_results_json_only_with_its_provenance(published_grid, smoke_copy, capsys):
    prov = json.loads((published_grid / "PROVENANCE.json").read_text())
    assert prov["runs"] == prov["finished"] == 6 and prov["complete"]  # 2 methods × 2 seeds + τ = 0 × 2 seeds
    assert prov["command"].startswith("bgad-mini ablate") and "--publish" in prov["command"]
    assert prov["code_fingerprint"] == published.code_fingerprint()
    assert set(prov["data_fingerprints"][str(smoke_copy)]) == {"brick"}
    assert prov["machine"]["cpu"] and prov["versions"]["torch"] and prov["threads_per_run"] >= 1
    assert prov["run_seconds_total"] > 0 and len(prov["run_keys"]) == 6
    for run in (published_grid / "runs").iterdir():
        assert [p.name for p in run.iterdir()] == ["results.json"]
    assert main(["results", "check", "--root", str(published_grid)]) == 0
    assert "made by this code on this data; 6 of 6 runs (complete)" in capsys.readouterr().out
    rows = published.load(published_grid)
    assert len(rows) == 6 and {r["method"] for r in rows} == {"nf", "bgad"}


def test_the_check_refuses_other_code_or_other_data(published_grid, smoke_copy, monkeypatch, capsys):
    monkeypatch.setattr(published, "code_fingerprint", lambda: "f" * 16)
    assert main(["results", "check", "--root", str(published_grid)]) == 2
    err = capsys.readouterr().err
    assert "computed by other code" in err and "make results" in err and len(err.strip().splitlines()) == 1
    monkeypatch.undo()
    other = smoke_copy.parent / "regenerated"
    synthetic.generate(other, profile="smoke", seed=5, categories=("brick",), progress=False)
    with pytest.raises(BgadError, match=r"computed on other data \(brick.*make results"):
        published.check(published_grid, data_root=str(other))


def test_verify_reruns_a_sample_and_catches_a_changed_number(published_grid, tmp_path):
    report = published.verify(published_grid, n=2, progress=False, cache_dir=str(tmp_path / "cache"))
    assert len(report) == 2 and {r["run"].split("_")[0] for r in report} == {"nf", "bgad"}
    assert all(r["max_abs_diff"] <= 1e-3 and r["metrics_compared"] >= 6 for r in report)
    # a committed number that the code does not reproduce is caught
    tampered = tmp_path / "tampered"
    shutil.copytree(published_grid, tampered)
    first = published.sample(tampered, 1)[0] / "results.json"
    res = json.loads(first.read_text())
    res["metrics_unseen"]["pro"] += 0.01
    first.write_text(json.dumps(res))
    with pytest.raises(BgadError, match=r"1 of 1 reruns differ.*1\.0\de-02 > 0\.001"):
        published.verify(tampered, n=1, progress=False, cache_dir=str(tmp_path / "cache"))


def test_only_finished_publishes_an_incomplete_grid_without_training(published_grid, smoke_copy, tmp_path, capsys):
    out = tmp_path / "partial"
    shutil.copytree(published_grid, out)
    argv = ["ablate", "--data-root", str(smoke_copy), "--categories", "brick", "--methods", "nf", "bgad",
            "--known-types", "crack", "--seeds", "0", "1", "2", "--profile", "smoke", "--out", str(out),
            "--axes", "bgad:tau=0", "--publish", "--only-finished", "--no-progress"]
    assert main(argv) == 0
    assert "9 runs: 6 reused, 0 trained, 0 failed, 3 not run yet" in capsys.readouterr().out
    prov = json.loads((out / "PROVENANCE.json").read_text())
    assert (prov["runs"], prov["finished"], prov["complete"]) == (9, 6, False)
    assert len(list((out / "runs").iterdir())) == 6  # nothing trained


def test_load_reads_only_the_runs_the_provenance_lists(published_grid, tmp_path):
    out = tmp_path / "grid"
    shutil.copytree(published_grid, out)
    extra = out / "runs" / "nf_brick_crack_s9_000000000000"
    shutil.copytree(next((out / "runs").iterdir()), extra)  # a run that finished after PROVENANCE.json
    assert len(published.load(out)) == 6


def test_provenance_takes_threads_and_cpu_hours_from_each_run(tmp_path, tiny_root):
    """A run on a Dask worker chooses its threads there: the provenance reads them from the run, not the client."""
    cfgs = [Config.from_profile("smoke", data_root=str(tiny_root), category="widget", seed=s) for s in (0, 1)]
    records = [{"key": f"k{i}", "results": {"identity": {"code": "c"}, "timings": {"total": 3600.0},
                                            "config": {"threads": t}}} for i, t in enumerate((2, 4))]
    prov = published.write_provenance(tmp_path, "cmd", cfgs, records, threads=1, executor="dask tcp://h:8786")
    assert prov["threads_per_run"] == [2, 4] and prov["cpu_hours"] == 6.0 and prov["executor"] == "dask tcp://h:8786"
    records[1]["results"]["config"] = {}  # a result that does not say: the fallback
    prov = published.write_provenance(tmp_path, "cmd", cfgs, records, threads=1)
    assert prov["threads_per_run"] == [1, 2] and prov["cpu_hours"] == 3.0 and prov["executor"] == "local"
