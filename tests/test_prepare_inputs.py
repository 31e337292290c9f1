"""prepare_inputs (bench/run/inputs.py) spawns its cache-building child only when a cache is missing:
a `bench run` whose caches exist starts no process that re-imports torch (#28)."""
from __future__ import annotations

import concurrent.futures

import pytest

from bench import data as datasets
from bench.run import inputs, runner
from bench.spec.suites import expand_jobs, load_suite
from helpers import tiny_suite


def _job(tmp_path, **overrides):
    return expand_jobs(load_suite(str(tiny_suite(tmp_path, **overrides))))[0]


def test_no_child_when_the_embedded_cache_exists(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setattr(runner, "CACHE_DIR", str(cache))
    job = _job(tmp_path)
    assert not inputs.inputs_cached(job, cache)
    # the name inputs_cached looks for is the file the loader writes
    datasets.load("mnist-mosaic", job.dataset["options"], resolution=job.budget["resolution"], cache_dir=cache)
    assert [p.name for p in cache.glob("*.npz")] and inputs.inputs_cached(job, cache)

    def no_child(*args, **kwargs):
        raise AssertionError("prepare_inputs started a child although every cache exists")

    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", no_child)
    inputs.prepare_inputs([job, job])
    (tmp_path / "other").mkdir()
    other = _job(tmp_path / "other", n_train=96)  # another cache key: not on disk, the child is needed
    with pytest.raises(AssertionError, match="started a child"):
        inputs.prepare_inputs([job, other])


def test_in_domain_weights_go_to_the_child(tmp_path):
    cache = tmp_path / "cache"
    job = _job(tmp_path)
    datasets.load("mnist-mosaic", job.dataset["options"], resolution=job.budget["resolution"], cache_dir=cache)
    assert inputs.inputs_cached(job, cache)
    in_domain = _job(tmp_path, backbone={"name": "smallcnn", "options": {"weights": "in-domain"}})
    assert not inputs.inputs_cached(in_domain, cache)  # the pretrained cache is the child's to check
