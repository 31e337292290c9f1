"""The one evaluator of the benchmark: per-class AP / mAP and the thresholded P/R/F1 family.

Every method is scored by the same code, under a named convention (:data:`CONVENTIONS`).
The default, ``"paper"``, is what the papers' tables describe; the ``*-repo`` presets
reproduce what each reference repository's evaluation code actually computes, so a reported
number can be compared with the number that repository would print for the same scores.

Inputs
    ``scores``: (N, C) numpy array or torch tensor, higher = more likely positive
    (probabilities for :func:`multilabel_metrics`: the runner applies a float32 sigmoid).
    ``targets``: (N, C) with 1 = positive, 0 = negative, -1 = ignore (VOC "difficult",
    unknown attribute).

Precision of the arithmetic
    Scores are cast to at least float32 (float16 values are kept exactly); ranking and ties
    are exact in that precision; threshold comparisons and all ratios are float64 (so float32
    0.7 = 0.69999999 is below a threshold of 0.7). Do not compute the sigmoid in float16: it
    saturates. Above a logit of 8.32 every fp16 sigmoid is exactly 1.0 and above 4.6 (p > 0.99)
    only about 15 distinct values remain, so confident predictions collapse into tie groups and
    AP changes (tie-aware AP usually drops; tie-unaware AP then depends on the arbitrary
    order). float32 saturates too, above a logit of about 16.6; AP is unchanged by any
    increasing transform, so ranking logits instead of probabilities avoids even that.
    ``benchmarks/bench_metrics.py`` measures the effect.

Policies (they differ between reference repositories; each is a named option here)
    * AP ties: ``"sklearn"`` (default) equals ``sklearn.metrics.average_precision_score``:
      precision/recall are evaluated only at distinct score values, so tied scores form one
      group. ``"sort"`` is the reference repositories' "precision at each positive in sorted
      order, averaged", using a STABLE descending sort (the repositories use unstable sorts,
      so their tie order is arbitrary; with tie-free scores both options are identical).
    * AP and ignored labels: entries with target -1 are removed from that class's ranking.
    * A class with no positive (after removing -1 entries) has AP = NaN; it is excluded from
      mAP and from the class means CP / CR / CF1, and ``classes_without_positives`` counts
      them. (The references divide by zero there; on COCO/VOC test sets no class is affected.)
      Micro OP / OR / OF1 include every class.
    * A class with no predicted positive has precision 0 (ML-GCN, CSRA, KMCL set its
      prediction count to 1; ASL sets precision 0 when it has no true positive).
    * F1 of two zeros is 0.
    * -1 labels in P/R: ``"ignore"`` drops them from every count (CSRA, mmpretrain);
      ``"negative"`` counts them as negatives (ML-GCN, KMCL).
    * CF1: ``"harmonic"`` = 2 CP CR / (CP + CR) (ML-GCN, CSRA, KMCL); ``"mean"`` = mean of
      per-class F1 (ASL, mmpretrain).
    * top-k: only each image's k highest scores (stable, lower class index first on ties)
      may be predicted positive; they must still pass the threshold.
"""
from __future__ import annotations

from typing import Any

import numpy as np

try:  # torch is optional for this module: only used to accept tensors
    import torch
except ImportError:  # pragma: no cover
    torch = None  # type: ignore[assignment]

METRIC_KEYS: tuple[str, ...] = ("mAP", "CP", "CR", "CF1", "OP", "OR", "OF1")
TOP3_K = 3
AP_TIES: tuple[str, ...] = ("sklearn", "sort")
CF1_KINDS: tuple[str, ...] = ("harmonic", "mean")
IGNORE_IN_PR: tuple[str, ...] = ("ignore", "negative")


class MetricsInputError(ValueError):
    """Scores/targets or an option the evaluator cannot use; the message says what is wrong."""


# --------------------------------------------------------------------------- input checks

def _as_numpy(array: Any, name: str) -> np.ndarray:
    if torch is not None and isinstance(array, torch.Tensor):
        array = array.detach().cpu()
        if array.dtype in (torch.float16, torch.bfloat16):
            array = array.float()
        array = array.numpy()
    array = np.asarray(array)
    if array.ndim != 2:
        raise MetricsInputError(f"{name} must be 2-D (N images, C classes), got shape {array.shape}")
    return array


