"""generic loader: CSV and JSON forms, classes option/file, unknown labels, bad rows."""
from __future__ import annotations

import json

import numpy as np
import pytest

import bench.data as data
from bench.data.base import DataError
from fixtures_data import GENERIC_ROWS, make_generic_fixture


def _load(root, tmp_path, **options):
    return data.load("generic", {"file": "labels.csv", **options}, resolution=8, data_root=str(root),
                     cache_dir=tmp_path / "cache")


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_labels_unknown_and_splits(tmp_path, fmt):
    root = make_generic_fixture(tmp_path / "data", fmt)
    d = _load(root, tmp_path, file=f"labels.{fmt}")
    assert d.classes == ("hat", "sky", "tree")  # sorted union, unknown names included
    assert d.train.ids == ("img/a.png", "img/b.png", "img/c.png", "img/d.png")
    assert d.val.ids == ("img/e.png",) and d.test.ids == ("img/f.png", "img/g.png")
    # training: unknown -> negative (WIDER convention)
    np.testing.assert_array_equal(d.train.targets, [[0, 1, 1], [0, 0, 1], [0, 0, 0], [1, 0, 0]])
    # test: unknown -> -1 (ignored)
    np.testing.assert_array_equal(d.test.targets, [[1, 0, 1], [0, 1, -1]])
    assert d.train.images.shape == (4, 8, 8, 3)


def test_unknown_train_ignore_explicit_classes_and_carves(tmp_path):
    root = make_generic_fixture(tmp_path / "data")
    (root / "classes.txt").write_text("tree\nsky\nhat\nbird\n")
    d = _load(root, tmp_path, unknown_train="ignore", classes="classes.txt", labels_only=True)
    assert d.classes == ("tree", "sky", "hat", "bird")
    np.testing.assert_array_equal(d.train.targets[1], [1, 0, -1, 0])
    np.testing.assert_array_equal(d.train.targets[2], [0, -1, 0, 0])
    # no split column: test_fraction carves test, val_fraction carves val from train
    lines = ["path,labels"] + [f"{p},{'|'.join(l)}" for p, l, _u, _s in GENERIC_ROWS]
    (root / "nosplit.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="nosplit.csv: no split column.*test_fraction"):
        _load(root, tmp_path, file="nosplit.csv", labels_only=True)
    d = _load(root, tmp_path, file="nosplit.csv", test_fraction=0.3, val_fraction=0.25, labels_only=True)
    assert (len(d.train), len(d.val), len(d.test)) == (4, 1, 2)
    assert sorted(d.train.ids + d.val.ids + d.test.ids) == sorted(r[0] for r in GENERIC_ROWS)


def test_evaluator_ignores_unknown(tmp_path):
    metrics = pytest.importorskip("bench.evaluate.metrics")
    d = _load(make_generic_fixture(tmp_path / "data"), tmp_path, labels_only=True)
    scores = np.array([[0.9, 0.1, 0.8], [0.1, 0.9, 0.99]], np.float32)  # unknown tree of g outranks f
    assert metrics.multilabel_metrics(scores, d.test.targets)["mAP"] == pytest.approx(100.0)


def test_bad_rows_name_file_and_row(tmp_path):
    root = make_generic_fixture(tmp_path / "data")
    with pytest.raises(DataError, match=r"labels.csv row 2: label 'sky' is not a known class"):
        _load(root, tmp_path, classes=["tree", "hat"], labels_only=True)
    (root / "bad.csv").write_text("path,labels,split\nimg/a.png,sky,train\nimg/b.png,tree,holdout\n")
    with pytest.raises(DataError, match=r"bad.csv row 3: split 'holdout' must be one of train, val, test"):
        _load(root, tmp_path, file="bad.csv")
    (root / "bad.csv").write_text("file,tags\nimg/a.png,sky\n")
    with pytest.raises(DataError, match=r"bad.csv: CSV header must have columns 'path' and 'labels'"):
        _load(root, tmp_path, file="bad.csv")
    (root / "bad.json").write_text(json.dumps([{"path": "img/a.png", "labels": ["sky"]}, {"labels": []}]))
    with pytest.raises(DataError, match=r"bad.json item 1: missing 'path'"):
        _load(root, tmp_path, file="bad.json")
    (root / "bad.json").write_text("[{]")
    with pytest.raises(DataError, match=r"bad.json: malformed JSON at line 1"):
        _load(root, tmp_path, file="bad.json")
    with pytest.raises(DataError, match=r"absent.csv: annotation file not found"):
        _load(root, tmp_path, file="absent.csv")
    with pytest.raises(DataError, match="needs option file"):
        data.load("generic", {}, resolution=8, data_root=str(root), cache_dir=tmp_path)


def test_missing_and_truncated_image(tmp_path):
    root = make_generic_fixture(tmp_path / "data")
    png = root / "img" / "f.png"
    png.write_bytes(png.read_bytes()[:60])
    with pytest.raises(DataError, match=r"img/f.png: image file missing or unreadable"):
        _load(root, tmp_path)
    d = _load(root, tmp_path, skip_bad_images=True)
    assert d.test.ids == ("img/g.png",) and d.conventions["skipped_images"] == 1
