"""Data parallelism inside ONE job: W processes share each global batch.

A job runs as W processes when it is launched by ``torchrun`` (RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR, MASTER_PORT) or as an ``srun`` step of W Slurm tasks
(SLURM_PROCID, SLURM_STEP_NUM_TASKS, SLURM_LOCALID; MASTER_ADDR is the first
host of SLURM_JOB_NODELIST, MASTER_PORT derived from SLURM_JOB_ID -- the values
submitit's JobEnvironment reports). SLURM_STEP_NUM_TASKS, not SLURM_NTASKS,
decides: a batch script of an ``--ntasks=4`` allocation has SLURM_NTASKS=4 but is
ONE process. With one process every function here is a no-op.

Same experiment as one process (docs/slurm.md says what is and is not bit-identical):

* The budget's ``batch_size`` stays the GLOBAL batch. Every rank draws the same
  batch order and the same augmentations (same seeds, same generator), then
  keeps its contiguous slice of every micro-batch (:func:`shard`), so the images
  seen are exactly those of a 1-process run. Augmenting the whole batch on every
  rank costs (W - 1)/W of redundant augmentation work; it is the price of
  identical inputs, since ``bench.train.augment`` draws from one generator.
* :func:`data_parallel`: torch's DistributedDataParallel around :class:`LossModule`,
  whose ``forward`` is the method's ``model.loss(views, targets, stage)``, so DDP's
  hooks see the whole graph of the loss and all-reduce the gradients' mean while
  backward() runs (:func:`accumulating`: ``no_sync`` on all but the last micro-batch).
* The losses see the global batch: the contrastive terms of ProbMCL and KMCL
  gather the embeddings of all ranks with gradient and sum reductions are W x the
  rank's sum (``methods.global_batch``); BatchNorm is synchronised
  (``budget.sync_batchnorm``, ``bench.run.syncbn``).
* Full-data passes are sharded (:func:`shard_split`, whole evaluation batches);
  rank 0 gathers the scores (:func:`gather_rows`), computes the metrics, selects,
  writes checkpoints, error.txt and the record; the other ranks wait at barriers.
  All ranks resume from the same checkpoint. A failure on any rank ends every
  rank's process (the process group cannot recover from a half-finished
  collective); rank 0 records the error when it is the one that failed.
"""
from __future__ import annotations

import atexit
import contextlib
import datetime
import os
import re
import sys
import traceback
from dataclasses import dataclass
from typing import Any, Mapping, TypeVar

import numpy as np
import torch

from bench.errors import BenchError

#: Minutes a rank waits at a collective (rank 0's val/test evaluation included) before failing.
TIMEOUT_MIN = float(os.environ.get("BENCH_DIST_TIMEOUT_MIN", 30))
#: MASTER_PORT under Slurm: BASE + job id modulo SPAN (array tasks on one node get different ports).
SLURM_PORT_BASE, SLURM_PORT_SPAN = 20000, 20000

T = TypeVar("T", np.ndarray, torch.Tensor)


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None  # "gloo" (CPU) or "nccl" (CUDA); None with one process
    device: str = "cpu"  # this rank's device (cuda:LOCAL_RANK when the job's device is cuda)

    @property
    def is_main(self) -> bool:
        return self.rank == 0


_current = DistInfo()


@dataclass(frozen=True)
class Layout:
    """Where this process sits, read from the launcher's environment variables."""

    rank: int
    world_size: int
    local_rank: int
    master_addr: str
    master_port: int


def first_host(nodelist: str) -> str:
    """First host of a Slurm node list: 'gpu[03-05,9],cpu1' -> 'gpu03'; 'vm' -> 'vm'."""
    found = re.match(r"([^,\[]+)(?:\[([^\],\-]+))?", nodelist.strip())
    if not found:
        raise BenchError(f"SLURM_JOB_NODELIST={nodelist!r}: cannot read the first host")
    return found.group(1) + (found.group(2) or "")


