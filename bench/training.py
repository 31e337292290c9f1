"""Pieces of the training loop: optimiser, schedule, batches, prediction.

Kept apart from ``bench.runner`` (which orchestrates a job) so each stays small.
"""
from __future__ import annotations

import zlib
from typing import Any, Iterator, Mapping

import numpy as np
import torch
from torch import nn

from bench.augment import augment, to_float
from bench.data.base import Split

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
    if name == "adamw":
        return torch.optim.AdamW(pg, lr=lr)
    if name == "adam":  # coupled L2 on the weights only (param_groups): official ASL/KMCL code
        return torch.optim.Adam(pg, lr=lr)
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


def epoch_batches(n: int, batch_size: int, generator: torch.Generator) -> list[np.ndarray]:
    """Shuffled, sorted-within-batch index arrays; the last partial batch is dropped so every
    method sees exactly epochs x floor(n / batch_size) x batch_size images."""
    perm = torch.randperm(n, generator=generator).numpy()
    steps = n // batch_size
    if steps == 0:
        raise ValueError(f"budget batch_size={batch_size} exceeds the {n} training images")
    return [np.sort(perm[i * batch_size:(i + 1) * batch_size]) for i in range(steps)]


def batch_views(split: Split, idx: np.ndarray, n_views: int, aug: str, normalize: str,
                generator: torch.Generator, device: str) -> tuple[list[torch.Tensor], torch.Tensor]:
    """(views, targets) for the images ``idx``: ``n_views`` independent augmentations."""
    raw = torch.from_numpy(np.ascontiguousarray(split.images[idx]))
    views = [augment(raw, aug, generator, normalize).to(device) for _ in range(n_views)]
    targets = torch.from_numpy(split.targets[idx].astype(np.float32)).to(device)
    return views, targets


def iterate_plain(split: Split, batch_size: int, normalize: str,
                  device: str) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Fixed-order, unaugmented (images, targets) batches over a split."""
    for i in range(0, len(split), batch_size):
        raw = torch.from_numpy(np.ascontiguousarray(split.images[i:i + batch_size]))
        targets = torch.from_numpy(split.targets[i:i + batch_size].astype(np.float32))
        yield to_float(raw, normalize).to(device), targets.to(device)


@torch.no_grad()
def predict_scores(model: nn.Module, split: Split, batch_size: int, normalize: str,
                   device: str) -> np.ndarray:
    """Sigmoid scores (N, C) in float32 (computed from fp32 logits: no fp16 saturation ties)."""
    model.eval()
    out = [torch.sigmoid(model(x).float()).cpu() for x, _ in iterate_plain(split, batch_size, normalize, device)]
    return torch.cat(out).numpy().astype(np.float32)


@torch.no_grad()
def predict_training_free(model: nn.Module, split: Split, lambdas: list[float], batch_size: int,
                          normalize: str, device: str) -> dict[float, np.ndarray]:
    """Scores of CSRA's training-free trick on the model's own linear head, per Lambda."""
    from methods.csra import training_free_logits

    weight, bias = model.linear_classifier()
    model.eval()
    out: dict[float, list[torch.Tensor]] = {lam: [] for lam in lambdas}
    for x, _ in iterate_plain(split, batch_size, normalize, device):
        fmap = model.features(x)
        for lam in lambdas:
            out[lam].append(torch.sigmoid(training_free_logits(fmap, weight, bias, lam).float()).cpu())
    return {lam: torch.cat(v).numpy().astype(np.float32) for lam, v in out.items()}
