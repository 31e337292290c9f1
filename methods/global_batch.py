"""The global batch of a data-parallel step, as one rank sees it (torch.distributed, no harness).

Under W processes (``bench.run.distributed``) each rank holds B/W samples of every global batch
and DistributedDataParallel AVERAGES the ranks' gradients. A loss computed on one rank equals
the 1-process loss of the global batch, and so do the averaged gradients, when the mean over the
ranks of their losses is the global loss:

* a MEAN over samples: each rank's mean of its B/W samples (the mean of equal-sized means);
* a SUM over samples: W x the rank's sum (``methods.loss_utils._reduce`` applies :func:`world_size`);
* a batch-level term (ProbMCL's and KMCL's contrastive losses compare every anchor with every
  other sample): each rank's anchors against ALL B samples, the others' embeddings arriving by
  :func:`gather`, an all_gather WITH gradient (torch.distributed.nn.functional.all_gather; its
  backward returns to each rank the sum over ranks of the gradient of its own rows), as
  SimCLR-style libraries (solo-learn, lightly) do.

With one process (no process group, or W = 1) every function here is the identity or a constant:
no collective and no extra operation runs.
"""
from __future__ import annotations

import warnings

import torch
import torch.distributed as dist


def world_size() -> int:
    """Ranks sharing the batch: 1 without an initialised process group."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if world_size() > 1 else 0


def gather(x: torch.Tensor) -> torch.Tensor:
    """Every rank's ``x`` concatenated along dim 0 in rank order, differentiable; ``x`` itself at W = 1."""
    if world_size() == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    with warnings.catch_warnings():  # torch 2.14 points to a private module instead; this one works on gloo
        warnings.simplefilter("ignore", FutureWarning)
        return torch.cat(all_gather(x.contiguous()), 0)


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """The sum of ``x`` over the ranks, differentiable (the backward sums the ranks' gradients);
    a CPU tensor under nccl travels through the rank's GPU. ``x`` itself at W = 1."""
    if world_size() == 1:
        return x
    from torch.distributed.nn.functional import all_reduce

    on = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else x.device
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return all_reduce(x.to(on)).to(x.device)
