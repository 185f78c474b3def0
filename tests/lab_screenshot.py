"""The ablation lab in a real JupyterLab, driven as a reader would: open a notebook that shows the panel, run it,
click **Run**, wait for the grid to finish, and keep screenshots and what the panel said.

    python tests/lab_screenshot.py --out _build/browser      # lab_panel_before.png, lab_panel.png, lab.json

JupyterLab (`jupyterlab`, the `test` extra) serves a temporary folder on 127.0.0.1 with no token; the kernel is this
interpreter's. The notebook builds `bgad_mini.lab.Lab` on the smoke dataset (made in the folder when missing):
NF and BGAD, seeds 0 and 1, BGAD also at τ = 0 (6 runs, under a minute on 2 cores). Exit code 1 when the panel
does not end with a table of the six runs.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from browser_check import make_driver  # noqa: E402

NOTEBOOK_CELLS = [
    "from bgad_mini import synthetic\n"
    "from bgad_mini.config import Config\n"
    "from bgad_mini.lab import Lab\n\n"
    "synthetic.ensure('data/synthetic_smoke', 'smoke')\n"
    "base = Config.from_profile('smoke', category='brick', setting='one-class', known_types=('missing',))\n"
    "lab = Lab(base, runs_root='runs', poll=0.5)\n"
    "lab.seeds.value = '0, 1'\n"
    "lab.axes['tau'].value = '0.0'\n"
    "lab.panel",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_notebook(folder: Path) -> Path:
    cells = [{"cell_type": "code", "execution_count": None, "id": f"lab-{i}", "metadata": {}, "outputs": [],
              "source": src} for i, src in enumerate(NOTEBOOK_CELLS)]
    nb = {"cells": cells, "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                      "language": "python"}}, "nbformat": 4, "nbformat_minor": 5}
    path = folder / "lab.ipynb"
    path.write_text(json.dumps(nb))
    return path


def start_lab(folder: Path, port: int) -> subprocess.Popen:
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(folder / ".jupyter"), JUPYTER_RUNTIME_DIR=str(folder / ".rt"),
               OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
           "--IdentityProvider.token=", "--ServerApp.password=", f"--ServerApp.root_dir={folder}",
           "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=", "--ServerApp.disable_check_xsrf=True",
           "--allow-root"]
    labconfig = folder / ".jupyter" / "labconfig"
    labconfig.mkdir(parents=True, exist_ok=True)  # no "get notified about Jupyter news?" toast over the panel
    (labconfig / "page_config.json").write_text(json.dumps(
        {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}))
    log = open(folder / "jupyterlab.log", "w")
    return subprocess.Popen(cmd, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def wait_for(predicate, timeout: float, what: str, step: float = 0.5):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def panel_state(driver) -> dict:
    """The panel's texts and buttons, read from the page."""
    return driver.execute_script("""
        const panel = document.querySelector('.jp-OutputArea-output .widget-vbox');
        if (!panel) return null;
        const buttons = {};
        panel.querySelectorAll('button.jupyter-button').forEach(b => {
            const t = b.textContent.trim(); if (t) buttons[t] = !b.disabled; });
        const html = [...panel.querySelectorAll('.widget-html-content')].map(e => e.innerText.trim())
            .filter(t => t);
        const table = panel.querySelector('table.bgad-lab');
        const img = [...panel.querySelectorAll('img')].find(i => i.naturalWidth > 0);
        return {buttons: buttons, texts: html, table_rows: table ? table.querySelectorAll('tr').length - 1 : 0,
                table: table ? table.innerText : '', figure: !!img};
    """)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("_build/browser"))
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--chromedriver", default="/usr/bin/chromedriver")
    ap.add_argument("--timeout", type=float, default=600)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="bgad-lab-"))
    write_notebook(folder)
    port = _free_port()
    server = start_lab(folder, port)
    driver = None
    report: dict = {"steps": []}
    t0 = time.monotonic()
    try:
        driver = make_driver(args.chromium, args.chromedriver)
        driver.set_window_size(1280, 2200)
        url = f"http://127.0.0.1:{port}/lab/tree/lab.ipynb"
        wait_for(lambda: _answers(url), 60, "JupyterLab to answer")
        driver.get(url)
        wait_for(lambda: driver.execute_script(
            "return !!(window.jupyterapp && document.querySelector('.jp-Notebook .jp-Cell'))"), 90,
            "the notebook to open")
        wait_for(lambda: driver.execute_script(
            "const w = window.jupyterapp.shell.currentWidget;"
            "return !!(w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel"
            " && w.sessionContext.session.kernel.status === 'idle')"), 120, "the kernel to start")
        driver.execute_script("window.jupyterapp.commands.execute('notebook:run-all-cells')")
        report["steps"].append("opened lab.ipynb in JupyterLab and ran its cell")
        state = wait_for(lambda: (s := panel_state(driver)) and s["buttons"].get("Run") and s, 180,
                         "the panel with an enabled Run button")
        report["before"] = state
        panel = driver.find_element("css selector", ".jp-OutputArea-output .widget-vbox")
        panel.screenshot(str(args.out / "lab_panel_before.png"))
        run = [b for b in panel.find_elements("css selector", "button.jupyter-button") if b.text.strip() == "Run"][0]
        run.click()
        report["steps"].append("clicked Run")
        running = wait_for(lambda: (s := panel_state(driver)) and not s["buttons"].get("Run", True) and s, 30,
                           "the grid to start (Run disabled)", step=0.2)
        report["running"] = running
        time.sleep(3)
        panel.screenshot(str(args.out / "lab_panel_running.png"))
        report["running_later"] = panel_state(driver)
        final = wait_for(lambda: (s := panel_state(driver)) and s["buttons"].get("Run") and s["table_rows"] >= 3
                         and s, args.timeout, "the grid to finish (Run enabled again, the table filled)")
        time.sleep(1.5)  # the last figure refresh
        final = panel_state(driver)
        report["after"] = final
        panel.screenshot(str(args.out / "lab_panel.png"))
        report["steps"].append("waited for the grid to finish; screenshots lab_panel_before/running/.png")
        ok = final["table_rows"] >= 3 and final["figure"] and any("6 runs: 6 finished" in t for t in final["texts"])
        report["ok"] = bool(ok)
    except Exception as exc:  # noqa: BLE001 - reported in the JSON and the exit code
        report["ok"] = False
        report["error"] = f"{type(exc).__name__}: {exc}"
        if driver is not None:
            driver.save_screenshot(str(args.out / "lab_failure.png"))
    finally:
        report["seconds"] = round(time.monotonic() - t0, 1)
        if driver is not None:
            driver.quit()
        os.killpg(server.pid, 15)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, 9)
        (args.out / "lab.json").write_text(json.dumps(report, indent=2))
    print(f"lab check: {'ok' if report['ok'] else 'FAILED'} in {report['seconds']} s "
          f"({report.get('error', 'table rows: ' + str(report.get('after', {}).get('table_rows')))}); "
          f"{args.out / 'lab.json'}")
    return 0 if report["ok"] else 1


def _answers(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status == 200
    except OSError:
        return False


if __name__ == "__main__":
    raise SystemExit(main())
