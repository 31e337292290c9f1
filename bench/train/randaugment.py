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

No host sync: torchvision's tensor kernels of Shear / Translate / Rotate build their matrix
and grid scale with ``torch.tensor(..., device=...)`` (blocking copies), Sharpness its kernel,
and AutoContrast writes through boolean masks (``nonzero``). Here the same computations run
sync-free: the sampling grid of a geometric op depends only on (op, sign, H, W), so torchvision's
own grid (its private ``_affine_grid``) is computed once on the CPU and copied to the device once;
the sharpness kernel likewise; AutoContrast is torchvision's with ``torch.where`` for the masked
writes. Bit-identical to torchvision on the CPU (tests/test_augment_device.py checks each).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF
from torchvision.transforms.v2.functional import _geometry as _G  # private: pinned against TF by the tests

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
    if op in GEOMETRIC and images.numel() and (op != "Rotate" or magnitude % 90):
        h, w = images.shape[-2:]
        return _G._apply_grid_transform(images, _grid(op, magnitude, h, w, images.device), "nearest", None)
    if op == "Sharpness" and images.numel() and min(images.shape[-2:]) > 2:
        return _sharpness(images, 1.0 + magnitude)
    if op == "AutoContrast":
        return _autocontrast(images)
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


GEOMETRIC = ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")


@functools.lru_cache(maxsize=None)
def _grid(op: str, magnitude: float, h: int, w: int, device: torch.device) -> torch.Tensor:
    """The (1, h, w, 2) sampling grid of geometric op ``op`` exactly as ``TF.affine`` /
    ``TF.rotate`` (nearest, no fill, same size) compute it for ``apply_op``'s arguments, made
    on the CPU and copied to ``device`` once."""
    if op == "Rotate":
        matrix = _G._get_inverse_affine_matrix([0.0, 0.0], -(magnitude % 360), [0.0, 0.0], 1.0, [0.0, 0.0])
    else:
        if op in ("ShearX", "ShearY"):
            deg = math.degrees(math.atan(magnitude))
            shear, translate, center = ([deg, 0.0] if op == "ShearX" else [0.0, deg]), [0, 0], [0, 0]
        else:
            shear, center = [0.0, 0.0], None
            translate = [int(magnitude), 0] if op == "TranslateX" else [0, int(magnitude)]
        angle, translate, shear, center = _G._affine_parse_args(0.0, translate, 1.0, shear,
                                                                InterpolationMode.NEAREST, center)
        center_f = [0.0, 0.0] if center is None else [(c - s * 0.5) for c, s in zip(center, [w, h])]
        matrix = _G._get_inverse_affine_matrix(center_f, angle, [float(t) for t in translate], 1.0, shear)
    theta = torch.tensor(matrix, dtype=torch.float32).reshape(1, 2, 3)
    return _G._affine_grid(theta, w=w, h=h, ow=w, oh=h).to(device)


@functools.lru_cache(maxsize=None)
def _sharpness_kernel(channels: int, device: torch.device) -> torch.Tensor:
    a, b = 1.0 / 13.0, 5.0 / 13.0
    return torch.tensor([[a, a, a], [a, b, a], [a, a, a]], dtype=torch.float32).to(device).expand(channels, 1, 3, 3)


def _sharpness(images: torch.Tensor, factor: float) -> torch.Tensor:
    """``TF.adjust_sharpness`` of a uint8 (N, C, H, W) batch (H, W > 2), its kernel cached per device."""
    output = images.to(dtype=torch.float32, copy=True)
    blurred = torch.nn.functional.conv2d(output, _sharpness_kernel(images.shape[1], images.device),
                                         groups=images.shape[1]).round_()
    view = output[..., 1:-1, 1:-1]
    view.add_(blurred.sub_(view), alpha=(1.0 - factor))
    return output.clamp_(0, 255).to(images.dtype)


def _autocontrast(images: torch.Tensor) -> torch.Tensor:
    """``TF.autocontrast`` of a uint8 batch, the masked writes as ``torch.where`` (no nonzero)."""
    if images.numel() == 0:
        return images
    float_image = images.to(torch.float32)
    minimum = float_image.amin(dim=(-2, -1), keepdim=True)
    maximum = float_image.amax(dim=(-2, -1), keepdim=True)
    flat = maximum == minimum
    inv_scale = torch.where(flat, 1.0, maximum.sub_(minimum).mul_(1.0 / 255))
    minimum = torch.where(flat, 0.0, minimum)
    return float_image.sub_(minimum).div_(inv_scale).clamp_(0, 255).to(images.dtype)


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
