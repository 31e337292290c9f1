"""Model selection on validation and the final evaluation of a job (test never selects).

``validate`` scores the plain (and EMA) weights after each epoch of the selection stage;
``final_evaluation`` scores val and test at the last and the selected epoch, tunes thresholds
on val, and runs CSRA's training-free trick on models with a linear head.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from bench import data as datasets
from bench.spec.jobs import JobSpec
from bench.evaluate.metrics import evaluate
from bench.evaluate.thresholds import tuned_metrics
from bench.train.data import Feed, predict_scores, predict_training_free
from methods.base import MultiLabelModel


def validate(model: MultiLabelModel, ema: Any, data: datasets.MultiLabelData, job: JobSpec, feed: Feed,
              epoch: int, entry: dict[str, Any], best: dict[str, Any]) -> dict[str, Any]:
    """Validation mAP of the plain (and EMA) weights into ``entry``; the better of the best so far
    and these (selection on validation only)."""
    ebs, conv = int(job.budget["eval_batch_size"]), job.evaluation["convention"]
    candidates = [("plain", model, "val_mAP")] + ([("ema", ema.module, "val_mAP_ema")] if ema is not None else [])
    for name, net, key in candidates:
        val = evaluate(predict_scores(net, data.val, ebs, feed), data.val.targets, conv)
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
        val = predict_scores(model, data.val, ebs, feed)
        test = predict_scores(model, data.test, ebs, feed)
        return evaluate(val, data.val.targets, conv), evaluate(test, data.test.targets, conv), test, val

    last_val, last_test, _, _ = both()
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    sel_val, sel_test, test_scores, val_scores = both()
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
    val = {lam: evaluate(s, data.val.targets, conv)
           for lam, s in predict_training_free(model, data.val, lambdas, ebs, feed).items()}
    test = {lam: evaluate(s, data.test.targets, conv)
            for lam, s in predict_training_free(model, data.test, lambdas, ebs, feed).items()}
    chosen = max(lambdas, key=lambda lam: (val[lam]["mAP"], -lam))
    return {"applied_to": "selected", "lambdas": lambdas, "fixed_lambda": fixed,
            "val_selected_lambda": chosen, "baseline_test_mAP": baseline_map,
            "val_mAP": {str(k): v["mAP"] for k, v in val.items()},
            "test_mAP": {str(k): v["mAP"] for k, v in test.items()},
            "test": {str(k): v for k, v in test.items()}}
