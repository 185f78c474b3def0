"""Reading datasets in the MVTec layout, the BTAD adapter, and the known-anomaly splits.

Introduced in the *Data* chapter. One reader serves every dataset:

    ROOT/CATEGORY/train/good/*.png
    ROOT/CATEGORY/test/good/*.png
    ROOT/CATEGORY/test/DEFECT/*.png
    ROOT/CATEGORY/ground_truth/DEFECT/STEM_mask.png      (0 / 255)

BTAD (`NN/train/ok`, `test/ok`, `test/ko`, `ground_truth/ko`) is read through the same code with
`good_name="ok"`, and masks may be `.png` or `.bmp`.
"""
from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import BgadError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
MASK_EXTENSIONS = (".png", ".bmp")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
GET_DATA_HINT = "create the offline default with `bgad-mini data synth --out data/synthetic` or get MVTecAD with `bgad-mini data mvtec --root data/mvtec`"


@dataclass(frozen=True)
class Item:
    """One image of a category: where it is, its label (0 good, 1 defective), its defect type and mask file."""

    path: str
    label: int
    defect_type: str  # "good" for normal images
    mask_path: str | None = None

    @property
    def name(self) -> str:
        """`defect_type/file` — unique within a split, used in results and figures."""
        return f"{self.defect_type}/{Path(self.path).name}"


@dataclass
class Category:
    """The file lists of one category; images are read lazily with `load_image` / `load_mask`."""

    root: str
    name: str
    train: list[Item]
    test: list[Item]
    has_masks: bool
    layout: str = "mvtec"

    @property
    def defect_types(self) -> list[str]:
        return sorted({it.defect_type for it in self.test if it.label == 1})


