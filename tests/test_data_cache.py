"""Image cache: decode once, reuse, rebuild on key change, atomic, squash resize."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from bench.data import cache
from bench.data.base import DataError
from fixtures_data import write_image


def _images(tmp_path, n=5):
    paths = []
    for i in range(n):
        write_image(tmp_path / "img" / f"{i}.jpg", seed=i, size=(64, 32))
        paths.append(str(tmp_path / "img" / f"{i}.jpg"))
    return paths


def _raise(*_a, **_k):
    raise AssertionError("decoded although cached")


def test_second_load_does_not_decode(tmp_path, monkeypatch):
    paths = _images(tmp_path)
    first = cache.cached_images("toy", "train", paths, 16, tmp_path / "c")
    monkeypatch.setattr(cache, "decode_resized", _raise)
    second = cache.cached_images("toy", "train", paths, 16, tmp_path / "c")
    assert second.folder == first.folder and isinstance(second.images, np.memmap)
    np.testing.assert_array_equal(first.images, second.images)
    assert [p.name for p in (tmp_path / "c").iterdir()] == [first.folder.name]  # no temp left
    with pytest.raises(AssertionError, match="decoded"):  # another resolution or file list: new key
        cache.cached_images("toy", "train", paths, 12, tmp_path / "c")
    with pytest.raises(AssertionError, match="decoded"):
        cache.cached_images("toy", "train", paths[:4], 16, tmp_path / "c")


def test_squash_resize_matches_pil(tmp_path):
    path = tmp_path / "a.png"  # PNG: no draft mode, so the reference is exact
    write_image(path, seed=3, size=(64, 32), fmt="PNG")
    got = cache.cached_images("toy", "test", [str(path)], 16, tmp_path / "c").images[0]
    want = np.asarray(Image.open(path).convert("RGB").resize((16, 16), Image.BILINEAR))
    np.testing.assert_array_equal(got, want)  # aspect ratio 2:1 squashed to 1:1


def test_pool_path_and_compaction(tmp_path, monkeypatch):
    monkeypatch.setattr(cache, "_IN_PROCESS_BELOW", 2)
    monkeypatch.setattr(cache, "_CHUNK", 3)
    monkeypatch.setenv("BENCH_CACHE_WORKERS", "2")
    paths = _images(tmp_path, 8)
    paths.insert(2, str(tmp_path / "missing.jpg"))
    with pytest.raises(DataError, match="missing.jpg: image file missing"):
        cache.cached_images("toy", "train", paths, 8, tmp_path / "c")
    got = cache.cached_images("toy", "train", paths, 8, tmp_path / "c", skip_bad=True)
    assert got.kept.tolist() == [0, 1, 3, 4, 5, 6, 7, 8] and got.skipped == (paths[2],)
    for row, i in enumerate(got.kept):
        np.testing.assert_array_equal(got.images[row], cache.decode_resized(paths[i], 8))
    with pytest.raises(DataError, match="cached as bad"):  # a cache with skipped files, used strictly
        cache.cached_images("toy", "train", paths, 8, tmp_path / "c")


def test_jpeg_draft_decode_close_to_full_decode(tmp_path):
    path = tmp_path / "big.jpg"
    write_image(path, seed=1, size=(640, 480))
    fast = cache.decode_resized(str(path), 64).astype(int)
    full = np.asarray(Image.open(path).convert("RGB").resize((64, 64), Image.BILINEAR)).astype(int)
    assert fast.shape == (64, 64, 3) and np.abs(fast - full).mean() < 40  # noise image: loose bound


def test_fingerprint_same_with_and_without_pixels(tmp_path):
    import bench.data as data
    from fixtures_data import make_generic_fixture

    root = make_generic_fixture(tmp_path / "data")

    def load(**options):
        return data.load("generic", {"file": "labels.csv", **options}, resolution=8,
                         data_root=str(root), cache_dir=tmp_path / "c")

    full, labels = load(), load(labels_only=True)
    assert full.fingerprint == labels.fingerprint
    assert load(unknown_train="ignore").fingerprint != full.fingerprint
