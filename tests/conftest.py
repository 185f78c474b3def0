"""Shared fixtures: a hand-made tiny MVTec-layout category, and the smoke synthetic dataset."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# Tests share 2 cores with nothing else; keep torch to one thread per process (see cpu_measurements).
os.environ.setdefault("OMP_NUM_THREADS", "1")


def write_png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def make_tiny_mvtec(root: Path, category: str = "widget", size: int = 32, types=("scratch", "hole"),
                    n_train: int = 4, n_good: int = 3, n_per_type: int = 3, masks: bool = True,
                    good: str = "good", mask_suffix: str = "_mask", mask_ext: str = ".png") -> Path:
    """A category with solid-colour images and square defect masks whose values are known."""
    rng = np.random.default_rng(0)
    cat = root / category
    for i in range(n_train):
        write_png(cat / "train" / good / f"{i:03d}.png", rng.integers(0, 255, (size, size, 3), dtype=np.uint8))
    for i in range(n_good):
        write_png(cat / "test" / good / f"{i:03d}.png", rng.integers(0, 255, (size, size, 3), dtype=np.uint8))
    for t in types:
        for i in range(n_per_type):
            write_png(cat / "test" / t / f"{i:03d}.png", rng.integers(0, 255, (size, size, 3), dtype=np.uint8))
            if masks:
                m = np.zeros((size, size), np.uint8)
                m[4:4 + 4 * (i + 1), 4:12] = 255
                m[0, 0] = 100  # below the 127 threshold: must binarise to 0
                write_png(cat / "ground_truth" / t / f"{i:03d}{mask_suffix}{mask_ext}", m)
    return root


@pytest.fixture
def tiny_root(tmp_path: Path) -> Path:
    return make_tiny_mvtec(tmp_path / "mvtec")


@pytest.fixture(scope="session")
def smoke_root(tmp_path_factory) -> Path:
    """The offline synthetic dataset at the smoke profile (made once per test session)."""
    from bgad_mini import synthetic

    out = tmp_path_factory.mktemp("synthetic_smoke")
    synthetic.generate(out, profile="smoke", seed=0, progress=False)
    return out
