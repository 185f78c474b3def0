"""tests/browser_check.py: the page list from _toc.yml, and (where Debian's chromium is installed) that the check
passes a small site with working explorers (plotly.js served from the site, the network blocked) and fails pages
with a JavaScript error, a missing image, a broken link, an explorer whose sliders do not change the chart, an
explorer whose plotly.js would come from a CDN, or a missing explorer."""
from __future__ import annotations

import io
import json
import shutil
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
    assert chapters <= set(pages) and set(browser_check.EXPLORERS) <= set(pages)


def _png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _explorers() -> dict:
    """The three explorers on made-up data: β/τ, λ and a small result grid."""
    from bgad_mini import explorers
    from bgad_mini.config import Config

    rng = np.random.default_rng(0)
    bt = explorers.boundary_explorer(rng.normal(-2, 3, 4000), rng.normal(-15, 4, 300), betas=[0.005, 0.01, 0.05, 0.1],
                                     taus=[0.0, 0.1, 0.2, 0.3], beta=0.01, tau=0.1)
    x = np.linspace(-0.6, -0.2, 41)
    lam = explorers.lambda_explorer(lambda v: (x, 1 - x + v * np.maximum(-0.4 - x, 0), v * np.maximum(x + 0.5, 0)),
                                    [0.0, 0.5, 1.0, 2.0], b_n=-0.4, b_a=-0.5)
    rows = [{"method": m, "category": c, "known_types": "missing", "seed": s, "setting": "one-class", "beta": 0.01,
             "tau": t, "lambda": 1.0, "n_known": 10, "boundary": "batch", "focal": True, "push": "bce",
             **{f"{g}_{k}": 0.6 + 0.1 * (g == "seen") + 0.05 * (m == "bgad") - 0.2 * t + 0.01 * s
                for g in ("seen", "unseen") for k in ("pro", "pixel_auroc", "image_auroc")}}
            for m in ("nf", "bgad") for c in ("brick", "grass") for s in (0, 1) for t in (0.1, 0.2)
            if m == "bgad" or t == 0.1]
    grid = explorers.grid_explorer(rows, Config.from_profile("smoke", n_known=10), ["nf", "bgad"])
    return {"book/boundary": bt, "book/bgspp": lam, "book/ablations": grid}


def _site(root: Path, intro_extra: str = "", explorers: dict | None = None) -> Path:
    """index, intro (an image, a link) and one page per explorer, plotly.js in _static/ as the book vendors it."""
    from bgad_mini.explorers import plotlyjs_path

    html = root / "html"
    (html / "book").mkdir(parents=True)
    (html / "_static").mkdir()
    shutil.copy(plotlyjs_path(), html / "_static" / "plotly.min.js")
    (html / "index.html").write_text("<html><body>index</body></html>")
    (html / "book" / "fig.png").write_bytes(_png())
    (html / "book" / "intro.html").write_text(
        f'<html><head><title>Intro</title><meta name="viewport" content="width=device-width, initial-scale=1">'
        f'</head><body><main><p>Intro</p><figure><img src="fig.png"><figcaption>Fig. 1 a figure'
        f'</figcaption></figure><a href="boundary.html">next</a>{intro_extra}</main></body></html>')
    pages = _explorers() if explorers is None else explorers
    for page, explorer in pages.items():
        body = explorer if isinstance(explorer, str) else explorer.html(include_plotlyjs=False)
        body = f"<figure>{body}<figcaption>Fig. 2 an explorer</figcaption></figure>"
        head = "" if "<script src=" in body else '<script src="../_static/plotly.min.js"></script>'
        (html / f"{page}.html").write_text(f"<html><head><title>{page}</title>{head}</head><body><main>{body}</main>"
                                           f"</body></html>")
    toc = root / "_toc.yml"
    toc.write_text("format: jb-book\nroot: book/intro\nchapters:\n" + "".join(f"  - file: {p}\n" for p in pages))
    return html


def _check(tmp_path: Path, html: Path) -> tuple[int, dict]:
    out = tmp_path / "browser"
    code = browser_check.main(["--html", str(html), "--toc", str(tmp_path / "_toc.yml"), "--out", str(out)])
    return code, json.loads((out / "report.json").read_text())


