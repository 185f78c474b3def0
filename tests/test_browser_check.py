"""tests/browser_check.py: the page list from _toc.yml, and (where Debian's chromium is installed) that the check
passes a good page with a working β/τ explorer and fails pages with a JavaScript error, a missing image, a broken
link or a dead slider."""
from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
import browser_check  # noqa: E402

HAVE_BROWSER = all(Path(p).exists() for p in ("/usr/bin/chromium", "/usr/bin/chromedriver"))
needs_browser = pytest.mark.skipif(not HAVE_BROWSER, reason="Debian chromium/chromium-driver not installed "
                                   "(.ci/run installs them)")


def test_toc_pages_lists_every_chapter_once():
    pages = browser_check.toc_pages(ROOT / "_toc.yml")
    assert pages[0] == "book/intro" and len(pages) == len(set(pages))
    chapters = {f"book/{p.stem}" for p in (ROOT / "book").glob("*.ipynb")}
    assert chapters <= set(pages) and browser_check.EXPLORER_PAGE in pages


def _png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _site(root: Path, intro_extra: str = "", explorer: str | None = None) -> Path:
    from bgad_mini import widgets

    html = root / "html"
    (html / "book").mkdir(parents=True)
    (html / "index.html").write_text("<html><body>index</body></html>")
    (html / "book" / "fig.png").write_bytes(_png())
    (html / "book" / "intro.html").write_text(
        f'<html><head><title>Intro</title></head><body><main><p>Intro</p><img src="fig.png">'
        f'<a href="boundary.html">next</a>{intro_extra}</main></body></html>')
    if explorer is None:
        rng = np.random.default_rng(0)
        explorer = widgets.boundary_explorer_html(rng.normal(-2, 3, 4000), rng.normal(-15, 4, 300),
                                                  betas=[0.005, 0.01, 0.05, 0.1], taus=[0.0, 0.1, 0.2, 0.3],
                                                  beta=0.01, tau=0.1)
    (html / "book" / "boundary.html").write_text(
        f"<html><head><title>Boundary</title></head><body><main>{explorer}</main></body></html>")
    toc = root / "_toc.yml"
    toc.write_text("format: jb-book\nroot: book/intro\nchapters:\n  - file: book/boundary\n")
    return html


def _check(tmp_path: Path, html: Path) -> tuple[int, dict]:
    out = tmp_path / "browser"
    code = browser_check.main(["--html", str(html), "--toc", str(tmp_path / "_toc.yml"), "--out", str(out)])
    return code, json.loads((out / "report.json").read_text())


@needs_browser
def test_a_good_site_passes_and_the_explorer_responds(tmp_path):
    code, report = _check(tmp_path, _site(tmp_path))
    assert code == 0, report["problems"]
    ex = report["explorer"]
    assert ex["start"]["beta"] == "0.01" and ex["after_beta"]["beta"] == "0.1"  # two steps right of 0.01
    assert ex["after_beta"]["b_n"] != ex["start"]["b_n"] and ex["after_tau"]["b_n"] == ex["after_beta"]["b_n"]
    assert ex["after_tau"]["tau"] == "0.3" and ex["after_tau"]["b_a"] != ex["after_beta"]["b_a"]
    shot = tmp_path / "browser" / "boundary.png"
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 5000
    assert report["pages"][0]["images"] == 1


@needs_browser
def test_errors_missing_images_broken_links_and_a_dead_slider_fail(tmp_path):
    bad = ('<img src="missing.png"><a href="nowhere.html">x</a><span class="math">\\(b_n\\)</span>'
           '<script>document.title; undefined_function_of_the_book();</script>')
    dead = '<div id="bt-explorer"><input type="range" id="bt-beta" min="0" max="3" value="1">' \
           '<input type="range" id="bt-tau" min="0" max="3" value="1"><span id="bt-beta-value">0.01</span>' \
           '<span id="bt-tau-value">0.1</span><p id="bt-counts">counts</p>' \
           '<svg><line id="bt-bn" x1="5"/><line id="bt-ba" x1="3"/></svg></div>'
    code, report = _check(tmp_path, _site(tmp_path, intro_extra=bad, explorer=dead))
    assert code == 1
    text = "\n".join(report["problems"])
    assert "undefined_function_of_the_book" in text
    assert "image not loaded" in text and "missing.png" in text
    assert "broken link" in text and "nowhere.html" in text
    assert "1 of 1 equations not typeset by MathJax" in text  # a page with math but no MathJax
    assert "moving β did not move b_n" in text and "moving the τ slider did not move b_a" in text


def test_missing_browser_or_book_is_a_one_line_error(tmp_path, capsys):
    code = browser_check.main(["--html", str(tmp_path / "none"), "--out", str(tmp_path / "o")])
    assert code == 2 and "no rendered book" in capsys.readouterr().err
    (tmp_path / "h").mkdir()
    (tmp_path / "h" / "index.html").write_text("x")
    code = browser_check.main(["--html", str(tmp_path / "h"), "--chromium", str(tmp_path / "no-chromium")])
    assert code == 2 and "apt-get install chromium" in capsys.readouterr().err
