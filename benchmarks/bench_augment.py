"""Per-image (pre-batching) RandAugment vs the batched one in bench.train.augment, on the CPU.

    .venv/bin/python benchmarks/bench_augment.py [--repeats 7] [--threads 1] [--device cpu]

For a uint8 batch (B, H, W, C), times ``augment`` for every name, and the old per-image
``randaugment`` / ``cutout+randaugment`` path (kept verbatim below), and prints the
median of ``--repeats`` runs in ms and the old/new ratios, all measured in one run. The
images are smooth photo-like patterns (random noise would make equalize/autocontrast
atypical). ``--device cuda`` times the batched path on a GPU (synchronising per run).
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch

from bench.train.augment import AUGMENTATIONS, augment, to_float


def old_cutout(chw: torch.Tensor, generator: torch.Generator, fraction: float = 0.5) -> torch.Tensor:
    """bench.train.augment._cutout before batching (git c999d65): masks built on the CPU."""
    b, _, h, w = chw.shape
    side = max(1, int(h * fraction))
    cy = torch.randint(0, h, (b,), generator=generator)
    cx = torch.randint(0, w, (b,), generator=generator)
    ys, xs = torch.arange(h).view(1, h, 1), torch.arange(w).view(1, 1, w)
    inside = ((ys - cy.view(b, 1, 1)).abs() <= side // 2) & ((xs - cx.view(b, 1, 1)).abs() <= side // 2)
    return chw.masked_fill(inside.unsqueeze(1), 0)


def old_randaugment(batch: torch.Tensor, name: str, generator: torch.Generator,
                    normalize: str = "none") -> torch.Tensor:
    """The randaugment branch of bench.train.augment.augment before batching (git c999d65)."""
    from torchvision.transforms import v2

    state = torch.random.get_rng_state()
    torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
    ra = v2.RandAugment()
    chw = batch.permute(0, 3, 1, 2)
    out = torch.stack([ra(img) for img in chw])
    torch.random.set_rng_state(state)
    if name.startswith("cutout"):
        out = old_cutout(out, generator)
    return to_float(out.permute(0, 2, 3, 1), normalize)


def photo_batch(b: int, side: int, chans: int, seed: int = 0) -> torch.Tensor:
    """(B, side, side, C) uint8 smooth gradients + noise."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(side).float(), torch.arange(side).float(), indexing="ij")
    freq = 0.02 + 0.2 * torch.rand(b, chans, 2, generator=g)
    phase = 6.3 * torch.rand(b, chans, 1, 1, generator=g)
    img = 128 + 90 * torch.sin(xx * freq[..., :1, None] * 32 / side + yy * freq[..., 1:, None] * 32 / side + phase)
    img = img + 8 * torch.randn(b, chans, side, side, generator=g)
    return img.clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def median_ms(fns: dict[str, Callable[[], object]], repeats: int,
              sync: Callable[[], None]) -> dict[str, float]:
    """Median wall time in ms of each function over ``repeats`` runs, after one warm-up
    each; the runs are interleaved (a, b, c, a, b, c, ...) so that load from other
    processes on the machine falls on all of them alike."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for rep in range(repeats + 1):
        for key, fn in fns.items():
            sync()
            start = time.perf_counter()
            fn()
            sync()
            if rep:
                times[key].append((time.perf_counter() - start) * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    print(f"torch {torch.__version__}, {args.threads} thread(s), batched path on {device}, "
          f"median of {args.repeats} (ms per batch)")
    for b, side, chans in ((64, 224, 3), (64, 32, 1)):
        cpu = photo_batch(b, side, chans)
        dev = cpu.to(device)
        gen = torch.Generator().manual_seed(0)
        print(f"\nbatch {b} x {chans} x {side} x {side} uint8")
        fns = {n: (lambda n=n: augment(dev, n, gen)) for n in AUGMENTATIONS}
        fns.update({f"old {n}": (lambda n=n: old_randaugment(cpu, n, gen))
                    for n in ("randaugment", "cutout+randaugment")})
        new = median_ms(fns, args.repeats, sync)
        for n in ("randaugment", "cutout+randaugment"):
            old = new[f"old {n}"]
            print(f"  {n:20s} per-image (old, cpu) {old:9.2f}   batched {new[n]:9.2f}   "
                  f"old/batched {old / new[n]:6.2f}x")
        for n in AUGMENTATIONS:
            if "randaugment" not in n:
                print(f"  {n:20s} batched {new[n]:9.2f}   / flip-crop {new[n] / new['flip-crop']:6.2f}x")


if __name__ == "__main__":
    main()
