"""`bgad-mini ablate`: expand a grid (`grid`), run it with reuse, collect and write the outputs (`summary`);
with `publish`, a result grid with provenance (`published`), as `make results` makes `results/`."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .grid import axes_configs, dedupe, expand_grid, parse_axes, parse_grid, run_grid, threads_per_job, training_order
from .published import write_provenance
from .runs import RUNS, finished, run_key
from .summary import collect, print_report, write_outputs


def ablate(data_root: str | None, categories: Sequence[str] | None, methods: Sequence[str], settings: Sequence[str],
           known_types: Sequence[str] | None, seeds: Sequence[int], profile: str, out: str | os.PathLike,
           grid: Sequence[str] = (), sets: Mapping[str, Any] | None = None, jobs: int = 1,
           progress: bool = True, runner: Callable | None = None, axes: Sequence[str] = (), publish: bool = False,
           command: str = "", only_finished: bool = False, scheduler: str | None = None,
           threads_per_task: int = 0) -> int:
    """Expand the product grid, then the one-at-a-time `axes` on the first seen type; run the product grid in
    `training_order`, then the axes one after another in the order given (each over every category and seed, so an
    interrupted grid leaves whole axes behind); collect, write outputs; print where they
    are. With `publish`, keep only each run's results.json and write PROVENANCE.json (`command` is recorded
    there). With `only_finished`, train nothing: collect and publish what is finished. `scheduler` runs the missing
    runs on a Dask cluster (`run_grid`, `cluster`). Returns 0, or 1 when any job failed."""
    common = dict(settings=settings, categories=categories, seeds=seeds, profile=profile, data_root=data_root,
                  overrides=sets)
    configs = training_order(expand_grid(methods=methods, known_types=known_types, grid=parse_grid(grid), **common))
    if axes:
        first = list(known_types[:1]) if known_types else None
        configs += axes_configs(parse_axes(axes), methods, known_types=first, **common)
    configs = dedupe(configs)
    if only_finished:
        records = [{"key": run_key(c), "config": c, "status": "reused", "error": None, "seconds": 0.0,
                    "results": finished(Path(out) / RUNS / run_key(c), c)} for c in configs]
        for r in records:
            r["status"] = "reused" if r["results"] is not None else "missing"
    else:
        records = run_grid(configs, out, jobs=jobs, progress=progress, runner=runner, results_only=publish,
                           scheduler=scheduler, threads_per_task=threads_per_task)
    rows = collect(out, configs)
    paths = write_outputs(rows, out)
    print_report(records, paths)
    if publish:
        prov = write_provenance(out, command, configs, records, threads_per_job(min(jobs, len(configs))),
                                executor=f"dask {scheduler}" if scheduler else f"local, {jobs} processes")
        print(f"  provenance: {os.path.join(out, 'PROVENANCE.json')} ({prov['finished']} of {prov['runs']} runs, "
              f"{prov['cpu_hours']} CPU hours)")
    return 1 if any(r["status"] == "failed" for r in records) else 0
