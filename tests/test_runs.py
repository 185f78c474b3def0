"""The runs layer: a run's identity covers its config, the code and the data; the lock; load_or_run.

A stale run must never be reused: these tests change a loss in a copy of the package, regenerate a dataset in
place, and race two `bgad-mini run` processes on one folder.
"""
from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bgad_mini import fingerprint, runs, synthetic
from bgad_mini.config import Config
from bgad_mini.fingerprint import RESULT_MODULES, code_fingerprint, data_fingerprint

PACKAGE = Path(fingerprint.__file__).parent


@pytest.fixture
def package_copy(tmp_path) -> Path:
    dst = tmp_path / "bgad_mini"
    shutil.copytree(PACKAGE, dst, ignore=shutil.ignore_patterns("__pycache__"))
    return dst


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path.name}"
    path.write_text(text.replace(old, new, 1))


def test_code_fingerprint_follows_code_not_comments_docstrings_or_other_modules(package_copy):
    base = code_fingerprint(str(package_copy))
    assert base == code_fingerprint()  # the copy is the package
    # a docstring, a comment and a blank line in a listed module: same code
    _edit(package_copy / "losses.py", '"""', '"""Edited docstring. ')
    _edit(package_copy / "losses.py", "\nimport", "\n# a new comment\n\nimport")
    # any change to a module outside the list (here the charts)
    _edit(package_copy / "viz.py", "import", "import os as _unused_here\nimport")
    code_fingerprint.cache_clear()
    assert code_fingerprint(str(package_copy)) == base
    # a change to what a loss computes
    src = (package_copy / "losses.py").read_text()
    tree = ast.parse(src)
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "ml_loss")
    line = src.splitlines()[fn.body[-1].lineno - 1]
    _edit(package_copy / "losses.py", line, line.replace("return ", "return 1.0 + ", 1))
    code_fingerprint.cache_clear()
    assert code_fingerprint(str(package_copy)) != base


def _package_imports(module: str) -> set[str]:
    """Package modules that `module` imports (relative imports, also inside functions)."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                out.add(node.module.split(".")[0])
            else:
                out |= {a.name for a in node.names}
    return out


def test_result_modules_cover_everything_a_run_reaches():
    reached, todo = set(), ["pipeline"]
    while todo:
        m = todo.pop()
        if m in reached:
            continue
        reached.add(m)
        todo += sorted(_package_imports(m))
    # reached but not listed: only errors, this fingerprinting itself, and the map figure of a run folder
    assert reached - set(RESULT_MODULES) <= {"errors", "fingerprint", "viz"}, reached - set(RESULT_MODULES)
    assert set(RESULT_MODULES) <= reached
    assert all((PACKAGE / f"{m}.py").is_file() for m in RESULT_MODULES)


def test_no_import_cycle_between_runs_pipeline_and_the_grid_modules():
    for low, high in (("pipeline", "runs"), ("runs", "grid"), ("runs", "summary"), ("grid", "reproduce"),
                      ("summary", "reproduce"), ("grid", "ablation")):
        assert high not in _package_imports(low), f"{low} imports {high}"


def test_regenerating_the_data_in_place_changes_the_key(tmp_path):
    root = tmp_path / "synthetic_smoke"
    synthetic.generate(root, profile="smoke", seed=0, categories=("brick",), progress=False)
    cfg = Config.from_profile("smoke", data_root=str(root), category="brick", method="nf")
    key0, fp0 = runs.run_key(cfg), data_fingerprint(root, "brick")
    # a finished run of this data...
    folder = runs.RunFolder(tmp_path / "runs" / key0)
    folder.path.mkdir(parents=True)
    folder.results.write_text(json.dumps({"identity": json.loads(json.dumps(runs.identity(cfg), default=str))}))
    assert runs.finished(folder.path, cfg) is not None
    assert runs.run_key(cfg) == key0  # stable
    # ...is not reused once the images are regenerated with another seed in the same folder
    synthetic.generate(root, profile="smoke", seed=1, categories=("brick",), progress=False)
    assert data_fingerprint(root, "brick") != fp0
    assert runs.run_key(cfg) != key0
    assert runs.finished(folder.path, cfg) is None
    # moving the dataset does not change it (paths inside the category count, not where it lives)
    moved = tmp_path / "elsewhere"
    shutil.copytree(root, moved)
    assert data_fingerprint(moved, "brick") == data_fingerprint(root, "brick")


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock = tmp_path / "run.lock"
    lock.write_text(json.dumps({"pid": int(dead.stdout), "host": runs.RunLock(lock).owner["host"]}))
    said = []
    with runs.RunLock(lock, say=said.append) as held:
        assert json.loads(lock.read_text()) == held.owner
    assert not lock.exists() and "taking over" in said[0]


def test_a_live_lock_makes_the_other_process_wait(tmp_path):
    lock = tmp_path / "run.lock"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from bgad_mini.runs import RunLock\n"
        f"l = RunLock({str(lock)!r}); l.acquire(); print('held', flush=True); time.sleep(1.5); l.release()")],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    said, t0 = [], time.perf_counter()
    with runs.RunLock(lock, poll=0.05, say=said.append):
        waited = time.perf_counter() - t0
    holder.wait(timeout=30)
    assert waited > 0.5 and said and said[0].startswith(f"waiting for PID {holder.pid}")


def test_two_concurrent_runs_on_one_folder_train_once(smoke_root, tmp_path):
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "bgad_mini", "run", "--method", "nf", "--data-root", str(smoke_root), "--category",
            "brick", "--profile", "smoke", "--out", str(out), "--set", f"cache_dir={tmp_path / 'cache'}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e[-500:] for _, e in outs]
    reused = ["reusing" in err for _, err in outs]
    assert sorted(reused) == [False, True], [e[-300:] for _, e in outs]  # one trained, the other reused its run
    assert outs[0][0].splitlines()[0] == outs[1][0].splitlines()[0]  # the same metrics printed by both
    assert not (out / "run.lock").exists()


def test_load_or_run_trains_again_after_a_code_change_and_reuses_otherwise(smoke_root, tmp_path, monkeypatch):
    cfg = Config.from_profile("smoke", data_root=str(smoke_root), category="brick", method="nf",
                              cache_dir=str(tmp_path / "cache"), threads=1, share_phase1=False)
    first = runs.load_or_run(cfg, runs_root=tmp_path / "runs", progress=False)
    assert first.status == "trained" and first.results["identity"]["code"] == code_fingerprint()
    again = runs.load_or_run(cfg, runs_root=tmp_path / "runs", progress=False)
    assert again.status == "reused" and again.results == first.results
    # the same folder under other code: trained again from scratch, never the old numbers
    monkeypatch.setattr(runs, "code_fingerprint", lambda: "0" * 16)
    stale = runs.load_or_run(cfg, first.run_dir, progress=False)
    assert stale.status == "trained" and stale.results["identity"]["code"] == "0" * 16
    # not resumed from the old (finished) checkpoint: every epoch trained again
    assert stale.results["timings"]["train"] > 0.3 * first.results["timings"]["train"]
