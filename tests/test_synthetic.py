"""The synthetic dataset: MVTec layout, exact masks, disjoint train/test crops, determinism, errors."""
from __future__ import annotations

import csv
import json
import pathlib

import numpy as np
import pytest
from PIL import Image

from bgad_mini.errors import BgadError
from bgad_mini import synthetic as syn

SMOKE = syn.PROFILE_SIZES["smoke"]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> pathlib.Path:
    return syn.generate(tmp_path_factory.mktemp("synth") / "data", "smoke", seed=0, progress=False)


def _files(root: pathlib.Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _clean(category: str, seed: int, size: int = 64) -> np.ndarray:
    return syn.render_clean(syn.load_source(category), category, "test", size, np.random.default_rng(seed))


def test_layout_for_every_category(smoke):
    for cat in syn.CATEGORIES:
        assert len(list((smoke / cat / "train" / "good").glob("*.png"))) == SMOKE["n_train"]
        assert len(list((smoke / cat / "test" / "good").glob("*.png"))) == SMOKE["n_test_good"]
        for defect in syn.DEFECT_TYPES:
            assert len(list((smoke / cat / "test" / defect).glob("*.png"))) == SMOKE["n_per_defect"]
            assert len(list((smoke / cat / "ground_truth" / defect).glob("*_mask.png"))) == SMOKE["n_per_defect"]
        assert not (smoke / cat / "ground_truth" / "good").exists()
    image = Image.open(smoke / "brick" / "train" / "good" / "000.png")
    assert image.mode == "RGB" and image.size == (SMOKE["img_size"], SMOKE["img_size"])


def test_every_defect_has_a_binary_mask_of_its_size(smoke):
    for cat in syn.CATEGORIES:
        for defect in syn.DEFECT_TYPES:
            for path in sorted((smoke / cat / "test" / defect).glob("*.png")):
                mask_path = smoke / cat / "ground_truth" / defect / f"{path.stem}_mask.png"
                mask = np.asarray(Image.open(mask_path))
                assert mask.shape == Image.open(path).size[::-1]
                assert set(np.unique(mask)) <= {0, 255} and mask.max() == 255
                assert 0.002 <= (mask > 0).mean() <= 0.06


@pytest.mark.parametrize("defect", list(syn.DEFECT_TYPES))
def test_mask_is_exactly_the_changed_pixels(defect):
    donor = _clean("grass", 99)
    cases = [(_clean(cat, s), d) for cat in syn.CATEGORIES for s in range(3) for d in (None, donor)]
    cases += [(np.full((64, 64, 3), v, np.uint8), None) for v in (0, 255)]    # saturated: rounding edge cases
    for i, (clean, d) in enumerate(cases):
        defective, mask = syn.make_defect(clean, defect, np.random.default_rng(i), donor=d)
        assert defective.dtype == np.uint8 and defective.shape == clean.shape and mask.dtype == bool
        np.testing.assert_array_equal(mask, (defective != clean).any(-1))
        assert syn.AREA_RANGE[0] <= mask.mean() <= syn.AREA_RANGE[1]


def test_written_masks_match_areas_in_manifest(smoke):
    rows = list(csv.DictReader(open(smoke / "manifest.csv")))
    for row in rows:
        if row["defect_type"] == "good":
            assert float(row["mask_area_fraction"]) == 0.0
            continue
        stem = pathlib.Path(row["file"]).stem
        mask = np.asarray(Image.open(smoke / row["category"] / "ground_truth" / row["defect_type"] / f"{stem}_mask.png"))
        assert abs((mask > 0).mean() - float(row["mask_area_fraction"])) < 1e-6


def test_same_seed_same_bytes_other_seed_differs(smoke, tmp_path):
    again = syn.generate(tmp_path / "again", "smoke", seed=0, progress=False)
    assert _files(again) == _files(smoke)
    other = syn.generate(tmp_path / "other", "smoke", seed=1, categories=("brick",), progress=False)
    a = (smoke / "brick" / "test" / "hole" / "000.png").read_bytes()
    assert (other / "brick" / "test" / "hole" / "000.png").read_bytes() != a


def test_regenerating_replaces_and_foreign_folders_are_refused(tmp_path):
    out = syn.generate(tmp_path / "d", "smoke", seed=0, categories=("gravel",), progress=False)
    syn.generate(out, "smoke", seed=0, categories=("brick",), progress=False)
    assert not (out / "gravel").exists() and (out / "brick").is_dir()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(BgadError, match="not empty"):
        syn.generate(tmp_path / "other", "smoke", progress=False)


@pytest.mark.parametrize("category", syn.CATEGORIES)
def test_train_and_test_crops_come_from_disjoint_regions(category):
    boxes = syn.crop_boxes(category, "book", seed=0)
    assert len(boxes["train"]) == syn.PROFILE_SIZES["book"]["n_train"]
    for split, split_boxes in boxes.items():
        row0, row1 = syn.SOURCE_ROWS[split]
        for top, left, h, w in split_boxes:
            assert row0 <= top and top + h <= row1 and 0 <= left and left + w <= syn.SOURCE_SIZE
    train_bottom = max(top + h for top, _, h, _ in boxes["train"])
    test_top = min(top for top, _, _, _ in boxes["test"])
    assert train_bottom <= test_top


def test_meta_and_manifest(smoke):
    meta = json.loads((smoke / "meta.json").read_text())
    assert meta["generator_version"] == syn.GENERATOR_VERSION and meta["seed"] == 0
    assert meta["profile"] == "smoke" and meta["img_size"] == SMOKE["img_size"]
    assert meta["categories"] == list(syn.CATEGORIES)
    assert meta["defect_types"] == syn.DEFECT_TYPES
    for cat in syn.CATEGORIES:
        assert meta["sources"][cat]["licence"] == "CC0 1.0"
        assert meta["sources"][cat]["function"] == f"skimage.data.{cat}"
    assert not any(k in json.dumps(meta).lower() for k in ("timestamp", "created", "date"))
    rows = list(csv.DictReader(open(smoke / "manifest.csv")))
    assert list(rows[0]) == ["file", "category", "split", "defect_type", "family", "mask_area_fraction", "severity"]
    sev = [float(r["severity"]) for r in rows if r["defect_type"] != "good"]
    assert min(sev) >= syn.SEVERITY[0] and max(sev) <= syn.SEVERITY[1] and np.ptp(sev) > 0.3
    per_cat = SMOKE["n_train"] + SMOKE["n_test_good"] + SMOKE["n_per_defect"] * len(syn.DEFECT_TYPES)
    assert len(rows) == 3 * per_cat
    for row in rows:
        assert (smoke / row["file"]).is_file()
        assert row["family"] == syn.DEFECT_TYPES.get(row["defect_type"], "none")


def test_enough_defect_types_and_families():
    assert len(syn.DEFECT_TYPES) >= 6
    assert len(set(syn.DEFECT_TYPES.values())) >= 3
    assert set(syn.PAINTERS) == set(syn.DEFECT_TYPES)


def test_clear_errors(tmp_path):
    with pytest.raises(BgadError, match="unknown synthetic profile"):
        syn.generate(tmp_path / "a", profile="huge", progress=False)
    with pytest.raises(BgadError, match="unknown synthetic category"):
        syn.generate(tmp_path / "b", "smoke", categories=("carpet",), progress=False)
    with pytest.raises(BgadError, match="seed"):
        syn.generate(tmp_path / "c", "smoke", seed=-1, progress=False)
    with pytest.raises(BgadError, match="unknown defect type"):
        syn.make_defect(np.zeros((64, 64, 3), np.uint8), "dent", np.random.default_rng(0))
    assert not any(tmp_path.iterdir())


def test_ensure_makes_only_a_missing_synthetic_dataset(tmp_path):
    made = tmp_path / "data" / "synthetic_smoke"
    assert syn.ensure(made, profile="smoke") is True
    assert json.loads((made / "meta.json").read_text())["profile"] == "smoke"
    before = (made / "meta.json").stat().st_mtime_ns
    assert syn.ensure(made, profile="smoke") is False and (made / "meta.json").stat().st_mtime_ns == before
    assert syn.ensure(tmp_path / "mvtec", profile="smoke") is False and not (tmp_path / "mvtec").exists()
    other = tmp_path / "synthetic_other"
    (other / "brick").mkdir(parents=True)
    assert syn.ensure(other, profile="smoke") is False  # a non-empty folder is never overwritten


def test_book_sizes_leave_enough_seen_images_after_ten_known():
    book = syn.PROFILE_SIZES["book"]
    assert book["n_per_defect"] - 10 >= 15 and book["n_test_good"] >= 25


def test_severity_scales_the_defect_and_keeps_the_mask_exact():
    clean = syn.render_clean(syn.load_source("brick"), "brick", "test", 128, np.random.default_rng(0))
    change = {}
    for sev in (0.25, 1.0):
        img, mask = syn.make_defect(clean, "missing", np.random.default_rng(7), severity=sev)
        assert np.array_equal(mask, (img != clean).any(-1))
        change[sev] = np.abs(img.astype(float) - clean)[mask].mean()
    assert change[0.25] < 0.5 * change[1.0]
    with pytest.raises(BgadError, match="severity"):
        syn.make_defect(clean, "missing", np.random.default_rng(7), severity=0.0)