@needs_browser
def test_a_good_site_passes_and_every_explorer_responds(tmp_path):
    code, report = _check(tmp_path, _site(tmp_path))
    assert code == 0, report["problems"]
    assert report["network"]["external_blocked"] and report["network"]["local_loads"]
    bt, lam, grid = report["explorers"]
    assert [x["id"] for x in report["explorers"]] == ["bt-explorer", "lambda-explorer", "grid-explorer"]
    beta, tau = bt["moves"]
    assert (beta["from"], beta["to"], tau["from"], tau["to"]) == (1, 3, 1, 3)  # β 0.01 → 0.1, τ 0.1 → 0.3
    assert "β = 0.01, τ = 0.1" in beta["title_before"] and "β = 0.1, τ = 0.1" in beta["title_after"]
    assert beta["shapes_after"][1] != beta["shapes_before"][1] and tau["shapes_after"][1] == tau["shapes_before"][1]
    assert tau["shapes_after"][2] != tau["shapes_before"][2] and "τ = 0.3" in tau["title_after"]
    assert [m["control"] for m in lam["moves"]] == ["slider 0"] and lam["moves"][0]["chart_changed"]
    assert [m["control"] for m in grid["moves"]] == ["menu 0", "menu 1", "menu 2"]
    assert all(m["chart_changed"] and m["to"] == 1 for m in grid["moves"])
    for shot in ("boundary.png", "bt-explorer.png", "lambda-explorer.png", "grid-explorer.png", "ablations.png"):
        data = (tmp_path / "browser" / shot).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, shot
    assert report["pages"][0]["images"] == 1
    intro = report["reading"][0]
    assert intro["figures"] == 1 and intro["figures_uncaptioned"] == [] and not intro["problems"]
    assert intro["screenshots"] == ["pages/intro-1280.jpg", "pages/intro-390.jpg"]
    for shot in intro["screenshots"]:
        assert (tmp_path / "browser" / shot).read_bytes()[:2] == b"\xff\xd8"  # JPEG


@needs_browser
def test_errors_missing_images_broken_links_and_dead_explorers_fail(tmp_path):
    from bgad_mini.explorers import Explorer

    bad = ('<img src="missing.png"><a href="nowhere.html">x</a><span class="math">\\(b_n\\)</span>'
           '<script>document.title; undefined_function_of_the_book();</script>'
           '<img src="fig.png" width="120" height="60"><div class="wide" style="width:900px">a wide box</div>'
           '<pre style="width:900px">code may scroll</pre>')
    good = _explorers()
    dead = Explorer(good["book/boundary"].figure, "bt-explorer")  # the sliders move, the script that redraws is gone
    cdn = ('<script src="https://cdn.plot.ly/plotly-2.35.2.min.js"></script>'
           + good["book/bgspp"].html(include_plotlyjs=False))  # plotly.js from the network: blocked
    code, report = _check(tmp_path, _site(tmp_path, intro_extra=bad, explorers={
        "book/boundary": dead, "book/bgspp": cdn, "book/ablations": "<p>no explorer here</p>"}))
    assert code == 1
    text = "\n".join(report["problems"])
    assert "undefined_function_of_the_book" in text
    assert "image not loaded" in text and "missing.png" in text
    assert "broken link" in text and "nowhere.html" in text
    assert "1 of 1 equations not typeset by MathJax" in text  # a page with math but no MathJax
    assert "moving β did not move b_n" in text and "moving the τ slider did not move b_a" in text
    assert "#bt-explorer: moving slider 0 did not change the chart" in text
    assert "book/bgspp: #lambda-explorer was not drawn (window.Plotly is undefined" in text
    assert "book/ablations: no explorer #grid-explorer" in text
    assert "https://cdn.plot.ly/plotly-2.35.2.min.js" in report["external_not_loaded"]
    assert "book/intro: figure without a caption: fig.png" in text  # the second image, outside a <figure>
    assert "book/intro: scrolls sideways at 390 px" in text and "div.wide" in text and "pre" not in \
        text.split("scrolls sideways")[1].split("\n")[0]


def test_missing_browser_or_book_is_a_one_line_error(tmp_path, capsys):
    code = browser_check.main(["--html", str(tmp_path / "none"), "--out", str(tmp_path / "o")])
    assert code == 2 and "no rendered book" in capsys.readouterr().err
    (tmp_path / "h").mkdir()
    (tmp_path / "h" / "index.html").write_text("x")
    code = browser_check.main(["--html", str(tmp_path / "h"), "--chromium", str(tmp_path / "no-chromium")])
    assert code == 2 and "apt-get install chromium" in capsys.readouterr().err