def _check_inputs(scores: Any, targets: Any) -> tuple[np.ndarray, np.ndarray]:
    """Return (scores float32 or float64, targets int8), both (N, C), or raise one clear line.

    Scores stay in their own precision (at least float32): ranking and tie detection are exact in
    it, and every comparison with a threshold and every ratio is computed in float64.
    """
    score_array = _as_numpy(scores, "scores")
    target_array = _as_numpy(targets, "targets")
    if score_array.shape != target_array.shape:
        raise MetricsInputError(
            f"scores shape {score_array.shape} != targets shape {target_array.shape}; "
            "pass one row per image and one column per class for both")
    if not (np.issubdtype(score_array.dtype, np.floating) or np.issubdtype(score_array.dtype, np.integer)):
        raise MetricsInputError(f"scores must be numeric, got dtype {score_array.dtype}")
    if not np.issubdtype(score_array.dtype, np.floating):
        score_array = score_array.astype(np.float64)
    elif score_array.dtype.itemsize < 4:
        score_array = score_array.astype(np.float32)  # exact: fp16 values are not re-rounded
    if np.isnan(score_array).any():
        n_nan = int(np.isnan(score_array).sum())
        raise MetricsInputError(f"scores contain {n_nan} NaN value(s); the model diverged or a batch is missing")
    bad = (target_array != 1) & (target_array != 0) & (target_array != -1)
    if bad.any():
        example = target_array[bad].ravel()[0]
        raise MetricsInputError(
            f"targets must be 1 (positive), 0 (negative) or -1 (ignore); found {example!r} "
            f"in {int(bad.sum())} entr{'y' if bad.sum() == 1 else 'ies'}")
    return score_array, target_array.astype(np.int8)


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise MetricsInputError(f"{name}={value!r} is not one of {', '.join(allowed)}")


# --------------------------------------------------------------------------- AP

def _average_precision(score_array: np.ndarray, target_array: np.ndarray, ties: str) -> np.ndarray:
    """Per-class AP of validated scores (N, C) and int8 targets (N, C) -> (C,) float64.

    Counting method (exact, no argsort of the whole column): for a positive with score s,
    sklearn's precision is #positives with score >= s / #retained entries with score >= s (tie
    groups collapsed: every member of a group sees the counts of the whole group), and AP is the
    mean of that precision over the positives. Both counts come from ``searchsorted`` on sorted
    values: the class's sorted scores (one value sort of all columns, much cheaper than an
    argsort) and its sorted positive scores. Ignored entries are set to NaN before the sort, so
    they land after every score and are left out of the counts.

    ``ties="sort"`` (precision at each positive of a stable descending order) equals this in
    every class whose positives have no tied score (the order among ties is the only difference);
    in a class with a tie at a positive, :func:`_stable_order_ap` counts, for each positive, the
    entries tied with it that come first in image order (or, when ties are most of the class, the
    explicit stable sort of :func:`_average_precision_sorted` does).
    """
    n_images, n_classes = score_array.shape
    if n_images == 0:
        return np.full(n_classes, np.nan)
    class_scores = np.ascontiguousarray(score_array.T)
    class_targets = np.ascontiguousarray(target_array.T)
    ignored = class_targets == -1
    has_ignored = bool(ignored.any())
    if has_ignored:
        class_scores = np.where(ignored, np.array(np.nan, dtype=class_scores.dtype), class_scores)
        n_valid = n_images - ignored.sum(axis=1)
    else:
        n_valid = np.full(n_classes, n_images)
    sorted_scores = np.sort(class_scores, axis=1)  # ascending, NaN (ignored) last
    is_positive = class_targets == 1
    ap = np.full(n_classes, np.nan)
    sorted_classes = []
    for c in range(n_classes):
        positives = np.sort(class_scores[c][is_positive[c]])
        n_positive = positives.size
        if n_positive == 0:
            continue
        column = sorted_scores[c, :n_valid[c]]
        first = np.searchsorted(column, positives, side="left")
        retrieved = n_valid[c] - first                                     # entries with score >= s
        true_pos = n_positive - np.searchsorted(positives, positives, side="left")
        ap[c] = float(np.sum(true_pos / retrieved)) / n_positive
        if ties == "sort":
            tied = np.searchsorted(column, positives, side="right") - first > 1
            if tied.any():
                tied_values = np.unique(positives[tied])
                n_tied = int(np.sum(np.searchsorted(column, tied_values, side="right")
                                    - np.searchsorted(column, tied_values, side="left")))
                if n_tied > column.size // 8:  # mostly ties: the explicit stable sort is cheaper
                    sorted_classes.append(c)
                else:
                    kept = ~ignored[c] if has_ignored else slice(None)
                    ap[c] = _stable_order_ap(class_scores[c][kept], is_positive[c][kept], column, positives,
                                             tied_values)
    if sorted_classes:
        ap[sorted_classes] = _average_precision_sorted(score_array[:, sorted_classes],
                                                       target_array[:, sorted_classes], ties)
    return ap


