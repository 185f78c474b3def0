"""The offline default dataset: real texture photos with synthetic defects and exact masks.

Introduced in the *Data* chapter. Normal surfaces are crops of three CC0 photos that scikit-image
ships (`brick`, `grass`, `gravel`); train crops and test crops come from disjoint bands of each photo.
Every test image, good or defective, goes through the same augmentation, and a defect changes exactly
the pixels of its mask, so only the defect tells a defective image from a good one.
"""
from __future__ import annotations

import csv
import io
import json
import math
import pathlib
import shutil
import zlib
from dataclasses import dataclass
from typing import Callable, Iterable, Optional

import numpy as np

from .errors import BgadError

GENERATOR_VERSION = "1.1"  # 1.1: 25 images per defect type, 40 good, a range of defect strengths
GENERATOR = "bgad_mini.synthetic"
CATEGORIES = ("brick", "grass", "gravel")

DEFECT_TYPES: dict[str, str] = {
    "scratch": "line",
    "crack": "line",
    "hole": "blob",
    "stain": "blob",
    "missing": "structural",
    "misplaced": "structural",
    "foreign": "texture",
}

PROFILE_SIZES: dict[str, dict] = {
    "smoke": dict(img_size=64, n_train=16, n_test_good=8, n_per_defect=2),
    "book": dict(img_size=256, n_train=100, n_test_good=40, n_per_defect=25),
}

SOURCES: dict[str, dict] = {
    "brick": dict(function="skimage.data.brick", licence="CC0 1.0",
                  origin="https://cc0textures.com/view.php?tex=Bricks25"),
    "grass": dict(function="skimage.data.grass", licence="CC0 1.0",
                  origin="https://www.deviantart.com/linolafett/art/Grass-01-434853879"),
    "gravel": dict(function="skimage.data.gravel", licence="CC0 1.0",
                   origin="https://cc0textures.com/view.php?tex=Gravel04"),
}

# Mild fixed RGB tint per category, so the grayscale photos look like what they show.
TINTS: dict[str, tuple[float, float, float]] = {
    "brick": (1.08, 0.94, 0.84),
    "grass": (0.90, 1.05, 0.82),
    "gravel": (1.02, 1.00, 0.95),
}

# Row bands of the 512 x 512 source photo: train crops above, test crops below, a 14-px gap between.
SOURCE_SIZE = 512
SOURCE_ROWS: dict[str, tuple[int, int]] = {"train": (0, 296), "test": (310, 512)}
BASE_CROP = 176                      # source pixels; each crop is BASE_CROP x U(CROP_SCALE)
CROP_SCALE = (0.9, 1.15)
GAIN = (0.9, 1.1)
BIAS = (-10.0, 10.0)
NOISE_SIGMA = (1.0, 3.0)             # grey levels, drawn per image
FILL_NOISE = 2.0                     # grey levels of the noise a defect paints into its flat fills
AREA_RANGE = (0.003, 0.05)           # accepted mask area, as a fraction of the image
SEVERITY = (0.25, 1.0)               # how strongly a defect is painted in, drawn per image (1 = fully)

Box = tuple[int, int, int, int]      # (top, left, height, width) in source pixels


@dataclass(frozen=True)
class Sample:
    """One image to write: its category, split (`train`/`test`), label (`good` or a defect) and index."""

    category: str
    split: str
    label: str
    index: int

    @property
    def file(self) -> str:
        return f"{self.category}/{self.split}/{self.label}/{self.index:03d}.png"

    @property
    def mask_file(self) -> str:
        return f"{self.category}/ground_truth/{self.label}/{self.index:03d}_mask.png"


# ----------------------------------------------------------------------------- planning and seeds
def check_profile(profile: str) -> dict:
    """The sizes of `profile`, or a `BgadError` naming the valid ones."""
    if profile not in PROFILE_SIZES:
        raise BgadError(f"unknown synthetic profile {profile!r}; choose one of {', '.join(PROFILE_SIZES)}")
    return PROFILE_SIZES[profile]


def check_categories(categories: Iterable[str]) -> tuple[str, ...]:
    """`categories` as a tuple, or a `BgadError` naming the valid ones."""
    if isinstance(categories, str):
        categories = (categories,)
    cats = tuple(categories)
    unknown = [c for c in cats if c not in CATEGORIES]
    if unknown or not cats:
        raise BgadError(f"unknown synthetic category {', '.join(unknown) or '(none)'}; "
                        f"choose from {', '.join(CATEGORIES)}")
    return tuple(dict.fromkeys(cats))


