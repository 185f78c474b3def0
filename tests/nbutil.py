"""Running a chapter under papermill and reading what it glued: shared by the notebook tests."""
from __future__ import annotations

from pathlib import Path

import nbformat


def run_chapter(path: Path, out: Path, **params) -> nbformat.NotebookNode:
    """Execute `path` into `out` (never into book/) with papermill parameters, from the chapter's folder."""
    import papermill as pm

    pm.execute_notebook(str(path), str(out), parameters=params, cwd=str(path.parent), kernel_name="python3",
                        progress_bar=False)
    return nbformat.read(out, as_version=4)


def glued(nb) -> dict[str, str]:
    """Values glued with myst_nb.glue: name -> text/plain."""
    out = {}
    for c in nb.cells:
        for o in c.get("outputs", []):
            book = o.get("metadata", {}).get("scrapbook", {})
            if book.get("name"):
                out[book["name"]] = o["data"].get(book.get("mime_prefix", "") + "text/plain", "").strip("'")
    return out
