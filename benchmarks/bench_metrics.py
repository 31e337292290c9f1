"""Speed of bench.metrics.average_precision vs sklearn's per-class loop, and the fp16 sigmoid effect.

Run once: ``.venv/bin/python benchmarks/bench_metrics.py`` (about 10-20 s on one core).
COCO-test-sized problem: 40,000 images x 80 classes, ~3% positives, logits from a model of
moderate quality (positives shifted up), sigmoid in float32 as the runner does.
"""
from __future__ import annotations

import argparse
import time
from typing import Callable

import numpy as np
import torch
from sklearn.metrics import average_precision_score

from bench.metrics import average_precision, evaluate


def best_time(function: Callable[[], object], repeats: int) -> float:
    """Smallest wall time of ``repeats`` calls, seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def sklearn_per_class(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    return np.array([average_precision_score(targets[:, c], scores[:, c]) for c in range(scores.shape[1])])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=40_000)
    parser.add_argument("--classes", type=int, default=80)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    targets = (rng.random((args.images, args.classes)) < 0.03).astype(np.int64)
    logits = torch.from_numpy(rng.normal(-6.0, 2.5, targets.shape) + 9.0 * targets).float()
    scores32 = torch.sigmoid(logits).numpy()

    ours_s = best_time(lambda: average_precision(scores32, targets), args.repeats)
    sklearn_s = best_time(lambda: sklearn_per_class(scores32, targets), args.repeats)
    evaluate_s = best_time(lambda: evaluate(scores32, targets), args.repeats)
    diff = np.abs(average_precision(scores32, targets) - sklearn_per_class(scores32, targets)).max()
    print(f"problem: {args.images} x {args.classes}, {targets.mean():.3%} positives")
    print(f"average_precision (vectorised): {ours_s * 1e3:8.1f} ms")
    print(f"sklearn per-class loop:         {sklearn_s * 1e3:8.1f} ms")
    print(f"speed-up ratio sklearn/ours:    {sklearn_s / ours_s:8.1f} x   (max |AP diff| {diff:.1e})")
    print(f"evaluate() incl. P/R/F1 + top-3:{evaluate_s * 1e3:8.1f} ms")

    print("\nfp16 sigmoid saturation (same logits, sigmoid in fp16 vs fp32):")
    # same ranking, 3x sharper logits (a model trained longer / with a lower temperature)
    for label, model_logits in (("moderate logits", logits), ("same logits x3", 3.0 * logits)):
        fp32 = torch.sigmoid(model_logits).numpy()
        fp16 = torch.sigmoid(model_logits.half()).float().numpy()
        print(f"  {label}: scores == 1.0: fp32 {np.mean(fp32 == 1.0):.2%}, fp16 {np.mean(fp16 == 1.0):.2%}; "
              f"distinct values: fp32 {len(np.unique(fp32))}, fp16 {len(np.unique(fp16))}")
        for ties in ("sklearn", "sort"):
            map32 = 100 * np.nanmean(average_precision(fp32, targets, ties=ties))
            map16 = 100 * np.nanmean(average_precision(fp16, targets, ties=ties))
            print(f"    mAP ties={ties:7s}: fp32 {map32:.3f}  fp16 {map16:.3f}  change {map16 - map32:+.3f} points")

if __name__ == "__main__":
    main()
