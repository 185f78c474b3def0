"""The frozen backbone: offline ImageNet weights are real, shapes per level, clear errors, and the feature cache."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bgad_mini import backbone
from bgad_mini.data import Item, load_image, normalize
from bgad_mini.errors import BgadError


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def lite0() -> backbone.FeatureExtractor:
    return backbone.build_extractor("efficientnet_lite0", (1, 2, 3), "cpu")


@pytest.fixture
def counted_builds(monkeypatch, lite0):
    """Replace the builder by one that returns the shared extractor and counts its calls."""
    calls: list[tuple] = []
    real_build = backbone.build_extractor

    def fake_build(name, stages=None, device="cpu"):
        calls.append((name, tuple(stages), device))
        return lite0 if (name, tuple(stages)) == ("efficientnet_lite0", lite0.stages) else real_build(name, stages, device)

    monkeypatch.setattr(backbone, "build_extractor", fake_build)
    return calls


def _make_items(folder: Path, n: int = 5, size: int = 64, seed: int = 0) -> list[Item]:
    rng = np.random.default_rng(seed)
    (folder / "good").mkdir(parents=True, exist_ok=True)
    items = []
    for i in range(n):
        path = folder / "good" / f"{i:03d}.png"
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
        items.append(Item(str(path), 0, "good"))
    return items


# ----------------------------------------------------------------------------------------------
# Offline weights
# ----------------------------------------------------------------------------------------------
def test_lite0_weights_map_one_to_one_by_shape():
    import timm

    source = torch.load(backbone.lite0_weight_file(), map_location="cpu", weights_only=True)
    target = timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict()
    mapped = backbone.map_by_order(source, target)
    assert len(source) == len(target) == len(mapped) == 296
    assert list(mapped) == list(target)
    assert all(mapped[k].shape == target[k].shape for k in target)

    wrong_shape = dict(source)
    first = next(iter(wrong_shape))
    wrong_shape[first] = torch.zeros(1)
    with pytest.raises(RuntimeError, match="does not fit"):
        backbone.map_by_order(wrong_shape, target)
    with pytest.raises(RuntimeError, match="296"):
        backbone.map_by_order(dict(list(source.items())[:-1]), target)


def test_offline_weights_are_imagenet_weights():
    """The classifier with the mapped weights calls skimage's chelsea an Egyptian cat (ImageNet class 285)."""
    from skimage import data

    img = Image.fromarray(data.chelsea())  # 451 x 300
    w, h = img.size
    scale = 256 / min(w, h)
    img = img.resize((round(w * scale), round(h * scale)), Image.BICUBIC)
    w, h = img.size
    left, top = (w - 224) // 2, (h - 224) // 2
    img = img.crop((left, top, left + 224, top + 224))
    x = torch.from_numpy(normalize(np.asarray(img, np.float32)[None] / 255.0))
    model = backbone.build_classifier("efficientnet_lite0")
    with torch.no_grad():
        top3 = model(x).softmax(1).topk(3).indices[0].tolist()
    assert top3[0] == 285
    assert set(top3) <= {281, 282, 283, 284, 285, 286, 287}  # all cats


def test_extractor_levels_at_256(lite0):
    assert lite0.channels == [24, 40, 112]
    assert lite0.strides == [4, 8, 16]
    feats = backbone.extract(lite0, np.random.default_rng(0).random((2, 256, 256, 3), dtype=np.float32))
    assert [tuple(f.shape) for f in feats] == [(2, 24, 64, 64), (2, 40, 32, 32), (2, 112, 16, 16)]
    assert all(f.dtype == torch.float32 and not f.requires_grad for f in feats)
    assert not any(p.requires_grad for p in lite0.parameters())
    lite0.train()
    assert not lite0.training and not lite0.body.training  # frozen: stays in eval mode