def layout_from_env(env: Mapping[str, str] | None = None) -> Layout | None:
    """The torchrun or Slurm-step layout, or None when this is one process."""
    env = os.environ if env is None else env
    if "RANK" in env and "WORLD_SIZE" in env:  # torchrun (also when torchrun runs inside Slurm)
        world = int(env["WORLD_SIZE"])
        if world <= 1:
            return None
        return Layout(int(env["RANK"]), world, int(env.get("LOCAL_RANK", 0)),
                      env.get("MASTER_ADDR", "127.0.0.1"), int(env.get("MASTER_PORT", 29500)))
    world = int(env.get("SLURM_STEP_NUM_TASKS", 1))  # only srun steps set it
    if world <= 1 or "SLURM_PROCID" not in env:
        return None
    addr = env.get("MASTER_ADDR") or first_host(env.get("SLURM_JOB_NODELIST", "127.0.0.1"))
    port = int(env.get("MASTER_PORT") or
               SLURM_PORT_BASE + int(env.get("SLURM_JOB_ID", 0)) % SLURM_PORT_SPAN)
    return Layout(int(env["SLURM_PROCID"]), world, int(env.get("SLURM_LOCALID", 0)), addr, port)


def init_from_env(device: str = "cpu", env: Mapping[str, str] | None = None) -> DistInfo:
    """Join the job's process group (once per process) and return this rank's DistInfo.

    gloo on CPU, nccl on CUDA with device cuda:LOCAL_RANK. A no-op returning
    ``DistInfo(device=device)`` when there is one process.
    """
    global _current
    layout = layout_from_env(env)
    if layout is None:
        _current = DistInfo(device=device)
        return _current
    cuda = device.startswith("cuda")
    backend = "nccl" if cuda else "gloo"
    local_device = f"cuda:{layout.local_rank}" if cuda else device
    if torch.distributed.is_initialized():
        if torch.distributed.get_world_size() != layout.world_size:
            raise BenchError(f"process group has {torch.distributed.get_world_size()} ranks, "
                             f"the environment says {layout.world_size}")
    else:
        if cuda:
            torch.cuda.set_device(local_device)
        torch.distributed.init_process_group(
            backend, init_method=f"tcp://{layout.master_addr}:{layout.master_port}",
            rank=layout.rank, world_size=layout.world_size,
            timeout=datetime.timedelta(minutes=TIMEOUT_MIN))
        atexit.register(_shutdown)
    _current = DistInfo(layout.rank, layout.world_size, layout.local_rank, backend, local_device)
    return _current


def _shutdown() -> None:
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def current() -> DistInfo:
    """The DistInfo of the last :func:`init_from_env` (one process before any)."""
    return _current


def is_main() -> bool:
    return _current.is_main


def shard(batch: T) -> T:
    """This rank's contiguous part of a GLOBAL batch (first axis), e.g. the batch's indices.

    The global batch size must be divisible by the world size, so every rank
    holds B/W samples and the mean of the ranks' means is the global mean.
    """
    w, r = _current.world_size, _current.rank
    if w == 1:
        return batch
    if len(batch) % w:
        raise BenchError(f"budget batch_size={len(batch)} is not divisible by world_size={w}; "
                         f"choose a multiple of {w}")
    per = len(batch) // w
    return batch[r * per:(r + 1) * per]


def shard_batch(views: list[torch.Tensor], targets: torch.Tensor,
                device: str) -> tuple[list[torch.Tensor], torch.Tensor]:
    """:func:`shard` of every view and the targets, moved to ``device``."""
    return [shard(v).to(device) for v in views], shard(targets).to(device)


class LossModule(torch.nn.Module):
    """``forward(views, targets, stage)`` = ``model.loss(...)``: the module DistributedDataParallel
    wraps, so its hooks see the whole graph of the method's loss (views, heads, several backbone
    calls) however the method computes it."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, views: list[torch.Tensor], targets: torch.Tensor, stage: str) -> torch.Tensor:
        return self.model.loss(views, targets, stage)


def data_parallel(model: torch.nn.Module) -> torch.nn.parallel.DistributedDataParallel | None:
    """torch's DistributedDataParallel around :class:`LossModule` (``model``), None with one process.

    Built once per stage, after ``prepare_stage``: DDP reduces the parameters that require a
    gradient when it is built (ProbMCL and IML-GCN freeze and unfreeze parts between stages).
    ``find_unused_parameters``: a stage may leave trainable parameters out of its loss;
    ``static_graph`` would skip that search but fails under ``no_sync`` (micro-batches).
    Its construction broadcasts rank 0's parameters and buffers; its hooks all-reduce the mean
    of the gradients in buckets while backward() runs.
    """
    if _current.world_size == 1:
        return None
    ids = [torch.device(_current.device).index] if _current.backend == "nccl" else None
    return torch.nn.parallel.DistributedDataParallel(LossModule(model), device_ids=ids,
                                                     find_unused_parameters=True)


def accumulating(ddp: torch.nn.parallel.DistributedDataParallel | None, last: bool) -> Any:
    """The context of one micro-batch's forward and backward: DDP's ``no_sync`` on all but the
    step's last micro-batch (gradients accumulate locally, one all-reduce per step)."""
    return ddp.no_sync() if ddp is not None and not last else contextlib.nullcontext()


