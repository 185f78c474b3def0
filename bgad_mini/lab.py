"""The ablation lab: choose a grid of runs, run it without blocking the kernel, read it as it fills in.

    lab = Lab(base, runs_root="runs", results_root="results")  # base: the chapter's Config
    display(lab.panel)                                          # Jupyter, JupyterLab or Colab (ipywidgets)

The form (methods, categories, seen types, seeds, N and values for β, τ, λ and the boundary scope) becomes a
grid of runs, one setting at a time around `base` or as a full product (`form_configs`). The panel says how many
runs that is, how many are finished (in `runs_root`, or in the committed result grid `results_root`: browsing it
needs no training) and about how long the rest takes (`estimate_seconds`). **Run** trains the missing runs in
worker processes (`grid.run_grid`) from a background thread, with an overall bar and one bar per running run
(read from its `run.log`: `log_progress`); **Stop** ends the grid cleanly: finished runs are kept and the
interrupted one resumes from its last epoch next time. The table and the plot refresh as runs finish; a failed run
shows its one-line error. While a grid runs only its monitor thread updates the panel (never the grid's thread),
and drawing is serialised with a lock.

Everything except `Lab` is a plain function, tested without widgets.
"""
from __future__ import annotations

import html
import re
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .config import ALIASES, METHODS, Config
from .errors import BgadError
from .fingerprint import held_data_fingerprints
from .grid import available_cores, axes_configs, dedupe, expand_grid, one_line, plan, run_grid, training_order
from .report import parse_list
from .runs import RUNS, RunFolder, finished, identity, run_key

#: The axes a form can vary (a results.csv column and the text the panel shows), in the panel's order.
AXES = {"beta": "β", "tau": "τ", "lambda": "λ", "n_known": "N", "boundary": "boundary"}
#: Seconds a run takes when no finished run of its profile and method says otherwise (2 CPU cores, one thread).
DEFAULT_SECONDS = {"smoke": 15.0, "book": 120.0, "paper": 3600.0}
#: Columns of the results table: the mean over seeds of these metrics.
TABLE_METRICS = {"image_auroc": "image AUROC", "seen_pro": "seen PRO", "unseen_pro": "unseen PRO",
                 "unseen_pixel_auroc": "unseen pixel AUROC"}


# ----------------------------------------------------------------------------------------------
# The form and the grid it makes
# ----------------------------------------------------------------------------------------------
@dataclass
class Form:
    """What the panel's controls hold. Empty categories / seen types mean the base's."""

    methods: tuple[str, ...] = ("nf", "bgad")
    categories: tuple[str, ...] = ()
    known_types: tuple[str, ...] = ()  # one run per entry: "missing", or "missing+crack" for two seen types
    seeds: tuple[int, ...] = (0,)
    axes: dict[str, tuple] = field(default_factory=dict)  # axis -> values besides the base's
    product: bool = False


def form_configs(form: Form, base: Config, check_data: bool = True) -> list[Config]:
    """The runs of a form: every method × category × seen type × seed at `base`, then each axis's values with
    the rest at `base` (one setting at a time), or the full product of the axes (`form.product`). Methods ignore
    the axes they do not read (NF has no β). Ordered as `grid.training_order` (NF before the methods that reuse
    its phase 1); repeats are kept once."""
    if not form.methods:
        raise BgadError("choose at least one method")
    if not form.seeds:
        raise BgadError("give at least one seed, e.g. 0")
    kw = dict(methods=tuple(form.methods), categories=tuple(form.categories) or (base.category,),
              known_types=list(form.known_types) or [base.known_types], seeds=tuple(form.seeds), base=base,
              check_data=check_data)
    axes = {k: v for k, v in form.axes.items() if v}
    configs = expand_grid(**kw)
    if form.product and axes:
        configs += expand_grid(grid=axes, **kw)
    else:
        methods = kw.pop("methods")
        configs += axes_configs([((), k, v) for k, v in axes.items()], methods, **kw)
    return training_order(dedupe(configs))


