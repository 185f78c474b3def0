"""Small shared helpers: seeding, device choice, thread budget, timing and memory."""
from __future__ import annotations

import hashlib
import json
import os
import random
import resource
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) so that the same seed gives the same run."""
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def resolve_device(device: str = "auto") -> str:
    """'auto' -> 'cuda' where a GPU is present, else 'cpu'."""
    import torch

    from .errors import BgadError

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BgadError(f"device {device!r} requested but no CUDA GPU is visible; use --set device=cpu or auto")
    if device not in ("cpu",) and not device.startswith("cuda") and device != "mps":
        raise BgadError(f"unknown device {device!r}; use auto, cpu or cuda")
    return device


def set_threads(threads: int = 0) -> int:
    """Set torch's intra-op threads. 0 = the cores this process may use (never more: see cpu_measurements)."""
    import torch

    if threads <= 0:
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(max(1, threads))
    return torch.get_num_threads()


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


class Timer:
    """Collects wall-clock seconds per named stage: `with timer("train"): ...`."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


@contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path beside `path`; on success rename it onto `path`, on error remove it.

    Readers (and parallel jobs writing the same file) never see half a file. Every file that a run, the
    feature cache or a download finishes is written through this one routine.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes it private (0600); the finished file gets the usual mode
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """`obj` as indented JSON, written atomically."""
    with atomic_write(path) as tmp:
        Path(tmp).write_text(json.dumps(obj, indent=2) + "\n")


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_torch(obj: Any, path: str | os.PathLike) -> None:
    """`torch.save` through `atomic_write`."""
    import torch

    with atomic_write(path) as tmp:
        torch.save(obj, tmp)
