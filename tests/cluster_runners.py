"""Stand-ins for `runs.load_or_run` that the Dask workers of `test_cluster.py` import (tests/ is on their
PYTHONPATH): `fake_run` and `slow_run` of `test_ablation.py`, and a runner that records each attempt."""
from __future__ import annotations

import os
import time
from pathlib import Path

from test_ablation import fake_run, slow_run  # noqa: F401 - re-exported for the workers

__all__ = ["fake_run", "slow_run", "attempt_run"]


def attempt_run(cfg, out, progress: bool = False) -> dict:
    """fake_run, after writing this process's PID to `out/attempts.txt` and, on the first attempt only, sleeping
    `extra["sleep"]` seconds (time for a test to kill the worker running it)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    attempts = out / "attempts.txt"
    first = not attempts.exists()
    with open(attempts, "a") as f:
        f.write(f"{os.getpid()}\n")
    if first:
        time.sleep(float(cfg.extra.get("sleep", 0)))
    return fake_run(cfg, out, progress)