def list_categories(root: str | Path) -> list[str]:
    """Folders under `root` that look like categories (have a `train` folder)."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and (p / "train").is_dir())


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def _find_mask(gt_dir: Path, stem: str) -> Path | None:
    for candidate in (f"{stem}_mask", stem):
        for ext in MASK_EXTENSIONS:
            p = gt_dir / f"{candidate}{ext}"
            if p.is_file():
                return p
    return None


def read_category(root: str | Path, category: str, layout: str = "auto", check_sizes: bool = True) -> Category:
    """Read the file lists of `root/category`, pairing each defective image with its mask.

    layout: "mvtec", "btad" (good images in `ok/`, defects in `ko/`), or "auto" (decided by the folder names).
    check_sizes: open every defective image and its mask header to catch size mismatches early.
    """
    root_p = Path(root)
    if not root_p.is_dir():
        raise BgadError(f"dataset root {str(root)!r} does not exist; {GET_DATA_HINT}")
    cat_dir = root_p / category
    if not cat_dir.is_dir():
        found = list_categories(root_p)
        listing = ", ".join(found) if found else "none"
        raise BgadError(f"unknown category {category!r} in {root}; categories found: {listing}")
    if layout == "auto":
        layout = "btad" if (cat_dir / "train" / "ok").is_dir() else "mvtec"
    if layout not in ("mvtec", "btad"):
        raise BgadError(f"unknown layout {layout!r}; use mvtec, btad or auto")
    good = "ok" if layout == "btad" else "good"

    train_dir = cat_dir / "train" / good
    train_files = _images_in(train_dir) if train_dir.is_dir() else []
    if not train_files:
        raise BgadError(f"no training images in {train_dir}; a category needs normal images in train/{good}/")
    test_dir = cat_dir / "test"
    if not test_dir.is_dir():
        raise BgadError(f"no test folder {test_dir}; a category needs test/{good}/ and test/DEFECT/ folders")

    gt_root = cat_dir / "ground_truth"
    has_masks = gt_root.is_dir()
    train = [Item(str(p), 0, "good") for p in train_files]
    test: list[Item] = []
    for type_dir in sorted(p for p in test_dir.iterdir() if p.is_dir()):
        is_good = type_dir.name == good
        defect_type = "good" if is_good else type_dir.name
        for img in _images_in(type_dir):
            mask = None
            if not is_good and has_masks:
                mask_p = _find_mask(gt_root / type_dir.name, img.stem)
                if mask_p is None:
                    raise BgadError(
                        f"defective image {img} has no mask; expected {gt_root / type_dir.name / (img.stem + '_mask.png')}"
                    )
                mask = str(mask_p)
            test.append(Item(str(img), 0 if is_good else 1, defect_type, mask))
    if check_sizes and has_masks:
        for it in test:
            if it.mask_path is not None:
                _check_same_size(it.path, it.mask_path)
    return Category(str(root_p), category, train, test, has_masks, layout)


def _image_size(path: str) -> tuple[int, int]:
    try:
        with Image.open(path) as im:
            return im.size
    except (UnidentifiedImageError, OSError) as exc:
        raise BgadError(f"cannot read image file {path} ({exc.__class__.__name__}); replace or delete it") from None


def _check_same_size(image_path: str, mask_path: str) -> None:
    si, sm = _image_size(image_path), _image_size(mask_path)
    if si != sm:
        raise BgadError(f"mask {mask_path} is {sm[0]}x{sm[1]} but its image {image_path} is {si[0]}x{si[1]}; they must match")


def load_image(path: str, size: int) -> np.ndarray:
    """RGB float32 array (size, size, 3) in [0, 1]; bilinear resize; grayscale becomes 3 channels."""
    try:
        with Image.open(path) as im:
            im.load()
            rgb = im.convert("RGB")
    except (UnidentifiedImageError, OSError) as exc:
        raise BgadError(f"cannot read image file {path} ({exc.__class__.__name__}); replace or delete it") from None
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.BILINEAR)
    return np.asarray(rgb, dtype=np.float32) / 255.0


def load_mask(path: str | None, size: int) -> np.ndarray:
    """Binary uint8 mask (size, size) in {0, 1}: nearest resize, then > 127. `None` gives all zeros."""
    if path is None:
        return np.zeros((size, size), dtype=np.uint8)
    try:
        with Image.open(path) as im:
            im.load()
            gray = im.convert("L")
    except (UnidentifiedImageError, OSError) as exc:
        raise BgadError(f"cannot read mask file {path} ({exc.__class__.__name__}); replace or delete it") from None
    if gray.size != (size, size):
        gray = gray.resize((size, size), Image.NEAREST)
    return (np.asarray(gray) > 127).astype(np.uint8)


def normalize(images: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) in [0, 1] -> (N, 3, H, W) float32 with ImageNet mean/std, the backbone's input."""
    x = (images - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32)


