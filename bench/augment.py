"""Batched training augmentations on uint8 image batches, driven by an explicit generator.

Every augmentation maps a (B, H, W, C) uint8 tensor to a (B, C, H, W) float32
tensor in [0, 1] (then optionally normalised). Randomness comes only from the
``torch.Generator`` the runner seeds per (seed, stage, epoch), so an epoch
replayed after a resume sees exactly the same augmented images.

Names (the suite's ``budget.augmentation``):
  none        no augmentation
  shift       random translation up to 1/12 of the side (zero fill): digits, small objects
  flip-crop   horizontal flip + random resized crop, scale 0.7-1.0 (CSRA's recipe)
  randaugment torchvision RandAugment (ASL / ProbMCL / KMCL recipes), per image
  cutout+randaugment  RandAugment then one zeroed square of half the side (ASL's recipe)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

AUGMENTATIONS = ("none", "shift", "flip-crop", "randaugment", "cutout+randaugment")
NORMALIZATIONS = ("none", "imagenet")
_IMAGENET = (torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225]))


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
        mean, std = (t.view(1, 3, 1, 1).to(x.device) for t in _IMAGENET)
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


def _cutout(chw: torch.Tensor, generator: torch.Generator, fraction: float = 0.5) -> torch.Tensor:
    """Zero one random square of side ``fraction`` x H per image (may extend past the border)."""
    b, _, h, w = chw.shape
    side = max(1, int(h * fraction))
    cy = torch.randint(0, h, (b,), generator=generator)
    cx = torch.randint(0, w, (b,), generator=generator)
    ys, xs = torch.arange(h).view(1, h, 1), torch.arange(w).view(1, 1, w)
    inside = ((ys - cy.view(b, 1, 1)).abs() <= side // 2) & ((xs - cx.view(b, 1, 1)).abs() <= side // 2)
    return chw.masked_fill(inside.unsqueeze(1), 0)


def augment(batch: torch.Tensor, name: str, generator: torch.Generator,
            normalize: str = "none") -> torch.Tensor:
    """Apply augmentation ``name`` to a uint8 batch (B, H, W, C) -> float (B, C, H, W)."""
    b = batch.shape[0]
    if name == "none":
        return to_float(batch, normalize)
    if name in ("randaugment", "cutout+randaugment"):
        from torchvision.transforms import v2

        state = torch.random.get_rng_state()
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
        ra = v2.RandAugment()
        chw = batch.permute(0, 3, 1, 2)
        out = torch.stack([ra(img) for img in chw])
        torch.random.set_rng_state(state)
        if name.startswith("cutout"):
            out = _cutout(out, generator)
        return to_float(out.permute(0, 2, 3, 1), normalize)
    x = to_float(batch, "none")
    u = torch.rand(b, 4, generator=generator).to(x.device)
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
    if normalize != "none":
        return to_float((x * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1), normalize)
    return x
