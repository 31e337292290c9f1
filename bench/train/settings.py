"""The budget's runtime keys, declared once (``bench.spec.suites.BUDGET_DEFAULTS`` includes them).

Two kinds:

* **what a job computes** (in the job id): ``precision``, ``ema``, ``accumulate``,
  ``max_nonfinite_steps``, ``sync_batchnorm`` (only acts with W > 1 processes) -- each left out of the id at its neutral value, so records made
  before the key existed keep their ids (``bench.spec.jobs.NEUTRAL_DEFAULTS``);
* **how fast** (recorded, not in the job id, like the thread count): ``workers``,
  ``channels_last``, ``cudnn_benchmark``, ``compile``, ``image_cache``. They change only the
  speed and, on a GPU, the float rounding of kernels (``bench.spec.jobs.PERFORMANCE_KEYS``).
"""
from __future__ import annotations

# No torch import here: bench.spec.jobs and bench.spec.suites read this module.

import math
from dataclasses import dataclass
from typing import Any, Mapping


PRECISIONS = ("fp32", "bf16", "fp16")

#: Defaults of the runtime keys (and the neutral values of the semantic ones).
RUNTIME_DEFAULTS: dict[str, Any] = {
    "precision": "fp32",        # fp32 | bf16 | fp16 (fp16: CUDA only, with a GradScaler)
    "ema": None,                # null, or the EMA decay in (0, 1), e.g. 0.9997 (ASL, KMCL)
    "accumulate": 1,            # micro-batches per optimiser step: batch_size stays the step's batch
    "max_nonfinite_steps": 25,  # skipped inf/NaN steps a job may have before it fails
    "sync_batchnorm": True,     # W > 1 processes: BatchNorm statistics of the global batch (SyncBatchNorm)
    "workers": 0,               # DataLoader worker processes (0: in the training process)
    "channels_last": False,     # NHWC model and inputs (faster convolutions on tensor cores)
    "cudnn_benchmark": True,    # let cuDNN pick the fastest kernels (CUDA only)
    "compile": False,           # torch.compile the backbone (nn.Module.compile: same state_dict keys)
    "image_cache": True,        # file datasets: decode once into a memmap cache (false: in the workers)
}
SEMANTIC_KEYS = ("precision", "ema", "accumulate", "max_nonfinite_steps", "sync_batchnorm")
PERFORMANCE_KEYS = ("workers", "channels_last", "cudnn_benchmark", "compile", "image_cache")


@dataclass(frozen=True)
class Runtime:
    precision: str = RUNTIME_DEFAULTS["precision"]
    ema: float | None = RUNTIME_DEFAULTS["ema"]
    accumulate: int = RUNTIME_DEFAULTS["accumulate"]
    max_nonfinite_steps: int = RUNTIME_DEFAULTS["max_nonfinite_steps"]
    sync_batchnorm: bool = RUNTIME_DEFAULTS["sync_batchnorm"]
    workers: int = RUNTIME_DEFAULTS["workers"]
    channels_last: bool = RUNTIME_DEFAULTS["channels_last"]
    cudnn_benchmark: bool = RUNTIME_DEFAULTS["cudnn_benchmark"]
    compile: bool = RUNTIME_DEFAULTS["compile"]
    image_cache: bool = RUNTIME_DEFAULTS["image_cache"]

    @classmethod
    def from_budget(cls, budget: Mapping[str, Any]) -> "Runtime":
        """The runtime keys of a job's budget (a record made before a key existed: its default)."""
        return cls(**{k: budget.get(k, v) for k, v in RUNTIME_DEFAULTS.items()})


def runtime_problem(budget: Mapping[str, Any]) -> tuple[str, Any, str] | None:
    """(key, value, what is allowed) of the first runtime key outside its domain, else None."""
    def is_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    b = {**RUNTIME_DEFAULTS, **budget}
    if b["precision"] not in PRECISIONS:
        return "precision", b["precision"], f"one of {', '.join(PRECISIONS)}"
    ema = b["ema"]
    if ema is not None and (isinstance(ema, bool) or not isinstance(ema, (int, float))
                            or not math.isfinite(ema) or not 0 < ema < 1):
        return "ema", ema, "null or a decay strictly between 0 and 1 (e.g. 0.9997)"
    for key, low in (("accumulate", 1), ("max_nonfinite_steps", 0), ("workers", 0)):
        if not is_int(b[key]) or b[key] < low:
            return key, b[key], f"an integer >= {low}"
    for key in ("sync_batchnorm", "channels_last", "cudnn_benchmark", "compile", "image_cache"):
        if not isinstance(b[key], bool):
            return key, b[key], "true or false"
    if b["batch_size"] % b["accumulate"]:
        return "accumulate", b["accumulate"], f"a divisor of budget.batch_size={b['batch_size']}"
    return None