def _stable_order_ap(values: np.ndarray, positive: np.ndarray, column: np.ndarray, positives: np.ndarray,
                     tied_values: np.ndarray) -> float:
    """Tie-unaware AP of one class: precision at each positive of the stable descending order.

    ``values``/``positive``: the retained entries in image order; ``column`` their sorted values,
    ``positives`` the sorted positive values. A positive's rank is #entries with a greater score
    plus #entries with an equal score at or before it in image order (the stable order); its
    true-positive count is the same over positives. Only the positives and the entries whose
    value equals a tied positive's (sorted ``tied_values``) need the second count.
    """
    where = np.minimum(np.searchsorted(tied_values, values), tied_values.size - 1)
    candidates = np.flatnonzero((tied_values[where] == values) | positive)  # image order
    order = candidates[np.argsort(values[candidates], kind="stable")]  # by value, image order inside ties
    tied_values = values[order]
    is_pos = positive[order]
    n = order.size
    group_start = np.ones(n, dtype=bool)
    group_start[1:] = tied_values[1:] != tied_values[:-1]
    start_index = np.maximum.accumulate(np.where(group_start, np.arange(n), 0))
    equal_before = np.arange(n) - start_index + 1                      # ties at or before, all entries
    pos_cumulative = np.cumsum(is_pos)
    pos_before_group = np.where(start_index > 0, pos_cumulative[start_index - 1], 0)
    equal_pos_before = pos_cumulative - pos_before_group                # ties at or before, positives
    greater = column.size - np.searchsorted(column, tied_values[is_pos], side="right")
    greater_pos = positives.size - np.searchsorted(positives, tied_values[is_pos], side="right")
    precision = (greater_pos + equal_pos_before[is_pos]) / (greater + equal_before[is_pos])
    return float(np.sum(precision)) / positives.size


