"""Mixed precision: ``budget.precision`` = fp32 | bf16 | fp16.

* fp32: no autocast (the CPU suites' default).
* bf16: ``torch.autocast(dtype=bfloat16)`` on CUDA (devices that support it) or the CPU; same
  exponent range as fp32, so no loss scaling.
* fp16: ``torch.autocast(dtype=float16)`` on CUDA only, with a dynamic ``GradScaler``; the steps
  the scaler skips (inf/NaN gradients) are counted like every other non-finite step.

Parameters, optimiser state and EMA stay fp32 under every precision, and every loss in
``methods.losses`` computes in fp32 (``fp32_loss``). Scores are always taken from fp32 logits.
"""
from __future__ import annotations

import contextlib
from typing import ContextManager

import torch

from bench.train.settings import PRECISIONS

__all__ = ["PRECISIONS", "autocast", "grad_scaler", "unsupported", "device_type"]
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def device_type(device: str) -> str:
    """"cuda" for "cuda" / "cuda:1", "cpu" for "cpu"."""
    return str(device).split(":")[0]


def unsupported(precision: str, device: str) -> str | None:
    """Why ``precision`` cannot run on ``device`` (None when it can)."""
    kind = device_type(device)
    if precision == "fp32":
        return None
    if precision == "fp16" and kind != "cuda":
        return f"fp16 needs a CUDA device (this job's device is {device}); use precision: bf16 or fp32"
    if kind == "cuda":
        if not torch.cuda.is_available():
            return f"device {device} is not available here"
        if precision == "bf16" and not torch.cuda.is_bf16_supported():
            return f"this GPU ({torch.cuda.get_device_name()}) has no bf16 support; use precision: fp16"
    return None


def autocast(device: str, precision: str) -> ContextManager:
    """The forward pass's autocast context (a null context for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type(device), dtype=_DTYPES[precision])


def grad_scaler(device: str, precision: str) -> torch.amp.GradScaler:
    """fp16's dynamic loss scaler; disabled (a pass-through) for fp32 and bf16."""
    return torch.amp.GradScaler(device_type(device), enabled=precision == "fp16")


def check_local_device(budgets, device: str | None) -> None:
    """Raise ``BenchError`` (one line, exit 2) when a job's ``budget.precision`` cannot run on
    the device a LOCAL run would use (``--device``, else cuda when available, else cpu). Called
    when a suite or sweep is loaded, before anything is recorded; on Slurm the runner checks on
    the node."""
    from bench.errors import BenchError

    where = device or ("cuda" if torch.cuda.is_available() else "cpu")
    for budget in budgets:
        precision = budget.get("precision", "fp32")
        problem = unsupported(precision, where)
        if problem:
            raise BenchError(f"budget.precision={precision}: {problem}")
