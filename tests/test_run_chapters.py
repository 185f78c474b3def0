"""The GPU workflow's chapter loop (scripts/run_chapters.py, the same script with the same parameters), run on a
small fake dataset in the MVTec layout with MVTecAD's names (bottle, seen type broken_large) at the smoke profile
on the CPU: a chapter that assumes the synthetic dataset's names or files fails here, not on the GPU runner."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat

from fake_mvtec import make_fake_mvtec
from nbutil import unglued

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
import run_chapters  # noqa: E402

WORKFLOW = REPO / ".github" / "workflows" / "gpu-notebooks.yml"


def test_the_gpu_workflow_runs_this_script_with_mvtec_names():
    text = WORKFLOW.read_text()
    assert "scripts/run_chapters.py" in text and "--category bottle --known-types broken_large" in text
    assert "for nb in" not in text and ".venv/bin/papermill" not in text  # no loop of its own


def test_every_chapter_runs_on_a_fake_mvtec_bottle(tmp_path):
    data = make_fake_mvtec(tmp_path / "mvtec", categories=("bottle",))
    out = tmp_path / "executed"
    code = run_chapters.main(["--data-root", str(data), "--category", "bottle", "--known-types", "broken_large",
                              "--profile", "smoke", "--device", "cpu", "--out", str(out),
                              "--runs-root", str(tmp_path / "runs"), "--cache-dir", str(tmp_path / "cache")])
    times = json.loads((out / "times.json").read_text())["chapters"]
    failed = {n: t["error"] for n, t in times.items() if t["status"] != "ok"}
    assert code == 0 and not failed, failed
    assert set(times) == {p.stem for p in (REPO / "book").glob("*.ipynb")}
    for name in times:
        nb = nbformat.read(out / f"{name}.ipynb", as_version=4)
        assert not unglued(nb), (name, unglued(nb))
    data_nb = nbformat.read(out / "data.ipynb", as_version=4)
    assert "broken_large" in json.dumps([c.get("outputs", []) for c in data_nb.cells])  # it read MVTec's names


def test_a_missing_category_is_one_line_and_exit_code_2(tmp_path, capsys):
    assert run_chapters.main(["--data-root", str(tmp_path), "--category", "bottle", "--known-types", "x",
                              "--out", str(tmp_path / "o")]) == 2
    assert "no bottle/train under" in capsys.readouterr().err