def _average_precision_sorted(score_array: np.ndarray, target_array: np.ndarray, ties: str) -> np.ndarray:
    """Per-class AP by an explicit argsort of every column (the reference formula, written out).

    Used for ``ties="sort"`` in classes that are mostly ties; it equals :func:`_average_precision`
    for both tie options and is the independent check of the tests and the benchmark."""
    n_images, n_classes = score_array.shape
    if n_images == 0:
        return np.full(n_classes, np.nan)
    # class-major copies so that the single sort runs over contiguous rows
    class_scores = np.ascontiguousarray(score_array.T)
    if ties == "sort":  # stable descending: lower image index first among ties
        order = np.argsort(-class_scores, axis=1, kind="stable")
    else:  # tie order is irrelevant (groups are collapsed below): quicksort, about 4x faster
        order = np.argsort(class_scores, axis=1)[:, ::-1]
    sorted_targets = np.take_along_axis(np.ascontiguousarray(target_array.T), order, axis=1)
    is_positive = sorted_targets == 1
    # ignored entries count as neither positive nor negative: removed from the ranking
    true_pos = np.cumsum(is_positive, axis=1)
    retrieved = np.cumsum(sorted_targets != -1, axis=1)
    classes, ranks = np.nonzero(is_positive)  # precision is only needed at the positives
    if ties == "sklearn":
        # read precision at the LAST element of each positive's tie group (sklearn's distinct thresholds)
        sorted_scores = np.take_along_axis(class_scores, order, axis=1)
        is_group_end = np.ones(sorted_scores.shape, dtype=bool)
        is_group_end[:, :-1] = sorted_scores[:, :-1] != sorted_scores[:, 1:]
        group_end = np.where(is_group_end, np.arange(n_images), n_images)
        group_end = np.minimum.accumulate(group_end[:, ::-1], axis=1)[:, ::-1]
        ranks = group_end[classes, ranks]
    precision = true_pos[classes, ranks] / retrieved[classes, ranks]
    n_positive = np.bincount(classes, minlength=n_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = np.bincount(classes, weights=precision, minlength=n_classes) / n_positive
    ap[n_positive == 0] = np.nan
    return ap


def average_precision(scores: Any, targets: Any, ties: str = "sklearn") -> np.ndarray:
    """Per-class average precision in [0, 1] (NOT percent).

    Args:
        scores: (N, C) numpy array or torch tensor; higher = more likely positive.
        targets: (N, C); 1 positive, 0 negative, -1 ignored (removed from that class's ranking).
        ties: ``"sklearn"`` (equals ``sklearn.metrics.average_precision_score`` per class,
            ties grouped) or ``"sort"`` (tie-unaware precision at each positive of a stable
            descending sort, averaged: the reference repositories' formula).

    Returns:
        (C,) float64; NaN for a class without positives.
    """
    _check_choice("ties", ties, AP_TIES)
    score_array, target_array = _check_inputs(scores, targets)
    return _average_precision(score_array, target_array, ties)


# --------------------------------------------------------------------------- P / R / F1

def _safe_ratio(numerator: np.ndarray | float, denominator: np.ndarray | float) -> np.ndarray:
    """numerator / denominator with 0 where the denominator is 0."""
    num = np.asarray(numerator, dtype=np.float64)
    den = np.asarray(denominator, dtype=np.float64)
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den > 0)


def _f1(precision: np.ndarray | float, recall: np.ndarray | float) -> np.ndarray:
    return _safe_ratio(2 * np.asarray(precision) * np.asarray(recall), np.asarray(precision) + np.asarray(recall))


def _predictions(score_array: np.ndarray, threshold: float, top_k: int | None, inclusive: bool) -> np.ndarray:
    threshold64 = np.float64(threshold)  # a float64 scalar makes numpy compare in float64
    predicted = score_array >= threshold64 if inclusive else score_array > threshold64
    if top_k is not None:
        n_classes = score_array.shape[1]
        if top_k < n_classes:
            top = np.argsort(-score_array, axis=1, kind="stable")[:, :top_k]
            in_top = np.zeros_like(predicted)
            np.put_along_axis(in_top, top, True, axis=1)
            predicted &= in_top
    return predicted


def _check_options(threshold: float, top_k: int | None, cf1: str, ap_ties: str, ignore_in_pr: str) -> None:
    _check_choice("cf1", cf1, CF1_KINDS)
    _check_choice("ap_ties", ap_ties, AP_TIES)
    _check_choice("ignore_in_pr", ignore_in_pr, IGNORE_IN_PR)
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1):
        raise MetricsInputError(f"top_k={top_k!r} must be a positive integer or None")
    if not isinstance(threshold, (int, float, np.number)) or not np.isfinite(threshold):
        raise MetricsInputError(f"threshold={threshold!r} must be a finite number")


