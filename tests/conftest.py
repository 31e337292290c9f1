"""Shared fixtures. Others may add theirs below with small edits."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("MKL_CBWR", "AUTO")  # as bench.cli sets it: run-to-run reproducible MKL

sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(scope="session")
def slurm_cluster():
    """A real single-node Slurm cluster for the session (see tests/slurm_cluster.py).

    Skips with the reason where it cannot be brought up (not root, no apt); on CI
    (CI=true) a failed setup FAILS instead, so the Slurm tests never silently vanish.
    """
    from slurm_cluster import ClusterUnavailable, SlurmCluster

    cluster = SlurmCluster()
    try:
        cluster.start()
    except (ClusterUnavailable, OSError) as err:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"Slurm test cluster could not start on CI: {err}")
        pytest.skip(f"Slurm test cluster unavailable: {err}")
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cluster.conf)
    try:
        yield cluster
    finally:
        cluster.stop()
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous


@pytest.fixture
def paper_weights_cache(tmp_path, monkeypatch):
    """A local Hugging Face cache holding a placeholder file for every tag of
    bench.spec.weights.REGISTRY: enough to resolve `weights: imagenet` at suite load (not to load it)."""
    import huggingface_hub.constants

    from bench.spec.weights import REGISTRY, hub_location
    from helpers import fake_hub_cache

    root = tmp_path / "hf-hub"
    files = {}
    for entry in REGISTRY.values():
        repo, filename = hub_location(entry["tag"])
        files[repo] = {filename: f"placeholder for {entry['tag']}".encode()}
    fake_hub_cache(root, files)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(root))
    return root
