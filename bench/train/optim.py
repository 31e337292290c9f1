"""Optimiser, parameter groups, learning-rate schedule and the derived seeds of a job."""
from __future__ import annotations

import zlib
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn


OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULES = ("onecycle", "cosine", "step", "constant")


def derived_seed(*parts: int | str) -> int:
    """A 31-bit seed from (job seed, stage, epoch, ...): order-sensitive and stable across runs."""
    return zlib.crc32(":".join(str(p) for p in parts).encode()) & 0x7FFFFFFF


LrGroups = list[tuple[str, list[nn.Parameter], float]]


def param_groups(groups: LrGroups, lr: float, weight_decay: float) -> list[dict[str, Any]]:
    """Optimiser groups: each (name, params, lr scale) split into weight matrices/kernels (with
    weight decay) and biases/norm scales (without); frozen parameters are left out."""
    out = []
    for name, params, scale in groups:
        live = [p for p in params if p.requires_grad]
        for decay, members in ((weight_decay, [p for p in live if p.ndim > 1]),
                               (0.0, [p for p in live if p.ndim <= 1])):
            if members:
                out.append({"params": members, "weight_decay": decay, "lr": lr * scale, "name": name})
    return out


def optimizer_groups(model: nn.Module, stage: str, params: list[nn.Parameter], protocol: str,
                     cfg: Mapping[str, Any]) -> LrGroups:
    """(name, params, lr scale) groups of a stage. paper-recipe: the method's own ``lr_groups``.
    equal-budget: the backbone at ``backbone_lr_scale`` x the head's lr (fine-tuning as the
    papers do: 0.1), everything else at 1x; one group when the scale is 1."""
    if protocol == "paper-recipe":
        return model.lr_groups(stage)
    scale = float(cfg.get("backbone_lr_scale", 1.0))
    backbone = getattr(model, "backbone", None)
    if scale == 1.0 or backbone is None:
        return [("all", params, 1.0)]
    ids = {id(p) for p in backbone.parameters()}
    return [("backbone", [p for p in params if id(p) in ids], scale),
            ("head", [p for p in params if id(p) not in ids], 1.0)]


def build_optimizer(groups: LrGroups, cfg: Mapping[str, Any]) -> torch.optim.Optimizer:
    """Optimiser ``cfg['name']`` over ``groups`` (see param_groups)."""
    name, lr = cfg["name"], float(cfg["lr"])
    pg = param_groups(groups, lr, float(cfg["weight_decay"]))
    # CUDA: Adam's step counters on the device, so the step reads nothing to the host (bench.train.guard)
    capturable = any(p.is_cuda for g in pg for p in g["params"])
    if name == "adamw":
        return torch.optim.AdamW(pg, lr=lr, capturable=capturable)
    if name == "adam":  # coupled L2 on the weights only (param_groups): official ASL/KMCL code
        return torch.optim.Adam(pg, lr=lr, capturable=capturable)
    if name == "sgd":
        return torch.optim.SGD(pg, lr=lr, momentum=float(cfg["momentum"]))
    raise ValueError(f"optimizer name {name!r} must be one of {', '.join(OPTIMIZERS)}")


def build_schedule(opt: torch.optim.Optimizer, cfg: Mapping[str, Any], epochs: int,
                   steps_per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-step schedule over ``epochs`` x ``steps_per_epoch`` steps."""
    planned = max(epochs, int(cfg.get("planned_epochs") or 0))
    total = max(1, planned * steps_per_epoch)
    name = cfg["schedule"]
    if name == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[g["lr"] for g in opt.param_groups],
                                                   total_steps=total,
                                                   pct_start=float(cfg["pct_start"]))
    warmup = int(cfg.get("warmup_epochs") or 0) * steps_per_epoch
    if name == "cosine":
        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            return 0.5 * (1 + np.cos(np.pi * (step - warmup) / max(1, total - warmup)))
    elif name == "step":
        every = int(cfg.get("step_epochs") or max(1, epochs // 3)) * steps_per_epoch
        gamma = float(cfg["step_gamma"])

        def factor(step: int) -> float:
            return (step + 1) / warmup if step < warmup else gamma ** (step // every)
    elif name == "constant":
        def factor(step: int) -> float:
            return (step + 1) / warmup if step < warmup else 1.0
    else:
        raise ValueError(f"optimizer schedule {name!r} must be one of {', '.join(SCHEDULES)}")
    return torch.optim.lr_scheduler.LambdaLR(opt, factor)
