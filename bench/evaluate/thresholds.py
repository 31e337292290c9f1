"""Decision thresholds chosen on VALIDATION, so rows trained with different losses compare.

The papers report CP/CR/CF1/OP/OR/OF1 at a fixed 0.5. A loss that shifts every score
(ASL's asymmetric focusing pushes negatives' scores up) then predicts almost every label
(CR ~ 100, CP ~ prevalence), and its F1 figures say nothing about the ranking. Besides the
paper's 0.5, every record carries the same metrics at thresholds tuned on the validation
split and applied unchanged to test:

  global     one threshold for all classes, maximising the validation CF1 (harmonic CP/CR)
             over a grid of validation-score quantiles;
  per_class  one threshold per class, maximising that class's validation F1 (exact: the
             optimum lies at one of its positives' scores); classes without a validation
             positive keep 0.5.
Test scores are never used to choose anything.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from bench.evaluate.metrics import _metrics_from_ap, average_precision

RULES = ("global", "per_class")
FALLBACK = 0.5
GRID = 400  # quantiles of the validation scores tried by the global rule


def _valid(targets: np.ndarray) -> np.ndarray:
    return targets == 1


def per_class_thresholds(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(C,) thresholds: each class's F1-optimal ``score >= t`` on (N, C) scores and {1, 0, -1} targets."""
    out = np.full(scores.shape[1], FALLBACK, dtype=np.float64)
    for c in range(scores.shape[1]):
        keep = targets[:, c] != -1
        s, pos = scores[keep, c].astype(np.float64), targets[keep, c] == 1
        if not pos.any():
            continue
        order = np.sort(s)
        cand = np.unique(s[pos])
        predicted = len(order) - np.searchsorted(order, cand, side="left")  # scores >= t
        pos_sorted = np.sort(s[pos])
        tp = len(pos_sorted) - np.searchsorted(pos_sorted, cand, side="left")
        f1 = 2 * tp / (predicted + pos.sum())
        out[c] = cand[int(np.argmax(f1))]
    return out


def global_threshold(scores: np.ndarray, targets: np.ndarray) -> float:
    """The one threshold maximising validation CF1 = 2 CP CR / (CP + CR) (classes with positives)."""
    s = scores.astype(np.float64)
    cand = np.unique(np.concatenate([np.quantile(s, np.linspace(0.0, 1.0, GRID)), [FALLBACK]]))
    has = (targets == 1).any(0)
    best, best_t = -1.0, FALLBACK
    keep = targets != -1
    for t in cand:
        pred = (s >= t) & keep
        tp = (pred & (targets == 1)).sum(0)[has]
        npred, npos = pred.sum(0)[has], (targets == 1).sum(0)[has]
        cp = np.divide(tp, npred, out=np.zeros(len(tp)), where=npred > 0).mean()
        cr = (tp / npos).mean()
        cf1 = 0.0 if cp + cr == 0 else 2 * cp * cr / (cp + cr)
        if cf1 > best:
            best, best_t = cf1, float(t)
    return best_t


def tuned_metrics(val_scores: np.ndarray, val_targets: np.ndarray, test_scores: np.ndarray,
                  test_targets: np.ndarray) -> dict[str, Any]:
    """{rule: {threshold(s), CP, CR, CF1, OP, OR, OF1 on test}} for both rules (percent)."""
    ap = average_precision(test_scores, test_targets)
    out: dict[str, Any] = {}
    for rule in RULES:
        t = (global_threshold(val_scores, val_targets) if rule == "global"
             else per_class_thresholds(val_scores, val_targets))
        m = _metrics_from_ap(np.asarray(test_scores), np.asarray(test_targets), ap, t, None,
                             "harmonic", "ignore", True)
        out[rule] = {k: m[k] for k in ("CP", "CR", "CF1", "OP", "OR", "OF1")}
        out[rule]["threshold"] = round(float(t), 6) if rule == "global" else [round(float(x), 6) for x in t]
    out["rule"] = "thresholds chosen on validation (global: max val CF1; per_class: max val F1 per class)"
    return out
