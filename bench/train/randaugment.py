"""Batched RandAugment on uint8 image batches, on whatever device the batch is on.

Equivalent to ``torchvision.transforms.v2.RandAugment()`` with its defaults (num_ops=2,
magnitude=9, num_magnitude_bins=31, nearest interpolation, fill 0): the same 14 ops,
magnitudes and sign rule (a signed op's magnitude is negated with probability 1/2). Per
image and round, the op index and the sign are drawn from the caller's CPU
``torch.Generator``; the batch is then sorted by (op, sign) and every group goes through
ONE call of ``torchvision.transforms.v2.functional`` (those kernels take (N, C, H, W)
tensors on any device). The only Python loop is over the <= 23 groups of a round.

The random stream differs from torchvision's (which draws from the global RNG per
image), so outputs are equal in distribution, not image for image.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from bench.train.transfer import upload

NUM_OPS, MAGNITUDE, NUM_BINS = 2, 9, 31

# name -> (magnitudes(num_bins, height, width) or None, signed): torchvision's _AUGMENTATION_SPACE
_Space = Callable[[int, int, int], torch.Tensor]
SPACE: dict[str, tuple[_Space | None, bool]] = {
    "Identity": (None, False),
    "ShearX": (lambda n, h, w: torch.linspace(0.0, 0.3, n), True),
    "ShearY": (lambda n, h, w: torch.linspace(0.0, 0.3, n), True),
    "TranslateX": (lambda n, h, w: torch.linspace(0.0, 150.0 / 331.0 * w, n), True),
    "TranslateY": (lambda n, h, w: torch.linspace(0.0, 150.0 / 331.0 * h, n), True),
    "Rotate": (lambda n, h, w: torch.linspace(0.0, 30.0, n), True),
    "Brightness": (lambda n, h, w: torch.linspace(0.0, 0.9, n), True),
    "Color": (lambda n, h, w: torch.linspace(0.0, 0.9, n), True),
    "Contrast": (lambda n, h, w: torch.linspace(0.0, 0.9, n), True),
    "Sharpness": (lambda n, h, w: torch.linspace(0.0, 0.9, n), True),
    "Posterize": (lambda n, h, w: (8 - (torch.arange(n) / ((n - 1) / 4))).round().int(), False),
    "Solarize": (lambda n, h, w: torch.linspace(1.0, 0.0, n), False),
    "AutoContrast": (None, False),
    "Equalize": (None, False),
}
OPS: tuple[str, ...] = tuple(SPACE)


def op_magnitude(op: str, negative: bool, height: int, width: int,
                 magnitude: int = MAGNITUDE, num_bins: int = NUM_BINS) -> float:
    """The float magnitude torchvision passes to op ``op`` (0.0 for ops without one)."""
    fn, signed = SPACE[op]
    if fn is None:
        return 0.0
    value = float(fn(num_bins, height, width)[magnitude])
    return -value if signed and negative else value


def apply_op(images: torch.Tensor, op: str, magnitude: float) -> torch.Tensor:
    """One RandAugment op on a uint8 batch (N, C, H, W), C in {1, 3} -> uint8 (N, C, H, W).

    Mirrors ``v2.RandAugment._apply_image_or_video_transform`` call for call."""
    nearest = InterpolationMode.NEAREST
    if op == "Identity":
        return images
    if op in ("ShearX", "ShearY"):
        deg = math.degrees(math.atan(magnitude))
        shear = [deg, 0.0] if op == "ShearX" else [0.0, deg]
        return TF.affine(images, angle=0.0, translate=[0, 0], scale=1.0, shear=shear,
                         interpolation=nearest, fill=None, center=[0, 0])
    if op in ("TranslateX", "TranslateY"):
        shift = [int(magnitude), 0] if op == "TranslateX" else [0, int(magnitude)]
        return TF.affine(images, angle=0.0, translate=shift, scale=1.0, shear=[0.0, 0.0],
                         interpolation=nearest, fill=None)
    if op == "Rotate":
        return TF.rotate(images, angle=magnitude, interpolation=nearest, fill=None)
    if op == "Brightness":
        return TF.adjust_brightness(images, brightness_factor=1.0 + magnitude)
    if op == "Color":
        return TF.adjust_saturation(images, saturation_factor=1.0 + magnitude)
    if op == "Contrast":
        return TF.adjust_contrast(images, contrast_factor=1.0 + magnitude)
    if op == "Sharpness":
        return TF.adjust_sharpness(images, sharpness_factor=1.0 + magnitude)
    if op == "Posterize":
        return TF.posterize(images, bits=int(magnitude))
    if op == "Solarize":
        return TF.solarize(images, threshold=255.0 * magnitude)
    if op == "AutoContrast":
        return TF.autocontrast(images)
    if op == "Equalize":
        return TF.equalize(images)
    raise ValueError(f"unknown RandAugment op {op!r}")


def draw_ops(batch: int, generator: torch.Generator,
             num_ops: int = NUM_OPS) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image and round: op index (B, num_ops) int64 uniform over OPS, and the sign
    (B, num_ops) bool, True = negate (probability 1/2, used by signed ops only). CPU."""
    ops = torch.randint(len(OPS), (batch, num_ops), generator=generator)
    negative = torch.rand(batch, num_ops, generator=generator) <= 0.5
    return ops, negative