def plan(profile: str = "book", categories: Iterable[str] = CATEGORIES) -> list[Sample]:
    """Every image that `generate` writes, in writing order."""
    sizes = check_profile(profile)
    samples: list[Sample] = []
    for cat in check_categories(categories):
        samples += [Sample(cat, "train", "good", i) for i in range(sizes["n_train"])]
        samples += [Sample(cat, "test", "good", i) for i in range(sizes["n_test_good"])]
        for defect in DEFECT_TYPES:
            samples += [Sample(cat, "test", defect, i) for i in range(sizes["n_per_defect"])]
    return samples


def sample_rng(seed: int, sample: Sample, stream: str = "") -> np.random.Generator:
    """A generator seeded from (seed, category, split, label, index): independent of the other images."""
    keys = [sample.category, sample.split, sample.label, stream]
    return np.random.default_rng([int(seed), *(zlib.crc32(k.encode()) for k in keys), sample.index])


# ----------------------------------------------------------------------------- normal surfaces
def load_source(category: str) -> np.ndarray:
    """The 512 x 512 grayscale source photo of `category`, as float32 grey levels."""
    import skimage.data

    check_categories((category,))
    return getattr(skimage.data, category)().astype(np.float32)


def draw_crop_box(rng: np.random.Generator, split: str) -> Box:
    """A square crop box of size BASE_CROP x U(CROP_SCALE) inside the `split` band of the source."""
    row0, row1 = SOURCE_ROWS[split]
    side = int(round(BASE_CROP * rng.uniform(*CROP_SCALE)))
    side = min(side, row1 - row0)
    top = int(rng.integers(row0, row1 - side + 1))
    left = int(rng.integers(0, SOURCE_SIZE - side + 1))
    return (top, left, side, side)


def crop_boxes(category: str, profile: str = "book", seed: int = 0) -> dict[str, list[Box]]:
    """The source crop boxes of every train and test image of `category` (train and test never overlap)."""
    boxes: dict[str, list[Box]] = {"train": [], "test": []}
    for sample in plan(profile, (category,)):
        boxes[sample.split].append(draw_crop_box(sample_rng(seed, sample), sample.split))
    return boxes