# ----------------------------------------------------------------------------------------------
# What is finished, and how long the rest takes
# ----------------------------------------------------------------------------------------------
def plan_lab(configs: Sequence[Config], runs_root: str | Path, results_root: str | Path | None = None
             ) -> list[dict[str, Any]]:
    """`grid.plan` over `runs_root`, then over `results_root` for what is still missing.

    A committed grid (`results_root` with PROVENANCE.json) counts a run as finished when the provenance lists it
    and the current code made it on data with the same fingerprint (the grid may have been made from another data
    folder, e.g. `data/synthetic` where a chapter reads `../data/synthetic`). Any other folder is read as the
    `--out` of a `bgad-mini ablate`: its runs/<key> folders."""
    records = plan(configs, runs_root)
    if not results_root or all(r["status"] is not None for r in records):
        return records
    grid_roots, keys = _published(results_root)
    if grid_roots is None:  # not a published grid: an ablate --out folder
        for rec, other in zip(records, plan(configs, Path(results_root) / RUNS)):
            if rec["status"] is None and other["status"] == "reused":
                rec.update(other, where=str(results_root))
        return records
    for rec in records:
        if rec["status"] is not None:
            continue
        cfg = rec["config"]
        ident = identity(cfg)
        for recorded in grid_roots:
            alt = cfg.with_overrides(data_root=recorded)
            alt_ident = dict(ident, config=alt.identity())  # the data fingerprint is of the files, wherever they are
            key = run_key(alt, alt_ident)
            done = finished(Path(results_root) / RUNS / key, alt, alt_ident) if key in keys else None
            if done is not None:
                rec.update(status="reused", results=done, run_dir=str(Path(results_root) / RUNS / key),
                           where="committed grid")
                break
    return records


def _published(results_root: str | Path) -> tuple[list[str] | None, set[str]]:
    """(the data folders a committed grid was made from, its run keys); ([], set()) for a grid of other code,
    (None, set()) when `results_root` is not a published grid."""
    from . import published

    try:
        prov = published.read_provenance(results_root)
    except (BgadError, OSError):
        return None, set()
    if prov.get("code_fingerprint") != _code():
        return [], set()
    return list(prov.get("data_fingerprints", {})), set(prov.get("run_keys", []))


def _code() -> str:
    from .fingerprint import code_fingerprint

    return code_fingerprint()


def seconds_by_kind(records: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str], float]:
    """Median seconds of the finished runs per (profile, method), from their results' timings."""
    seen: dict[tuple[str, str], list[float]] = {}
    for rec in records:
        res = rec.get("results") or {}
        total = (res.get("timings") or {}).get("total")
        cfg = res.get("config") or {}
        if total and cfg.get("profile") and cfg.get("method"):
            seen.setdefault((cfg["profile"], cfg["method"]), []).append(float(total))
    return {k: statistics.median(v) for k, v in seen.items()}


def estimate_seconds(todo: Sequence[Config], known: Mapping[tuple[str, str], float], jobs: int = 1) -> float:
    """About how long `todo` takes in `jobs` parallel processes: each run as long as the median finished run of
    its profile and method (`seconds_by_kind`), else of its profile, else `DEFAULT_SECONDS`."""
    by_profile: dict[str, list[float]] = {}
    for (profile, _), s in known.items():
        by_profile.setdefault(profile, []).append(s)
    total = 0.0
    for cfg in todo:
        guess = known.get((cfg.profile, cfg.method))
        if guess is None:
            guess = statistics.median(by_profile[cfg.profile]) if cfg.profile in by_profile \
                else DEFAULT_SECONDS.get(cfg.profile, 120.0)
        total += guess
    return total / max(1, min(jobs, len(todo)) if todo else 1)


