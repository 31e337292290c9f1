"""Model selection on validation and the final evaluation of a job (test never selects).

``validate`` scores the plain (and EMA) weights after each epoch of the selection stage;
``final_evaluation`` scores val and test at the last and the selected epoch, tunes thresholds
on val, and runs CSRA's training-free trick on models with a linear head.

Data parallel (W > 1): every rank scores its run of whole evaluation batches
(``distributed.shard_split``), rank 0 gathers the scores in the split's order and alone computes
the metrics and the selection, from the same scores one process computes; the other ranks get None.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from bench import data as datasets
from bench.run import distributed
from bench.spec.jobs import JobSpec
from bench.evaluate.metrics import evaluate
from bench.evaluate.thresholds import tuned_metrics
from bench.train.data import Feed, predict_scores, predict_training_free
from methods.base import MultiLabelModel


def _scores(net: Any, split: datasets.Split, ebs: int, feed: Feed) -> np.ndarray | None:
    """Scores of the whole split: this rank's shard, gathered on rank 0 (None on the others)."""
    shard = distributed.shard_split(split, ebs)
    if len(shard) == 0:  # DDP: more ranks than batches
        return distributed.gather_rows(np.zeros((0, split.targets.shape[1]), np.float32))
    return distributed.gather_rows(predict_scores(net, shard, ebs, feed))


def validate(model: MultiLabelModel, ema: Any, data: datasets.MultiLabelData, job: JobSpec, feed: Feed,
              epoch: int, entry: dict[str, Any], best: dict[str, Any]) -> dict[str, Any]:
    """Validation mAP of the plain (and EMA) weights into ``entry``; the better of the best so far
    and these (selection on validation only)."""
    ebs, conv = int(job.budget["eval_batch_size"]), job.evaluation["convention"]
    candidates = [("plain", model, "val_mAP")] + ([("ema", ema.module, "val_mAP_ema")] if ema is not None else [])
    for name, net, key in candidates:
        scores = _scores(net, data.val, ebs, feed)
        if scores is None:  # DDP, ranks > 0: their scores went to rank 0, which selects
            continue
        val = evaluate(scores, data.val.targets, conv)
        entry[key] = val["mAP"]
        score = -math.inf if math.isnan(val["mAP"]) else val["mAP"]  # NaN: no positives
        if best["state"] is None or score > best["val_mAP"]:
            best = {"val_mAP": score, "epoch": epoch, "weights": name,
                    "state": {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}}
    return best


def final_evaluation(model: MultiLabelModel, job: JobSpec, data: datasets.MultiLabelData,
                      best: dict[str, Any], feed: Feed):
    """Test (and val) metrics at the last epoch (plain weights) and at the selected epoch (the
    plain or EMA weights validation chose); the training-free trick on the selected weights."""
    ebs, conv = int(job.budget["eval_batch_size"]), job.evaluation["convention"]

    def both() -> tuple[dict, dict, np.ndarray, np.ndarray]:
        val = _scores(model, data.val, ebs, feed)
        test = _scores(model, data.test, ebs, feed)
        if val is None:  # DDP, ranks > 0
            return {}, {}, test, val
        return evaluate(val, data.val.targets, conv), evaluate(test, data.test.targets, conv), test, val

    last_val, last_test, _, _ = both()
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    distributed.broadcast_state(model)  # DDP: rank 0's selected weights on every rank
    sel_val, sel_test, test_scores, val_scores = both()
    if val_scores is None:  # DDP, ranks > 0: the shards of the training-free trick, then nothing
        if model.linear_classifier() is not None:
            _training_free(model, job, data, math.nan, ebs, feed)
        return None, None, None
    metrics = {"selected": {"val": sel_val, "test": sel_test,
                            "test_tuned": tuned_metrics(val_scores, data.val.targets, test_scores,
                                                        data.test.targets)},
               "last": {"val": last_val, "test": last_test}}
    predictions = {"test_scores": test_scores, "test_targets": data.test.targets.astype(np.int8)}
    trick = None
    if model.linear_classifier() is not None:
        trick = _training_free(model, job, data, sel_test["mAP"], ebs, feed)
    return metrics, predictions, trick


def _training_free(model: MultiLabelModel, job: JobSpec, data: datasets.MultiLabelData,
                   baseline_map: float, ebs: int, feed: Feed) -> dict[str, Any]:
    from methods.csra import fixed_lambda

    fixed = fixed_lambda(job.backbone["name"])
    lambdas = sorted(set(float(x) for x in job.evaluation["trick_lambdas"]) | {fixed})
    conv = job.evaluation["convention"]
    val_scores, test_scores = (_trick_scores(model, split, lambdas, ebs, feed) for split in (data.val, data.test))
    if val_scores is None or test_scores is None:  # DDP, ranks > 0
        return {}
    val = {lam: evaluate(s, data.val.targets, conv) for lam, s in val_scores.items()}
    test = {lam: evaluate(s, data.test.targets, conv) for lam, s in test_scores.items()}
    chosen = max(lambdas, key=lambda lam: (val[lam]["mAP"], -lam))
    return {"applied_to": "selected", "lambdas": lambdas, "fixed_lambda": fixed,
            "val_selected_lambda": chosen, "baseline_test_mAP": baseline_map,
            "val_mAP": {str(k): v["mAP"] for k, v in val.items()},
            "test_mAP": {str(k): v["mAP"] for k, v in test.items()},
            "test": {str(k): v for k, v in test.items()}}


def _trick_scores(model: MultiLabelModel, split: datasets.Split, lambdas: list[float], ebs: int,
                  feed: Feed) -> dict[float, np.ndarray] | None:
    """predict_training_free of the whole split: sharded and gathered on rank 0 like ``_scores``."""
    shard = distributed.shard_split(split, ebs)
    empty = np.zeros((0, split.targets.shape[1]), np.float32)
    local = predict_training_free(model, shard, lambdas, ebs, feed) if len(shard) else {lam: empty for lam in lambdas}
    gathered = {lam: distributed.gather_rows(s) for lam, s in local.items()}
    return None if any(s is None for s in gathered.values()) else gathered