def test_stages_are_checked_and_default_per_backbone():
    assert backbone.resolve_stages("wide_resnet50_2", None) == (2, 3, 4)
    assert backbone.resolve_stages("tf_efficientnet_b6", ()) == (1, 2, 3)
    for bad in [(3, 2), (1, 1), (1, 5)]:
        with pytest.raises(BgadError, match="stages"):
            backbone.resolve_stages("efficientnet_lite0", bad)


# ----------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------
def test_unknown_backbone_lists_the_known_ones():
    with pytest.raises(BgadError) as info:
        backbone.build_extractor("resnet9000")
    msg = str(info.value)
    assert "\n" not in msg and "resnet9000" in msg
    assert all(name in msg for name in backbone.BACKBONES)


def _assert_offline_message(msg: str) -> None:
    assert "\n" not in msg
    assert "tf_efficientnet_b6" in msg and "offline" in msg
    assert "--set backbone=efficientnet_lite0" in msg


def test_b6_offline_fails_fast(monkeypatch):
    """No local copy and no network: a one-line error at once, not huggingface_hub's 45 s of retries."""
    import timm

    monkeypatch.setattr(backbone, "_cached_weight_file", lambda model_id: None)
    monkeypatch.setattr(backbone, "_behind_proxy", lambda: False)
    monkeypatch.setattr(backbone, "_hub_reachable", lambda: False)
    tried: list[str] = []
    monkeypatch.setattr(timm, "create_model", lambda *a, **k: tried.append(a[0]))
    with pytest.raises(BgadError) as info:
        backbone.build_extractor("tf_efficientnet_b6", (1, 2, 3))
    assert tried == []  # never even tried to download (how fast: bench/bench_offline.py)
    _assert_offline_message(str(info.value))


def test_b6_failed_download_is_a_one_line_error(monkeypatch):
    """If the probe passes but the download fails (e.g. a proxy), the hub's exception becomes a BgadError."""
    import timm
    from huggingface_hub.errors import LocalEntryNotFoundError

    def no_download(*args, **kwargs):
        raise LocalEntryNotFoundError("An error happened while trying to locate the file on the Hub ...")

    monkeypatch.setattr(backbone, "_cached_weight_file", lambda model_id: None)
    monkeypatch.setattr(backbone, "_hub_reachable", lambda: True)
    monkeypatch.setattr(timm, "create_model", no_download)
    with pytest.raises(BgadError) as info:
        backbone.build_extractor("tf_efficientnet_b6", (1, 2, 3))
    _assert_offline_message(str(info.value))
    assert "LocalEntryNotFoundError" in str(info.value)


def test_hub_probe_says_no_for_an_unreachable_host(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert backbone._hub_reachable("weights.invalid", timeout=1.0) is False  # its time: bench/bench_offline.py
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert backbone._hub_reachable() is False


# ----------------------------------------------------------------------------------------------
# Feature cache
# ----------------------------------------------------------------------------------------------
def test_cache_hit_does_no_backbone_work(tmp_path, counted_builds, lite0):
    items = _make_items(tmp_path / "data")
    first = backbone.FeatureCache(tmp_path / "cache").features("efficientnet_lite0", (1, 2, 3), 64, items, progress=False)
    assert len(counted_builds) == 1
    assert [a.shape for a in first] == [(5, 24, 16, 16), (5, 40, 8, 8), (5, 112, 4, 4)]
    assert all(a.dtype == np.float16 for a in first)
    assert [p.suffix for p in (tmp_path / "cache" / "features").iterdir()] == [".npz"]  # no temp files left

    calls = {"forward": 0}
    original_forward = backbone.FeatureExtractor.forward

    def counting_forward(self, x):
        calls["forward"] += 1
        return original_forward(self, x)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(backbone.FeatureExtractor, "forward", counting_forward)
        again = backbone.FeatureCache(tmp_path / "cache").features("efficientnet_lite0", (1, 2, 3), 64, items, progress=False)
    assert len(counted_builds) == 1 and calls["forward"] == 0  # built nothing, ran nothing
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)


