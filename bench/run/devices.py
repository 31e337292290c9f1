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
    first = next(iter(jobs), None)  # one suite, one requirement
    if first is not None:
        require_device(first.resources, device, f"suite {suite}")


def world_size(executor: str, cluster: Mapping[str, Any], resources: Mapping[str, Any] | None) -> int:
    """W, the data-parallel processes a job of this launch runs as: the Slurm step's tasks
    (nodes x tasks per node, as sbatch is asked) or torchrun's WORLD_SIZE; 1 otherwise."""
    if executor == "slurm":
        from bench.spec.cluster import parse_cluster, slurm_parameters

        params = slurm_parameters(parse_cluster(cluster), resources, 1)
        return int(params["nodes"]) * int(params["ntasks_per_node"])
    if _one_process_env():  # known without importing bench.run.distributed (torch): a dry run stays light
        return 1
    from bench.run.distributed import layout_from_env

    layout = layout_from_env()
    return layout.world_size if layout is not None else 1


def _one_process_env() -> bool:
    """True when neither torchrun's WORLD_SIZE nor a Slurm step's SLURM_STEP_NUM_TASKS names more
    than one process: ``layout_from_env`` then returns None (a sufficient condition of it)."""
    try:
        return all(int(os.environ.get(k) or 1) <= 1 for k in ("WORLD_SIZE", "SLURM_STEP_NUM_TASKS"))
    except ValueError:
        return False  # not a number: layout_from_env says what it is


def with_world_size(jobs: list[Any], executor: str, cluster: Mapping[str, Any]) -> list[Any]:
    """The jobs as this launch runs them: W > 1 is its own job id (JobSpec.world_size)."""
    from dataclasses import replace

    if not jobs:
        return jobs
    w = world_size(executor, cluster, jobs[0].resources)
    for job in jobs if w > 1 else ():  # every rank takes B / accumulate / W images of each micro-batch
        bs, k = int(job.budget["batch_size"]), int(job.budget.get("accumulate", 1))
        if (bs // k) % w:
            raise BenchError(f"budget.batch_size={bs} with budget.accumulate={k} gives micro-batches of {bs // k} "
                             f"images, not divisible by the {w} data-parallel processes; choose a batch_size "
                             f"that is a multiple of {k * w}")
    return jobs if w == 1 else [replace(j, world_size=w) for j in jobs]


def require_world_size(job: Any, where: str) -> None:
    """On the node: the step runs as many processes as the job was submitted for (its id says W)."""
    from bench.run.distributed import layout_from_env

    layout = layout_from_env()
    have = layout.world_size if layout is not None else 1
    if have != int(getattr(job, "world_size", 1)):
        raise BenchError(f"{where} was submitted for {job.world_size} data-parallel process(es) and runs as "
                         f"{have}: resubmit it with the same tasks_per_node/nodes (a different W is a "
                         "different experiment, with its own job id)")


def emulated_bf16_note(budgets: Iterable[Mapping[str, Any]], device: str | None) -> str | None:
    """One line when a job's ``budget.precision`` is bf16 and a LOCAL run would use a CPU
    without bf16 instructions (oneDNN's bf16 check fails, e.g. an AVX2-only EPYC): autocast
    then runs bf16 convolutions through a scalar fallback, 6.2x slower than fp32 where measured
    (benchmarks/bench_gpu_path_cpu.py --no-native-bf16). The run is right, only slow: said, not
    refused. None otherwise."""
    if not any(b.get("precision", "fp32") == "bf16" for b in budgets):
        return None
    import torch

    where = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if not where.startswith("cpu") or torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return None
    return ("note: budget.precision=bf16 on a CPU without bf16 instructions: autocast emulates it, "
            "several times slower than fp32 (6.2x measured); a check of the GPU path, not a timing")


def check_local_precision(jobs: Iterable[Any], device: str | None) -> None:
    """At load, for a LOCAL run: a precision the device cannot run is one line, exit 2
    (bench.train.precision.check_local_device); bf16 that this CPU only emulates is said
    (:func:`emulated_bf16_note`). All-fp32 jobs run anywhere: nothing is imported to check them."""
    budgets = [j.budget for j in jobs]
    if all(b.get("precision", "fp32") == "fp32" for b in budgets):
        return
    from bench.train.precision import check_local_device

    check_local_device(budgets, device)
    note = emulated_bf16_note(budgets, device)
    if note:
        print(note)