def _metrics_from_ap(score_array: np.ndarray, target_array: np.ndarray, ap: np.ndarray, threshold: float,
                     top_k: int | None, cf1: str, ignore_in_pr: str, inclusive: bool) -> dict[str, float]:
    """The metric dict (percent) from validated arrays and their per-class AP (C,)."""
    has_positive = ~np.isnan(ap)
    predicted = _predictions(score_array, threshold, top_k, inclusive)
    is_positive = target_array == 1
    if ignore_in_pr == "ignore":
        predicted &= target_array != -1
    true_pos = (predicted & is_positive).sum(axis=0)
    n_predicted = predicted.sum(axis=0)
    n_positive = is_positive.sum(axis=0)

    class_precision = _safe_ratio(true_pos, n_predicted)  # no prediction -> precision 0
    class_recall = _safe_ratio(true_pos, n_positive)
    if has_positive.any():
        cp = float(class_precision[has_positive].mean())
        cr = float(class_recall[has_positive].mean())
        mean_ap = float(ap[has_positive].mean())
        cf1_value = float(_f1(cp, cr)) if cf1 == "harmonic" else float(
            _f1(class_precision, class_recall)[has_positive].mean())
    else:
        cp = cr = mean_ap = cf1_value = float("nan")
    op = float(_safe_ratio(true_pos.sum(), n_predicted.sum()))
    orec = float(_safe_ratio(true_pos.sum(), n_positive.sum()))
    fractions = {"mAP": mean_ap, "CP": cp, "CR": cr, "CF1": cf1_value, "OP": op, "OR": orec, "OF1": float(_f1(op, orec))}
    result: dict[str, float] = {key: 100.0 * value for key, value in fractions.items()}
    result["classes_without_positives"] = int((~has_positive).sum())
    return result


def multilabel_metrics(scores: Any, targets: Any, threshold: float = 0.5, top_k: int | None = None,
                       cf1: str = "harmonic", ap_ties: str = "sklearn", ignore_in_pr: str = "ignore",
                       inclusive: bool = True) -> dict[str, float]:
    """mAP, CP, CR, CF1, OP, OR, OF1 in PERCENT, plus ``classes_without_positives`` (int).

    Args:
        scores: (N, C) probabilities (numpy or torch).
        targets: (N, C) in {1, 0, -1}.
        threshold: predicted positive when score >= threshold (``inclusive``) or > threshold.
        top_k: if set, only each image's k highest scores can be predicted positive.
        cf1: ``"harmonic"`` (2 CP CR / (CP + CR)) or ``"mean"`` (mean of per-class F1).
        ap_ties: see :func:`average_precision`.
        ignore_in_pr: ``"ignore"`` (-1 entries dropped from P/R counts) or ``"negative"``.
        inclusive: ``>=`` (True) or ``>`` (False) for the threshold.
    See the module docstring for the 0/0 policies.
    """
    _check_options(threshold, top_k, cf1, ap_ties, ignore_in_pr)
    score_array, target_array = _check_inputs(scores, targets)
    ap = _average_precision(score_array, target_array, ap_ties)
    return _metrics_from_ap(score_array, target_array, ap, threshold, top_k, cf1, ignore_in_pr, inclusive)


# --------------------------------------------------------------------------- conventions

