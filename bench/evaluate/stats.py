"""Statistics of the report: t-based confidence intervals, paired t-tests over seeds, and a
vectorised paired bootstrap of the mAP difference over test images.

Conventions
    * Confidence level 95 % everywhere (``CONFIDENCE``); intervals are two-sided.
    * ``mean_ci`` uses Student's t with n - 1 degrees of freedom; with one value the interval
      is undefined (NaN half-width), never a fake zero.
    * ``paired_t`` is ``scipy.stats.ttest_rel`` on seed-paired values (a - b).
    * ``bootstrap_map_difference`` resamples test images with replacement (the same image
      indices for both methods and for every seed pair), recomputes per-class AP exactly as
      :func:`bench.evaluate.metrics.average_precision` does (sklearn tie handling) and averages the
      mAP difference over the seed pairs. AP of a resample is computed from multiplicity
      weights, so no resampled array is ever materialised; a fixed RNG seed makes it
      reproducible.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats as scipy_stats

CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 20240101
#: p-value below which a difference is called significant.
ALPHA = 0.05


@dataclass(frozen=True)
class MeanCI:
    mean: float
    low: float
    high: float
    n: int
    sd: float

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


@dataclass(frozen=True)
class PairedTest:
    mean_diff: float  # mean of (a - b)
    low: float
    high: float
    t: float
    p: float
    n: int

    @property
    def significant(self) -> bool:
        return bool(self.p < ALPHA)


@dataclass(frozen=True)
class BootstrapResult:
    diff: float  # observed mAP(a) - mAP(b) in percent, averaged over seed pairs
    low: float
    high: float
    p: float  # two-sided: 2 * min(P(diff* <= 0), P(diff* >= 0)), capped at 1
    resamples: int

    @property
    def significant(self) -> bool:
        return bool(self.low > 0 or self.high < 0)


def mean_ci(values: Sequence[float], confidence: float = CONFIDENCE) -> MeanCI:
    """Mean and t-based two-sided confidence interval of ``values`` (NaNs dropped)."""
    array = np.asarray([v for v in values if v is not None], dtype=np.float64)
    array = array[~np.isnan(array)]
    n = int(array.size)
    if n == 0:
        return MeanCI(math.nan, math.nan, math.nan, 0, math.nan)
    mean = float(array.mean())
    if n == 1:
        return MeanCI(mean, math.nan, math.nan, 1, math.nan)
    sd = float(array.std(ddof=1))
    half = float(scipy_stats.t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    return MeanCI(mean, mean - half, mean + half, n, sd)


def paired_t(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE) -> PairedTest:
    """Paired t-test of a vs b (same seeds, same order); CI of the mean difference a - b."""
    a_arr, b_arr = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a_arr.shape != b_arr.shape:
        raise ValueError(f"paired_t needs equally long inputs, got {a_arr.size} and {b_arr.size}")
    diff = a_arr - b_arr
    ci = mean_ci(diff, confidence)
    if diff.size < 2:
        return PairedTest(ci.mean, math.nan, math.nan, math.nan, math.nan, int(diff.size))
    if float(np.std(diff)) == 0.0:
        p = 1.0 if ci.mean == 0 else 0.0
        t = 0.0 if ci.mean == 0 else math.copysign(math.inf, ci.mean)
        return PairedTest(ci.mean, ci.mean, ci.mean, t, p, int(diff.size))
    result = scipy_stats.ttest_rel(a_arr, b_arr)
    return PairedTest(ci.mean, ci.low, ci.high, float(result.statistic), float(result.pvalue),
                      int(diff.size))


def resample_weights(n_images: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, n_images) multiplicities of a with-replacement bootstrap of the images."""
    rng = np.random.default_rng(seed)
    indices = rng.integers(0, n_images, size=(resamples, n_images))
    weights = np.zeros((resamples, n_images), dtype=np.float64)
    np.add.at(weights, (np.arange(resamples)[:, None], indices), 1.0)
    return weights


