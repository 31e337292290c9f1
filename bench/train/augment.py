"""Batched training augmentations on uint8 image batches, driven by an explicit generator.

Every augmentation maps a (B, H, W, C) uint8 tensor to a (B, C, H, W) float32
tensor in [0, 1] (then optionally normalised). Randomness comes only from the
``torch.Generator`` the runner seeds per (seed, stage, epoch), so an epoch
replayed after a resume sees exactly the same augmented images.

Names (the suite's ``budget.augmentation``):
  none        no augmentation
  shift       random translation up to 1/12 of the side (zero fill): digits, small objects
  flip-crop   horizontal flip + random resized crop, scale 0.7-1.0 (CSRA's recipe)
  randaugment torchvision v2 RandAugment defaults, batched (bench.train.randaugment; ASL / ProbMCL / KMCL)
  cutout+randaugment  ASL's official order (train.py: CutoutPIL then RandAugment): one square of
              half the side filled with a random colour, then RandAugment
  randaugment+cutout  RandAugment then one zeroed square of half the side (this benchmark's
              earlier reading of the papers' "Cutout + RandAugment", kept as a named option)
  multiscale-crop  ML-GCN's MultiScaleCrop (fixed corner/centre crops, 1-.5 of the short side) + h-flip
  rrc-flip    torchvision RandomResizedCrop (scale .08-1, ratio 3/4-4/3) + h-flip

``squish_resize`` is ASL's Resize((size, size)) (aspect ratio ignored), for the data path.

All of them are batched tensor ops on the batch's own device (CPU or CUDA); the
generator is a CPU generator: small parameter tensors are drawn from it on the CPU and
then moved to the batch's device, so CPU and GPU runs see the same draws. A batch's draws
travel in ONE copy (:func:`upload`: packed, pinned, ``non_blocking``), so the host never waits
for the device here (``tests/test_host_syncs.py`` counts it). The ImageNet constants are
copied once per device. Left: torchvision's affine / rotate kernels (RandAugment's Shear,
Translate, Rotate) build their matrix with ``torch.tensor(..., device=...)``, and its
Equalize / AutoContrast index with masks -- syncs inside torchvision, pinned by that test.
"""
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from bench.train.randaugment import apply_rounds, draw_rounds, rand_augment, round_orders
from bench.train.transfer import upload

AUGMENTATIONS = ("none", "shift", "flip-crop", "randaugment", "cutout+randaugment",
                 "randaugment+cutout", "multiscale-crop", "rrc-flip")
NORMALIZATIONS = ("none", "imagenet")
_IMAGENET = (torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225]))
# ML-GCN's training recipe (engine.py: MultiScaleCrop(size, scales=(1.0, .875, .75, .66, .5),
# max_distort=2)); util.MultiScaleCrop's own defaults would be (1, .875, .75, .66) and 1.
MLGCN_SCALES: tuple[float, ...] = (1.0, 0.875, 0.75, 0.66, 0.5)
MLGCN_MAX_DISTORT = 2
# util.MultiScaleCrop.fill_fix_offset(more_fix_crop=True): (x, y) in quarters of the free room
_FIX_OFFSETS = torch.tensor([(0, 0), (4, 0), (0, 4), (4, 4), (2, 2), (0, 2), (4, 2), (2, 4), (2, 0),
                             (1, 1), (3, 1), (1, 3), (3, 3)])


