"""Every chapter runs under papermill with the smoke profile, into a temporary folder, and is checked."""
from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

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


def _run(path: Path, out: Path, **params) -> nbformat.NotebookNode:
    import papermill as pm

    pm.execute_notebook(str(path), str(out), parameters=params, cwd=str(path.parent), kernel_name="python3",
                        progress_bar=False)
    return nbformat.read(out, as_version=4)


def _glued(nb) -> dict[str, str]:
    """Values glued with myst_nb.glue: name -> text/plain."""
    out = {}
    for c in nb.cells:
        for o in c.get("outputs", []):
            book = o.get("metadata", {}).get("scrapbook", {})
            if book.get("name"):
                out[book["name"]] = o["data"].get(book.get("mime_prefix", "") + "text/plain", "").strip("'")
    return out


def test_data_chapter(tmp_path, smoke_root):
    nb = _run(ROOT / "book" / "data.ipynb", tmp_path / "data.ipynb", profile="smoke", data_root=str(smoke_root),
              n_known=3)
    g = _glued(nb)
    assert g["n_train"] == "16" and g["n_types"] == "7" and int(g["n_families"]) >= 3
    assert g["n_known_multi"] == "3"
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 2  # the montage and the mask-area plot
