"""Decode-every-epoch vs the resized-image cache (bench.data.cache), on generated 640x480 JPEGs.

    .venv/bin/python benchmarks/bench_data_loading.py [--images 300] [--epochs 3] [--resolution 224]

Per-epoch decoding is what a torchvision-style dataset does: open, full decode,
resize, every epoch. The cache decodes once (JPEG draft mode, a process pool)
and every later epoch reads the memmap. Prints seconds and the ratio.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from bench.data import cache


def make_jpegs(folder: Path, n: int, seed: int = 0) -> list[str]:
    """Photo-like 640x480 JPEGs (smooth gradients + shapes + mild noise; q=90, ~50-100 kB)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:480, 0:640].astype(np.float32)
    paths = []
    for i in range(n):
        a, b, c = rng.uniform(0, 1, 3)
        base = np.stack([128 + 100 * np.sin(xx / (40 + 60 * a) + c), 128 + 100 * np.cos(yy / (30 + 50 * b)),
                         128 + 60 * np.sin((xx + yy) / 90 + a)], -1)
        base += rng.normal(0, 6, base.shape)
        img = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(img)
        for _ in range(6):
            x0, y0 = rng.integers(0, 560), rng.integers(0, 400)
            draw.ellipse([x0, y0, x0 + rng.integers(20, 80), y0 + rng.integers(20, 80)],
                         fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
        path = folder / f"{i:05d}.jpg"
        img.save(path, "JPEG", quality=90)
        paths.append(str(path))
    return paths


def decode_per_epoch(paths: list[str], resolution: int, epochs: int) -> float:
    start = time.perf_counter()
    for _ in range(epochs):
        for p in paths:
            with Image.open(p) as img:
                np.asarray(img.convert("RGB").resize((resolution, resolution), Image.BILINEAR))
    return time.perf_counter() - start


def cached_epochs(paths: list[str], resolution: int, epochs: int, cache_dir: Path) -> tuple[float, float]:
    start = time.perf_counter()
    images = cache.cached_images("bench", "train", paths, resolution, cache_dir).images
    build = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(epochs):
        again = cache.cached_images("bench", "train", paths, resolution, cache_dir).images
        for s in range(0, len(again), 64):
            np.array(again[s:s + 64])  # a batch read, as the runner does
    return build, time.perf_counter() - start + build


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--images", type=int, default=300)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--resolution", type=int, default=224)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = make_jpegs(folder, args.images)
        size_kb = sum(Path(x).stat().st_size for x in paths) / len(paths) / 1024
        per_epoch = decode_per_epoch(paths, args.resolution, args.epochs)
        build, total = cached_epochs(paths, args.resolution, args.epochs, folder / "cache")
    print(f"{args.images} JPEGs 640x480 (~{size_kb:.0f} kB), {args.epochs} epochs at {args.resolution} px, "
          f"{cache._workers()} decode processes")
    print(f"decode every epoch : {per_epoch:7.2f} s  ({1000 * per_epoch / args.images / args.epochs:.2f} ms/image/epoch)")
    print(f"cache (build + reads): {total:7.2f} s  (build {build:.2f} s, then {total - build:.3f} s for all epochs)")
    print(f"ratio decode/cache : {per_epoch / total:7.1f}x over {args.epochs} epochs; "
          f"{per_epoch / max(total - build, 1e-9):.0f}x per cached epoch")


if __name__ == "__main__":
    main()
