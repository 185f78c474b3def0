"""Running a chapter under papermill and reading what it glued: shared by the notebook tests."""
from __future__ import annotations

from pathlib import Path

import nbformat


def run_chapter(path: Path, out: Path, **params) -> nbformat.NotebookNode:
    """Execute `path` into `out` (never into book/) with papermill parameters, from the chapter's folder."""
    import papermill as pm

    # a cell that runs past 10 min fails with its traceback; the chapter's output is logged (shown on failure)
    pm.execute_notebook(str(path), str(out), parameters=params, cwd=str(path.parent), kernel_name="python3",
                        progress_bar=False, execution_timeout=600, log_output=True)
    nb = nbformat.read(out, as_version=4)
    missing = unglued(nb)
    assert not missing, f"{path.name} refers to glue keys it never glues (the book build would fail): {missing}"
    return nb


def unglued(nb) -> list[str]:
    """Keys that the notebook's Markdown refers to ({glue:text}`key`, {glue}`key`, glue:figure) but never glues."""
    import re

    refs = set()
    for c in nb.cells:
        if c.cell_type == "markdown":
            refs |= set(re.findall(r"\{glue(?::\w+)?\}`([^`:]+)(?::[^`]*)?`", c.source))
            refs |= set(re.findall(r"```\{glue:figure\}\s+(\S+)", c.source))
    return sorted(refs - set(glued(nb)))


def glued(nb) -> dict[str, str]:
    """Values glued with myst_nb.glue: name -> text/plain."""
    out = {}
    for c in nb.cells:
        for o in c.get("outputs", []):
            book = o.get("metadata", {}).get("scrapbook", {})
            if book.get("name"):
                out[book["name"]] = o["data"].get(book.get("mime_prefix", "") + "text/plain", "").strip("'")
    return out