def duration(seconds: float) -> str:
    """45 s, 3 min, 1.5 h."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def plan_text(records: Sequence[Mapping[str, Any]], seconds: float, jobs: int) -> str:
    """One line: how many runs, how many finished (and where), what is left and about how long it takes."""
    done = [r for r in records if r["status"] == "reused"]
    committed = sum(1 for r in done if r.get("where") == "committed grid")
    left = len(records) - len(done)
    where = f" ({committed} from the committed grid)" if committed else ""
    rest = (f"{left} to train, about {duration(seconds)} in {min(jobs, left)} process"
            f"{'es' if min(jobs, left) > 1 else ''}") if left else "nothing to train"
    return f"{len(records)} runs: {len(done)} finished{where}, {rest}"


_TQDM = re.compile(r"(?P<desc>[^\r\n|]*?):?\s*(?P<pct>\d+)%\|[^|]*\|\s*(?P<n>\d+)/(?P<total>\d+)")


def log_progress(text: str) -> tuple[str, int, int] | None:
    """The last progress bar state in a run's log: (description, n, total), e.g. ("train", 5, 12)."""
    last = None
    for m in _TQDM.finditer(text):
        last = m
    if last is None:
        return None
    return last.group("desc").strip() or "progress", int(last.group("n")), int(last.group("total"))


def _tail(path: Path, size: int = 4096) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(0, fh.tell() - size))
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return ""


