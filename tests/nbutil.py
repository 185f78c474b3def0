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


FIGURE_BLOCK = r"```\{glue:figure\} (\S+)\n:name: (fig-[\w-]+)\n\n(.+?)```"
READER_TAGS = {"remove-cell", "remove-input", "hide-input"}  # code a reader does not see unless asked


def check_figures(nb, names: list[str], glued_images: bool = True) -> list[tuple[str, str, str]]:
    """The chapter's `{glue:figure}` blocks are `names`, in this order, each captioned (≥ 15 words) and referred to
    from the text with {numref}; with `glued_images`, each glued as an image. Returns (glue name, label, caption)."""
    import re

    md = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    blocks = re.findall(FIGURE_BLOCK, md, re.S)
    assert [b[0] for b in blocks] == list(names)
    assert all(len(caption.split()) >= 15 and f"{{numref}}`{label}`" in md for _, label, caption in blocks)
    if glued_images:
        outs = [o for c in nb.cells for o in c.get("outputs", [])]
        figs = {o["metadata"]["scrapbook"]["name"] for o in outs if "scrapbook" in o.get("metadata", {})
                and any(k.endswith("image/png") for k in o["data"])}
        assert set(names) <= figs
    return blocks


def shown_images(nb) -> list:
    """Image outputs shown in place (a glued figure is stored under another key and shown only in its block)."""
    return [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]


def code_sizes(nb) -> tuple[int, int]:
    """(lines of the longest code cell a reader sees, characters of the longest line of any code cell)."""
    code = [c for c in nb.cells if c.cell_type == "code"]
    visible = [c for c in code if not READER_TAGS & set(c.metadata.get("tags", []))]
    return (max((len(c.source.splitlines()) for c in visible), default=0),
            max((len(line) for c in code for line in c.source.splitlines()), default=0))
