"""Open every page of the rendered book in headless Chromium and check it as a reader would see it, offline.

    python tests/browser_check.py [--html _build/html] [--out _build/browser]

The browser reaches only the local server on 127.0.0.1: every other address goes to a dead proxy and resolves to
nothing, so anything fetched from a CDN fails here (`network` in the report says so). For every page in `_toc.yml`:
no JavaScript error (uncaught exceptions and console errors), every <img> loaded, every internal link resolves,
every equation is typeset by MathJax (vendored in `_vendor/mathjax`), no unrendered `{glue...}` role, no
traceback. Each kernel-free explorer (`EXPLORERS`: Plotly figures, plotly.js vendored into `_static/`) must be
drawn, and every slider and dropdown must change the chart when the mouse moves it (the graph div's data and
layout are read before and after); on the β/τ explorer moving β moves b_n and the counts, moving τ moves only
b_a. Writes `<out>/report.json`, a screenshot of each explorer with its caption (`<id>.png`) and of each
explorer's page.
External resources are listed in the report, not counted as failures; everything the book ships must load.
Exit code 1 with one line per problem.

Needs Debian's `chromium` and `chromium-driver` (`/usr/bin/chromium`, `/usr/bin/chromedriver`) and `selenium`.
"""
from __future__ import annotations

import argparse
import functools
import http.server
import json
import re
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urljoin, urlparse

ROOT = Path(__file__).resolve().parents[1]
#: The kernel-free explorers: page -> ids of their wrapping <div> (the Plotly div inside has class plotly-graph-div).
EXPLORERS = {"book/boundary": ("bt-explorer",), "book/bgspp": ("lambda-explorer",),
             "book/ablations": ("grid-explorer",)}
#: A URL that only the network could serve: fetching it must fail in the check's browser.
EXTERNAL_PROBE = "https://cdn.plot.ly/plotly-2.35.2.min.js"
#: Records every uncaught error and console.error from the first line of each page on.
ERROR_HOOK = """
window.__bookErrors = [];
window.addEventListener('error', function (e) {
  if (e.target && e.target !== window) { return; }  // failed resource loads are checked separately
  window.__bookErrors.push('uncaught: ' + e.message + ' at ' + e.filename + ':' + e.lineno);
}, true);
window.addEventListener('unhandledrejection', function (e) {
  window.__bookErrors.push('unhandled rejection: ' + (e.reason && e.reason.message || e.reason));
});
var _err = console.error;
console.error = function () {
  window.__bookErrors.push('console.error: ' + Array.prototype.join.call(arguments, ' '));
  return _err.apply(console, arguments);
};
"""


