"""Per-job evidence that a run converged and learned: the figures every record carries.

* :func:`assess` -- the convergence verdict of EVERY stage that trains, recomputed from the
  record's ``history`` (the report never trusts a stored ``record["convergence"]``, which older
  code wrote with a weaker rule). The window is the last 25 % of the stage's epochs, at least
  :data:`MIN_WINDOW` epochs, compared with the epoch just before it:

  - a stage with a validation mAP: ``gain`` = best val mAP in the window minus the epoch before
    it (max-based), and beside it ``trend`` = least-squares slope over the window and the epoch
    before it, times the window's length. Converged when BOTH are below
    :data:`MAX_LAST_QUARTER_GAIN` points;
  - a stage without one (ProbMCL's contrastive stage, IML-GCN's backbone stage):
    ``loss_drop`` = relative drop (percent) of the training loss from the epoch before the window
    to the window's lowest value; converged when below :data:`MAX_LOSS_DROP_PERCENT`.

  A stage too short for a window plus the epoch before it cannot be assessed and counts as not
  converged. Power of the rule (:data:`RULE_POWER`): under OneCycle every curve flattens as the
  learning rate goes to 0, so "converged" means "flat at the end of this schedule", not "at the
  plateau a longer schedule would reach".
* :func:`convergence` -- the selection stage's figures in the record's old shape (the runner
  writes it; the report recomputes it with :func:`assess`).
* :func:`chance_map` -- the mAP of a scorer that ranks at random: the mean per-class
  prevalence on test (in percent). A run near it failed to learn.
* the per-epoch CSV beside the record (like timm's summary.csv): ``bench.run.epochlog``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

MAX_LAST_QUARTER_GAIN = 0.5  # mAP points, max-based gain and trend gain of a validated stage
MAX_LOSS_DROP_PERCENT = 2.0  # percent: the runner's fixed loss rule (records); the report calibrates it
#: The report's loss rule for a stage without validation: its training-loss drop is at most this
#: percentile of the drops of the selection stages that pass the validation rule (:func:`calibrate`).
CALIBRATION_PERCENTILE = 95.0
WINDOW_FRACTION = 0.25
MIN_WINDOW = 3  # epochs
RULE = (f"last {100 * WINDOW_FRACTION:g} % of each stage's epochs (at least {MIN_WINDOW}) vs the epoch before: "
        f"val-mAP gain (max-based) and trend gain (least-squares slope x window) < {MAX_LAST_QUARTER_GAIN} "
        f"points; a stage without validation mAP: training-loss drop < {MAX_LOSS_DROP_PERCENT:g} %")
RULE_POWER = (f"a curve still rising r points per epoch has trend gain ~ r x window, so the rule misses a "
              f"rise slower than {MAX_LAST_QUARTER_GAIN} / window points per epoch "
              f"({MAX_LAST_QUARTER_GAIN / MIN_WINDOW:.2f} for a {MIN_WINDOW}-epoch window, "
              f"{MAX_LAST_QUARTER_GAIN / 5:.2f} for 5); epoch-to-epoch noise of ~0.2 points on 600 "
              "validation images gives the max-based gain a +0.2-0.3 upward bias; and under OneCycle every "
              "curve flattens as the learning rate goes to 0, so 'converged' means flat at the end of this "
              "schedule, not at the plateau of a longer one")


def _window(n: int) -> int:
    return max(MIN_WINDOW, math.ceil(WINDOW_FRACTION * n))


def _trend(values: Sequence[float]) -> float:
    tail = np.asarray(values, dtype=np.float64)
    if not np.isfinite(tail).all() or tail.size < 2:
        return float("nan")
    return float(np.polyfit(np.arange(tail.size), tail, 1)[0])


def loss_drop(entries: Sequence[Mapping[str, Any]]) -> float | None:
    """Relative drop (percent) of the training loss from the epoch before the last-quarter window
    to the window's lowest value; None when the stage is too short or has no loss."""
    losses = [float(e["train_loss"]) for e in entries if e.get("train_loss") is not None]
    k = _window(len(losses))
    if len(losses) < k + 1 or not losses[-k - 1]:
        return None
    drop = 100 * (losses[-k - 1] - min(losses[-k:])) / abs(losses[-k - 1])
    return round(drop, 2) if math.isfinite(drop) else None