def render_clean(source: np.ndarray, category: str, split: str, size: int,
                 rng: np.random.Generator) -> np.ndarray:
    """One augmented normal crop (H x W x 3 uint8): crop, resize, flips, gain/bias, tint, noise."""
    from PIL import Image

    top, left, h, w = draw_crop_box(rng, split)
    img = Image.fromarray(source).resize((size, size), Image.Resampling.BICUBIC,
                                                    box=(left, top, left + w, top + h))
    grey = np.asarray(img, dtype=np.float32)
    if rng.random() < 0.5:
        grey = grey[:, ::-1]
    if rng.random() < 0.5:
        grey = grey[::-1, :]
    grey = grey * rng.uniform(*GAIN) + rng.uniform(*BIAS)
    rgb = grey[..., None] * np.asarray(TINTS[category], dtype=np.float32)
    rgb = rgb + rng.normal(0.0, rng.uniform(*NOISE_SIGMA), size=rgb.shape)
    return to_uint8(rgb)


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Round and clip to uint8 grey levels."""
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- defect shapes
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    return yy, xx


def _stroke(points: np.ndarray, size: int, width: float) -> np.ndarray:
    """Coverage in [0, 1] of a polyline of `width` pixels through `points` (N x 2, y/x)."""
    from scipy.ndimage import distance_transform_edt

    seg = []
    for p, q in zip(points[:-1], points[1:]):
        n = max(2, int(math.ceil(np.hypot(*(q - p)) * 3)))
        seg.append(p + (q - p) * np.linspace(0, 1, n)[:, None])
    pts = np.rint(np.concatenate(seg)).astype(int)
    pts = pts[(pts >= 0).all(1) & (pts < size).all(1)]
    line = np.zeros((size, size), bool)
    line[pts[:, 0], pts[:, 1]] = True
    if not line.any():
        return np.zeros((size, size), np.float32)
    dist = distance_transform_edt(~line)
    return np.clip(width / 2 + 0.5 - dist, 0, 1).astype(np.float32)


def _blob(rng: np.random.Generator, size: int, radius: float, edge: float = 1.0) -> np.ndarray:
    """Coverage of an irregular blob: a circle whose radius wobbles with a few low harmonics."""
    yy, xx = _grid(size)
    cy, cx = rng.uniform(0.2 * size, 0.8 * size, 2)
    theta = np.arctan2(yy - cy, xx - cx)
    r = np.full_like(theta, radius)
    for k in range(2, 6):
        r = r + radius * rng.uniform(0, 0.1) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    stretch = rng.uniform(0.7, 1.0)
    phi = rng.uniform(0, np.pi)
    u = (xx - cx) * np.cos(phi) + (yy - cy) * np.sin(phi)
    v = (-(xx - cx) * np.sin(phi) + (yy - cy) * np.cos(phi)) / stretch
    return np.clip((r - np.hypot(u, v)) / edge + 0.5, 0, 1).astype(np.float32)


def _smooth_field(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    """A smooth random field scaled to [0, 1]."""
    from scipy.ndimage import gaussian_filter

    f = gaussian_filter(rng.normal(size=(size, size)), sigma)
    return ((f - f.min()) / (np.ptp(f) + 1e-8)).astype(np.float32)


def _local_tint(clean: np.ndarray) -> np.ndarray:
    """The image's mean colour divided by its mean grey level (keeps flat fills in the image's hue)."""
    mean = clean.reshape(-1, 3).mean(0)
    return (mean / max(mean.mean(), 1.0)).astype(np.float32)


# Each painter returns (paint H x W x 3 float, coverage H x W in [0, 1], strength H x W in [0, 1]).
Painter = Callable[[np.ndarray, np.random.Generator, Optional[np.ndarray]],
                   tuple[np.ndarray, np.ndarray, np.ndarray]]


def _paint_scratch(clean, rng, donor):
    """A thin bright or dark curved line (a quadratic Bezier curve)."""
    s = clean.shape[0]
    p0 = rng.uniform(0.15 * s, 0.85 * s, 2)
    angle = rng.uniform(0, 2 * np.pi)
    length = rng.uniform(0.35, 0.75) * s
    p2 = p0 + length * np.array([np.sin(angle), np.cos(angle)])
    p1 = (p0 + p2) / 2 + rng.uniform(-0.25, 0.25) * length * np.array([np.cos(angle), -np.sin(angle)])
    t = np.linspace(0, 1, 64)[:, None]
    curve = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t ** 2 * p2
    cover = _stroke(curve, s, max(1.0, rng.uniform(2.0, 3.5) * s / 256))
    target = rng.uniform(205, 245) if rng.random() < 0.5 else rng.uniform(15, 50)
    paint = np.full(clean.shape, target, np.float32) * _local_tint(clean)
    return paint, cover, np.full(cover.shape, rng.uniform(0.6, 0.85), np.float32)


def _paint_crack(clean, rng, donor):
    """A dark branching random-walk polyline."""
    s = clean.shape[0]
    step = s / 24

    def walk(start: np.ndarray, heading: float, length: float) -> np.ndarray:
        pts = [start]
        for _ in range(max(2, int(length / step))):
            heading += rng.normal(0, 0.35)
            pts.append(pts[-1] + step * np.array([np.sin(heading), np.cos(heading)]))
        return np.array(pts)

    width = max(1.0, rng.uniform(2.0, 3.5) * s / 256)
    main = walk(rng.uniform(0.2 * s, 0.8 * s, 2), rng.uniform(0, 2 * np.pi), rng.uniform(0.35, 0.6) * s)
    cover = _stroke(main, s, width)
    for _ in range(int(rng.integers(1, 4))):
        start = main[int(rng.integers(1, len(main)))]
        heading = rng.uniform(0, 2 * np.pi)
        branch = walk(start, heading, rng.uniform(0.1, 0.25) * s)
        cover = np.maximum(cover, _stroke(branch, s, max(1.0, 0.7 * width)))
    paint = clean.astype(np.float32) * rng.uniform(0.15, 0.35)
    return paint, cover, np.ones_like(cover)


def _paint_hole(clean, rng, donor):
    """A dark ellipse, lit from one side so it reads as a hole with depth."""
    s = clean.shape[0]
    yy, xx = _grid(s)
    cy, cx = rng.uniform(0.2 * s, 0.8 * s, 2)
    a = rng.uniform(0.05, 0.1) * s
    b = a * rng.uniform(0.6, 1.0)
    phi = rng.uniform(0, np.pi)
    u = (xx - cx) * np.cos(phi) + (yy - cy) * np.sin(phi)
    v = -(xx - cx) * np.sin(phi) + (yy - cy) * np.cos(phi)
    rho = np.hypot(u / a, v / b)
    cover = np.clip((1 - rho) * b + 0.5, 0, 1)
    light = rng.uniform(0, 2 * np.pi)
    side = np.clip((u * np.cos(light) + v * np.sin(light)) / a, -1, 1)
    grey = rng.uniform(20, 45) + rng.uniform(15, 35) * (0.5 + 0.5 * side) * np.clip(rho, 0, 1) ** 2
    texture = 0.15 * (clean.astype(np.float32) - clean.mean())        # a trace of the surface shows through
    paint = grey[..., None] * _local_tint(clean) + texture + rng.normal(0, FILL_NOISE, clean.shape)
    return paint.astype(np.float32), cover.astype(np.float32), np.full_like(cover, rng.uniform(0.85, 1.0))


def _paint_stain(clean, rng, donor):
    """A colour-tinted blob with an irregular border and uneven density."""
    s = clean.shape[0]
    cover = _blob(rng, s, rng.uniform(0.06, 0.12) * s, edge=1.5)
    colours = [(1.0, 0.62, 0.35), (0.45, 0.42, 0.38), (1.05, 0.95, 0.45), (0.6, 0.85, 0.95)]
    colour = np.asarray(colours[int(rng.integers(len(colours)))], np.float32)
    paint = clean.astype(np.float32) * colour * rng.uniform(0.8, 1.0)
    density = rng.uniform(0.55, 0.85) * (0.7 + 0.3 * _smooth_field(rng, s, s / 16))
    return paint, cover, density.astype(np.float32)


def _paint_missing(clean, rng, donor):
    """A chipped-off patch (irregular polygon) replaced by a blurred, slightly darker fill."""
    from scipy.ndimage import gaussian_filter
    from skimage.draw import polygon2mask

    s = clean.shape[0]
    centre = rng.uniform(0.2 * s, 0.8 * s, 2)
    n = int(rng.integers(5, 9))
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    radii = rng.uniform(0.07, 0.12) * s * rng.uniform(0.7, 1.0, n)
    poly = centre + radii[:, None] * np.stack([np.sin(angles), np.cos(angles)], 1)
    cover = polygon2mask((s, s), poly).astype(np.float32)
    fill = gaussian_filter(clean.astype(np.float32), sigma=(s / 20, s / 20, 0)) * rng.uniform(0.7, 0.9)
    paint = fill + rng.normal(0, FILL_NOISE, clean.shape)
    return paint.astype(np.float32), cover, np.ones_like(cover)


def _paint_misplaced(clean, rng, donor):
    """A square patch of the same texture copied from elsewhere in the image, rotated, a little lighter or darker."""
    from skimage.transform import rotate

    s = clean.shape[0]
    side = int(round(rng.uniform(0.12, 0.2) * s))
    window = min(s, int(math.ceil(side * 1.5)))
    top, left = rng.integers(0, s - side + 1, 2)
    for _ in range(100):                                    # a source window away from the target
        sy, sx = rng.integers(0, s - window + 1, 2)
        cy, cx = sy + (window - side) // 2, sx + (window - side) // 2
        if abs(cy - top) >= side or abs(cx - left) >= side:
            break
    patch = rotate(clean[sy:sy + window, sx:sx + window].astype(np.float32), rng.uniform(30, 150),
                   order=1, preserve_range=True)
    patch = patch * (1 + rng.choice([-1, 1]) * rng.uniform(0.06, 0.12))   # the loose piece catches the light
    off = (window - side) // 2
    paint = clean.astype(np.float32).copy()
    paint[top:top + side, left:left + side] = patch[off:off + side, off:off + side]
    cover = np.zeros((s, s), np.float32)
    cover[top:top + side, left:left + side] = 1
    return paint, cover, np.ones_like(cover)


def _paint_foreign(clean, rng, donor):
    """An irregular patch of another texture (`donor`, else this image zoomed and turned)."""
    s = clean.shape[0]
    if donor is None:
        from PIL import Image
        q = s // 3
        donor = np.asarray(Image.fromarray(np.rot90(clean[:q, :q]).copy()).resize((s, s)))
    cover = _blob(rng, s, rng.uniform(0.07, 0.12) * s, edge=1.0)
    # Mostly the texture is foreign: the donor takes this image's mean brightness and half its hue.
    donor = donor.astype(np.float32)
    donor = donor - donor.mean() + clean.astype(np.float32).mean()
    paint = 0.5 * donor + 0.5 * donor.mean(-1, keepdims=True) * _local_tint(clean)
    return paint, cover, np.full_like(cover, rng.uniform(0.85, 1.0))


PAINTERS: dict[str, Painter] = {
    "scratch": _paint_scratch, "crack": _paint_crack, "hole": _paint_hole, "stain": _paint_stain,
    "missing": _paint_missing, "misplaced": _paint_misplaced, "foreign": _paint_foreign,
}


def make_defect(clean: np.ndarray, defect_type: str, rng: np.random.Generator,
                donor: Optional[np.ndarray] = None, severity: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Paint `defect_type` on `clean` (H x W x 3 uint8); return (defective uint8, mask bool).

    `severity` in (0, 1] scales how strongly the paint replaces the surface (subtle defects at low values).
    The mask is exactly the pixels that changed: `mask == (defective != clean).any(-1)`.
    Shapes are redrawn until the mask covers AREA_RANGE of the image.
    """
    if not 0.0 < severity <= 1.0:
        raise BgadError(f"severity must lie in (0, 1], got {severity}")
    if defect_type not in PAINTERS:
        raise BgadError(f"unknown defect type {defect_type!r}; choose one of {', '.join(DEFECT_TYPES)}")
    if clean.dtype != np.uint8 or clean.ndim != 3 or clean.shape[2] != 3:
        raise BgadError(f"make_defect needs an H x W x 3 uint8 image, got {clean.dtype} {clean.shape}")
    n = clean.shape[0] * clean.shape[1]
    for _ in range(200):
        paint, cover, strength = PAINTERS[defect_type](clean, rng, donor)
        region = cover >= 0.35
        if AREA_RANGE[0] <= region.sum() / n <= AREA_RANGE[1]:
            break
    else:
        raise RuntimeError(f"could not draw a {defect_type} of acceptable area on a {clean.shape} image")
    weight = np.where(region, cover * strength * severity, 0.0)[..., None]
    base = clean.astype(np.float32)
    defective = to_uint8(base * (1 - weight) + paint * weight)
    defective[~region] = clean[~region]
    # Pixels of the region that the rounding left unchanged move one grey level towards the paint.
    same = region & (defective == clean).all(-1)
    if same.any():
        toward = np.where((paint - base).mean(-1) < 0, -1, 1)[same][:, None]
        vals = clean[same].astype(np.int16)
        toward = np.where((vals + toward < 0) | (vals + toward > 255), -toward, toward)
        defective[same] = (vals + toward).astype(np.uint8)
    return defective, region