def toc_pages(toc_path: Path) -> list[str]:
    """Every `file:` (and the root) of _toc.yml, in order, without extension."""
    import yaml

    toc = yaml.safe_load(toc_path.read_text())
    pages = [toc["root"]]

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                pages.append(node["file"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(toc.get("parts", toc.get("chapters", [])))
    return [re.sub(r"\.(md|ipynb)$", "", p) for p in pages]


class _QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        pass  # a browser that cancels a download (broken pipe) is not a problem of the book


def serve(directory: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = _QuietServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def make_driver(chromium: str, chromedriver: str):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-extensions", "--disable-component-update",
                 "--no-first-run", "--window-size=1280,1000", "--hide-scrollbars",
                 # the network is blocked: all but loopback goes to a dead proxy, and no host name resolves
                 "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=127.0.0.1",
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=opts)
    driver.set_page_load_timeout(60)
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": ERROR_HOOK})
    return driver


def _external(url: str, base: str) -> bool:
    return bool(url) and not url.startswith(base) and urlparse(url).scheme in ("http", "https")


def check_page(driver, base: str, page: str) -> dict:
    """Load one page; return its record: errors (failures), external (offline misses), counts."""
    url = urljoin(base, page + ".html")
    t0 = time.perf_counter()
    driver.get(url)
    for _ in range(100):
        if driver.execute_script("return document.readyState") == "complete":
            break
        time.sleep(0.1)
    time.sleep(0.3)  # let deferred scripts run
    errors: list[str] = []
    external: list[str] = []
    if driver.title.startswith("404") or "Error response" in driver.title:
        errors.append(f"page not found: {url}")
    for msg in driver.execute_script("return window.__bookErrors || []"):
        errors.append(msg)
    for entry in driver.get_log("browser"):
        if entry.get("level") != "SEVERE":
            continue
        text = entry.get("message", "")
        src = text.split(" ", 1)[0]
        if _external(src, base) and ("Failed to load resource" in text or "net::ERR" in text):
            external.append(src)
        elif "Failed to load resource" in text:
            if not src.endswith("/favicon.ico"):  # the browser asks for it on its own; the book has none
                errors.append(f"resource failed: {text}")
        elif src != "console-api" and "Uncaught" not in text:  # those the error hook has already recorded
            errors.append(f"console: {text}")
    images = driver.execute_script(
        "return Array.from(document.images).map(i => [i.currentSrc || i.src, i.complete && i.naturalWidth > 0])")
    for src, ok in images:
        if not ok:
            (external if _external(src, base) else errors).append(f"image not loaded: {src}")
    links = driver.execute_script(
        "return Array.from(document.querySelectorAll('a[href]')).map(a => a.href)")
    internal = sorted({l.split("#")[0] for l in links if l.startswith(base) and l.split("#")[0]})
    for link in internal:
        try:
            urllib.request.urlopen(link, timeout=10).close()
        except (urllib.error.URLError, OSError) as exc:
            errors.append(f"broken link: {link} ({exc})")
    n_math = driver.execute_script("return document.querySelectorAll('.math').length")
    n_rendered = 0
    for _ in range(50):  # MathJax typesets after the page has loaded
        n_rendered = driver.execute_script("return document.querySelectorAll('mjx-container').length")
        if not n_math or n_rendered >= n_math:
            break
        time.sleep(0.1)
    if n_math and n_rendered < n_math:
        errors.append(f"{n_math - n_rendered} of {n_math} equations not typeset by MathJax")
    body = driver.find_element("tag name", "main").text if driver.find_elements("tag name", "main") else ""
    for raw in re.findall(r"\{glue:?[a-z]*\}`[^`]*`", body)[:3]:
        errors.append(f"unrendered glue role: {raw}")
    if re.search(r"^Traceback \(most recent call last\)", body, re.M):
        errors.append("a Python traceback is shown on the page")
    weight = driver.execute_script(  # what the page made the browser load (uncompressed: the test server)
        "return performance.getEntriesByType('navigation').concat(performance.getEntriesByType('resource'))"
        ".reduce(function (n, e) { return n + (e.decodedBodySize || 0); }, 0)")
    return {"page": page, "url": url, "seconds": round(time.perf_counter() - t0, 2), "errors": errors,
            "kilobytes": round(weight / 1024),
            "external_not_loaded": sorted(set(external)), "images": len(images), "internal_links": len(internal),
            "equations": n_math, "equations_typeset": n_rendered,
            "svg": driver.execute_script("return document.querySelectorAll('svg').length")}


#: Reader widths: a laptop and a phone (CSS pixels).
WIDTHS = (1280, 390)
#: Where content may scroll sideways on a phone (code, tables, display math, explorers scroll inside their box).
SCROLL_OK = "pre, table, .highlight, .cell_input, mjx-container, .MathJax, .plotly-graph-div, .bd-sidebar-primary"
#: Figures without a caption (images and Plotly charts in the page body outside a <figure> with a <figcaption>).
UNCAPTIONED = """
const main = document.querySelector('main') || document.body;
const items = [...main.querySelectorAll('img, .plotly-graph-div')].filter(e => {
  if (e.closest('.admonition, .sd-card, .navbar, header, footer')) return false;
  const r = e.getBoundingClientRect(); return r.width > 40 && r.height > 40;  // icons and hidden copies
});
return items.filter(e => { const f = e.closest('figure'); const c = f && f.querySelector('figcaption');
  return !(c && c.innerText.trim().length > 0); })
  .map(e => (e.currentSrc || e.src || e.id || e.className).toString().split('/').pop().slice(0, 80));
"""
#: Elements that stick out to the right of a phone's screen, outside the places allowed to scroll.
OVERFLOW = r"""
const w = document.documentElement.clientWidth, ok = arguments[0];
const out = [];
for (const e of document.querySelectorAll('main *')) {
  if (e.closest(ok)) continue;
  const r = e.getBoundingClientRect();
  if (r.width > 0 && r.right > w + 2 && getComputedStyle(e).position !== 'fixed') {
    out.push(e.tagName.toLowerCase() + (e.className && typeof e.className === 'string' ?
      '.' + e.className.trim().split(/\s+/).slice(0, 2).join('.') : '') + ' (right edge ' + Math.round(r.right) + ')');
  }
}
return {scroll: document.documentElement.scrollWidth, client: w, elements: [...new Set(out)].slice(0, 5)};
"""


def _full_page_png(driver, path: Path) -> None:
    """A screenshot of the whole page, not only the window (JPEG: chapters are tens of thousands of pixels tall)."""
    import base64

    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "jpeg", "quality": 60, "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 60000), "scale": 1}})
    path.write_bytes(base64.b64decode(shot["data"]))


def check_reading(driver, base: str, page: str, out: Path) -> dict:
    """The page as a reader sees it at each of `WIDTHS`: a full-page screenshot (`<out>/pages/<page>-<w>.jpg`),
    every figure captioned (at 1280), and nothing wider than a phone's screen outside code, tables and math (at
    390)."""
    folder = out / "pages"
    folder.mkdir(parents=True, exist_ok=True)
    record: dict = {"page": page, "problems": [], "screenshots": []}
    for width in WIDTHS:
        driver.set_window_size(width, 1000 if width > 600 else 844)
        driver.get(urljoin(base, page + ".html"))
        _wait_for(driver, lambda: driver.execute_script("return document.readyState") == "complete")
        time.sleep(0.4)  # MathJax and the explorers lay out after the load event
        name = f"{page.split('/')[-1]}-{width}.jpg"
        _full_page_png(driver, folder / name)
        record["screenshots"].append(f"pages/{name}")
        if width > 600:
            missing = driver.execute_script(UNCAPTIONED)
            record["figures_uncaptioned"] = missing
            record["figures"] = driver.execute_script(
                "return (document.querySelector('main') || document.body).querySelectorAll('figure').length")
            record["problems"] += [f"figure without a caption: {m}" for m in missing]
        else:
            over = driver.execute_script(OVERFLOW, SCROLL_OK)
            record["phone"] = over
            if over["scroll"] > over["client"] + 2:
                record["problems"].append(f"scrolls sideways at {width} px ({over['scroll']} > {over['client']}): "
                                          + ", ".join(over["elements"]))
    driver.set_window_size(1280, 1000)
    return record


def network_probe(driver, base: str) -> dict:
    """Fetch the local index and an external URL from the page: the first must load, the second must fail."""
    driver.get(base)
    script = """
    var done = arguments[arguments.length - 1];
    function get(url) { return fetch(url, {mode: 'no-cors', cache: 'no-store'}).then(function () { return true; },
                                                                                  function () { return false; }); }
    Promise.all([get(arguments[0]), get(arguments[1])]).then(done);
    """
    driver.set_script_timeout(30)
    local_ok, external_ok = driver.execute_async_script(script, base, EXTERNAL_PROBE)
    driver.get_log("browser")  # the failed probe's console line is not a problem of the first page
    return {"local_loads": local_ok, "external_blocked": not external_ok, "probe": EXTERNAL_PROBE}


#: What a reader sees of one Plotly figure: its traces, lines, labels, title and where its controls stand.
PLOT_STATE = """
var gd = document.querySelector('#' + arguments[0] + ' .plotly-graph-div');
if (!window.Plotly || !gd || !gd._fullLayout) { return null; }
var L = gd.layout;
function active(list) { return (list || []).map(function (c) { return c.active || 0; }); }
return {figure: JSON.stringify([gd.data.map(function (t) { return [t.x, t.y, t.marker && t.marker.color]; }),
                                L.shapes, L.annotations, L.title, L.yaxis && L.yaxis.range]),
        title: (L.title && L.title.text) || '', shapes: (L.shapes || []).map(function (s) { return s.x0; }),
        sliders: active(L.sliders), menus: active(L.updatemenus),
        steps: (L.sliders || []).map(function (c) { return c.steps.length; }),
        buttons: (L.updatemenus || []).map(function (c) { return c.buttons.length; })};
"""


def _wait_for(driver, fn, seconds: float = 10.0):
    value = None
    for _ in range(int(seconds / 0.1)):
        value = fn()
        if value:
            return value
        time.sleep(0.1)
    return value


def _click_slider(driver, box_id: str, k: int, step: int) -> None:
    """Click slider k's rail at step `step` (the label's position), as a reader does with the mouse."""
    from selenium.webdriver.common.action_chains import ActionChains

    group = driver.find_elements("css selector", f"#{box_id} .slider-group")[k]
    rail = group.find_element("css selector", ".slider-rail-touch-rect")
    dx = driver.execute_script("""
        var r = arguments[0].getBoundingClientRect(), l = arguments[1].querySelectorAll('.slider-label-group');
        var t = l[arguments[2]].getBoundingClientRect(); return (t.x + t.width / 2) - (r.x + r.width / 2);""",
                               rail, group, step)
    ActionChains(driver).move_to_element_with_offset(rail, int(round(dx)), 0).click().perform()


def _click_menu(driver, box_id: str, k: int, button: int) -> None:
    """Open dropdown k and click its button `button`."""
    header = driver.find_elements("css selector", f"#{box_id} .updatemenu-header-group")[k]
    header.click()
    buttons = _wait_for(driver, lambda: driver.find_elements(
        "css selector", f"#{box_id} .updatemenu-dropdown-button-group .updatemenu-dropdown-button"), 3)
    buttons[button].click()


def check_explorer(driver, box_id: str, out: Path) -> dict:
    """Move every slider and dropdown of the explorer #box_id on the loaded page; the chart must change each time.
    On the β/τ explorer (#bt-explorer) β must move b_n and the counts, τ only b_a."""
    problems: list[str] = []
    if not driver.find_elements("id", box_id):
        return {"id": box_id, "problems": [f"no explorer #{box_id}"]}
    box = driver.find_element("id", box_id)
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", box)
    start = _wait_for(driver, lambda: driver.execute_script(PLOT_STATE, box_id))
    if not start:
        plotly = driver.execute_script("return typeof window.Plotly")
        return {"id": box_id, "problems": [f"#{box_id} was not drawn (window.Plotly is {plotly}: plotly.js must load "
                                           f"from the book's _static/, not from the network)"]}
    time.sleep(0.3)
    framed = driver.execute_script("var f = arguments[0].closest('figure') || arguments[0];"  # with its caption
                                   "f.scrollIntoView({block: 'center'}); return f", box)
    time.sleep(0.2)
    framed.screenshot(str(out / f"{box_id}.png"))
    moves = []
    controls = [("slider", k, n) for k, n in enumerate(start["steps"])] + \
               [("menu", k, n) for k, n in enumerate(start["buttons"])]
    if not controls:
        problems.append(f"#{box_id} has no slider or dropdown")
    for kind, k, n in controls:
        before = driver.execute_script(PLOT_STATE, box_id)
        now = before["sliders" if kind == "slider" else "menus"][k]
        target = (now + 2 if now + 2 < n else max(now - 2, 0)) if kind == "slider" else (now + 1) % n
        if target == now:
            target = (now + 1) % n
        try:
            (_click_slider if kind == "slider" else _click_menu)(driver, box_id, k, target)
        except Exception as exc:  # a control that is missing or cannot be clicked
            problems.append(f"#{box_id}: could not move {kind} {k}: {type(exc).__name__}: {str(exc)[:120]}")
            continue
        after = _wait_for(driver, lambda: (lambda s: s if s["figure"] != before["figure"] else None)(
            driver.execute_script(PLOT_STATE, box_id)), 3) or driver.execute_script(PLOT_STATE, box_id)
        moved = after["sliders" if kind == "slider" else "menus"][k]
        moves.append({"control": f"{kind} {k}", "from": now, "to": moved, "title_before": before["title"],
                      "title_after": after["title"], "shapes_before": before["shapes"],
                      "shapes_after": after["shapes"], "chart_changed": after["figure"] != before["figure"]})
        if moved != target:
            problems.append(f"#{box_id}: {kind} {k} did not move to step {target} when clicked (at {moved})")
        elif after["figure"] == before["figure"]:
            problems.append(f"#{box_id}: moving {kind} {k} did not change the chart")
    if box_id == "bt-explorer" and len(moves) == 2:
        beta, tau = moves
        if beta["shapes_after"][1:2] == beta["shapes_before"][1:2] or beta["title_after"] == beta["title_before"]:
            problems.append("moving β did not move b_n or change the counts")
        if tau["shapes_after"][2:3] == tau["shapes_before"][2:3]:
            problems.append("moving the τ slider did not move b_a")
        if tau["shapes_after"][1:2] != tau["shapes_before"][1:2]:
            problems.append("moving τ moved b_n (it must move only b_a = b_n − τ)")
    return {"id": box_id, "problems": problems, "start": {k: start[k] for k in ("title", "sliders", "menus")},
            "moves": moves, "screenshot": f"{box_id}.png"}


def check_explorers(driver, base: str, out: Path, pages: list[str]) -> list[dict]:
    """Every explorer of `EXPLORERS` on the pages of the book; a screenshot of each page that has one."""
    results = []
    for page in [p for p in pages if p in EXPLORERS]:
        driver.get(urljoin(base, page + ".html"))
        time.sleep(0.5)
        for box_id in EXPLORERS[page]:
            results.append({"page": page, **check_explorer(driver, box_id, out)})
        height = driver.execute_script("return document.body.scrollHeight")
        driver.set_window_size(1280, min(int(height) + 100, 16000))
        time.sleep(0.3)
        driver.save_screenshot(str(out / f"{page.rsplit('/', 1)[-1]}.png"))
        driver.set_window_size(1280, 1000)
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--html", default=str(ROOT / "_build" / "html"))
    ap.add_argument("--toc", default=str(ROOT / "_toc.yml"))
    ap.add_argument("--out", default=str(ROOT / "_build" / "browser"))
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--chromedriver", default="/usr/bin/chromedriver")
    args = ap.parse_args(argv)
    html, out = Path(args.html), Path(args.out)
    for what, path, fix in (("rendered book", html / "index.html", "build it first: make book"),
                            ("chromium", Path(args.chromium), "apt-get install chromium chromium-driver"),
                            ("chromedriver", Path(args.chromedriver), "apt-get install chromium-driver")):
        if not path.exists():
            print(f"browser check: no {what} at {path}; {fix}", file=sys.stderr)
            return 2
    try:
        import selenium  # noqa: F401
    except ImportError:
        print("browser check: selenium is not installed; pip install -e '.[test]'", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    server, base = serve(html)
    driver = make_driver(args.chromium, args.chromedriver)
    t0 = time.perf_counter()
    try:
        network = network_probe(driver, base)
        toc = toc_pages(Path(args.toc))
        pages = [check_page(driver, base, p) for p in toc]
        explorers = check_explorers(driver, base, out, toc)
        reading = [check_reading(driver, base, p, out) for p in toc]
    finally:
        driver.quit()
        server.shutdown()
    problems = [f"{p['page']}: {e}" for p in pages for e in p["errors"]]
    problems += [f"{x['page']}: {e}" for x in explorers for e in x["problems"]]
    problems += [f"{r['page']}: {e}" for r in reading for e in r["problems"]]
    if not network["external_blocked"] or not network["local_loads"]:
        problems.append(f"the network was not blocked as the check needs it: {network}")
    report = {"network": network, "pages": pages, "explorers": explorers, "reading": reading, "problems": problems,
              "external_not_loaded": sorted({u for p in pages for u in p["external_not_loaded"]}),
              "seconds": round(time.perf_counter() - t0, 1),
              "browser": driver.capabilities.get("browserVersion")}
    (out / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    n_img = sum(p["images"] for p in pages)
    responding = sum(not x["problems"] for x in explorers)
    n_fig = sum(r.get("figures", 0) for r in reading)
    print(f"browser check (network blocked but 127.0.0.1): {len(pages)} pages, {n_img} images, {n_fig} figures, "
          f"{responding} of {len(explorers)} explorers respond, screenshots at {' and '.join(map(str, WIDTHS))} px, "
          f"{len(problems)} problems "
          f"({report['seconds']} s, Chromium {report['browser']}); report: {out / 'report.json'}")
    if report["external_not_loaded"]:
        print(f"  not loaded (external, offline): {', '.join(report['external_not_loaded'])}")
    for p in problems:
        print(f"  problem: {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
