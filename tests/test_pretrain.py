"""The in-domain pretraining cache: made once from TRAINING pools only, fingerprinted, reused."""
from __future__ import annotations

import json

import numpy as np
import pytest

from bench.run import pretrain
from bench.data import embedded as E

DATA = {"name": "mnist-mosaic", "options": {"variant": "mnist", "n_train": 64, "n_val": 16, "n_test": 16}}


@pytest.fixture
def tiny_recipe(monkeypatch):
    monkeypatch.setitem(pretrain.RECIPE, "images", 128)
    monkeypatch.setitem(pretrain.RECIPE, "holdout_images", 64)
    monkeypatch.setitem(pretrain.RECIPE, "epochs", 1)
    monkeypatch.setitem(pretrain.RECIPE, "batch_size", 32)


def test_cache_made_once_fingerprinted_and_reused(tmp_path, tiny_recipe):
    opts = {"widths": [8, 8, 8, 16], "weights": "in-domain"}
    info = pretrain.in_domain_weights(DATA, "smallcnn", opts, 1, "none", tmp_path, progress=False)
    files = sorted(p.name for p in (tmp_path / "pretrained").iterdir() if not p.name.endswith(".lock"))
    assert files == [f"smallcnn-in-domain-{info['fingerprint']}.json", f"smallcnn-in-domain-{info['fingerprint']}.pt"]
    assert info["recipe"]["images"] == 128 and info["pool"] == "train"
    assert 0 <= info["holdout_accuracy"] <= 100
    sidecar = json.loads((tmp_path / "pretrained" / files[0]).read_text())
    assert sidecar["sha256"] == info["sha256"]
    mtime = (tmp_path / "pretrained" / files[1]).stat().st_mtime_ns
    again = pretrain.in_domain_weights(DATA, "smallcnn", opts, 1, "none", tmp_path, progress=False)
    assert again == info and (tmp_path / "pretrained" / files[1]).stat().st_mtime_ns == mtime  # reused
    # the split sizes do not change the pretraining images; the noise does
    bigger = {**DATA, "options": {**DATA["options"], "n_train": 999}}
    assert pretrain.in_domain_weights(bigger, "smallcnn", opts, 1, "none", tmp_path, False)["fingerprint"] == info["fingerprint"]
    other = {**DATA, "options": {**DATA["options"], "noise": 0.2}}
    assert pretrain.in_domain_weights(other, "smallcnn", opts, 1, "none", tmp_path, False)["fingerprint"] != info["fingerprint"]


def test_pretraining_images_come_from_the_training_pool_only():
    opts = E.MosaicOptions.parse({"variant": "mnist"})
    single = E.render_split(E.MosaicOptions(**{**opts.__dict__, "min_objects": 1, "max_objects": 1}),
                            24, "train", 50, single_object=True)
    pools = E.source_pools("mnist")
    used = single.digit_sources[single.digit_sources >= 0]
    assert np.isin(used, pools["train"]).all() and not np.isin(used, pools["val"]).any()
    assert np.isin(single.clutter_sources, pools["train"]).all()
    assert (single.targets.sum(1) == 1).all()


def test_in_domain_needs_the_embedded_dataset(tmp_path):
    from bench.data.base import DataError

    with pytest.raises(DataError, match="needs the embedded dataset"):
        pretrain.in_domain_weights({"name": "coco2014"}, "smallcnn", {}, 1, "none", tmp_path)