# ----------------------------------------------------------------------------- writing
def severity(sample: Sample, seed: int) -> float:
    """How strongly `sample`'s defect is painted in: uniform in SEVERITY, from its own random stream (1 if good)."""
    if sample.label == "good":
        return 1.0
    return float(sample_rng(seed, sample, "severity").uniform(*SEVERITY))


def render(sample: Sample, seed: int, size: int,
           sources: dict[str, np.ndarray]) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """The image of `sample` (uint8 RGB) and its mask (bool, or None for good images)."""
    rng = sample_rng(seed, sample)
    clean = render_clean(sources[sample.category], sample.category, sample.split, size, rng)
    if sample.label == "good":
        return clean, None
    donor = None
    if sample.label == "foreign":
        donor_rng = sample_rng(seed, sample, "donor")
        others = [c for c in CATEGORIES if c != sample.category]
        other = others[int(donor_rng.integers(len(others)))]
        donor = render_clean(sources[other], other, "test", size, donor_rng)
    return make_defect(clean, sample.label, rng, donor, severity=severity(sample, seed))


def _png_bytes(array: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def _prepare_out(out: pathlib.Path) -> None:
    """Make `out`, clearing a previous synthetic dataset there; refuse to mix with other files."""
    meta = out / "meta.json"
    if meta.is_file():
        try:
            previous = json.loads(meta.read_text())
        except (OSError, ValueError):
            previous = {}
        if previous.get("generator") != GENERATOR:
            raise BgadError(f"{out} holds a meta.json not written by {GENERATOR}; choose an empty folder")
        for cat in CATEGORIES:
            if (out / cat).is_dir():
                shutil.rmtree(out / cat)
        meta.unlink()
        (out / "manifest.csv").unlink(missing_ok=True)
    elif out.exists() and not out.is_dir():
        raise BgadError(f"{out} is a file; choose a folder for the synthetic dataset")
    elif out.exists() and any(out.iterdir()):
        raise BgadError(f"{out} is not empty and holds no synthetic dataset; choose an empty or new folder")
    out.mkdir(parents=True, exist_ok=True)


def generate(out: str | pathlib.Path, profile: str = "book", seed: int = 0,
             categories: Iterable[str] = CATEGORIES, progress: bool = True) -> pathlib.Path:
    """Write the synthetic dataset in the MVTec layout under `out`, with meta.json and manifest.csv.

    The same (profile, seed, categories) gives byte-identical files. A previous synthetic dataset
    in `out` is replaced; any other non-empty folder is refused.
    """
    from tqdm.auto import tqdm
    import skimage

    sizes = check_profile(profile)
    cats = check_categories(categories)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise BgadError(f"seed must be a non-negative integer, got {seed!r}")
    out = pathlib.Path(out)
    _prepare_out(out)

    sources = {c: load_source(c) for c in CATEGORIES}      # all three: `foreign` borrows from the others
    samples = plan(profile, cats)
    rows = []
    for sample in tqdm(samples, desc=f"synthetic {profile}", unit="img", disable=not progress):
        image, mask = render(sample, int(seed), sizes["img_size"], sources)
        path = out / sample.file
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_png_bytes(image))
        area = 0.0
        if mask is not None:
            mpath = out / sample.mask_file
            mpath.parent.mkdir(parents=True, exist_ok=True)
            mpath.write_bytes(_png_bytes(mask.astype(np.uint8) * 255))
            area = float(mask.mean())
        rows.append([sample.file, sample.category, sample.split, sample.label,
                     DEFECT_TYPES.get(sample.label, "none"), f"{area:.6f}", f"{severity(sample, int(seed)):.4f}"])

    with open(out / "manifest.csv", "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["file", "category", "split", "defect_type", "family", "mask_area_fraction", "severity"])
        writer.writerows(rows)
    meta = dict(
        generator=GENERATOR, generator_version=GENERATOR_VERSION, scikit_image_version=skimage.__version__,
        profile=profile, seed=int(seed), img_size=sizes["img_size"], sizes=dict(sizes),
        categories=list(cats), defect_types=dict(DEFECT_TYPES),
        families=sorted(set(DEFECT_TYPES.values())),
        sources={c: dict(SOURCES[c], tint=list(TINTS[c])) for c in cats},
        layout="MVTec: CATEGORY/{train,test}/LABEL/NNN.png, CATEGORY/ground_truth/DEFECT/NNN_mask.png (0/255)",
        split=dict(source_rows=SOURCE_ROWS, note="train and test crops come from disjoint row bands"),
        augmentation=dict(base_crop=BASE_CROP, crop_scale=CROP_SCALE, flips="horizontal, vertical",
                          gain=GAIN, bias=BIAS, noise_sigma=NOISE_SIGMA),
        mask_area_range=AREA_RANGE, severity_range=SEVERITY,
        counts={c: {"train/good": sizes["n_train"], "test/good": sizes["n_test_good"],
                    **{f"test/{d}": sizes["n_per_defect"] for d in DEFECT_TYPES}} for c in cats},
        licence_note="Source photos are CC0 1.0 (see sources); the defects are synthetic.",
    )
    (out / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return out


def ensure(data_root: str | pathlib.Path, profile: str = "book", seed: int = 0) -> bool:
    """Make the offline default dataset at `data_root` if it is missing (a fresh checkout, Colab); True if made.

    Only a missing or empty folder named `synthetic*` is filled (the `smoke` sizes for the smoke profile, the
    `book` sizes otherwise); an existing dataset is left alone, and a missing real dataset (MVTecAD) is left to
    `prepare_data`'s error, which says how to get it.
    """
    root = pathlib.Path(data_root)
    if (root / "meta.json").exists() or not root.name.startswith("synthetic"):
        return False
    if root.exists() and any(root.iterdir()):
        return False
    generate(root, profile="smoke" if profile == "smoke" else "book", seed=seed, progress=False)
    return True
