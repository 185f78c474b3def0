"""Open every page of the rendered book in headless Chromium and check it as a reader would see it.

    python tests/browser_check.py [--html _build/html] [--out _build/browser]

For every page in `_toc.yml`: no JavaScript error (uncaught exceptions and console errors), every <img> loaded,
every internal link resolves, every equation is typeset by MathJax (vendored in `_vendor/mathjax`, so this holds
offline), no unrendered `{glue...}` role. On the Boundary chapter the static β/τ explorer must
respond to the keyboard: moving β moves b_n and changes the counts, moving τ moves only b_a. Writes
`<out>/report.json` and screenshots of the Boundary chapter (`boundary.png`, `boundary_explorer.png`).
External resources that an offline machine cannot fetch are listed in the report, not counted as failures;
everything the book ships must load. Exit code 1 with one line per problem.

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
EXPLORER_PAGE = "book/boundary"
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
                 "--no-first-run", "--window-size=1280,1000", "--hide-scrollbars"):
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
    return {"page": page, "url": url, "seconds": round(time.perf_counter() - t0, 2), "errors": errors,
            "external_not_loaded": sorted(set(external)), "images": len(images), "internal_links": len(internal),
            "equations": n_math, "equations_typeset": n_rendered,
            "svg": driver.execute_script("return document.querySelectorAll('svg').length")}


def check_explorer(driver, base: str, out: Path) -> dict:
    """Move the β and τ sliders of the static explorer with the keyboard; the lines and counts must follow."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver.get(urljoin(base, EXPLORER_PAGE + ".html"))
    time.sleep(0.5)
    problems: list[str] = []
    if not driver.find_elements(By.ID, "bt-explorer"):
        return {"problems": [f"no β/τ explorer (#bt-explorer) on {EXPLORER_PAGE}"]}
    box = driver.find_element(By.ID, "bt-explorer")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", box)

    def state() -> dict:
        return {"counts": driver.find_element(By.ID, "bt-counts").text,
                "b_n": driver.find_element(By.ID, "bt-bn").get_attribute("x1"),
                "b_a": driver.find_element(By.ID, "bt-ba").get_attribute("x1"),
                "beta": driver.find_element(By.ID, "bt-beta-value").text,
                "tau": driver.find_element(By.ID, "bt-tau-value").text}

    def move(slider_id: str, key: str, times: int = 2) -> None:
        slider = driver.find_element(By.ID, slider_id)
        slider.click()
        for _ in range(times):
            slider.send_keys(key)
        time.sleep(0.2)

    start = state()
    beta_slider = driver.find_element(By.ID, "bt-beta")
    at_max = beta_slider.get_attribute("value") == beta_slider.get_attribute("max")
    move("bt-beta", Keys.ARROW_LEFT if at_max else Keys.ARROW_RIGHT)
    after_beta = state()
    if after_beta["beta"] == start["beta"]:
        problems.append("moving the β slider did not change the β readout")
    if after_beta["b_n"] == start["b_n"] or after_beta["counts"] == start["counts"]:
        problems.append("moving β did not move b_n or change the counts")
    tau_slider = driver.find_element(By.ID, "bt-tau")
    at_max = tau_slider.get_attribute("value") == tau_slider.get_attribute("max")
    move("bt-tau", Keys.ARROW_LEFT if at_max else Keys.ARROW_RIGHT)
    after_tau = state()
    if after_tau["b_a"] == after_beta["b_a"] or after_tau["tau"] == after_beta["tau"]:
        problems.append("moving the τ slider did not move b_a")
    if after_tau["b_n"] != after_beta["b_n"]:
        problems.append("moving τ moved b_n (it must move only b_a = b_n − τ)")
    box.screenshot(str(out / "boundary_explorer.png"))
    height = driver.execute_script("return document.body.scrollHeight")
    driver.set_window_size(1280, min(int(height) + 100, 16000))
    time.sleep(0.3)
    driver.save_screenshot(str(out / "boundary.png"))
    driver.set_window_size(1280, 1000)
    return {"problems": problems, "start": start, "after_beta": after_beta, "after_tau": after_tau,
            "screenshots": ["boundary.png", "boundary_explorer.png"]}


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
        pages = [check_page(driver, base, p) for p in toc_pages(Path(args.toc))]
        explorer = check_explorer(driver, base, out)
    finally:
        driver.quit()
        server.shutdown()
    problems = [f"{p['page']}: {e}" for p in pages for e in p["errors"]]
    problems += [f"{EXPLORER_PAGE}: {e}" for e in explorer["problems"]]
    report = {"pages": pages, "explorer": explorer, "problems": problems,
              "external_not_loaded": sorted({u for p in pages for u in p["external_not_loaded"]}),
              "seconds": round(time.perf_counter() - t0, 1),
              "browser": driver.capabilities.get("browserVersion")}
    (out / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    n_img = sum(p["images"] for p in pages)
    print(f"browser check: {len(pages)} pages, {n_img} images, explorer "
          f"{'responds' if not explorer['problems'] else 'FAILS'}, {len(problems)} problems "
          f"({report['seconds']} s, Chromium {report['browser']}); report: {out / 'report.json'}")
    if report["external_not_loaded"]:
        print(f"  not loaded (external, offline): {', '.join(report['external_not_loaded'])}")
    for p in problems:
        print(f"  problem: {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
