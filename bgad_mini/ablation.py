"""`bgad-mini ablate`: expand a grid (`grid`), run it with reuse, collect and write the outputs (`summary`)."""
from __future__ import annotations

import os
from typing import Any, Callable, Mapping, Sequence

from .grid import expand_grid, parse_grid, run_grid
from .summary import collect, print_report, write_outputs


def ablate(data_root: str | None, categories: Sequence[str] | None, methods: Sequence[str], settings: Sequence[str],
           known_types: Sequence[str] | None, seeds: Sequence[int], profile: str, out: str | os.PathLike,
           grid: Sequence[str] = (), sets: Mapping[str, Any] | None = None, jobs: int = 1,
           progress: bool = True, runner: Callable | None = None) -> int:
    """Expand, run, collect, write outputs; print where they are. Returns 0, or 1 when any job failed."""
    configs = expand_grid(methods=methods, settings=settings, categories=categories, known_types=known_types,
                          seeds=seeds, grid=parse_grid(grid), profile=profile, data_root=data_root,
                          overrides=sets)
    records = run_grid(configs, out, jobs=jobs, progress=progress, runner=runner)
    rows = collect(out, configs)
    paths = write_outputs(rows, out)
    print_report(records, paths)
    return 1 if any(r["status"] == "failed" for r in records) else 0
