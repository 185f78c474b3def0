"""The MVTec-layout reader, the BTAD adapter, bad-input messages, and the known-anomaly splits."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bgad_mini.cli import main
from bgad_mini.data import Item, load_image, load_items, load_mask, read_category, split_known_anomalies
from bgad_mini.errors import BgadError

from conftest import make_tiny_mvtec, write_png


def test_reader_pairs_every_defect_with_its_mask(tiny_root):
    cat = read_category(tiny_root, "widget")
    assert len(cat.train) == 4 and cat.has_masks and cat.layout == "mvtec"
    assert cat.defect_types == ["hole", "scratch"]
    defects = [it for it in cat.test if it.label == 1]
    assert len(defects) == 6 and len(cat.test) == 9
    for it in defects:
        assert Path(it.mask_path).name == Path(it.path).stem + "_mask.png"
        assert Path(it.mask_path).parent.name == it.defect_type
    assert all(it.mask_path is None and it.defect_type == "good" for it in cat.test if it.label == 0)


def test_masks_are_binarised_and_resized_with_nearest(tiny_root):
    cat = read_category(tiny_root, "widget")
    it = next(i for i in cat.test if i.defect_type == "scratch" and i.path.endswith("001.png"))
    m = load_mask(it.mask_path, 32)
    assert m.dtype == np.uint8 and set(np.unique(m)) == {0, 1}
    assert m[0, 0] == 0  # value 100 <= 127
    assert m.sum() == 8 * 8  # rows 4..12, cols 4..12
    m16 = load_mask(it.mask_path, 16)
    assert set(np.unique(m16)) <= {0, 1} and m16.sum() == 16  # nearest keeps it binary: a 4x4 block
    assert load_mask(None, 8).sum() == 0


def test_grayscale_images_become_three_channels_and_resize_bilinear(tmp_path):
    p = write_png(tmp_path / "g.png", np.full((10, 10), 200, np.uint8))
    img = load_image(str(p), 20)
    assert img.shape == (20, 20, 3) and img.dtype == np.float32
    assert np.allclose(img, 200 / 255)
    ramp = np.tile(np.array([0, 255], np.uint8), (2, 1))
    p2 = write_png(tmp_path / "ramp.png", ramp)
    mid = load_image(str(p2), 4)[0, :, 0]
    assert 0 < mid[1] < 1 and 0 < mid[2] < 1  # interpolated, not nearest


def test_load_items_stacks_images_and_masks(tiny_root):
    cat = read_category(tiny_root, "widget")
    images, masks = load_items(cat.test, 16)
    assert images.shape == (9, 16, 16, 3) and masks.shape == (9, 16, 16)
    labels = np.array([it.label for it in cat.test])
    assert masks[labels == 0].sum() == 0 and (masks[labels == 1].reshape(6, -1).sum(1) > 0).all()


def test_category_without_ground_truth_is_image_level(tmp_path):
    root = make_tiny_mvtec(tmp_path / "r", masks=False)
    cat = read_category(root, "widget")
    assert not cat.has_masks
    assert all(it.mask_path is None for it in cat.test)


def test_btad_adapter_reads_ok_ko_and_bmp_masks(tmp_path):
    root = make_tiny_mvtec(tmp_path / "btad", category="03", types=("ko",), good="ok", mask_suffix="", mask_ext=".bmp")
    cat = read_category(root, "03")
    assert cat.layout == "btad"
    assert cat.defect_types == ["ko"]
    assert sum(it.label == 0 for it in cat.test) == 3
    assert all(it.mask_path.endswith(".bmp") for it in cat.test if it.label == 1)
    assert load_mask([it for it in cat.test if it.label == 1][-1].mask_path, 32).max() == 1


# ---- bad input: one clear line naming problem and fix --------------------------------------------
def _error(fn, *args, **kwargs) -> str:
    with pytest.raises(BgadError) as exc:
        fn(*args, **kwargs)
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_missing_root_says_how_to_get_data(tmp_path):
    msg = _error(read_category, tmp_path / "nope", "widget")
    assert "does not exist" in msg and "bgad-mini data synth" in msg and "bgad-mini data mvtec" in msg


def test_unknown_category_lists_the_ones_found(tiny_root):
    msg = _error(read_category, tiny_root, "bottle")
    assert "unknown category 'bottle'" in msg and "widget" in msg


def test_defect_without_mask_is_named(tiny_root):
    (tiny_root / "widget" / "ground_truth" / "hole" / "002_mask.png").unlink()
    msg = _error(read_category, tiny_root, "widget")
    assert "hole/002.png" in msg and "no mask" in msg


def test_mask_size_mismatch_names_both_files(tiny_root):
    write_png(tiny_root / "widget" / "ground_truth" / "scratch" / "000_mask.png", np.zeros((16, 16), np.uint8))
    msg = _error(read_category, tiny_root, "widget")
    assert "scratch/000_mask.png" in msg and "scratch/000.png" in msg and "16x16" in msg and "32x32" in msg


def test_no_training_images(tiny_root):
    for p in (tiny_root / "widget" / "train" / "good").iterdir():
        p.unlink()
    assert "no training images" in _error(read_category, tiny_root, "widget")


def test_corrupt_image_is_named(tiny_root):
    bad = tiny_root / "widget" / "test" / "hole" / "000.png"
    bad.write_bytes(b"not a png at all")
    msg = _error(read_category, tiny_root, "widget")
    assert "hole/000.png" in msg and "cannot read" in msg
    assert "cannot read" in _error(load_image, str(bad), 8)


def test_cli_turns_errors_into_one_line_and_exit_2(tmp_path, capsys):
    code = main(["run", "--data-root", str(tmp_path / "missing"), "--category", "x", "--profile", "smoke",
                 "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and err.startswith("bgad-mini: error:") and "does not exist" in err


# ---- known anomalies -----------------------------------------------------------------------------
def _items(types: dict[str, int], n_good: int = 5) -> list[Item]:
    items = [Item(f"/d/test/good/{i:03d}.png", 0, "good") for i in range(n_good)]
    for t, n in types.items():
        items += [Item(f"/d/test/{t}/{i:03d}.png", 1, t, f"/d/gt/{t}/{i:03d}_mask.png") for i in range(n)]
    return items


def test_multi_class_spreads_n_evenly_then_draws_the_remainder():
    items = _items({"a": 6, "b": 6, "c": 6})
    split = split_known_anomalies(items, 10, "multi-class", seed=3)
    counts = {t: sum(it.defect_type == t for it in split.known) for t in "abc"}
    assert sum(counts.values()) == 10 and sorted(counts.values()) in ([3, 3, 4],)
    assert split.unseen_types == [] and split.seen_types == ["a", "b", "c"]


def test_split_is_deterministic_and_never_leaks():
    items = _items({"a": 8, "b": 8})
    s1 = split_known_anomalies(items, 5, "multi-class", seed=7)
    s2 = split_known_anomalies(list(reversed(items)), 5, "multi-class", seed=7)
    assert [i.path for i in s1.known] == [i.path for i in s2.known]
    assert {i.path for i in s1.known}.isdisjoint({i.path for i in s1.test})
    assert len(s1.test) + len(s1.known) == len(items)
    others = {tuple(i.path for i in split_known_anomalies(items, 5, "multi-class", seed=s).known) for s in range(6)}
    assert len(others) > 1  # the seed matters


def test_one_class_draws_only_from_known_types():
    items = _items({"a": 6, "b": 6, "c": 6})
    split = split_known_anomalies(items, 4, "one-class", known_types=["b"], seed=0)
    assert {i.defect_type for i in split.known} == {"b"} and len(split.known) == 4
    assert split.seen_types == ["b"] and split.unseen_types == ["a", "c"]
    assert sum(i.defect_type == "b" for i in split.test) == 2


def test_split_errors_are_clear():
    items = _items({"a": 3, "b": 6})
    assert "too few" in _error(split_known_anomalies, items, 6, "multi-class")  # 3 per type, 'a' has 3
    assert "--known-types" in _error(split_known_anomalies, items, 2, "one-class")
    assert "types found: a, b" in _error(split_known_anomalies, items, 2, "one-class", ["zzz"])
    assert "lower --n-known" in _error(split_known_anomalies, items, 3, "one-class", ["a"])
