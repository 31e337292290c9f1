"""coco2014 loader on a tiny fixture in the real COCO format (non-contiguous category ids)."""
from __future__ import annotations

import json

import numpy as np
import pytest

import bench.data as data
from bench.data import coco
from bench.data.base import DataError, class_permutation
from fixtures_data import COCO_TRAIN, COCO_VAL, make_coco_fixture


@pytest.fixture
def root(tmp_path):
    return make_coco_fixture(tmp_path / "data")


def _load(root, tmp_path, **options):
    return data.load("coco2014", {"val_fraction": 0.2, **options}, resolution=16, data_root=str(root),
                     cache_dir=tmp_path / "cache")


def _expected(files, classes_by_id):
    return {name: sorted(classes_by_id[c] for c in set(cats)) for name, cats in files.items() if cats}


NAMES = {1: "person", 3: "car", 90: "toothbrush"}


def _labels(split, classes):
    return {i: sorted(classes[c] for c in np.flatnonzero(row == 1)) for i, row in zip(split.ids, split.targets)}


def test_labels_class_order_and_splits(root, tmp_path):
    d = _load(root, tmp_path)
    assert d.classes == ("person", "car", "toothbrush")  # ascending id 1, 3, 90
    assert d.conventions["category_ids"] == [1, 3, 90]
    train_val = {**_labels(d.train, d.classes), **_labels(d.val, d.classes)}
    assert train_val == _expected(COCO_TRAIN, NAMES)  # image without annotations dropped
    assert len(d.train) + len(d.val) == 11 and len(d.val) == 2  # round(11 * 0.2)
    assert not set(d.train.ids) & set(d.val.ids)
    # test = val2014: crowd annotation kept as a label, the empty image dropped
    assert _labels(d.test, d.classes) == _expected(COCO_VAL, NAMES)
    assert _labels(d.test, d.classes)["COCO_val2014_000000000002.jpg"] == ["car"]
    assert d.train.images.shape == (9, 16, 16, 3) and d.train.images.dtype == np.uint8
    assert d.train.targets.dtype == np.int8 and set(np.unique(d.train.targets)) <= {0, 1}


def test_alphabetical_order_and_permutation(root, tmp_path):
    by_id = _load(root, tmp_path)
    alpha = _load(root, tmp_path, class_order="alphabetical")
    assert alpha.classes == ("car", "person", "toothbrush")
    assert alpha.conventions["category_ids"] == [3, 1, 90]
    p = class_permutation(by_id.classes, alpha.classes)
    assert p.tolist() == [1, 0, 2]
    np.testing.assert_array_equal(by_id.test.targets[:, p], alpha.test.targets)
    back = class_permutation(alpha.classes, by_id.classes)
    np.testing.assert_array_equal(alpha.test.targets[:, back], by_id.test.targets)
    with pytest.raises(DataError, match="class lists differ"):
        class_permutation(by_id.classes, ("car", "person", "bus"))


def test_carve_is_deterministic_and_subset_recorded(root, tmp_path):
    a, b = _load(root, tmp_path), _load(root, tmp_path)
    assert a.val.ids == b.val.ids and a.fingerprint == b.fingerprint
    c = _load(root, tmp_path, split_seed=3)
    assert c.fingerprint != a.fingerprint or c.val.ids != a.val.ids
    small = _load(root, tmp_path, train_subset=4)
    assert len(small.train) == 4 and set(small.train.ids) <= set(a.train.ids)
    assert small.val.ids == a.val.ids and len(small.conventions["train_subset_ids_sha256"]) == 16
    assert _load(root, tmp_path, train_subset=4).train.ids == small.train.ids


def test_labels_only_decodes_nothing(root, tmp_path, monkeypatch):
    monkeypatch.setattr("bench.data.cache.decode_resized", _raise)
    d = _load(root, tmp_path, labels_only=True)
    assert d.train.images.shape == (9, 0, 0, 3) and not (tmp_path / "cache").exists()


def _raise(*_a, **_k):
    raise AssertionError("decoded an image")


def test_full_set_count_is_checked(root, tmp_path, monkeypatch):
    monkeypatch.setitem(coco.FULL_SET_COUNTS, "train2014", (12, 10))  # our fixture: 12 images, 11 annotated
    with pytest.raises(DataError, match=r"instances_train2014.json: full train2014 set but 11 .* expected 10"):
        _load(root, tmp_path, labels_only=True)


def test_missing_data_root_and_layout(tmp_path, monkeypatch):
    monkeypatch.delenv("BENCH_DATA_ROOT", raising=False)
    with pytest.raises(DataError, match="--data-root.*BENCH_DATA_ROOT.*instances_train2014.json"):
        data.load("coco2014", {}, resolution=16, data_root=None, cache_dir=tmp_path)
    with pytest.raises(DataError, match="no COCO annotations/ folder.*expected layout"):
        data.load("coco2014", {}, resolution=16, data_root=str(tmp_path), cache_dir=tmp_path)


