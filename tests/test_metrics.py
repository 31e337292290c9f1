"""bench.evaluate.metrics against sklearn and against hand computations."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

from bench.evaluate.metrics import (CONVENTIONS, MetricsInputError, average_precision, convention_record, evaluate,
                           multilabel_metrics)


def _random_problem(seed: int, n_images: int = 300, n_classes: int = 6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    targets = (rng.random((n_images, n_classes)) < 0.3).astype(np.int64)
    scores = 0.35 * targets + rng.random((n_images, n_classes)) * 0.6  # in [0, 0.95), no ties
    return scores, targets


def _sklearn_ap(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    per_class = []
    for c in range(scores.shape[1]):
        kept = targets[:, c] != -1
        per_class.append(average_precision_score(targets[kept, c], scores[kept, c]))
    return np.array(per_class)


# --------------------------------------------------------------------------- AP vs sklearn

def test_ap_equals_sklearn_without_ties() -> None:
    scores, targets = _random_problem(0)
    assert len(np.unique(scores)) == scores.size
    np.testing.assert_allclose(average_precision(scores, targets), _sklearn_ap(scores, targets), atol=1e-12)
    # without ties the tie-unaware formula is the same number
    np.testing.assert_allclose(average_precision(scores, targets, ties="sort"), _sklearn_ap(scores, targets),
                               atol=1e-12)


def test_ap_equals_sklearn_with_heavy_ties() -> None:
    scores, targets = _random_problem(1)
    scores = scores.round(1)
    expected = _sklearn_ap(scores, targets)
    np.testing.assert_allclose(average_precision(scores, targets), expected, atol=1e-12)
    assert np.abs(average_precision(scores, targets, ties="sort") - expected).max() > 1e-3


def test_ap_ignored_entries_removed_from_ranking() -> None:
    scores, targets = _random_problem(2)
    scores = scores.round(2)
    targets[np.random.default_rng(3).random(targets.shape) < 0.15] = -1
    np.testing.assert_allclose(average_precision(scores, targets), _sklearn_ap(scores, targets), atol=1e-12)
    # an ignored entry ranked first must not change AP
    one_class_scores = np.array([[0.99], [0.9], [0.5], [0.1]])
    assert average_precision(one_class_scores, np.array([[-1], [1], [0], [1]]))[0] == pytest.approx(
        (1 + 2 / 3) / 2)


def test_class_without_positive_is_nan_and_excluded() -> None:
    scores, targets = _random_problem(4)
    targets[:, 2] = 0
    targets[:5, 4] = -1
    targets[5:, 4] = 0
    ap = average_precision(scores, targets)
    assert np.isnan(ap[2]) and np.isnan(ap[4]) and np.isfinite(np.delete(ap, [2, 4])).all()
    metrics = multilabel_metrics(scores, targets)
    assert metrics["classes_without_positives"] == 2
    assert metrics["mAP"] == pytest.approx(100 * np.nanmean(ap))


def test_sort_ties_hand_example() -> None:
    # one tie group of three; stable order keeps row order inside it
    scores = np.full((3, 2), 0.5)
    targets = np.array([[1, 0], [1, 1], [0, 1]])
    np.testing.assert_allclose(average_precision(scores, targets, ties="sort"), [1.0, (1 / 2 + 2 / 3) / 2])
    np.testing.assert_allclose(average_precision(scores, targets, ties="sklearn"), [2 / 3, 2 / 3])


def test_sort_ties_match_a_per_class_loop_with_ignored_entries() -> None:
    scores, targets = _random_problem(8, n_images=80, n_classes=4)
    scores = scores.round(1)
    targets[np.random.default_rng(9).random(targets.shape) < 0.1] = -1
    expected = []
    for c in range(4):
        hits = seen = 0
        precisions = []
        for i in sorted(range(len(scores)), key=lambda i: -scores[i, c]):  # sorted() is stable
            if targets[i, c] == -1:
                continue
            seen += 1
            if targets[i, c] == 1:
                hits += 1
                precisions.append(hits / seen)
        expected.append(np.mean(precisions))
    np.testing.assert_allclose(average_precision(scores, targets, ties="sort"), expected, atol=1e-12)


@pytest.mark.parametrize("kind", ["float32-sigmoid", "float64-no-ties", "rounded", "integer", "extremes"])
def test_counting_ap_equals_sklearn_and_the_argsort_method(kind: str) -> None:
    """The counting evaluator against sklearn (1e-12) and the explicit argsort method, both tie modes."""
    from bench.evaluate.metrics import _average_precision, _average_precision_sorted, _check_inputs
    rng = np.random.default_rng(11)
    targets = (rng.random((2000, 9)) < 0.05).astype(np.int64)
    logits = rng.normal(-4, 3, targets.shape) + 6 * targets
    scores = {"float32-sigmoid": torch.sigmoid(torch.from_numpy(3 * logits).float()).numpy(),
              "float64-no-ties": logits, "rounded": np.round(logits, 0),
              "integer": (logits > 0).astype(np.int64) + (logits > 3),
              "extremes": np.where(rng.random(targets.shape) < 0.1, 1e300, logits)}[kind]
    targets[:, 3] = 0                                 # no positive -> NaN
    targets[:, 4] = -1                                # only ignored -> NaN
    targets[:, 5] = 1                                 # all positive -> 1
    targets[rng.random(targets.shape) < 0.1 * (np.arange(9) == 6)] = -1   # some ignored
    got = average_precision(scores, targets)
    expected = np.full(9, np.nan)
    for c in range(9):
        kept = targets[:, c] != -1
        if (targets[kept, c] == 1).any():
            expected[c] = average_precision_score(targets[kept, c], scores[kept, c])
    assert np.isnan(got[3]) and np.isnan(got[4]) and got[5] == 1.0
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    checked = _check_inputs(scores, targets)
    for ties in ("sklearn", "sort"):
        np.testing.assert_allclose(_average_precision(*checked, ties), _average_precision_sorted(*checked, ties),
                                   rtol=1e-12, atol=1e-12)
    assert np.isnan(average_precision(scores[:0], targets[:0])).all()
    if kind == "extremes":  # sklearn refuses infinities; the ranking is that of 1e300
        np.testing.assert_array_equal(average_precision(np.where(scores == 1e300, np.inf, scores), targets), got)


@pytest.mark.parametrize("seed", range(12))
def test_counting_ap_equals_argsort_method_on_small_tied_problems(seed: int) -> None:
    from bench.evaluate.metrics import _average_precision, _average_precision_sorted, _check_inputs
    rng = np.random.default_rng(100 + seed)
    n, c = int(rng.integers(1, 60)), int(rng.integers(1, 5))
    targets = (rng.random((n, c)) < rng.random()).astype(np.int8)
    targets[rng.random((n, c)) < 0.2 * (seed % 2)] = -1
    scores = rng.integers(0, int(rng.integers(1, 6)), (n, c)).astype(np.float32)   # few values: many ties
    checked = _check_inputs(scores, targets)
    for ties in ("sklearn", "sort"):
        np.testing.assert_allclose(_average_precision(*checked, ties), _average_precision_sorted(*checked, ties),
                                   rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("seed", range(6))
def test_sort_ties_few_tied_positives_counting_path(seed: int) -> None:
    """Mostly distinct scores with a few tie groups at positives (the counting path, not the argsort)."""
    from bench.evaluate.metrics import _average_precision, _average_precision_sorted, _check_inputs
    rng = np.random.default_rng(200 + seed)
    n = 400
    targets = (rng.random((n, 3)) < 0.2).astype(np.int8)
    targets[rng.random((n, 3)) < 0.05] = -1
    scores = rng.random((n, 3)).astype(np.float32)
    for c in range(3):
        pos = np.flatnonzero(targets[:, c] == 1)
        for group in range(3):  # a positive's value copied onto a few other rows, some positive
            rows = rng.choice(n, size=int(rng.integers(1, 5)), replace=False)
            scores[rows, c] = scores[pos[group], c]
    checked = _check_inputs(scores, targets)
    got = _average_precision(*checked, "sort")
    np.testing.assert_allclose(got, _average_precision_sorted(*checked, "sort"), rtol=1e-13, atol=1e-13)
    for c in range(3):  # and a stable-order loop written out
        hits = seen = 0
        precisions = []
        for i in sorted(range(n), key=lambda i: -scores[i, c]):
            if targets[i, c] == -1:
                continue
            seen += 1
            if targets[i, c] == 1:
                hits += 1
                precisions.append(hits / seen)
        assert got[c] == pytest.approx(np.mean(precisions), rel=1e-12)


# --------------------------------------------------------------------------- P / R / F1 by hand

HAND_SCORES = np.array([[0.9, 0.2], [0.6, 0.7], [0.3, 0.8], [0.1, 0.6]])
HAND_TARGETS = np.array([[1, 0], [0, 1], [1, 0], [0, 1]])
# class 0: predicted {0, 1}, tp 1, 2 positives -> P 1/2, R 1/2, F1 1/2
# class 1: predicted {1, 2, 3}, tp 2, 2 positives -> P 2/3, R 1, F1 4/5


def test_cf1_harmonic_and_mean_by_hand() -> None:
    harmonic = multilabel_metrics(HAND_SCORES, HAND_TARGETS, cf1="harmonic")
    cp, cr = (1 / 2 + 2 / 3) / 2, (1 / 2 + 1) / 2
    assert harmonic["CP"] == pytest.approx(100 * cp)
    assert harmonic["CR"] == pytest.approx(100 * cr)
    assert harmonic["CF1"] == pytest.approx(100 * 2 * cp * cr / (cp + cr))  # 65.625
    mean = multilabel_metrics(HAND_SCORES, HAND_TARGETS, cf1="mean")
    assert mean["CF1"] == pytest.approx(100 * (1 / 2 + 4 / 5) / 2)  # 65.0
    assert mean["CP"] == harmonic["CP"]


def test_overall_micro_by_hand() -> None:
    metrics = multilabel_metrics(HAND_SCORES, HAND_TARGETS)
    op, orec = 3 / 5, 3 / 4
    assert metrics["OP"] == pytest.approx(100 * op)
    assert metrics["OR"] == pytest.approx(100 * orec)
    assert metrics["OF1"] == pytest.approx(100 * 2 * op * orec / (op + orec))


def test_no_prediction_gives_precision_zero() -> None:
    metrics = multilabel_metrics(HAND_SCORES, HAND_TARGETS, threshold=0.85)  # only (0, 0) predicted
    assert metrics["CP"] == pytest.approx(100 * (1 + 0) / 2)
    assert metrics["CR"] == pytest.approx(100 * (1 / 2 + 0) / 2)
    none = multilabel_metrics(HAND_SCORES, HAND_TARGETS, threshold=0.95)
    assert none["CP"] == none["CR"] == none["CF1"] == none["OP"] == none["OF1"] == 0.0


def test_top3_hand_example() -> None:
    scores = np.array([[0.9, 0.8, 0.7, 0.6], [0.1, 0.95, 0.55, 0.52]])
    targets = np.array([[1, 0, 0, 1], [0, 1, 1, 1]])
    # top-3 drops (0, 3): per class P = 1, 1/2, 1/2, 1 and R = 1, 1, 1, 1/2; 4 tp of 6 predicted, 5 positives
    top3 = multilabel_metrics(scores, targets, top_k=3)
    assert top3["CP"] == pytest.approx(75.0)
    assert top3["CR"] == pytest.approx(87.5)
    assert top3["OP"] == pytest.approx(100 * 4 / 6)
    assert top3["OR"] == pytest.approx(80.0)
    result = evaluate(scores, targets)
    assert result["CP_top3"] == top3["CP"] and result["OF1_top3"] == top3["OF1"]
    assert result["OP"] == pytest.approx(100 * 5 / 7)  # all of image 0 + three of image 1
    assert result["mAP"] == multilabel_metrics(scores, targets)["mAP"]


def test_threshold_inclusive_or_exclusive() -> None:
    scores = np.array([[0.5, 0.5], [0.2, 0.7]])
    targets = np.array([[1, 0], [0, 1]])
    inclusive = multilabel_metrics(scores, targets, threshold=0.5, inclusive=True)
    exclusive = multilabel_metrics(scores, targets, threshold=0.5, inclusive=False)
    assert inclusive["OP"] == pytest.approx(100 * 2 / 3) and inclusive["OR"] == pytest.approx(100.0)
    assert exclusive["OP"] == pytest.approx(100.0) and exclusive["OR"] == pytest.approx(50.0)


def test_ignored_labels_in_precision() -> None:
    scores = np.array([[0.9], [0.8], [0.1]])
    targets = np.array([[1], [-1], [0]])
    assert multilabel_metrics(scores, targets, ignore_in_pr="ignore")["CP"] == pytest.approx(100.0)
    assert multilabel_metrics(scores, targets, ignore_in_pr="negative")["CP"] == pytest.approx(50.0)


def test_vectorised_counts_match_a_per_class_loop() -> None:
    scores, targets = _random_problem(5, n_images=120, n_classes=5)
    targets[np.random.default_rng(6).random(targets.shape) < 0.1] = -1
    for ignore_in_pr in ("ignore", "negative"):
        precisions, recalls = [], []
        tp_total = predicted_total = positive_total = 0
        for c in range(5):
            kept = targets[:, c] != -1 if ignore_in_pr == "ignore" else np.ones(len(targets), bool)
            predicted = scores[kept, c] >= 0.5
            positive = targets[kept, c] == 1
            tp = int((predicted & positive).sum())
            precisions.append(tp / predicted.sum() if predicted.sum() else 0.0)
            recalls.append(tp / positive.sum())
            tp_total, predicted_total, positive_total = (tp_total + tp, predicted_total + predicted.sum(),
                                                         positive_total + positive.sum())
        metrics = multilabel_metrics(scores, targets, ignore_in_pr=ignore_in_pr)
        assert metrics["CP"] == pytest.approx(100 * np.mean(precisions))
        assert metrics["CR"] == pytest.approx(100 * np.mean(recalls))
        assert metrics["OP"] == pytest.approx(100 * tp_total / predicted_total)
        assert metrics["OR"] == pytest.approx(100 * tp_total / positive_total)


# --------------------------------------------------------------------------- inputs, conventions

def test_torch_input_matches_numpy() -> None:
    scores, targets = _random_problem(7)
    from_numpy = evaluate(scores.astype(np.float32), targets)
    from_torch = evaluate(torch.from_numpy(scores).float(), torch.from_numpy(targets).float())
    assert from_torch == pytest.approx(from_numpy)
    half = average_precision(torch.from_numpy(scores).half(), torch.from_numpy(targets))
    np.testing.assert_allclose(half, _sklearn_ap(scores.astype(np.float16).astype(np.float64), targets),
                               atol=1e-12)


@pytest.mark.parametrize("scores, targets, message", [
    (np.zeros((3, 2)), np.zeros((3, 3)), "shape"),
    (np.array([[0.1, math.nan]]), np.array([[1, 0]]), "NaN"),
    (np.array([[0.1, 0.2]]), np.array([[1, 2]]), "targets must be 1"),
    (np.zeros(3), np.zeros(3), "2-D"),
])
def test_bad_inputs_raise_one_line(scores: np.ndarray, targets: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        evaluate(scores, targets)
    assert "\n" not in str(info.value)


def test_bad_options_raise() -> None:
    scores, targets = HAND_SCORES, HAND_TARGETS
    with pytest.raises(MetricsInputError, match="known: paper, asl-repo"):
        evaluate(scores, targets, convention="nope")
    with pytest.raises(MetricsInputError, match="unknown metric option"):
        evaluate(scores, targets, threshhold=0.3)
    with pytest.raises(MetricsInputError, match="ties"):
        average_precision(scores, targets, ties="mean")
    with pytest.raises(MetricsInputError, match="top_k"):
        multilabel_metrics(scores, targets, top_k=0)


def test_conventions_are_complete_and_recorded() -> None:
    assert set(CONVENTIONS) == {"paper", "asl-repo", "mlgcn-repo", "csra-repo", "kmcl-repo"}
    for name, preset in CONVENTIONS.items():
        assert preset["description"]
        result = evaluate(HAND_SCORES, HAND_TARGETS, convention=name)
        assert {"mAP", "CF1", "OF1", "CF1_top3", "classes_without_positives"} <= set(result)
    record = convention_record("asl-repo", threshold=0.7)
    assert record["name"] == "asl-repo" and record["threshold"] == 0.7 and record["cf1"] == "mean"
    assert record["overrides"] == {"threshold": 0.7} and record["top_k"] is None
    paper = convention_record()
    assert (paper["threshold"], paper["cf1"], paper["ap_ties"], paper["ignore_in_pr"]) == (
        0.5, "harmonic", "sklearn", "ignore")


def test_threshold_compared_in_float64() -> None:
    scores = np.array([[0.7, 0.9]], dtype=np.float32)  # float32 0.7 is 0.69999999
    metrics = multilabel_metrics(scores, np.array([[1, 1]]), threshold=0.7)
    assert metrics["OR"] == pytest.approx(50.0)
