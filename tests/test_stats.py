"""bench.evaluate.stats against scipy and hand computations; bootstrap AP equal to bench.evaluate.metrics."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from bench.evaluate import stats
from bench.evaluate.metrics import average_precision


def test_mean_ci_matches_scipy_t_interval():
    values = [81.2, 82.0, 80.9, 81.7]
    ci = stats.mean_ci(values)
    low, high = scipy_stats.t.interval(0.95, len(values) - 1, loc=np.mean(values),
                                       scale=scipy_stats.sem(values))
    assert ci.mean == pytest.approx(81.45)
    assert (ci.low, ci.high) == pytest.approx((low, high))
    # by hand: sd = 0.4933, t(0.975, 3) = 3.1824, half = 3.1824 * 0.4933 / 2
    assert ci.half_width == pytest.approx(3.182446 * np.std(values, ddof=1) / 2, rel=1e-5)


def test_mean_ci_one_value_has_no_interval():
    ci = stats.mean_ci([80.0])
    assert ci.mean == 80.0 and ci.n == 1 and math.isnan(ci.low) and math.isnan(ci.half_width)
    assert stats.mean_ci([]).n == 0


def test_paired_t_matches_scipy_and_hand():
    a, b = [85.1, 84.7, 85.6], [84.0, 84.1, 84.2]
    test = stats.paired_t(a, b)
    ref = scipy_stats.ttest_rel(a, b)
    assert test.t == pytest.approx(ref.statistic) and test.p == pytest.approx(ref.pvalue)
    diff = np.subtract(a, b)  # 1.1, 0.6, 1.4 -> mean 1.0333, sd 0.4041
    assert test.mean_diff == pytest.approx(1.033333, rel=1e-5)
    assert test.t == pytest.approx(1.033333 / (0.404145 / math.sqrt(3)), rel=1e-4)
    assert test.low == pytest.approx(diff.mean() - 4.302653 * diff.std(ddof=1) / math.sqrt(3), rel=1e-5)
    assert test.significant == (ref.pvalue < 0.05)


def test_paired_t_constant_difference_and_mismatch():
    assert stats.paired_t([1.0, 2.0], [0.5, 1.5]).p == 0.0
    assert stats.paired_t([1.0, 2.0], [1.0, 2.0]).p == 1.0
    with pytest.raises(ValueError):
        stats.paired_t([1.0], [1.0, 2.0])


def _data(seed=0, n=120, c=5):
    rng = np.random.default_rng(seed)
    targets = (rng.random((n, c)) < 0.3).astype(np.int8)
    targets[0] = 1
    scores = (targets * 0.8 + rng.random((n, c))).astype(np.float32)
    return scores, targets


def test_weighted_ap_equals_metrics_ap_on_materialised_resamples():
    scores, targets = _data()
    scores[:30, 1] = 0.5  # a tie group
    targets[5, 2] = -1  # an ignored entry
    weights = stats.resample_weights(len(scores), 6, seed=3)
    got = stats.weighted_average_precision(scores, targets, weights)
    for row, w in enumerate(weights):
        idx = np.repeat(np.arange(len(scores)), w.astype(int))
        np.testing.assert_allclose(got[row], average_precision(scores[idx], targets[idx]), atol=1e-6)


def test_bootstrap_is_reproducible_and_detects_differences():
    scores, targets = _data()
    rng = np.random.default_rng(1)
    worse = (scores + rng.normal(0, 0.6, scores.shape)).astype(np.float32)
    first = stats.bootstrap_map_difference([scores, scores], [worse, worse], targets, resamples=200, seed=5)
    again = stats.bootstrap_map_difference([scores, scores], [worse, worse], targets, resamples=200, seed=5)
    other = stats.bootstrap_map_difference([scores, scores], [worse, worse], targets, resamples=200, seed=6)
    assert first == again and first != other
    ap = np.nanmean(average_precision(scores, targets)) - np.nanmean(average_precision(worse, targets))
    assert first.diff == pytest.approx(100 * ap)
    assert first.significant and first.low > 0
    same = stats.bootstrap_map_difference([scores], [scores], targets, resamples=100)
    assert same.diff == 0 and not same.significant and same.p == 1.0


def test_kendall_tau():
    assert stats.kendall_tau([0, 1, 2], [0, 1, 2]) == pytest.approx(1.0)
    assert stats.kendall_tau([0, 1, 2], [2, 1, 0]) == pytest.approx(-1.0)
    assert math.isnan(stats.kendall_tau([0], [0]))


def test_holm_matches_hand_computation():
    got = stats.holm([0.01, 0.04, 0.03, 0.005, math.nan])
    # sorted 0.005 (x4), 0.01 (x3), 0.03 (x2), 0.04 (x1), running maximum
    assert got[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02]) and math.isnan(got[4])
    assert stats.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # monotone: never below an earlier one


def test_min_detectable_effect_three_seeds():
    # t(0.975, 2) = 4.303, t(0.8, 2) = 1.061: 5.364 * sd / sqrt(3)
    assert stats.min_detectable_effect(0.25, 3) == pytest.approx(5.3636 * 0.25 / math.sqrt(3), rel=1e-3)
    assert math.isnan(stats.min_detectable_effect(0.25, 1))


def test_equivalence_p_tost():
    inside = stats.equivalence_p(0.0, 0.1, 3, 0.5)
    assert inside < 0.05
    straddle = stats.equivalence_p(0.431, 0.027, 3, 0.4)  # the trick's varying - fixed vs the claim's 0.4
    assert straddle > 0.05