CONVENTIONS: dict[str, dict[str, Any]] = {
    "paper": {
        "threshold": 0.5, "inclusive": True, "cf1": "harmonic", "ap_ties": "sklearn",
        "ignore_in_pr": "ignore",
        "description": (
            "THE DEFAULT. What the papers' tables state: p >= 0.5, CF1 = 2 CP CR/(CP+CR), OP/OR/OF1 "
            "micro, tie-aware AP (= sklearn average_precision_score), -1 labels ignored everywhere."),
    },
    "asl-repo": {
        "threshold": 0.8, "inclusive": False, "cf1": "mean", "ap_ties": "sort",
        "ignore_in_pr": "ignore",
        "description": (
            "Alibaba-MIIL/ASL validate.py (read via the code index): pred = sigmoid.gt(--thre), "
            "--thre default 0.8 (strict >); per-class P, R, F1 set to 0 when a class has no true "
            "positive; CF1 (F_C) = mean of per-class F1; OP/OR/OF1 micro. AP: "
            "src/helper_functions/helper_functions.py average_precision, precision at each positive "
            "after output.argsort()[::-1] (tie-unaware, tie order reversed; here: stable sort). "
            "ASL's COCO targets are 0/1, so ignore_in_pr is moot there (kept 'ignore'). Its train.py "
            "threshold default is 0.7 (args.th) but validation uses 0.8."),
    },
    "mlgcn-repo": {
        "threshold": 0.5, "inclusive": True, "cf1": "harmonic", "ap_ties": "sort",
        "ignore_in_pr": "negative",
        "description": (
            "ML-GCN util.py AveragePrecisionMeter (read via the code index, megvii-research/ML-GCN "
            "mirror; Megvii-Nanjing/ML-GCN not stored): evaluation counts logit >= 0 (= p >= 0.5 "
            "inclusive); Np==0 -> 1 (precision 0); CF1 harmonic; OP/OR/OF1 micro; difficult labels "
            "skipped in AP (torch.sort descending, tie-unaware) but mapped to 0 = negative in P/R; "
            "top-3 keeps the 3 largest logits then >= 0."),
    },
    "csra-repo": {
        "threshold": 0.5, "inclusive": True, "cf1": "harmonic", "ap_ties": "sort",
        "ignore_in_pr": "ignore",
        "description": (
            "Kevinz-code/CSRA utils/evaluation/cal_PR.py and cal_mAP.py (read via the code index): "
            "predicted when score >= 0.5; predict_num==0 -> 1 (precision 0); CF1 harmonic; OP/OR/OF1 "
            "micro; voc07 difficult entries removed from both AP and P/R; AP = precision at each "
            "positive after np.argsort(-score) (tie-unaware); top-3 zeroes all but the 3 highest "
            "scores then >= 0.5."),
    },
    "kmcl-repo": {
        "threshold": 0.8, "inclusive": True, "cf1": "harmonic", "ap_ties": "sort",
        "ignore_in_pr": "negative",
        "description": (
            "mahdihosseini/KMCL meters.py (read via the code index): module threshold = 0.8, "
            "predicted when score >= 0.8 (also inside top-3); Np==0 -> 1 (precision 0); CF1 harmonic; "
            "OP/OR/OF1 micro; difficult labels skipped in AP (torch.sort descending, tie-unaware) and "
            "mapped to negative in P/R (targets[targets == -1] = 0)."),
    },
}

_METRIC_OPTIONS: frozenset[str] = frozenset({"threshold", "top_k", "cf1", "ap_ties", "ignore_in_pr", "inclusive"})


def _resolve(convention: str, overrides: dict[str, Any]) -> dict[str, Any]:
    if convention not in CONVENTIONS:
        raise MetricsInputError(
            f"unknown metric convention {convention!r}; known: {', '.join(CONVENTIONS)}")
    unknown = set(overrides) - _METRIC_OPTIONS
    if unknown:
        raise MetricsInputError(
            f"unknown metric option(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(_METRIC_OPTIONS))}")
    options = {"top_k": None}
    options.update((key, value) for key, value in CONVENTIONS[convention].items() if key != "description")
    options.update(overrides)
    return options


def convention_record(convention: str = "paper", **overrides: Any) -> dict[str, Any]:
    """The resolved options of a convention (+ ``name``, ``description``, ``overrides``) for records."""
    options = _resolve(convention, overrides)
    return {"name": convention, **options, "overrides": dict(overrides),
            "description": CONVENTIONS[convention]["description"]}


def evaluate(scores: Any, targets: Any, convention: str = "paper", **overrides: Any) -> dict[str, float]:
    """Metrics under a named convention plus the top-3 variants (keys ``CP_top3`` ... ``OF1_top3``).

    ``overrides`` replace single options of the convention (e.g. ``threshold=0.7``).
    """
    options = _resolve(convention, overrides)
    ap_ties = options.pop("ap_ties")
    _check_options(options["threshold"], options["top_k"], options["cf1"], ap_ties, options["ignore_in_pr"])
    score_array, target_array = _check_inputs(scores, targets)
    ap = _average_precision(score_array, target_array, ap_ties)  # computed once for both variants
    result = _metrics_from_ap(score_array, target_array, ap, **options)
    top3 = _metrics_from_ap(score_array, target_array, ap, **{**options, "top_k": TOP3_K})
    for key in METRIC_KEYS[1:]:
        result[f"{key}_top3"] = top3[key]
    return result
