"""One training epoch: the only place a gradient step happens.

Per step: the epoch's next uint8 batch arrives on the device (``Feed.raw``), is augmented there
(``Feed.views``), split into ``accumulate`` micro-batches (each sharded over the DDP ranks) whose
losses (fp32, see ``methods.losses.fp32_loss``) are back-propagated under autocast, the gradients
averaged over DDP ranks by DistributedDataParallel, unscaled (fp16), clipped, checked, and the
optimiser, the schedule and the EMA step.

Non-finite steps: a step whose gradients are inf/NaN (a non-finite loss included) is skipped --
no optimiser or EMA update -- and COUNTED; under fp16 these are the steps the GradScaler skips
while it lowers the scale. More than ``budget.max_nonfinite_steps`` in a job fails it
(:class:`NonFiniteError`). fp32 / bf16: the skip is decided ON THE DEVICE
(``bench.train.guard.masked_update``: the update runs and is undone where the gradients are not
finite) and the skipped steps are counted on the device, so the step never reads anything to the
host; the count is read once per epoch, with the loss, and the budget is checked THEN (at the
end of the epoch in which it is exceeded, not at the step). fp16: the scaler reads its scale
each step (one sync per step, torch's GradScaler with a non-fused optimiser).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from bench.run import distributed
from bench.data.base import Split
from bench.train.data import Feed
from bench.train.guard import masked_update, optimizer_tensors
from bench.train.precision import autocast
from bench.train.settings import Runtime


class NonFiniteError(FloatingPointError):
    """More non-finite steps than the budget allows."""


@dataclass
class Step:
    """What the epoch's steps share: optimiser, schedule, scaler, EMA, parameters, clipping."""

    opt: torch.optim.Optimizer
    sched: Any
    scaler: torch.amp.GradScaler
    ema: Any
    params: list[torch.nn.Parameter]
    clip: float | None
    runtime: Runtime
    nonfinite_before: int = 0  # non-finite steps of this job's earlier epochs (resume included)
    ddp: Any = None  # W > 1: DistributedDataParallel computing model.loss (bench.run.distributed)


@dataclass
class EpochResult:
    loss: float
    parts: dict[str, float] = field(default_factory=dict)
    nonfinite_steps: int = 0


def _micro(views: list[torch.Tensor], targets: torch.Tensor, k: int) -> list[tuple[list[torch.Tensor], torch.Tensor]]:
    if k == 1:
        return [(views, targets)]
    n = targets.shape[0] // k
    return [([v[i * n:(i + 1) * n] for v in views], targets[i * n:(i + 1) * n]) for i in range(k)]


def _grad_norm(params: Sequence[torch.nn.Parameter], clip: float | None) -> torch.Tensor:
    """Total gradient norm (clipping to ``clip`` first when set)."""
    if clip:
        return torch.nn.utils.clip_grad_norm_(params, float(clip))
    grads = [p.grad for p in params if p.grad is not None]
    return torch.nn.utils.get_total_norm(grads) if grads else torch.zeros(())


def _check_budget(step: Step, skipped: int, stage: str) -> None:
    rt = step.runtime
    if step.nonfinite_before + skipped > rt.max_nonfinite_steps:
        raise NonFiniteError(
            f"{step.nonfinite_before + skipped} non-finite training steps (loss or gradients "
            f"inf/NaN) in stage {stage} "
            f"(budget.max_nonfinite_steps={rt.max_nonfinite_steps}); lower the lr, use "
            "precision: bf16/fp32, or set optimizer.grad_clip")


def train_epoch(model: torch.nn.Module, stage: str, split: Split, batches: Sequence[np.ndarray], *,
                feed: Feed, step: Step, aug: str, n_views: int, generator: torch.Generator,
                progress: Any = None) -> EpochResult:
    """Train ``model`` for one epoch over ``batches`` of ``split``; mean loss and loss parts."""
    model.train()
    rt, scaler = step.runtime, step.scaler
    total = torch.zeros((), device=feed.device, dtype=torch.float64)
    parts: dict[str, torch.Tensor] = {}
    skipped = 0
    skipped_on_device = torch.zeros((), device=feed.device, dtype=torch.int64)
    source = feed.raw(split, batches)
    for images, targets in (progress(source) if progress else source):
        views = feed.views(images, n_views, aug, generator)
        step.opt.zero_grad(set_to_none=True)
        for i, (mv, mt) in enumerate(_micro(views, targets, rt.accumulate)):
            mv, mt = distributed.shard_batch(mv, mt, feed.device)  # DDP: this rank's slice of the micro-batch
            with distributed.accumulating(step.ddp, last=i == rt.accumulate - 1):  # DDP: one all-reduce a step
                with autocast(feed.device, rt.precision):
                    loss = (model.loss if step.ddp is None else step.ddp)(mv, mt, stage)
                scaled = loss if rt.accumulate == 1 else loss / rt.accumulate
                scaler.scale(scaled).backward()
            total += torch.nan_to_num(scaled.detach().double(), nan=0.0, posinf=0.0, neginf=0.0)
            for name, value in (getattr(model, "loss_parts", None) or {}).items():
                v = value.detach().double() / rt.accumulate
                parts[name] = parts[name] + v if name in parts else v
            model.loss_parts = None  # a model sets its parts per step (ProbMCL's NLL and lambda x PCL)
        scaler.unscale_(step.opt)
        finite = torch.isfinite(_grad_norm(step.params, step.clip))
        if scaler.is_enabled():  # fp16: the scaler skips the step itself when it found inf/NaN
            before = scaler.get_scale()
            scaler.step(step.opt)
            scaler.update()
            stepped = scaler.get_scale() >= before
        else:  # decided on the device: no host read (bench.train.guard)
            masked_update(finite, lambda: optimizer_tensors(step.opt), step.opt.step)
            if step.ema is not None:
                masked_update(finite, lambda: [*step.ema.module.parameters(), *step.ema.module.buffers()],
                              lambda: step.ema.update(model))
            skipped_on_device += ~finite
            stepped = True
        step.sched.step()
        if not stepped:
            skipped += 1
            _check_budget(step, skipped, stage)
        elif step.ema is not None and scaler.is_enabled():
            step.ema.update(model)
    skipped += int(skipped_on_device)  # once per epoch
    _check_budget(step, skipped, stage)
    state = [t for t in model.state_dict().values() if t.is_floating_point()]
    if not bool(torch.stack([torch.isfinite(t).all() for t in state]).all()):
        # once per epoch: a finite step can still overflow the weights or BatchNorm statistics
        raise NonFiniteError(f"non-finite weights or buffers after an epoch of stage {stage} ({skipped} "
                             "non-finite steps skipped); lower the lr or set optimizer.grad_clip")
    n = len(batches)
    mean_parts = {f"loss_{k}": round(distributed.average_scalar(float(v)) / n, 6) for k, v in parts.items()}
    return EpochResult(round(distributed.average_scalar(float(total)) / n, 6), mean_parts, skipped)
