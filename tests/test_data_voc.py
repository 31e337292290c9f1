"""voc2007 loader on a tiny VOCdevkit tree with difficult objects; ignore labels through the evaluator."""
from __future__ import annotations

import numpy as np
import pytest

import bench.data as data
from bench.data.base import DataError
from bench.data.voc import VOC_CLASSES
from fixtures_data import make_voc_fixture

C = {name: i for i, name in enumerate(VOC_CLASSES)}


@pytest.fixture
def root(tmp_path):
    return make_voc_fixture(tmp_path / "data")


def _load(root, tmp_path, **options):
    return data.load("voc2007", {"val_fraction": 0.3, **options}, resolution=8, data_root=str(root),
                     cache_dir=tmp_path / "cache")


def _row(d, image_id):
    for split in (d.train, d.val, d.test):
        if f"{image_id}.jpg" in split.ids:
            return split, split.targets[split.ids.index(f"{image_id}.jpg")]
    raise KeyError(image_id)


def test_class_order_sizes_and_test_targets(root, tmp_path):
    d = _load(root, tmp_path)
    assert d.classes[0] == "aeroplane" and d.classes[-1] == "tvmonitor" and d.num_classes == 20
    assert (len(d.train), len(d.val), len(d.test)) == (7, 3, 4)
    assert d.test.ids == ("000001.jpg", "000002.jpg", "000004.jpg", "000006.jpg")
    expected = np.zeros((4, 20), np.int8)
    expected[0, [C["dog"], C["person"]]] = 1
    expected[1, C["train"]], expected[1, C["person"]] = 1, -1
    expected[2, C["car"]], expected[2, C["tvmonitor"]] = 1, -1
    expected[3, C["chair"]], expected[3, C["pottedplant"]] = 1, -1
    np.testing.assert_array_equal(d.test.targets, expected)
    assert d.conventions["full_set"] is False and d.test.images.shape == (4, 8, 8, 3)


@pytest.mark.parametrize("policy,value", [("positive", 1), ("negative", 0), ("ignore", -1)])
def test_difficult_train_policy(root, tmp_path, policy, value):
    d = _load(root, tmp_path, difficult_train=policy)
    assert d.conventions["difficult_train"] == policy
    for image_id, cls in (("000009", "person"), ("000012", "dog"), ("000021", "person")):
        split, row = _row(d, image_id)
        assert row[C[cls]] == (value if split is d.train else -1)  # val: always ignored
    _, row = _row(d, "000005")  # chair: one normal + one difficult object -> positive
    assert row[C["chair"]] == 1
    _, row = _row(d, "000020")
    assert row[C["car"]] == 1


def test_difficult_is_ignored_by_the_evaluator(root, tmp_path):
    metrics = pytest.importorskip("bench.evaluate.metrics")
    d = _load(root, tmp_path, labels_only=True)
    t = d.test.targets
    scores = np.where(t == 1, 0.9, 0.1).astype(np.float32)
    scores[1, C["person"]] = 0.95  # the difficult person outranks the real one
    ignored = metrics.multilabel_metrics(scores, t, ignore_in_pr="ignore")
    assert ignored["mAP"] == pytest.approx(100.0)
    as_negative = metrics.multilabel_metrics(scores, np.where(t == -1, 0, t), ignore_in_pr="negative")
    # person AP = 1/2 when the difficult image counts as a negative; 5 classes have positives
    assert as_negative["mAP"] == pytest.approx(100.0 * (4 + 0.5) / 5)
    assert ignored["CP"] == pytest.approx(100.0)
    assert metrics.multilabel_metrics(scores, t, ignore_in_pr="negative")["CP"] < 100.0


def test_bad_inputs(root, tmp_path):
    folder = root / "VOCdevkit" / "VOC2007"
    with pytest.raises(DataError, match="difficult_train='hard' must be one of positive, negative, ignore"):
        _load(root, tmp_path, difficult_train="hard")
    (folder / "Annotations" / "000007.xml").write_text("<annotation><size/></annotation>")
    with pytest.raises(DataError, match=r"000007.xml: no <object> element"):
        _load(root, tmp_path)
    (folder / "Annotations" / "000007.xml").write_text("<annotation><object>")
    with pytest.raises(DataError, match=r"000007.xml: malformed XML"):
        _load(root, tmp_path)
    (folder / "Annotations" / "000007.xml").unlink()
    with pytest.raises(DataError, match=r"000007.xml: VOC annotation XML not found; expected layout"):
        _load(root, tmp_path)
    (folder / "ImageSets" / "Main" / "trainval.txt").unlink()
    with pytest.raises(DataError, match=r"trainval.txt: VOC image list not found"):
        _load(root, tmp_path)


def test_missing_image_and_missing_folder(root, tmp_path):
    (root / "VOCdevkit" / "VOC2007" / "JPEGImages" / "000019.jpg").unlink()
    with pytest.raises(DataError, match=r"000019.jpg: image file missing"):
        _load(root, tmp_path)
    d = _load(root, tmp_path, skip_bad_images=True)
    assert d.conventions["skipped_images"] == 1 and "000019.jpg" not in d.train.ids + d.val.ids
    with pytest.raises(DataError, match="no VOC2007 Annotations/ folder.*VOCdevkit/VOC2007/"):
        data.load("voc2007", {}, resolution=8, data_root=str(tmp_path / "cache"), cache_dir=tmp_path)