def test_bad_annotation_files(root, tmp_path):
    ann = root / "coco2014" / "annotations"
    (ann / "instances_val2014.json").unlink()
    with pytest.raises(DataError, match=r"instances_val2014.json: COCO annotation file not found; expected layout"):
        _load(root, tmp_path)
    (ann / "instances_val2014.json").write_text('{"images": [\n')
    with pytest.raises(DataError, match=r"instances_val2014.json: malformed JSON at line 2"):
        _load(root, tmp_path)
    raw = json.loads((ann / "instances_train2014.json").read_text())
    raw["annotations"][3]["category_id"] = 7
    (ann / "instances_train2014.json").write_text(json.dumps(raw))
    with pytest.raises(DataError, match=r"instances_train2014.json: annotation 4 has category_id 7 absent"):
        _load(root, tmp_path)


def test_unknown_option_and_bad_class_order(root, tmp_path):
    with pytest.raises(DataError, match="no option 'clas_order'"):
        _load(root, tmp_path, clas_order="id")
    with pytest.raises(DataError, match="class_order='name' must be one of id, alphabetical"):
        _load(root, tmp_path, class_order="name")


def test_missing_and_truncated_images(root, tmp_path):
    val_dir = root / "coco2014" / "val2014"
    (val_dir / "COCO_val2014_000000000001.jpg").unlink()
    with pytest.raises(DataError, match=r"COCO_val2014_000000000001.jpg: image file missing \(1 of 3 in coco2014/test\).*skip_bad_images"):
        _load(root, tmp_path)
    jpg = val_dir / "COCO_val2014_000000000004.jpg"
    jpg.write_bytes(jpg.read_bytes()[:200])  # truncated JPEG
    d = _load(root, tmp_path, skip_bad_images=True)
    assert d.conventions["skipped_images"] == 2
    assert d.test.ids == ("COCO_val2014_000000000002.jpg",)
    assert d.test.targets.tolist() == [[0, 1, 0]] and d.test.images.shape == (1, 16, 16, 3)


def test_inspect_cli_json_without_pixel_cache(root, tmp_path, capsys, monkeypatch):
    from bench import cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("bench.data.cache.decode_resized", _raise)
    rc = cli.main(["data", "inspect", "--dataset", "coco2014", "--data-root", str(root),
                   "--option", "val_fraction=0.2", "--option", "class_order=alphabetical", "--format", "json"])
    assert rc == 0 and not (tmp_path / ".cache").exists()
    info = json.loads(capsys.readouterr().out)
    assert info["classes"] == ["car", "person", "toothbrush"]
    test = info["splits"]["test"]
    assert test["images"] == 3 and test["positives"] == {"car": 1, "person": 1, "toothbrush": 2}
    assert {"file": "COCO_val2014_000000000001.jpg", "labels": ["person", "toothbrush"],
            "ignored": []} in test["per_image"]
    assert cli.main(["data", "inspect", "--dataset", "coco2014", "--data-root", str(root),
                     "--option", "val_fraction"]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err


def test_without_the_cache_the_workers_decode_the_same_pixels(root, tmp_path, monkeypatch):
    """budget.image_cache: false -> LazyImages: no memmap is written, every image decodes to the
    cache's pixels, and the training DataLoader's workers do the decoding (same batches)."""
    import torch

    from bench.data.cache import LazyImages
    from bench.train.data import Feed

    cached = _load(root, tmp_path)
    lazy = data.load("coco2014", {"val_fraction": 0.2}, resolution=16, data_root=str(root),
                     cache_dir=tmp_path / "nocache", image_cache=False)
    assert not (tmp_path / "nocache").exists() and isinstance(lazy.train.images, LazyImages)
    assert lazy.fingerprint == cached.fingerprint and lazy.conventions["image_cache"] is False
    for name in ("train", "val", "test"):
        assert np.array_equal(lazy.split(name).images[np.arange(len(lazy.split(name)))],
                              np.asarray(cached.split(name).images))
    batches = [np.array([0, 2, 3]), np.array([1, 4])]
    served = list(Feed("cpu", workers=2).raw(lazy.train, batches))
    for (x, t), idx in zip(served, batches):
        assert torch.equal(x, torch.from_numpy(np.asarray(cached.train.images[idx])))
        assert torch.equal(t, torch.from_numpy(cached.train.targets[idx].astype(np.float32)))


def test_without_the_cache_a_missing_image_is_named(root, tmp_path):
    victim = next((root / "coco2014" / "train2014").glob("*.jpg"))
    victim.unlink()
    with pytest.raises(DataError, match=rf"{victim.name}: image file missing"):
        data.load("coco2014", {"val_fraction": 0.2}, resolution=16, data_root=str(root),
                  cache_dir=tmp_path / "c", image_cache=False)
