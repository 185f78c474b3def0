"""Small Sphinx fixes for the rendered book (loaded through `sphinx.local_extensions` in _config.yml).

- sphinx-thebe 0.3 and sphinx-togglebutton add their inline configuration scripts again on every read of the
  environment, and with Sphinx 7.4 a page can end up with `const THEBE_JS_URL = ...` twice: a SyntaxError in every
  browser (found by tests/browser_check.py). Each script is kept once per page, in its first position.
- plotly.js for the kernel-free explorers (`bgad_mini.explorers`) is vendored, not fetched from a CDN: the
  installed `plotly` wheel's `plotly.min.js` is copied into `_static/` when the build starts, and only pages
  that hold a Plotly figure load it. `BGAD_PLOTLYJS=page` is set for the kernels this build starts, so the
  chapters' figures leave plotly.js out of their output instead of carrying it inline.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

PLOTLY_JS = "plotly.min.js"


def _key(js) -> tuple:
    """A script file is the same script whatever its attributes; an inline script is the same when its body is."""
    attributes = getattr(js, "attributes", {}) or {}
    filename = getattr(js, "filename", js) or ""  # inline scripts come with None or "" as their file name
    return (str(filename),) if filename else ("", str(attributes.get("body", "")))


def drop_duplicate_scripts(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen: set[tuple] = set()
    kept = []
    for js in scripts:
        key = _key(js)
        if key not in seen:
            seen.add(key)
            kept.append(js)
    context["script_files"] = kept


def plotlyjs_source() -> Path:
    """The installed plotly's plotly.min.js (as `bgad_mini.explorers.plotlyjs_path`, without importing the package)."""
    import plotly

    return Path(plotly.__file__).resolve().parent / "package_data" / PLOTLY_JS


def copy_plotlyjs(app) -> None:
    """Vendor plotly.min.js into the HTML output's _static/ (again only when the installed one changed)."""
    if app.builder.format != "html":
        return
    src, dst = plotlyjs_source(), Path(app.outdir) / "_static" / PLOTLY_JS
    if not dst.exists() or dst.stat().st_size != src.stat().st_size or dst.stat().st_mtime < src.stat().st_mtime:
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)


def add_plotlyjs(app, pagename, templatename, context, doctree) -> None:
    """Load the vendored plotly.js (in <head>, before the figures' inline scripts) on pages with a Plotly figure."""
    if 'class="plotly-graph-div"' in context.get("body", ""):
        app.add_js_file(PLOTLY_JS)


def setup(app):
    os.environ["BGAD_PLOTLYJS"] = "page"  # inherited by the kernels that execute the chapters
    app.connect("builder-inited", copy_plotlyjs)
    app.connect("html-page-context", add_plotlyjs, priority=500)  # before drop_duplicate_scripts copies the list
    app.connect("html-page-context", drop_duplicate_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