def weighted_average_precision(scores: np.ndarray, targets: np.ndarray,
                               weights: np.ndarray) -> np.ndarray:
    """Per-class AP of every weighted resample.

    Args:
        scores: (N, C) float; targets: (N, C) with 1 positive, 0 negative, -1 ignored.
        weights: (B, N) non-negative multiplicities (a bootstrap resample each row).

    Returns:
        (B, C) AP in [0, 1], NaN where a resample has no positive of the class. Equal to
        ``bench.evaluate.metrics.average_precision`` of the materialised resample (sklearn ties).
    """
    scores = np.asarray(scores, dtype=np.float64)
    targets = np.asarray(targets)
    n_classes = scores.shape[1]
    # multiplicities and their cumulative sums are integers <= N: exact in float32 (N < 2**24)
    weights = np.asarray(weights, dtype=np.float32)
    out = np.empty((weights.shape[0], n_classes), dtype=np.float64)
    for c in range(n_classes):
        keep = np.flatnonzero(targets[:, c] >= 0)
        column, labels = scores[keep, c], targets[keep, c]
        order = np.argsort(-column, kind="stable")
        column, positive = column[order], labels[order] == 1
        w = weights[:, keep[order]]
        retrieved = np.cumsum(w, axis=1)
        positions = np.flatnonzero(positive)
        w_pos = w[:, positions]
        true_pos = np.cumsum(w_pos, axis=1)
        # precision is read at the last element of each tie group (sklearn's thresholds)
        group_end = np.append(np.flatnonzero(np.diff(column) != 0), column.size - 1)
        end_of = group_end[np.searchsorted(group_end, positions)]
        if np.any(end_of != positions):
            # within a tie group, true positives up to the group's end count
            pos_end = np.searchsorted(positions, end_of, side="right") - 1
            true_pos = true_pos[:, pos_end]
        retrieved = retrieved[:, end_of]
        precision = np.divide(true_pos, retrieved, out=np.zeros_like(true_pos), where=retrieved > 0)
        n_positive = w_pos.sum(axis=1, dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            ap = (precision * w_pos).sum(axis=1, dtype=np.float64) / n_positive
        ap[n_positive == 0] = np.nan
        out[:, c] = ap
    return out


def _nanmean_rows(values: np.ndarray) -> np.ndarray:
    counts = (~np.isnan(values)).sum(axis=1)
    totals = np.nansum(values, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, totals / np.maximum(counts, 1), np.nan)


def bootstrap_map_difference(scores_a: Sequence[np.ndarray], scores_b: Sequence[np.ndarray],
                             targets: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES,
                             seed: int = BOOTSTRAP_SEED, confidence: float = CONFIDENCE,
                             chunk: int = 250) -> BootstrapResult:
    """Paired bootstrap over test images of mAP(a) - mAP(b), in percent.

    Args:
        scores_a, scores_b: one (N, C) score array per seed, paired by position (seed i of a
            with seed i of b); all share the (N, C) ``targets`` (same test set).
        resamples: number of bootstrap resamples; seed: RNG seed (fixed = reproducible).

    Returns:
        Observed difference, percentile CI and two-sided bootstrap p-value.
    """
    if len(scores_a) != len(scores_b) or not scores_a:
        raise ValueError("bootstrap_map_difference needs the same non-zero number of seeds per side")
    targets = np.asarray(targets)
    n_images = targets.shape[0]
    ones = np.ones((1, n_images))
    observed = float(np.mean([
        _nanmean_rows(weighted_average_precision(a, targets, ones))[0]
        - _nanmean_rows(weighted_average_precision(b, targets, ones))[0]
        for a, b in zip(scores_a, scores_b)])) * 100
    weights = resample_weights(n_images, resamples, seed)
    diffs = np.zeros(resamples)
    for start in range(0, resamples, chunk):
        block = weights[start:start + chunk]
        for a, b in zip(scores_a, scores_b):
            diffs[start:start + chunk] += (_nanmean_rows(weighted_average_precision(a, targets, block))
                                           - _nanmean_rows(weighted_average_precision(b, targets, block)))
    diffs = diffs / len(scores_a) * 100
    tail = (1 - confidence) / 2
    low, high = (float(x) for x in np.quantile(diffs, [tail, 1 - tail]))
    p = min(1.0, 2 * min(float(np.mean(diffs <= 0)), float(np.mean(diffs >= 0))))
    return BootstrapResult(observed, low, high, p, resamples)


def kendall_tau(rank_a: Sequence[float], rank_b: Sequence[float]) -> float:
    """Kendall's tau-b between two rankings of the same items (NaN for fewer than 2 items)."""
    if len(rank_a) < 2:
        return math.nan
    return float(scipy_stats.kendalltau(rank_a, rank_b).statistic)


#: Power at which :func:`min_detectable_effect` is quoted.
POWER = 0.8


def min_detectable_effect(sd: float, n: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """Smallest true mean difference a two-sided paired t-test over ``n`` pairs with
    difference SD ``sd`` detects with probability ``power``: (t_{1-alpha/2} + t_{power}) sd / sqrt(n),
    df = n - 1 (the usual normal-approximation formula with t quantiles). NaN for n < 2."""
    if n < 2 or sd is None or math.isnan(sd):
        return math.nan
    df = n - 1
    q = float(scipy_stats.t.ppf(1 - alpha / 2, df)) + float(scipy_stats.t.ppf(power, df))
    return q * sd / math.sqrt(n)


def equivalence_p(mean: float, sd: float, n: int, margin: float) -> float:
    """TOST p-value of |true difference| < ``margin`` (the larger of the two one-sided p's);
    NaN for n < 2; 0 / 1 for a constant difference inside / outside the margin."""
    if n < 2 or math.isnan(sd):
        return math.nan
    if sd == 0:
        return 0.0 if abs(mean) < margin else 1.0
    se = sd / math.sqrt(n)
    lower = 1 - float(scipy_stats.t.cdf((mean + margin) / se, n - 1))
    upper = float(scipy_stats.t.cdf((mean - margin) / se, n - 1))
    return max(lower, upper)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (same order as given; NaN stays NaN and is not counted)."""
    finite = sorted((p, i) for i, p in enumerate(pvalues) if p is not None and not math.isnan(p))
    m = len(finite)
    out = [math.nan] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(finite):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


def holm_levels(pvalues: "dict[str, float]") -> dict[str, float]:
    """The level Holm compares each raw p with: ALPHA / (m - rank), rank = its 0-based place
    in ascending order (NaN p's are not counted). A test's minimum detectable effect at this
    level is the effect the corrected decision could detect."""
    finite = sorted((p, k) for k, p in pvalues.items() if p is not None and not math.isnan(p))
    m = len(finite)
    return {k: ALPHA / (m - rank) for rank, (_, k) in enumerate(finite)}
