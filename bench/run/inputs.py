"""Input caches (data, in-domain pretrained backbone) built in a child process before any job
trains: locally by ``bench run``/``bench sweep``, on a cluster by the first array task under a lock
(bench.run.slurm). Kept apart from the executors so that the Slurm task can use it without an
import circle."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

from bench.spec.jobs import JobSpec


@contextlib.contextmanager
def build_lock(cache_dir: str) -> Iterator[None]:
    """One builder per cache folder (flock on ``<cache_dir>/.build.lock``): Slurm array tasks and
    torchrun ranks that need the same caches take turns; the first builds, the others reuse."""
    import fcntl

    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    with open(Path(cache_dir) / ".build.lock", "a+") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        yield


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity: a cgroup- or Slurm-limited node's share, not
    os.cpu_count()), divided among the data-parallel ranks of this node."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    local = int(os.environ.get("LOCAL_WORLD_SIZE") or os.environ.get("SLURM_NTASKS_PER_NODE") or 1)
    return max(1, cpus // max(local, 1))


def _prepare(job: JobSpec) -> None:
    """Child process: build the job's data cache and, for ``weights: in-domain``, the pretrained
    backbone cache (bench.run.pretrain), so that no training process ever generates them itself."""
    from bench.train.augment import model_in_chans
    from bench.run.runner import backbone_weights, load_job_data

    data = load_job_data(job)
    backbone_weights(job, model_in_chans(data.in_chans, job.budget["normalize"]), True)


def inputs_cached(job: JobSpec, cache_dir: str | os.PathLike) -> bool:
    """True when every input cache ``job`` needs is already on disk, decided without torch and
    without generating anything: the embedded set's ``.npz`` under the name
    bench.data.embedded.generate reads (its own cache_key) and a backbone without in-domain
    pretraining. False (the child decides) for anything else: file datasets (their image cache key
    hashes the annotation file list), in-domain weights, or options the loader would reject (the
    child raises the one-line error)."""
    options = job.backbone.get("options") or {}
    if job.dataset.get("name") != "mnist-mosaic" or options.get("weights") == "in-domain":
        return False
    from bench.data import embedded
    from bench.data.base import DataError

    try:
        opts = embedded.MosaicOptions.parse(job.dataset.get("options") or {})
    except DataError:
        return False
    resolution = int(job.budget["resolution"])
    return (Path(cache_dir) / f"mnist-mosaic-{embedded.cache_key(opts, resolution)}.npz").is_file()


def prepare_inputs(jobs: list[JobSpec]) -> None:
    """Make every input cache the jobs need, in a fresh child process, before any job runs.

    Measured: a process that had GENERATED the embedded data (or pretrained the backbone) gave a
    job slightly different numbers (ProbMCL 25.354 vs 25.357 test mAP on the same cached bytes)
    than a process that only LOADED the caches, so a resumed job could differ from an
    uninterrupted one. Generating in a child makes every training process a loader. A user
    error in the child (missing data, bad weights) is re-raised here unchanged: one line, exit 2.
    """
    import concurrent.futures
    import multiprocessing

    from bench.run.signals import local_signals, main_process_only
    from bench.spec.jobs import canonical_json

    distinct = {}
    for job in jobs:
        key = canonical_json([job.dataset, job.budget.get("resolution"), job.budget.get("normalize"),
                              job.budget.get("train_images"), job.backbone, job.data_root])
        distinct.setdefault(key, job)
    from bench.run.runner import CACHE_DIR  # the folder the jobs read (the callers imported it already)

    distinct = {key: job for key, job in distinct.items() if not inputs_cached(job, CACHE_DIR)}
    if not distinct:  # every cache exists: no child, no torch import (about 5 s of CPU per `bench run`)
        return
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        for job in distinct.values():
            with main_process_only(local_signals()):  # the child, started here, ignores USR2/SIGTERM;
                future = pool.submit(_prepare, job)   # this process stays interruptible while it waits
            future.result()
