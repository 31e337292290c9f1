"""Speed of bench.evaluate.metrics.average_precision vs sklearn's per-class loop, and the fp16 sigmoid effect.

Run once: ``.venv/bin/python benchmarks/bench_metrics.py`` (about 1 minute on one core; the
ratios are measured in that one run, each the best of ``--repeats`` calls).
COCO-test-sized problem: 40,000 images x 80 classes, ~3% positives, logits from a model of
moderate quality (positives shifted up), sigmoid in float32 as the runner does; also the same
problem without any tie (float64 scores) and with heavy ties (scores rounded to 2 decimals).
"""
from __future__ import annotations

import argparse
import time
from typing import Callable

import numpy as np
import torch
from sklearn.metrics import average_precision_score

from bench.evaluate.metrics import _average_precision_sorted, _check_inputs, average_precision, evaluate


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
    cases = {
        # float64 scores of a continuous distribution: no two equal (checked below)
        "no ties (float64 logits)": logits.double().numpy() + rng.random(targets.shape) * 1e-3,
        "float32 sigmoid (runner)": scores32,
        "heavy ties (2 decimals)": np.round(scores32, 2).astype(np.float32),
    }
    print(f"problem: {args.images} x {args.classes}, {targets.mean():.3%} positives; "
          f"best of {args.repeats}; numpy threads: as set by the environment (numpy sort/searchsorted are single-threaded)")
    for label, scores in cases.items():
        distinct = sum(len(np.unique(scores[:, c])) for c in range(scores.shape[1])) / scores.size
        ours = average_precision(scores, targets)
        reference = sklearn_per_class(scores, targets)
        diff = np.abs(ours - reference).max()
        ours_s = best_time(lambda: average_precision(scores, targets), args.repeats)
        sklearn_s = best_time(lambda: sklearn_per_class(scores, targets), args.repeats)
        argsort_s = best_time(lambda: _average_precision_sorted(*_check_inputs(scores, targets), "sklearn"), args.repeats)
        print(f"{label:26s} distinct {distinct:6.1%}: ours {ours_s * 1e3:7.1f} ms, sklearn loop {sklearn_s * 1e3:7.1f} ms, "
              f"ratio {sklearn_s / ours_s:5.1f}x (previous argsort method {argsort_s * 1e3:7.1f} ms, "
              f"ratio {sklearn_s / argsort_s:4.1f}x); max |AP - sklearn| {diff:.1e}")
    for label in ("float32 sigmoid (runner)", "heavy ties (2 decimals)"):
        scores = cases[label]
        sort_s = best_time(lambda: average_precision(scores, targets, ties="sort"), args.repeats)
        old_sort_s = best_time(lambda: _average_precision_sorted(*_check_inputs(scores, targets), "sort"), args.repeats)
        diff = np.abs(average_precision(scores, targets, ties="sort")
                      - _average_precision_sorted(*_check_inputs(scores, targets), "sort")).max()
        print(f"ties='sort' (tie-unaware), {label}: ours {sort_s * 1e3:7.1f} ms, previous argsort method "
              f"{old_sort_s * 1e3:7.1f} ms ({old_sort_s / sort_s:4.1f}x); max |diff| {diff:.1e}")
    evaluate_s = best_time(lambda: evaluate(scores32, targets), args.repeats)
    print(f"evaluate() incl. P/R/F1 + top-3:                     {evaluate_s * 1e3:7.1f} ms")

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
