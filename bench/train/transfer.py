"""Host -> device copies of the small tensors a step draws on the host (augmentation parameters)."""
from __future__ import annotations

import torch


def upload(device: torch.device | str, *parts: torch.Tensor) -> list[torch.Tensor]:
    """Host tensors of one dtype family (ints and bools, or floats) -> ``device`` in ONE copy:
    flattened into one buffer (the promoted dtype), pinned on CUDA and copied with
    ``non_blocking=True``, then viewed back in each part's shape and dtype. Exact: ints, bools
    and floats of one dtype keep their values (so a CPU run is bit-identical to ``.to``)."""
    if not parts:
        return []
    flat = torch.cat([p.reshape(-1) for p in parts])
    if torch.device(device).type == "cuda":
        flat = flat.pin_memory()
    flat = flat.to(device, non_blocking=True)
    out = flat.split([p.numel() for p in parts])
    return [t.view(p.shape).to(p.dtype) for t, p in zip(out, parts)]
