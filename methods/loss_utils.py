"""What every loss of this package shares: the fp32 guard under mixed precision, the target mask
and the reduction. Convention for every loss: ``targets`` is (B, C) float with 1 = positive,
0 = negative and -1 = ignore; ignored entries contribute nothing."""
from __future__ import annotations

import functools
import math
from typing import Callable, TypeVar

import torch

from methods.global_batch import world_size


_F = TypeVar("_F", bound=Callable)
_HALF = (torch.float16, torch.bfloat16)
_LOG_2PI = math.log(2 * math.pi)


def fp32_loss(fn: _F) -> _F:
    """Run ``fn`` with autocast disabled and half-precision tensor arguments upcast to float32
    (losses, and the heads whose outputs must be fp32: ``methods.heads.Fp32Linear``)."""
    def up(v):
        return v.float() if isinstance(v, torch.Tensor) and v.dtype in _HALF else v

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]
        kind = tensors[0].device.type if tensors else "cpu"
        with torch.autocast(kind, enabled=False):
            return fn(*(up(a) for a in args), **{k: up(v) for k, v in kwargs.items()})
    return wrapper  # type: ignore[return-value]


def _loss_dtype(logits: torch.Tensor) -> torch.dtype:
    """At least float32: fp16 / bf16 logits are upcast, float64 stays float64."""
    return torch.promote_types(logits.dtype, torch.float32) if logits.is_floating_point() else torch.float32


def _mask(targets: torch.Tensor, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """(y, keep): y in {0, 1} with ignored entries set to 0, keep = 1 where not ignored."""
    keep = (targets >= 0).to(dtype)
    return targets.clamp(min=0).to(dtype), keep


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    """Reduce per-sample (or per-anchor) terms. Under W data-parallel ranks a ``sum`` is W x the
    rank's sum, so that the ranks' mean (what DDP's averaged gradients follow) is the sum over the
    global batch (methods/global_batch.py); with one process it is the plain sum."""
    if reduction == "sum":
        w = world_size()
        return loss.sum() if w == 1 else loss.sum() * w
    if reduction == "mean":
        return loss.mean()
    if reduction == "none":
        return loss
    raise ValueError(f"reduction={reduction!r} must be 'sum', 'mean' or 'none'")