class _Rows:
    """Rows ``a`` .. ``b``-1 of an image array (a memmap or ``LazyImages``), read only when indexed."""

    def __init__(self, base: Any, a: int, b: int) -> None:
        self.base, self.a, self.b = base, a, b

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.b - self.a, *self.base.shape[1:])

    def __len__(self) -> int:
        return self.b - self.a

    def __getitem__(self, idx: Any) -> np.ndarray:
        rows = np.arange(self.b - self.a)[idx] if isinstance(idx, slice) else np.asarray(idx)
        return self.base[rows + self.a]


def shard_split(split: Any, batch_size: int) -> Any:
    """This rank's part of an evaluation pass over ``split``: a contiguous run of WHOLE batches of
    ``batch_size`` (the batches one process makes, so every image's score is computed in the same
    batch as with one process), ranks in order; ``split`` itself with one process."""
    w, r = _current.world_size, _current.rank
    if w == 1:
        return split
    from bench.data.base import Split

    n = len(split)
    per = -(-(-(-n // batch_size)) // w) * batch_size  # images per rank: ceil(batches / W) batches
    a, b = min(n, r * per), min(n, (r + 1) * per)
    return Split(_Rows(split.images, a, b), split.targets[a:b], tuple(split.ids[a:b]))


def gather_rows(local: np.ndarray) -> np.ndarray | None:
    """Rank 0: every rank's rows (e.g. the scores of its :func:`shard_split`) concatenated in rank
    order, i.e. in the split's order; None on the other ranks; ``local`` with one process."""
    if _current.world_size == 1:
        return local
    parts: list[Any] | None = [None] * _current.world_size if _current.is_main else None
    torch.distributed.gather_object(local, parts, dst=0)
    return np.concatenate(parts) if parts is not None else None


def average_scalar(value: float) -> float:
    """Mean of a float over the ranks (e.g. the epoch's summed training loss)."""
    if _current.world_size == 1:
        return value
    t = torch.tensor([float(value)], dtype=torch.float64, device=_collective_device())
    torch.distributed.all_reduce(t)
    return float(t.item()) / _current.world_size


def broadcast_state(module: torch.nn.Module | None) -> None:
    """Copy rank 0's parameters and buffers to every rank (as DDP does at construction)."""
    if _current.world_size == 1 or module is None:
        return
    with torch.no_grad():
        for tensor in list(module.parameters()) + list(module.buffers()):
            torch.distributed.broadcast(tensor.data, src=0)


def barrier() -> None:
    if _current.world_size > 1:
        torch.distributed.barrier()


def _collective_device() -> str:
    return _current.device if _current.backend == "nccl" else "cpu"


def tell_followers(decision: str) -> None:
    """Rank 0: tell the other ranks what to do with the job ("go", "done" or "busy")."""
    if _current.world_size > 1:
        torch.distributed.broadcast_object_list([decision], src=0)


def leader_decision() -> str:
    """Ranks > 0: what rank 0 decided (see :func:`tell_followers`)."""
    box: list[Any] = [None]
    torch.distributed.broadcast_object_list(box, src=0)
    return str(box[0])


def abort_process(where: str) -> None:
    """With several ranks, a failed job ends this process (exit 1) after printing the
    traceback: the other ranks' collectives then fail at once instead of hanging."""
    if _current.world_size == 1:
        return
    print(f"rank {_current.rank}/{_current.world_size}: job {where} failed; ending this rank",
          file=sys.stderr)
    traceback.print_exc()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1)


def record_fields() -> dict[str, Any]:
    """What a record notes about the process layout."""
    return {"world_size": _current.world_size, "backend": _current.backend}