def test_cache_key_follows_content_size_and_stages(tmp_path, counted_builds):
    items = _make_items(tmp_path / "data")
    cache = backbone.FeatureCache(tmp_path / "cache")
    key = backbone.cache_key("efficientnet_lite0", (1, 2, 3), 64, items)
    before = cache.features("efficientnet_lite0", (1, 2, 3), 64, items, progress=False)
    assert cache.path(key).is_file()
    assert backbone.cache_key("efficientnet_lite0", (1, 2, 3), 64, items) == key  # stable
    assert backbone.cache_key("efficientnet_lite0", (1, 2, 3), 96, items) != key
    assert backbone.cache_key("efficientnet_lite0", (1, 2), 64, items) != key
    assert backbone.cache_key("efficientnet_lite0", (1, 2, 3), 64, items[::-1]) != key

    # same file name, different bytes: a miss, recomputed, with different features for that image only
    Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(items[2].path)
    assert backbone.cache_key("efficientnet_lite0", (1, 2, 3), 64, items) != key
    n_before = len(counted_builds)
    n_files = len(list(cache.dir.iterdir()))
    after = backbone.FeatureCache(tmp_path / "cache").features("efficientnet_lite0", (1, 2, 3), 64, items, progress=False)
    assert len(counted_builds) == n_before + 1 and len(list(cache.dir.iterdir())) == n_files + 1
    np.testing.assert_array_equal(after[0][[0, 1, 3, 4]], before[0][[0, 1, 3, 4]])
    assert not np.array_equal(after[0][2], before[0][2])

    # another size: a new entry with the other spatial size
    bigger = cache.features("efficientnet_lite0", (1, 2, 3), 96, items, progress=False)
    assert [a.shape[-1] for a in bigger] == [24, 12, 6]


def test_cached_features_equal_fresh_ones(tmp_path, counted_builds, lite0):
    items = _make_items(tmp_path / "data", n=3, seed=1)
    cached = backbone.FeatureCache(tmp_path / "cache").features("efficientnet_lite0", (1, 2, 3), 64, items, batch_size=2, progress=False)
    images = np.stack([load_image(it.path, 64) for it in items])
    fresh = backbone.extract(lite0, images, "cpu", batch_size=3)
    for c, f in zip(cached, fresh):
        np.testing.assert_allclose(c.astype(np.float32), f.numpy(), rtol=2e-3, atol=2e-3)


def test_corrupt_cache_file_is_recomputed(tmp_path, counted_builds):
    items = _make_items(tmp_path / "data", n=2)
    cache = backbone.FeatureCache(tmp_path / "cache")
    good = cache.features("efficientnet_lite0", (1, 2, 3), 64, items, progress=False)
    path = cache.path(backbone.cache_key("efficientnet_lite0", (1, 2, 3), 64, items))
    path.write_bytes(b"not a zip file")
    again = backbone.FeatureCache(tmp_path / "cache").features("efficientnet_lite0", (1, 2, 3), 64, items, progress=False)
    for a, b in zip(good, again):
        np.testing.assert_array_equal(a, b)
    assert len(counted_builds) == 2


def test_b6_really_offline_fails_fast():
    """The unpatched path, only where there truly is no network and no local copy (never downloads in CI)."""
    if backbone._hub_reachable() or backbone._cached_weight_file("tf_efficientnet_b6.aa_in1k") or backbone._behind_proxy():
        pytest.skip("a network, a proxy or cached weights are present: this check is for offline machines")
    with pytest.raises(BgadError) as info:
        backbone.build_extractor("tf_efficientnet_b6")
    _assert_offline_message(str(info.value))


def test_level_names_follow_the_stages():
    from bgad_mini.backbone import BACKBONES, level_names

    assert level_names((2, 3)) == ["/8", "/16"]
    for spec in BACKBONES.values():
        assert level_names(spec.default_stages) == [f"/{s}" for s in spec.strides]
