"""Exponential moving average of the weights (``budget.ema: DECAY``, e.g. ASL's and KMCL's 0.9997).

timm's ``ModelEmaV3`` with a constant decay (no warm-up: the ASL code's ``ModelEma`` has none),
updated after every optimiser step, fp32, parameters and buffers. One EMA per training stage,
started from the weights the stage starts with (a two-stage method's stage 2 does not average
stage-1 weights into its probe). Validation scores the plain and the EMA weights after every
epoch and selects among both (``bench.run.runner``); the official ASL/KMCL scripts take the better
of the two on the TEST set, which this benchmark never does.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn


def make_ema(model: nn.Module, decay: float | None) -> Any:
    """A ``timm.utils.ModelEmaV3`` of ``model`` (None when ``decay`` is None)."""
    if decay is None:
        return None
    from timm.utils import ModelEmaV3

    return ModelEmaV3(model, decay=float(decay), use_warmup=False, foreach=True)


def ema_state(ema: Any) -> dict[str, torch.Tensor] | None:
    """The averaged weights (the EMA module's state dict, on the CPU), for checkpoints."""
    if ema is None:
        return None
    return {k: v.detach().cpu().clone() for k, v in ema.module.state_dict().items()}


def load_ema_state(ema: Any, state: dict[str, torch.Tensor] | None) -> None:
    """Restore the averaged weights saved by :func:`ema_state` (resume)."""
    if ema is not None and state is not None:
        ema.module.load_state_dict(state)