def _group_keys(ops: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """(B,) group key = 2 * op + sign, the sign zeroed for unsigned ops (CPU int64)."""
    signed = torch.tensor([SPACE[o][1] for o in OPS])
    return ops * 2 + (negative & signed[ops]).long()


@dataclass(frozen=True)
class Round:
    """One RandAugment round of a batch, planned on the host: the (op, sign) group of every
    image, the order that sorts the batch into contiguous groups, and each group's (key, count)."""

    ops: torch.Tensor
    negative: torch.Tensor
    order: torch.Tensor
    groups: tuple[tuple[int, int], ...]


def plan_round(ops: torch.Tensor, negative: torch.Tensor) -> Round:
    """The host plan of one round from its (B,) op indices and signs (CPU tensors)."""
    keys = _group_keys(ops, negative)
    order = torch.argsort(keys, stable=True)
    groups, counts = torch.unique_consecutive(keys[order], return_counts=True)
    return Round(ops, negative, order, tuple(zip(groups.tolist(), counts.tolist())))


def draw_rounds(batch: int, generator: torch.Generator, num_ops: int = NUM_OPS) -> list[Round]:
    """The draws of :func:`rand_augment` (``draw_ops``) planned round by round, on the host."""
    ops, negative = draw_ops(batch, generator, num_ops)
    return [plan_round(ops[:, k], negative[:, k]) for k in range(num_ops)] if batch else []


def round_orders(rounds: list[Round]) -> list[torch.Tensor]:
    """The host sort orders the rounds need on the device (a one-group round needs none)."""
    return [r.order for r in rounds if len(r.groups) > 1]


def _apply_planned(images: torch.Tensor, plan: Round, order_dev: torch.Tensor | None) -> torch.Tensor:
    h, w = images.shape[-2:]
    if len(plan.groups) == 1:
        key = plan.groups[0][0]
        op = OPS[key // 2]
        return apply_op(images, op, op_magnitude(op, bool(key % 2), h, w))
    sorted_images = images.index_select(0, order_dev)
    pieces, start = [], 0
    for key, count in plan.groups:
        op = OPS[key // 2]
        part = sorted_images[start:start + count]
        pieces.append(apply_op(part, op, op_magnitude(op, bool(key % 2), h, w)))
        start += count
    return torch.empty_like(images).index_copy_(0, order_dev, torch.cat(pieces))


def apply_rounds(images: torch.Tensor, rounds: list[Round], orders_dev: list[torch.Tensor]) -> torch.Tensor:
    """Apply the planned ``rounds`` in order; ``orders_dev``: their ``round_orders`` on the
    images' device (already uploaded: ``bench.train.augment.upload``)."""
    sent = iter(orders_dev)
    for plan in rounds:
        images = _apply_planned(images, plan, next(sent) if len(plan.groups) > 1 else None)
    return images


def apply_round(images: torch.Tensor, ops: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """Apply op ``ops[i]`` with sign ``negative[i]`` to image i of a uint8 batch (B, C, H, W).

    ``ops``/``negative``: (B,) CPU tensors. One gather, one v2.functional call per
    (op, sign) group on a contiguous slice, one scatter back to the original order."""
    plan = plan_round(ops, negative)
    return _apply_planned(images, plan, plan.order.to(images.device) if len(plan.groups) > 1 else None)


def rand_augment(images: torch.Tensor, generator: torch.Generator, num_ops: int = NUM_OPS) -> torch.Tensor:
    """Batched RandAugment: uint8 (B, C, H, W), C in {1, 3}, any device -> uint8 (B, C, H, W).
    The rounds' sort orders reach the device in one non-blocking copy."""
    if images.dtype != torch.uint8:
        raise TypeError(f"rand_augment wants uint8 images, got {images.dtype}")
    rounds = draw_rounds(images.shape[0], generator, num_ops)
    return apply_rounds(images, rounds, upload(images.device, *round_orders(rounds)))