@functools.lru_cache(maxsize=None)
def _imagenet_stats(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """ImageNet mean and std (1, 3, 1, 1) on ``device``, copied there once."""
    return tuple(t.view(1, 3, 1, 1).to(device) for t in _IMAGENET)  # type: ignore[return-value]


def model_in_chans(data_chans: int, normalize: str) -> int:
    """Channels the model sees: ImageNet normalisation feeds grey images as RGB (replicated)."""
    return 3 if normalize == "imagenet" else data_chans


def to_float(batch: torch.Tensor, normalize: str = "none") -> torch.Tensor:
    """(B, H, W, C) uint8 -> (B, C, H, W) float32 in [0, 1], optionally ImageNet-normalised
    (grey images replicated to 3 channels first, as ImageNet-pretrained stems expect)."""
    x = batch.permute(0, 3, 1, 2).float().div_(255.0)
    if normalize == "imagenet":
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        mean, std = _imagenet_stats(x.device)
        x = (x - mean) / std
    elif normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize={normalize!r} must be one of {', '.join(NORMALIZATIONS)}")
    return x


def _affine(x: torch.Tensor, scale: torch.Tensor, tx: torch.Tensor, ty: torch.Tensor,
            flip: torch.Tensor) -> torch.Tensor:
    """Per-sample zoom/translate/flip of (B, C, H, W) with one batched grid_sample."""
    b = x.shape[0]
    theta = torch.zeros(b, 2, 3, dtype=x.dtype, device=x.device)
    theta[:, 0, 0] = scale * torch.where(flip, -1.0, 1.0).to(x.dtype)
    theta[:, 1, 1] = scale
    theta[:, 0, 2] = tx
    theta[:, 1, 2] = ty
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _cutout_draws(shape: torch.Size, generator: torch.Generator, fill: str = "zero") -> list[torch.Tensor]:
    """The host draws of :func:`_cutout` for a (B, C, H, W) batch: centres cy (B,), cx (B,)
    and, for ``fill="random"``, the colour (B, C), in this order."""
    b, c, h, w = shape
    cy = torch.randint(0, h, (b,), generator=generator)
    cx = torch.randint(0, w, (b,), generator=generator)
    return [cy, cx] + ([torch.randint(0, 256, (b, c), generator=generator)] if fill == "random" else [])


def _cutout_apply(chw: torch.Tensor, draws: list[torch.Tensor], fraction: float = 0.5) -> torch.Tensor:
    """:func:`_cutout` with its draws already on the batch's device."""
    b, _, h, w = chw.shape
    half = max(1, int(h * fraction)) // 2
    cy, cx = draws[0], draws[1]
    ys = torch.arange(h, device=chw.device).view(1, h, 1)
    xs = torch.arange(w, device=chw.device).view(1, 1, w)
    inside = ((ys - cy.view(b, 1, 1)).abs() <= half) & ((xs - cx.view(b, 1, 1)).abs() <= half)
    if len(draws) == 3:
        colour = draws[2].to(chw.dtype)
        return torch.where(inside.unsqueeze(1), colour[:, :, None, None], chw)
    return chw.masked_fill(inside.unsqueeze(1), 0)


def _cutout(chw: torch.Tensor, generator: torch.Generator, fraction: float = 0.5,
            fill: str = "zero") -> torch.Tensor:
    """Zero one random square per image of (B, C, H, W), on its device: centre uniform
    over the pixels (CPU draws), all pixels within ``int(H * fraction) // 2`` of it in both
    axes (side ``2 * (int(H * fraction) // 2) + 1``, as ASL's inclusive PIL rectangle),
    clipped where it extends past the border. ``fill``: "zero", or "random" -- one uniform
    0-255 value per image and channel (ASL's CutoutPIL fills a random RGB colour)."""
    return _cutout_apply(chw, upload(chw.device, *_cutout_draws(chw.shape, generator, fill)), fraction)


def _axis_grid(start: torch.Tensor, length: torch.Tensor, size: int, device: torch.device) -> torch.Tensor:
    """Normalised sample positions (B, size) that resize the pixel span
    [start, start + length) (per image, (B,) int on ``device``) to ``size`` pixels: bilinear,
    half-pixel centres, clamped to the span (as ``F.interpolate`` on the cropped image)."""
    start = start.to(torch.float32).unsqueeze(1)
    length = length.to(torch.float32).unsqueeze(1)
    u = torch.arange(size, device=device, dtype=torch.float32).unsqueeze(0)
    pos = start + (u + 0.5) * (length / size) - 0.5
    pos = torch.minimum(torch.maximum(pos, start), start + length - 1)
    return (2 * pos + 1) / size - 1


def crop_resize(x: torch.Tensor, left: torch.Tensor, top: torch.Tensor, width: torch.Tensor,
                height: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Crop box i of image i of float (B, C, H, W) and resize it back to (H, W), bilinear,
    mirrored where ``flip`` (one batched grid_sample). Boxes: (B,) int CPU tensors in pixels,
    inside the image; ``flip``: (B,) bool CPU. Equals torchvision's ``resized_crop``
    (bilinear, no antialias, which upsampling never needs) up to float rounding."""
    b, _, h, w = x.shape
    left, top, width, height, flip = upload(x.device, left, top, width, height, flip)
    gx = _axis_grid(left, width, w, x.device)
    gx = torch.where(flip.unsqueeze(1), gx.flip(1), gx)
    gy = _axis_grid(top, height, h, x.device)
    grid = torch.stack((gx.unsqueeze(1).expand(b, h, w), gy.unsqueeze(2).expand(b, h, w)), dim=-1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def multiscale_crop_params(b: int, h: int, w: int, generator: torch.Generator,
                           scales: tuple[float, ...] = MLGCN_SCALES,
                           max_distort: int = MLGCN_MAX_DISTORT) -> tuple[torch.Tensor, ...]:
    """ML-GCN's ``MultiScaleCrop._sample_crop_size`` per image (output size = input size):
    a (width, height) pair uniform over scale-index pairs at most ``max_distort`` apart, then
    one of the 13 fixed offsets, uniform. Returns (left, top, width, height, flip), (B,) CPU."""
    sides = [int(min(h, w) * s) for s in scales]
    pairs = torch.tensor([(w if abs(sw - w) < 3 else sw, h if abs(sh - h) < 3 else sh)
                          for i, sh in enumerate(sides) for j, sw in enumerate(sides)
                          if abs(i - j) <= max_distort])
    size = pairs[torch.randint(len(pairs), (b,), generator=generator)]
    offset = _FIX_OFFSETS[torch.randint(len(_FIX_OFFSETS), (b,), generator=generator)]
    flip = torch.rand(b, generator=generator) < 0.5
    cw, ch = size[:, 0], size[:, 1]
    left = offset[:, 0] * torch.div(w - cw, 4, rounding_mode="floor")
    top = offset[:, 1] * torch.div(h - ch, 4, rounding_mode="floor")
    return left, top, cw, ch, flip


def rrc_params(b: int, h: int, w: int, generator: torch.Generator,
               scale: tuple[float, float] = (0.08, 1.0),
               ratio: tuple[float, float] = (3 / 4, 4 / 3),
               attempts: int = 10) -> tuple[torch.Tensor, ...]:
    """torchvision ``RandomResizedCrop.make_params`` per image, batched: the first of
    ``attempts`` (area, log-aspect) draws whose box fits, else the central fallback crop;
    then a uniform integer offset and a coin for the flip. Returns (left, top, width,
    height, flip), (B,) CPU."""
    area = h * w * (scale[0] + (scale[1] - scale[0]) * torch.rand(b, attempts, generator=generator,
                                                                   dtype=torch.float64))
    lo, hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(lo + (hi - lo) * torch.rand(b, attempts, generator=generator, dtype=torch.float64))
    cws = torch.sqrt(area * aspect).round().long()
    chs = torch.sqrt(area / aspect).round().long()
    fits = (cws > 0) & (cws <= w) & (chs > 0) & (chs <= h)
    first = fits.long().argmax(1, keepdim=True)
    cw, ch = cws.gather(1, first).squeeze(1), chs.gather(1, first).squeeze(1)
    fw, fh = w, h  # central fallback
    if w / h < min(ratio):
        fh = int(round(w / min(ratio)))
    elif w / h > max(ratio):
        fw = int(round(h * max(ratio)))
    found = fits.any(1)
    cw, ch = torch.where(found, cw, fw), torch.where(found, ch, fh)
    u = torch.rand(b, 2, generator=generator, dtype=torch.float64)
    top = torch.where(found, (u[:, 0] * (h - ch + 1)).floor().long(), (h - fh) // 2)
    left = torch.where(found, (u[:, 1] * (w - cw + 1)).floor().long(), (w - fw) // 2)
    flip = torch.rand(b, generator=generator) < 0.5
    return left, top, cw, ch, flip


def squish_resize(batch: torch.Tensor, size: int) -> torch.Tensor:
    """ASL's ``Resize((size, size))``: uint8 (B, C, H, W) -> uint8 (B, C, size, size), aspect
    ratio ignored, bilinear with antialias (PIL-like), batched on the batch's device."""
    return TF.resize(batch, [size, size], interpolation=InterpolationMode.BILINEAR, antialias=True)


def _finish(x: torch.Tensor, normalize: str) -> torch.Tensor:
    """Float (B, C, H, W) in [0, 1] -> normalised: through uint8 (as the loader would store it)."""
    if normalize != "none":
        return to_float((x * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1), normalize)
    return x


def augment(batch: torch.Tensor, name: str, generator: torch.Generator,
            normalize: str = "none") -> torch.Tensor:
    """Apply augmentation ``name`` to a uint8 batch (B, H, W, C) on any device -> float32
    (B, C, H, W) on the same device; randomness only from the CPU ``generator``."""
    b, h, w, _ = batch.shape
    if name == "none":
        return to_float(batch, normalize)
    if name in ("randaugment", "cutout+randaugment", "randaugment+cutout"):
        out = batch.permute(0, 3, 1, 2).contiguous()
        # every draw first (the order the steps draw them in), then ONE upload, then the steps
        cut_first = _cutout_draws(out.shape, generator, "random") if name == "cutout+randaugment" else []
        rounds = draw_rounds(b, generator)
        cut_last = _cutout_draws(out.shape, generator) if name == "randaugment+cutout" else []
        sent = upload(out.device, *cut_first, *round_orders(rounds), *cut_last)
        if cut_first:
            out = _cutout_apply(out, sent[:3])
        out = apply_rounds(out, rounds, sent[len(cut_first):len(sent) - len(cut_last)])
        if cut_last:
            out = _cutout_apply(out, sent[-2:])
        return to_float(out.permute(0, 2, 3, 1), normalize)
    if name in ("multiscale-crop", "rrc-flip"):
        params = (multiscale_crop_params if name == "multiscale-crop" else rrc_params)(b, h, w, generator)
        return _finish(crop_resize(to_float(batch, "none"), *params), normalize)
    x = to_float(batch, "none")
    (u,) = upload(x.device, torch.rand(b, 4, generator=generator))
    if name == "shift":
        max_shift = 2.0 / 12.0  # normalised coordinates span 2: 1/12 of the side
        scale = torch.ones(b, device=x.device)
        x = _affine(x, scale, (u[:, 0] * 2 - 1) * max_shift, (u[:, 1] * 2 - 1) * max_shift,
                    torch.zeros(b, dtype=torch.bool, device=x.device))
    elif name == "flip-crop":
        area = 0.7 + 0.3 * u[:, 0]
        scale = area.sqrt()  # crop side fraction; grid scale < 1 zooms in
        room = 1 - scale
        x = _affine(x, scale, (u[:, 1] * 2 - 1) * room, (u[:, 2] * 2 - 1) * room, u[:, 3] < 0.5)
    else:
        raise ValueError(f"augmentation {name!r} must be one of {', '.join(AUGMENTATIONS)}")
    return _finish(x, normalize)
