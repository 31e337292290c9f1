"""Tests of the embedded "mnist-mosaic" dataset (tiny sets; a few seconds in total)."""
from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from bench.data import embedded as E
from bench.data import embedded_sources as S
from bench.data import load as registry_load
from bench.data.base import DataError, fingerprint_arrays

TINY = {"n_train": 60, "n_val": 20, "n_test": 20}


def _load(tmp: Path, **options):
    return E.load({**TINY, **options}, resolution=48, cache_dir=tmp)


def test_shapes_dtypes_ids_and_class_names(tmp_path):
    data = registry_load("mnist-mosaic", TINY, resolution=48, cache_dir=tmp_path)
    assert data.classes == ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
    for name, n in (("train", 60), ("val", 20), ("test", 20)):
        split = data.split(name)
        assert split.images.shape == (n, 48, 48, 1) and split.images.dtype == np.uint8
        assert split.targets.shape == (n, 10) and split.targets.dtype == np.int8
        assert set(np.unique(split.targets)) <= {0, 1}
        assert split.ids[0] == f"{name}/000000" and split.ids[-1] == f"{name}/{n - 1:06d}"
    assert data.conventions["cooccurrence_groups"] == [[0, 6, 8, 9], [1, 4, 7], [2, 3, 5]]
    assert data.conventions["p_group"] == 0.8
    arrays = [a for s in ("train", "val", "test") for a in (data.split(s).images, data.split(s).targets)]
    assert data.fingerprint == fingerprint_arrays(*arrays)


def test_same_seed_identical_different_seed_differs(tmp_path):
    a = _load(tmp_path / "a")
    b = _load(tmp_path / "b")  # separate cache: really regenerated
    assert a.fingerprint == b.fingerprint
    for s in ("train", "val", "test"):
        np.testing.assert_array_equal(a.split(s).images, b.split(s).images)
        np.testing.assert_array_equal(a.split(s).targets, b.split(s).targets)
    c = _load(tmp_path / "c", seed=1)
    assert c.fingerprint != a.fingerprint
    assert not np.array_equal(c.train.images, a.train.images)


def test_cache_round_trip_is_used(tmp_path, monkeypatch):
    first = _load(tmp_path)
    opts = E.MosaicOptions.parse(TINY)
    cached = tmp_path / f"mnist-mosaic-{E.cache_key(opts, 48)}.npz"
    assert cached.is_file() and not list(tmp_path.glob("*.tmp"))

    def no_render(*args, **kwargs):
        raise AssertionError("cache was not used")

    monkeypatch.setattr(E, "render_split", no_render)
    second = _load(tmp_path)
    assert second.fingerprint == first.fingerprint
    np.testing.assert_array_equal(second.test.images, first.test.images)
    with pytest.raises(AssertionError, match="cache was not used"):
        _load(tmp_path, noise=0.05)  # other options -> other key -> renders


def test_source_pools_disjoint_and_splits_draw_only_from_their_pool():
    pools = E.source_pools("mnist")
    for a, b in itertools.combinations(("train", "val", "test"), 2):
        assert np.intersect1d(pools[a], pools[b]).size == 0, (a, b)
    assert sum(len(p) for p in pools.values()) == 5000
    _, labels = E.source_digits("mnist")
    assert np.bincount(labels[pools["val"]], minlength=10).tolist() == [50] * 10
    assert np.bincount(labels[pools["test"]], minlength=10).tolist() == [100] * 10
    opts = E.MosaicOptions.parse(TINY)
    for split in ("train", "val", "test"):
        rendered = E.render_split(opts, 48, split, 20)
        digits = rendered.digit_sources[rendered.digit_sources >= 0]
        assert np.isin(digits, pools[split]).all()
        assert rendered.clutter_sources.size > 0 and np.isin(rendered.clutter_sources, pools[split]).all()


def test_label_matrix_matches_digits_placed_and_counts():
    opts = E.MosaicOptions.parse({**TINY, "noise": 0.0})
    rendered = E.render_split(opts, 48, "train", 80)
    _, labels = E.source_digits("mnist")
    for row, sources in zip(rendered.targets, rendered.digit_sources):
        placed = set(labels[sources[sources >= 0]].tolist())
        assert set(np.flatnonzero(row).tolist()) == placed
        assert 1 <= (sources >= 0).sum() <= 4
    n_labels = rendered.targets.sum(1)
    assert n_labels.min() >= 1 and n_labels.max() <= 4
    assert len(np.unique(n_labels)) >= 3  # varied label counts, not constant
    assert (rendered.images.reshape(80, -1).max(1) > 200).all()  # ink was drawn
    one = E.render_split(E.MosaicOptions.parse({**TINY, "max_objects": 1}), 48, "test", 20)
    assert (one.targets.sum(1) == 1).all()


def _cooccurrence_ratio(targets: np.ndarray) -> float:
    joint = (targets.T.astype(float) @ targets) / len(targets)  # P(a and b)
    group_of = {c: g for g, members in enumerate(E.GROUPS) for c in members}
    inside, across = [], []
    for a, b in itertools.combinations(range(10), 2):
        (inside if group_of[a] == group_of[b] else across).append(joint[a, b])
    return float(np.mean(inside) / np.mean(across))


def test_cooccurrence_groups_dominate():
    opts = E.MosaicOptions.parse({**TINY, "clutter": 0, "noise": 0.0, "min_objects": 2})
    grouped = E.render_split(opts, 32, "train", 400).targets
    assert _cooccurrence_ratio(grouped) > 3.5
    flat = E.render_split(E.MosaicOptions.parse({**TINY, "clutter": 0, "noise": 0.0, "min_objects": 2,
                                                 "p_group": 0.0}), 32, "train", 400).targets
    assert 0.6 < _cooccurrence_ratio(flat) < 1.5


@pytest.mark.parametrize("options, message", [
    ({"n_trian": 10}, "unknown option 'n_trian'"),
    ({"min_objects": 3, "max_objects": 2}, "min_objects=3, max_objects=2"),
    ({"min_size": 0.5, "max_size": 0.2}, "min_size=0.5"),
    ({"p_group": 1.5}, "p_group=1.5"),
    ({"seed": -1}, "seed=-1"),
    ({"n_train": "many"}, "n_train='many' must be a int"),
    ({"variant": "cifar"}, "variant='cifar'"),
])
def test_bad_options_raise_one_line_data_error(tmp_path, options, message):
    with pytest.raises(DataError, match=message) as info:
        _load(tmp_path, **options)
    assert "\n" not in str(info.value)
    assert not list(tmp_path.iterdir())


def test_fashion_variant_absent_names_apt_package(tmp_path, monkeypatch):
    monkeypatch.setattr(S, "FASHION_DIR", tmp_path / "missing")  # where the loader reads it
    S._load_source.cache_clear()
    try:
        with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
            _load(tmp_path, variant="fashion")
    finally:
        S._load_source.cache_clear()


@pytest.mark.skipif(not (E.FASHION_DIR / "train-labels-idx1-ubyte.gz").is_file(),
                    reason="Debian package dataset-fashion-mnist not installed")
def test_fashion_variant_when_installed(tmp_path):
    data = _load(tmp_path, variant="fashion", n_train=8, n_val=4, n_test=4)
    assert data.classes[0] == "t-shirt" and data.classes[-1] == "ankle-boot"
    assert data.train.images.shape == (8, 48, 48, 1)
    images, labels = E.source_digits("fashion")
    assert images.shape == (5000, 28, 28) and np.bincount(labels).tolist() == [500] * 10
