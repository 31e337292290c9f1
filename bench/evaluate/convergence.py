"""Per-job evidence that a run converged and learned: the figures every record carries.

* :func:`convergence` -- validation-mAP gain over the last 25 % of the selection stage's
  epochs. The rule (issue 10): a row converged when the gain is under
  :data:`MAX_LAST_QUARTER_GAIN` points; the report flags every job that misses it.
* :func:`chance_map` -- the mAP of a scorer that ranks at random: the mean per-class
  prevalence on test (in percent). A run near it failed to learn.
* :func:`write_epoch_log` -- the per-epoch CSV beside the record (like timm's summary.csv).
"""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

MAX_LAST_QUARTER_GAIN = 0.5  # mAP points
EPOCH_LOG_FIELDS = ("stage", "epoch", "train_loss", "val_mAP", "lr", "seconds", "images_per_s")


def convergence(history: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """{window, last_quarter_gain, converged} from the epochs that have a validation mAP.

    The window is the last ceil(25 %) of those epochs (at least one); the gain is the best
    validation mAP inside it minus the value at the epoch just before it (the rule). Beside it,
    ``trend_gain``: the least-squares slope over the window and the epoch before it, times the
    window's length -- the same quantity without the max's upward bias from epoch-to-epoch
    noise (on the embedded data's 600 validation images a plateaued run moves 0.1-0.3 per
    epoch, so the max of 4-5 noisy epochs over one noisy epoch gains ~0.3-0.5 by noise alone)."""
    curve = [(h["epoch"], h["val_mAP"]) for h in history if h.get("val_mAP") is not None]
    if len(curve) < 2:
        return {"window": None, "last_quarter_gain": None, "converged": None,
                "rule": f"gain over the last 25 % of epochs < {MAX_LAST_QUARTER_GAIN} mAP"}
    k = max(1, math.ceil(0.25 * len(curve)))
    before, window = curve[-k - 1][1], curve[-k:]
    gain = max(v for _, v in window) - before
    tail = np.array([v for _, v in curve[-k - 1:]], dtype=np.float64)
    slope = float(np.polyfit(np.arange(len(tail)), tail, 1)[0]) if np.isfinite(tail).all() else float("nan")
    return {"window": [window[0][0], window[-1][0]], "last_quarter_gain": round(float(gain), 3),
            "trend_gain": round(slope * k, 3),
            "converged": bool(gain < MAX_LAST_QUARTER_GAIN),
            "rule": f"gain over the last 25 % of epochs < {MAX_LAST_QUARTER_GAIN} mAP"}


def chance_map(targets: np.ndarray) -> float:
    """Expected mAP (percent) of random scores: mean prevalence over classes with a positive."""
    t = np.asarray(targets)
    pos, known = (t == 1).sum(0), (t != -1).sum(0)
    has = pos > 0
    return round(float((pos[has] / known[has]).mean() * 100), 3) if has.any() else float("nan")


def write_epoch_log(path: Path, history: Sequence[dict[str, Any]]) -> None:
    """The history as CSV (one row per epoch), written atomically."""
    from bench.run.store import atomic_write_bytes

    buf = io.StringIO()
    extra = sorted({k for h in history for k in h} - set(EPOCH_LOG_FIELDS))
    writer = csv.DictWriter(buf, fieldnames=[*EPOCH_LOG_FIELDS, *extra], extrasaction="ignore")
    writer.writeheader()
    for h in history:
        writer.writerow({k: ("" if h.get(k) is None else h.get(k)) for k in writer.fieldnames})
    atomic_write_bytes(path, buf.getvalue().encode())