# ----------------------------------------------------------------------------------------------
# Results: a table and a figure
# ----------------------------------------------------------------------------------------------
def result_rows(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """summary rows (mean ± std over seeds) of the records that have results."""
    from .summary import results_row, summarize

    rows = [results_row(r["results"], r["run_dir"]) for r in records if r.get("results")]
    return summarize(rows) if rows else []


def _label(row: Mapping[str, Any], base: Config) -> str:
    """`bgad β=0.05` for a row away from the base, the method alone at the base."""
    from .summary import at_base

    moved = [f"{AXES[c]}={row[c]:g}" if isinstance(row[c], (int, float)) else f"{AXES[c]}={row[c]}"
             for c in AXES if row.get(c) is not None and not at_base(row[c], getattr(base, ALIASES.get(c, c)))]
    return " ".join([str(row["method"])] + moved)


def table_html(rows: Sequence[Mapping[str, Any]], base: Config) -> str:
    """An HTML table: one line per method and setting × category × seen type, means over seeds (± std)."""
    if not rows:
        return "<i>no finished runs yet</i>"
    head = ["run", "category", "seen", "seeds"] + list(TABLE_METRICS.values())
    out = ["<table class='bgad-lab'><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for r in rows:
        cells = [_label(r, base), r.get("category"), r.get("known_types") or "all", r.get("seeds")]
        for m in TABLE_METRICS:
            mean, std = r.get(f"{m}_mean"), r.get(f"{m}_std")
            cells.append("n/a" if mean is None else f"{mean:.3f}" + (f" ± {std:.3f}" if std is not None else ""))
        out.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    return "\n".join(out + ["</table>"])


def draw(rows: Sequence[Mapping[str, Any]], base: Config, kind: str, metric: str):
    """The lab's figure: `bars` (seen vs unseen, mean ± std, one bar pair per run label) or `axes` (BGAD one
    setting at a time, NF as the reference line). None when the rows cannot make it."""
    from . import viz
    from .summary import axis_rows

    if not rows:
        return None
    if kind == "bars":
        bars = [dict(r, label=f"{_label(r, base)} {r.get('category')}") for r in rows]
        return viz.plot_seen_unseen_bars(bars, (metric,))
    default = {c: getattr(base, ALIASES.get(c, c)) for c in AXES}
    panels = {k: p for k in AXES if len(p := axis_rows(rows, base, "bgad", k)) > 1}
    if not panels:
        return None
    nf = axis_rows(rows, base, "nf", "")
    refs = {"NF baseline": nf[0].get(f"unseen_{metric}_mean")} if nf else None
    return viz.plot_one_at_a_time(panels, f"unseen_{metric}", default, refs)


# ----------------------------------------------------------------------------------------------
# The panel
# ----------------------------------------------------------------------------------------------
class Lab:
    """The ablation lab's panel (`.panel`, an ipywidgets VBox) over the runs of `runs_root` and the committed
    grid `results_root`. `runner` replaces `runs.load_or_run` (tests); `poll` is the refresh period in seconds."""

    def __init__(self, base: Config, runs_root: str | Path, results_root: str | Path | None = None,
                 runner: Callable | None = None, poll: float = 1.0, methods: Sequence[str] = ("nf", "bgad")):
        import ipywidgets as w

        if "google.colab" in sys.modules:  # ipywidgets 8 in Colab needs the custom widget manager
            from google.colab import output  # type: ignore[import-not-found]

            output.enable_custom_widget_manager()
        from .data import list_categories, read_category

        self.base, self.runs_root, self.results_root = base, Path(runs_root), results_root
        self.runner, self.poll = runner, poll
        self.records: list[dict[str, Any]] = []
        self.thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._dirty = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._error = ""
        self._draw_lock = threading.Lock()
        cats = list_categories(base.data_root)
        types = sorted({t for c in cats for t in read_category(base.data_root, c, check_sizes=False).defect_types})
        layout = w.Layout(width="auto")
        style = {"description_width": "initial"}
        self.methods = w.SelectMultiple(options=METHODS, value=tuple(m for m in methods if m in METHODS),
                                        description="methods", rows=len(METHODS), style=style)
        self.categories = w.SelectMultiple(options=cats, value=(base.category,) if base.category in cats else (),
                                           description="categories", rows=min(5, len(cats)), style=style)
        self.known = w.SelectMultiple(options=types, value=tuple(t for t in base.known_types if t in types),
                                      description="seen types", rows=min(7, len(types)), style=style)
        self.seeds = w.Text(value=str(base.seed), description="seeds", style=style, layout=layout,
                            continuous_update=False)  # the plan refreshes on Enter, not on every key
        examples = {"beta": "0.005, 0.05", "tau": "0, 0.2", "lambda": "0, 2", "n_known": "1, 5"}
        self.axes = {k: w.Text(value="", description=f"{AXES[k]} values", placeholder=f"e.g. {v}", style=style,
                               layout=layout, continuous_update=False) for k, v in examples.items()}
        self.axes["boundary"] = w.SelectMultiple(options=("batch", "epoch"), value=(), description="boundary",
                                                 rows=2, style=style)
        self.product = w.Checkbox(value=False, description="full product (else one at a time)",
                                  style=style)
        self.jobs = w.BoundedIntText(value=max(1, min(2, available_cores())), min=1, max=max(1, available_cores()),
                                     description="parallel runs", style=style, layout=w.Layout(width="160px"))
        self.plan_label = w.HTML()
        self.run_button = w.Button(description="Run", button_style="success", icon="play")
        self.stop_button = w.Button(description="Stop", button_style="danger", icon="stop", disabled=True)
        self.overall = w.IntProgress(value=0, min=0, max=1, description="grid", style=style)
        self.overall_label = w.HTML()
        self.running = w.VBox()
        self.errors = w.HTML()
        self.kind = w.Dropdown(options=[("seen vs unseen", "bars"), ("BGAD one setting at a time", "axes")],
                               value="bars", description="plot", style=style)
        self.metric = w.Dropdown(options=[("PRO", "pro"), ("pixel AUROC", "pixel_auroc"),
                                          ("image AUROC", "image_auroc")], value="pro", description="metric",
                                 style=style)
        self.table = w.HTML()
        self.figure = w.Image(format="png", layout=w.Layout(max_width="760px"))
        self.figure_note = w.HTML()
        self._bars: dict[str, tuple] = {}

        for c in [self.methods, self.categories, self.known, self.seeds, self.product, self.jobs,
                  *self.axes.values()]:
            c.observe(lambda _ch: self.refresh_plan(), names="value")
        for c in (self.kind, self.metric):
            c.observe(lambda _ch: self._redraw(), names="value")
        self.run_button.on_click(lambda _b: self.start())
        self.stop_button.on_click(lambda _b: self.stop())

        form = w.HBox([w.VBox([self.methods, self.categories, self.known]),
                       w.VBox([self.seeds, *self.axes.values(), self.product, self.jobs])])
        self.panel = w.VBox([w.HTML("<b>Ablation lab</b>: choose a grid, then Run (finished runs are reused)"),
                             form, self.plan_label, w.HBox([self.run_button, self.stop_button]),
                             w.HBox([self.overall, self.overall_label]), self.running, self.errors,
                             w.HBox([self.kind, self.metric]), self.table, self.figure, self.figure_note])
        self.refresh_plan()

    # -- the form -----------------------------------------------------------------------------
    def form(self) -> Form:
        axes: dict[str, tuple] = {}
        for key, control in self.axes.items():
            if key == "boundary":
                axes[key] = tuple(control.value)
            else:
                kind = int if key == "n_known" else float
                axes[key] = tuple(parse_list(control.value, kind, f"{AXES[key]} values"))
        return Form(methods=tuple(self.methods.value), categories=tuple(self.categories.value),
                    known_types=tuple(self.known.value), seeds=tuple(parse_list(self.seeds.value, int, "seeds")),
                    axes=axes, product=bool(self.product.value))

    def plan(self) -> list[dict[str, Any]]:
        """The records of the form's grid (finished ones with their results)."""
        return plan_lab(form_configs(self.form(), self.base), self.runs_root, self.results_root)

    def refresh_plan(self) -> None:
        if self.thread is not None and self.thread.is_alive():
            return  # the form describes the next grid; this one's records stay on screen
        try:
            with held_data_fingerprints():  # the files do not change while one plan is made
                self.records = self.plan()
        except BgadError as exc:
            self.plan_label.value = f"<span style='color:#b00'>{html.escape(str(exc))}</span>"
            self.run_button.disabled = True
            return
        todo = [r["config"] for r in self.records if r["status"] is None]
        seconds = estimate_seconds(todo, seconds_by_kind(self.records), self.jobs.value)
        self.plan_label.value = html.escape(plan_text(self.records, seconds, self.jobs.value))
        self.run_button.disabled = False
        self.overall.max, self.overall.value = max(1, len(self.records)), len(self.records) - len(todo)
        self.overall_label.value = ""
        self.refresh_results()

    # -- running ------------------------------------------------------------------------------
    def start(self) -> None:
        """Run the form's grid in worker processes from a background thread; the kernel stays free."""
        if not self._idle.is_set():  # a grid (or the last refresh of one) is still on
            return
        self.refresh_plan()
        if self.run_button.disabled:
            return
        todo = [r["config"] for r in self.records if r["status"] is None]
        self._stop.clear()
        self._idle.clear()
        self._error = ""
        self.errors.value = ""
        self.run_button.disabled, self.stop_button.disabled = True, not todo
        self.thread = threading.Thread(target=self._run, args=(todo,), name="bgad-lab-grid", daemon=True)
        self.thread.start()
        threading.Thread(target=self._monitor, args=(self.thread,), name="bgad-lab-monitor", daemon=True).start()

    def stop(self) -> None:
        """End the grid: no new run starts, running ones end now and resume from their checkpoint next time."""
        self._stop.set()
        self.stop_button.disabled = True

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the grid has ended and the panel shows its last state (tests, scripts); True if it has."""
        return self._idle.wait(timeout)

    def _run(self, todo: list[Config]) -> None:
        index = {r["key"]: i for i, r in enumerate(self.records)}

        def update(rec: dict) -> None:
            if rec["key"] in index:
                self.records[index[rec["key"]]] = dict(rec)
            self._dirty.set()

        try:
            run_grid(todo, self.runs_root, runs_dir=self.runs_root, jobs=self.jobs.value, processes=True,
                     progress=False, runner=self.runner, on_update=update, stop=self._stop, log=True)
        except Exception as exc:  # noqa: BLE001 - a grid that cannot start is one line in the panel, no traceback
            self._error = str(exc) if isinstance(exc, BgadError) else one_line(exc)
        finally:
            self._dirty.set()

    def _monitor(self, grid_thread: threading.Thread) -> None:
        """The one thread that updates widgets while `grid_thread` runs: bars from the run logs, table and plot."""
        while True:
            alive = grid_thread.is_alive()
            self._refresh_running()
            if self._dirty.is_set():
                self._dirty.clear()
                self.refresh_results()
            if not alive:
                break
            time.sleep(self.poll)
        self.running.children = ()
        left = sum(1 for r in self.records if r["status"] not in ("reused", "trained"))
        self.plan_label.value = (f"{len(self.records)} runs: {len(self.records) - left} finished"
                                 + (f", {left} left (Run trains them)" if left else ""))
        self.run_button.disabled, self.stop_button.disabled = False, True
        if self._error:
            self.errors.value = f"<span style='color:#b00'>{html.escape(self._error)}</span>"
        self._idle.set()

    def _refresh_running(self) -> None:
        import ipywidgets as w

        done = sum(1 for r in self.records if r["status"] in ("reused", "trained", "failed"))
        self.overall.max, self.overall.value = max(1, len(self.records)), done
        counts = {s: sum(1 for r in self.records if r["status"] == s) for s in ("trained", "failed", "stopped")}
        said = ", ".join(f"{v} {k}" for k, v in counts.items() if v)
        self.overall_label.value = f"{done} of {len(self.records)} done" + (f": {said}" if said else "")
        rows, queued = [], 0
        for rec in self.records:
            if rec["status"] != "running":
                continue
            log = RunFolder(rec["run_dir"]).log
            if not log.exists():  # handed to the pool, not started by a process yet
                queued += 1
                continue
            state = log_progress(_tail(log))
            bar, label = self._bars.get(rec["key"]) or (w.IntProgress(min=0, max=1, layout=w.Layout(width="240px")),
                                                         w.HTML())
            self._bars[rec["key"]] = (bar, label)
            desc, n, total = state or ("starting", 0, 1)
            bar.max, bar.value = max(1, total), min(n, max(1, total))
            label.value = html.escape(f"{rec['key']}: {desc} {n}/{total}")
            rows.append(w.HBox([bar, label]))
        if rows or queued:
            self.overall_label.value += f" ({len(rows)} running" + (f", {queued} queued)" if queued else ")")
        self.running.children = tuple(rows)

    # -- results ------------------------------------------------------------------------------
    def _redraw(self) -> None:
        """The plot or metric menu changed: redraw now, or let the monitor do it while a grid runs."""
        if self._idle.is_set():
            self.refresh_results()
        else:
            self._dirty.set()

    def refresh_results(self) -> None:
        with self._draw_lock:  # pyplot is not thread-safe: one drawing at a time
            self._refresh_results()

    def _refresh_results(self) -> None:
        from .viz import png_bytes

        rows = result_rows(self.records)
        self.table.value = table_html(rows, self.base)
        failed = [r for r in self.records if r["status"] == "failed"]
        if failed:
            self.errors.value = "<br>".join(f"<span style='color:#b00'>failed {html.escape(r['key'])}: "
                                            f"{html.escape(str(r['error']))}</span>" for r in failed)
        fig = draw(rows, self.base, self.kind.value, self.metric.value)
        if fig is None:
            self.figure.value = b""
            self.figure_note.value = ("<i>no runs to plot yet</i>" if not rows else
                                      "<i>the one-at-a-time plot needs BGAD runs at two or more values of an "
                                      "axis</i>")
        else:
            self.figure.value, self.figure_note.value = png_bytes(fig), ""
