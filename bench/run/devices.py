"""A GPU suite never trains on a CPU by accident.

A suite whose ``resources.device`` is ``cuda`` (every coco-tables*, voc-tables* and coco-small
suite) carries ``{device: cuda, gpus: N}`` in each JobSpec (``JobSpec.resources``, not in the job
id). Before a job touches data -- no cache built, nothing recorded -- :func:`require_device`
checks that CUDA is visible with at least the GPUs asked for:

* locally (``bench run``/``bench sweep``), at load, for the whole suite;
* on a Slurm node, first thing in the array task (bench.run.slurm.SlurmJobRunner), where a
  node without CUDA (wrong partition, broken driver, a --gres typo) stops the task in seconds
  with one line (exit 2) instead of training ResNet-101 at 448 px on 8 CPU cores for 48 hours.

``--device cpu`` is the explicit way to run a GPU suite on a CPU on purpose (the paper-size CPU
check, tests/test_paper_config.py, does so).
"""
from __future__ import annotations

import os
from typing import Any, Iterable, Mapping

from bench.errors import BenchError


def needs_cuda(resources: Mapping[str, Any] | None) -> bool:
    return bool(resources) and resources.get("device") == "cuda"


def visible_gpus() -> tuple[int, str]:
    """(number of CUDA devices torch sees, why none when 0) -- imports torch only here."""
    import torch

    if not torch.cuda.is_available():
        why = "torch.cuda.is_available() is False"
        if torch.version.cuda is None:
            why += f" (torch {torch.__version__} is a CPU build)"
        cvd = os.environ.get("CUDA_VISIBLE_DEVICES")
        if cvd is not None:
            why += f", CUDA_VISIBLE_DEVICES={cvd!r}"
        return 0, why
    return torch.cuda.device_count(), ""


def require_device(resources: Mapping[str, Any] | None, device: str | None, where: str) -> None:
    """Raise BenchError (one line, exit 2) when a cuda suite would run without its GPUs.

    ``device`` is the --device flag (None: the runner's choice, cuda when visible). ``where``
    names the suite or the Slurm job for the message."""
    if not needs_cuda(resources) or (device is not None and not str(device).startswith("cuda")):
        return  # runs anywhere, or --device cpu/mps on purpose
    wanted = int(resources.get("gpus", 1))
    have, why = visible_gpus()
    if have == 0:
        raise BenchError(f"{where} needs CUDA (resources.device: cuda, {wanted} GPU(s) per job) and none is "
                         f"visible here: {why}. Submit it with --executor slurm (it asks for the GPUs), run it "
                         "on a GPU machine, or on the CPU on purpose with --device cpu")
    if have < wanted:
        raise BenchError(f"{where} needs {wanted} GPU(s) per job (resources.gpus) and {have} is/are visible: "
                         f"ask for {wanted} (--cluster gpus_per_node={wanted}) or set resources.gpus={have} "
                         "(a different experiment for the contrastive methods: docs/slurm.md)")


def require_local(jobs: Iterable[Any], device: str | None, suite: str) -> None:
    """At load, for a local run: every job's resources against this machine."""
    for job in jobs:
        require_device(getattr(job, "resources", None), device, f"suite {suite}")
        return  # one suite, one requirement