def load_items(items: Sequence[Item], size: int) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, size, size, 3) float32 and masks (N, size, size) uint8 of `items`."""
    images = np.stack([load_image(it.path, size) for it in items]) if items else np.zeros((0, size, size, 3), np.float32)
    masks = np.stack([load_mask(it.mask_path, size) for it in items]) if items else np.zeros((0, size, size), np.uint8)
    return images, masks


# ----------------------------------------------------------------------------------------------
# Known anomalies
# ----------------------------------------------------------------------------------------------
@dataclass
class Split:
    """Known (training) anomalies, the test set without them, and which defect types were seen."""

    known: list[Item]
    test: list[Item]
    seen_types: list[str]
    unseen_types: list[str]
    setting: str


def split_known_anomalies(
    test_items: Sequence[Item],
    n_known: int,
    setting: str = "multi-class",
    known_types: Iterable[str] = (),
    seed: int = 0,
) -> Split:
    """Draw `n_known` known anomalies from the test defects and remove them from the test set.

    multi-class: N spread evenly over all defect types (N // n_types each), the remainder drawn at random
    from the leftovers of all types, as the official code does. one-class: N drawn only from `known_types`
    (spread evenly over them); every other type is unseen. Deterministic for a seed.
    """
    known_types = list(known_types)
    by_type: dict[str, list[Item]] = defaultdict(list)
    for it in sorted(test_items, key=lambda i: i.path):
        if it.label == 1:
            by_type[it.defect_type].append(it)
    all_types = sorted(by_type)
    if setting == "multi-class":
        if known_types:
            raise BgadError("known types are only for the one-class setting; drop --known-types or use --setting one-class")
        pool_types = all_types
    elif setting == "one-class":
        if n_known > 0 and not known_types:
            raise BgadError(f"the one-class setting needs --known-types (one or more of: {', '.join(all_types)})")
        unknown = [t for t in known_types if t not in by_type]
        if unknown:
            raise BgadError(f"unknown defect type(s) {', '.join(unknown)}; types found: {', '.join(all_types)}")
        pool_types = sorted(set(known_types))
    else:
        raise BgadError(f"unknown setting {setting!r}; choose multi-class or one-class")
    if n_known < 0:
        raise BgadError(f"n_known must be >= 0, got {n_known}")

    rng = random.Random(seed)
    known: list[Item] = []
    if n_known > 0:
        if not pool_types:
            raise BgadError("no defect types to draw known anomalies from; this category has no defective test images")
        available = sum(len(by_type[t]) for t in pool_types)
        if n_known >= available:
            raise BgadError(
                f"cannot draw {n_known} known anomalies from {available} images of type(s) {', '.join(pool_types)}: "
                "at least one must stay in the test set; lower --n-known"
            )
        per_type, extra = divmod(n_known, len(pool_types))
        leftovers: list[Item] = []
        for t in pool_types:
            files = list(by_type[t])
            rng.shuffle(files)
            if per_type >= len(files):
                raise BgadError(
                    f"defect type {t!r} has {len(files)} images, too few to draw {per_type} known ones and keep one "
                    "for testing; lower --n-known"
                )
            known.extend(files[:per_type])
            leftovers.extend(files[per_type:])
        known.extend(rng.sample(leftovers, extra))

    known_paths = {it.path for it in known}
    test = [it for it in test_items if it.path not in known_paths]
    seen = sorted({it.defect_type for it in known}) if setting == "multi-class" else sorted(set(known_types))
    unseen = [t for t in all_types if t not in seen]
    return Split(known=known, test=test, seen_types=seen, unseen_types=unseen, setting=setting)


# ----------------------------------------------------------------------------------------------
# Copy-paste of known anomalies (the official "RandAugmented CutPaste" strategy, simplified)
# ----------------------------------------------------------------------------------------------
def copy_paste(normal: np.ndarray, anomaly: np.ndarray, mask: np.ndarray, rng: np.random.Generator,
               ) -> tuple[np.ndarray, np.ndarray]:
    """Paste the masked defect of `anomaly` onto `normal` at a random place, after a random rot90/flip and a
    small brightness change applied to the defect and its mask together.

    normal, anomaly: (H, W, 3) float in [0, 1]; mask: (H, W) in {0, 1}. Returns the new image and its mask,
    which marks exactly the pasted pixels. Introduced in the *BG-SPP* chapter; the official code also uses
    foreground masks and 3 random albumentations augmenters (see the Reproduction chapter).
    """
    img, m = anomaly, mask.astype(bool)
    k = int(rng.integers(4))
    img, m = np.rot90(img, k), np.rot90(m, k)
    if rng.random() < 0.5:
        img, m = img[:, ::-1], m[:, ::-1]
    img = np.clip(img * rng.uniform(0.9, 1.1) + rng.uniform(-0.04, 0.04), 0.0, 1.0)
    ys, xs = np.nonzero(m)
    out = normal.copy()
    out_mask = np.zeros(normal.shape[:2], dtype=np.uint8)
    if ys.size == 0:
        return out, out_mask
    h, w = normal.shape[:2]
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    dy = int(rng.integers(0, h - (y1 - y0) + 1)) - y0
    dx = int(rng.integers(0, w - (x1 - x0) + 1)) - x0
    out[ys + dy, xs + dx] = img[ys, xs]
    out_mask[ys + dy, xs + dx] = 1
    return out, out_mask
