"""Small Sphinx fixes for the rendered book (loaded through `sphinx.local_extensions` in _config.yml).

sphinx-thebe 0.3 and sphinx-togglebutton add their inline configuration scripts again on every read of the
environment, and with Sphinx 7.4 a page can end up with `const THEBE_JS_URL = ...` twice: a SyntaxError in every
browser (found by tests/browser_check.py). Each script is kept once per page, in its first position.
"""
from __future__ import annotations


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


def setup(app):
    app.connect("html-page-context", drop_duplicate_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