def stage_figures(name: str, entries: Sequence[Mapping[str, Any]],
                  max_loss_drop: float = MAX_LOSS_DROP_PERCENT) -> dict[str, Any]:
    """The convergence figures of one stage's history entries (in epoch order); ``loss_drop``
    (the training-loss figure) is given for every stage, validated or not."""
    validated = [e for e in entries if e.get("val_mAP") is not None]
    use_val = len(validated) >= max(2, len(entries) // 2)
    points = [(int(e.get("epoch", i + 1)), float(e["val_mAP"] if use_val else e.get("train_loss", math.nan)))
              for i, e in enumerate(validated if use_val else entries)]
    k = _window(len(points))
    out: dict[str, Any] = {"stage": name, "epochs": len(entries), "statistic": "val_gain" if use_val else "loss_drop",
                           "window": None, "value": None, "trend": None, "converged": False,
                           "loss_drop": loss_drop(entries)}
    if len(points) < k + 1:
        out["reason"] = f"{len(points)} epoch(s): too short for a {k}-epoch window and the epoch before it"
        return out
    before, window = points[-k - 1][1], [v for _, v in points[-k:]]
    out["window"] = [points[-k][0], points[-1][0]]
    slope = _trend([before] + window)
    if use_val:
        gain, trend = max(window) - before, slope * k
        out.update(value=round(gain, 3), trend=round(trend, 3),
                   converged=bool(gain < MAX_LAST_QUARTER_GAIN and trend < MAX_LAST_QUARTER_GAIN))
    else:
        scale = abs(before) if before else float("nan")
        drop = 100 * (before - min(window)) / scale
        trend = -100 * slope * k / scale
        out.update(value=round(drop, 2), trend=round(trend, 2),
                   converged=bool(math.isfinite(drop) and drop < max_loss_drop))
    return out


def assess(record: Mapping[str, Any], max_loss_drop: float = MAX_LOSS_DROP_PERCENT) -> dict[str, Any]:
    """Per-stage convergence figures and the overall verdict of one record, from its history.

    Returns {"stages": [stage_figures...], "selection": the selection stage's figures (the last
    stage with a validation mAP) or None, "earlier": the stages before it, "converged": every
    stage converged, "selection_converged", "earlier_converged" (True when there is no earlier
    stage), "rule"}."""
    history = list(record.get("history") or [])
    order: list[str] = []
    for h in history:
        name = str(h.get("stage", "train"))
        if name not in order:
            order.append(name)
    stages = [stage_figures(name, [h for h in history if str(h.get("stage", "train")) == name], max_loss_drop)
              for name in order]
    selection_index = max((i for i, s in enumerate(stages) if s["statistic"] == "val_gain"), default=None)
    selection = stages[selection_index] if selection_index is not None else None
    earlier = stages[:selection_index] if selection_index is not None else stages
    return {"stages": stages, "selection": selection, "earlier": earlier,
            "selection_converged": None if selection is None else bool(selection["converged"]),
            "earlier_converged": all(s["converged"] for s in earlier),
            "converged": bool(stages) and all(s["converged"] for s in stages), "rule": RULE}


@dataclass(frozen=True)
class LossCalibration:
    """The loss rule for stages without validation, calibrated on the records' own selection
    stages: ``threshold`` = the :data:`CALIBRATION_PERCENTILE` percentile of the training-loss
    drops of the ``n`` selection stages that pass the validation rule (so at most 5 % of them
    would fail it: the false-alarm rate); ``power`` = the share of the ``n_fail`` selection stages
    that FAIL the validation rule which the loss rule also flags (its hit rate against the
    validation rule, the only reference there is)."""

    threshold: float
    n: int
    low: float
    high: float
    n_fail: int
    flagged: int

    @property
    def power(self) -> float:
        return self.flagged / self.n_fail if self.n_fail else float("nan")

    def rule(self) -> str:
        return (f"last {100 * WINDOW_FRACTION:g} % of each stage's epochs (at least {MIN_WINDOW}) vs the epoch "
                f"before: a stage with validation mAP converged when its val-mAP gain (max-based) and trend gain "
                f"(least-squares slope x window) are < {MAX_LAST_QUARTER_GAIN} points; a stage without validation "
                f"mAP when its training-loss drop is < {self.threshold:.1f} %, the {CALIBRATION_PERCENTILE:g}th "
                f"percentile of the drops of the {self.n} selection stages that pass the validation rule "
                f"(their drops: {self.low:.1f}-{self.high:.1f} %); one rule for every stage of every method")

    def power_text(self) -> str:
        return (f"the loss rule fails {100 - CALIBRATION_PERCENTILE:g} % of stages known to be flat in validation "
                f"mAP (false alarms, by construction) and flags {self.flagged} of the {self.n_fail} selection "
                f"stages that the validation rule calls not converged ({100 * self.power:.0f} %: its hit rate); "
                f"losses differ between methods (BCE, ASL, contrastive), so a drop is compared with a spread of "
                f"losses, not with the same loss")


def calibrate(records: Sequence[Mapping[str, Any]]) -> LossCalibration:
    """:class:`LossCalibration` from the records' histories (the fixed runner rule when no
    selection stage passes the validation rule)."""
    passing, failing = [], []
    for record in records:
        sel = assess(record)["selection"] if record.get("history") else None
        if sel is None or sel.get("loss_drop") is None or sel["window"] is None:
            continue
        (passing if sel["converged"] else failing).append(sel["loss_drop"])
    if not passing:
        return LossCalibration(MAX_LOSS_DROP_PERCENT, 0, math.nan, math.nan, len(failing),
                               sum(d >= MAX_LOSS_DROP_PERCENT for d in failing))
    threshold = round(float(np.percentile(passing, CALIBRATION_PERCENTILE)), 2)
    return LossCalibration(threshold, len(passing), min(passing), max(passing), len(failing),
                           sum(d >= threshold for d in failing))


def describe(stage: Mapping[str, Any]) -> str:
    """'contrastive: training-loss drop 11.7 % (epochs 10-13)' / 'train: val gain 0.33, trend 0.18 (...)'."""
    if stage.get("window") is None:
        return f"{stage['stage']}: {stage.get('reason', 'not assessable')}"
    where = f"epochs {stage['window'][0]}-{stage['window'][1]}"
    if stage["statistic"] == "loss_drop":
        return f"{stage['stage']}: training-loss drop {stage['value']:.1f} % ({where})"
    return f"{stage['stage']}: val gain {stage['value']:.2f}, trend {stage['trend']:.2f} ({where})"


def convergence(history: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """{window, last_quarter_gain, trend_gain, converged, rule} of the selection stage (the old
    record field; :func:`assess` gives every stage)."""
    sel = assess({"history": history})["selection"]
    if sel is None:
        return {"window": None, "last_quarter_gain": None, "converged": None, "rule": RULE}
    if sel["window"] is None:  # too short to assess: not converged by the rule, and why
        return {"window": None, "last_quarter_gain": None, "converged": False, "reason": sel.get("reason"),
                "rule": RULE}
    return {"window": sel["window"], "last_quarter_gain": sel["value"], "trend_gain": sel["trend"],
            "converged": sel["converged"], "rule": RULE}


def chance_map(targets: np.ndarray) -> float:
    """Expected mAP (percent) of random scores: mean prevalence over classes with a positive."""
    t = np.asarray(targets)
    pos, known = (t == 1).sum(0), (t != -1).sum(0)
    has = pos > 0
    return round(float((pos[has] / known[has]).mean() * 100), 3) if has.any() else float("nan")
