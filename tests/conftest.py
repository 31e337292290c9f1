"""Shared fixtures. Others may add theirs below with small edits."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("MKL_CBWR", "AUTO")  # as bench.cli sets it: run-to-run reproducible MKL

sys.path.insert(0, str(Path(__file__).resolve().parent))

# Under pytest-xdist (`make test` runs `-n auto --dist loadgroup`), each worker gets its share of
# the cores: two workers with two OpenMP threads each on 2 cores spin against each other (a
# training step measured 6-8x slower, docs/test-profile.md). Tests that set threads keep theirs.
_XDIST_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
if _XDIST_WORKERS > 1:
    _threads = str(max(1, (os.cpu_count() or 1) // _XDIST_WORKERS))
    for _var in ("BENCH_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, _threads)
    import torch

    torch.set_num_threads(int(os.environ["BENCH_THREADS"]))


@pytest.fixture(scope="session", autouse=True)
def _cost_cache(tmp_path_factory):
    """`bench cost`'s count cache (bench/cost/cache.py) and suite loading's method answers
    (bench/spec/method_facts.py) in this session's temporary folders: a test never reads what an
    earlier run stored (within the session, every `bench` start after the first reuses them)."""
    previous = {var: os.environ.get(var) for var in ("BENCH_COST_CACHE_DIR", "BENCH_SPEC_CACHE_DIR")}
    os.environ["BENCH_COST_CACHE_DIR"] = str(tmp_path_factory.mktemp("cost-cache"))
    os.environ["BENCH_SPEC_CACHE_DIR"] = str(tmp_path_factory.mktemp("spec-cache"))
    yield
    for var, value in previous.items():
        if value is None:
            os.environ.pop(var, None)
        else:
            os.environ[var] = value


#: Test files whose tests share one resource: under xdist each file runs on one worker. test_slurm.py:
#: the one Slurm cluster of the session (fixed ports, one controller, one accounting database);
#: test_equivalence.py: its module fixture's two code runs.
SHARED_FILES = {"tests/test_slurm.py": "slurm",
                # the two code runs (base and today's) that its tests share (one module fixture)
                "tests/test_equivalence.py": "equivalence"}


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_make_scheduler(config, log):
    """xdist's loadgroup scheduling, plus the files of :data:`SHARED_FILES` as groups.

    pytest-xdist 3.8 marks a group by appending ``@group`` to ``item._nodeid``, which pytest 9
    no longer reads (``Item.nodeid`` comes from ``item._id``): ``xdist_group`` markers group
    nothing there, so the scheduler groups by file itself; it sees node ids only."""
    if config.getvalue("dist") not in ("load", "loadgroup"):
        return None
    from xdist.scheduler import LoadGroupScheduling

    class SharedResourceScheduling(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            group = SHARED_FILES.get(nodeid.split("::", 1)[0])
            return group if group is not None else super()._split_scope(nodeid)

    return SharedResourceScheduling(config, log)


#: Modules whose tests each train several jobs in subprocesses (docs/test-profile.md): under
#: xdist they go first, so that no long test starts last while the other worker idles.
LONG_MODULES = ("test_kill_resume.py", "test_runner.py", "test_train_path.py", "test_suite_validation.py",
                "test_equivalence.py")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Tests that share one resource run on one xdist worker (``--dist loadgroup``): every
    ``slurm`` test uses the one Slurm cluster of the session (fixed ports, one controller); the
    marker is for an xdist that reads it, :func:`pytest_xdist_make_scheduler` does it today.
    Under xdist the long modules are scheduled first (a stable sort: the order within stays)."""
    for item in items:
        if item.get_closest_marker("slurm") and not item.get_closest_marker("xdist_group"):
            item.add_marker(pytest.mark.xdist_group("slurm"))
    if _XDIST_WORKERS > 1:
        items.sort(key=lambda item: item.path.name not in LONG_MODULES)


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


@pytest.fixture(scope="session")
def bench_forks():
    """`bench` processes forked from a server that imported bench once (tests/bench_forks.py)."""
    from bench_forks import shared

    return shared()


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
