"""A small dataset in the MVTecAD layout with MVTecAD's category and defect-type names and its test image counts
per type, so code that assumes the synthetic dataset's names fails here and not on the GPU runner.

    make_fake_mvtec(root, categories=("bottle",))   # root/bottle/{train/good, test/<type>, ground_truth/<type>}

Images are textured noise with a bright square defect; masks are exact. `python tests/fake_mvtec.py ROOT` makes
one from the command line (the papermill loop's test uses it).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

#: MVTecAD's defect types and their test image counts (the categories the tests use).
MVTEC_TEST_COUNTS = {
    "bottle": {"good": 20, "broken_large": 20, "broken_small": 22, "contamination": 21},
    "carpet": {"good": 28, "color": 19, "cut": 17, "hole": 17, "metal_contamination": 17, "thread": 19},
}


def _image(rng: np.random.Generator, size: int) -> np.ndarray:
    base = rng.normal(128, 20, (size // 8, size // 8, 3))
    tex = np.kron(base, np.ones((8, 8, 1))) + rng.normal(0, 6, (size, size, 3))
    return np.clip(tex, 0, 255).astype(np.uint8)


def make_fake_mvtec(root: str | Path, categories: tuple[str, ...] = ("bottle",), size: int = 64, n_train: int = 12,
                    seed: int = 0) -> Path:
    """Write `categories` under `root` (MVTecAD names and test counts; `n_train` good training images)."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    for cat in categories:
        for i in range(n_train):
            _save(root / cat / "train" / "good" / f"{i:03d}.png", _image(rng, size))
        for kind, count in MVTEC_TEST_COUNTS[cat].items():
            for i in range(count):
                img = _image(rng, size)
                if kind != "good":
                    mask = np.zeros((size, size), np.uint8)
                    y, x = rng.integers(4, size - 16, 2)
                    s = int(rng.integers(6, 12))
                    mask[y:y + s, x:x + s] = 255
                    img[mask > 0] = np.clip(img[mask > 0].astype(int) + 90, 0, 255).astype(np.uint8)
                    _save(root / cat / "ground_truth" / kind / f"{i:03d}_mask.png", mask)
                _save(root / cat / "test" / kind / f"{i:03d}.png", img)
    (root / "license.txt").write_text("fake MVTecAD for tests (names and counts only)\n")
    return root


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


if __name__ == "__main__":
    print(make_fake_mvtec(sys.argv[1] if len(sys.argv) > 1 else "data/fake_mvtec"))
