"""JobSpec: one training run, fully resolved, addressed by a hash of its semantic fields.

The job id depends on method, hyperparameters, dataset (name + options), backbone,
budget, optimiser, protocol, evaluation convention and seed -- never on an
absolute path, the suite's name, the executor or the machine -- so the same run
asked for twice (by a suite, a sweep, or a second user) is recognised as done.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from bench.train.settings import PERFORMANCE_KEYS, RUNTIME_DEFAULTS, SEMANTIC_KEYS

#: Fields that decide what a job computes; everything else is bookkeeping.
SEMANTIC_FIELDS = ("method", "hparams", "dataset", "backbone", "budget", "optimizer",
                   "protocol", "evaluation", "seed", "world_size")


#: Keys left out of the job id: ``optimizer.weight_decay_mode`` is always the one the resolved
#: optimiser name implies (adam/sgd coupled, adamw decoupled: bench.spec.suites.effective_optimizer),
#: so hashing it would only change every id of the records made before the key existed. The
#: budget's performance keys (workers, channels_last, cudnn_benchmark, compile: see
#: bench/train/settings.py) change how fast a job runs, not what it computes -- like the thread
#: count, they are recorded but not hashed.
DERIVED_KEYS: dict[str, tuple[str, ...]] = {
    "optimizer": ("weight_decay_mode",),
    "budget": PERFORMANCE_KEYS,
}
#: Keys added after records exist, left out of the id while at the value that computes what
#: the job computed before the key existed (so old records keep their ids); any other value is
#: hashed. Register a new budget/optimizer key here together with its neutral default.
NEUTRAL_DEFAULTS: dict[str, dict[str, Any]] = {
    # before bench/train/: fp32, no EMA, one micro-batch per step; a job that finished then had
    # no non-finite step, so any bound computes what it computed
    # before issue #20 a contrastive stage took the suite's augmentation and backbone scale
    "budget": {**{k: RUNTIME_DEFAULTS[k] for k in SEMANTIC_KEYS}, "contrastive_recipe": "shared"},
}


def identity_fields(semantic: Mapping[str, Any]) -> dict[str, Any]:
    """The semantic fields as hashed: DERIVED_KEYS dropped, NEUTRAL_DEFAULTS at their value dropped,
    and a registry-resolved backbone's ``pretrained_path`` (the machine's cache path): its weights
    block (tag, source) and ``weights_sha256`` identify the file (bench/spec/weights.py)."""
    out = dict(semantic)
    backbone = out.get("backbone")
    if isinstance(backbone, Mapping) and isinstance(backbone.get("weights"), Mapping):
        options = {k: v for k, v in dict(backbone.get("options") or {}).items() if k != "pretrained_path"}
        out["backbone"] = {**backbone, "options": options}
    if out.get("world_size", 1) in (1, None):
        out.pop("world_size", None)  # one process: the ids of every record made before the field
    for section in set(DERIVED_KEYS) | set(NEUTRAL_DEFAULTS):
        if isinstance(out.get(section), Mapping):
            neutral = NEUTRAL_DEFAULTS.get(section, {})
            out[section] = {k: v for k, v in out[section].items()
                            if k not in DERIVED_KEYS.get(section, ()) and not (k in neutral and v == neutral[k])}
    return out


def canonical_json(value: Any) -> str:
    """Key-sorted compact JSON; floats as repr so 0.1 and 1e-1 hash the same."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


@dataclass(frozen=True)
class JobSpec:
    method: str
    hparams: Mapping[str, Any]
    dataset: Mapping[str, Any]  # {"name": ..., "options": {...}}
    backbone: Mapping[str, Any]  # {"name": ..., "options": {...}}
    budget: Mapping[str, Any]  # epochs, batch_size, resolution, train_images, augmentation, ...
    optimizer: Mapping[str, Any]  # name, lr, weight_decay, schedule, ...
    protocol: str  # "equal-budget" | "paper-recipe"
    evaluation: Mapping[str, Any]  # convention name + trick lambdas
    seed: int
    label: str = ""  # human-readable row name, e.g. "csra H=4"; not semantic
    suite: str = ""  # where it was asked for; not semantic
    data_root: str | None = field(default=None, compare=False)  # machine-specific; not semantic
    #: where the job must run ({device: cuda, gpus: N}; None: anywhere); not semantic
    resources: Mapping[str, Any] | None = field(default=None, compare=False)
    #: data-parallel processes W: semantic (BatchNorm statistics and the contrastive terms see B/W
    #: samples per rank), so a W-process run is its own job id and never shares a row's records
    world_size: int = 1

    @property
    def job_id(self) -> str:
        semantic = {k: getattr(self, k) for k in SEMANTIC_FIELDS}
        digest = hashlib.sha256(canonical_json(identity_fields(semantic)).encode()).hexdigest()[:12]
        return f"{self.method}-{digest}"

    @property
    def display_name(self) -> str:
        name = self.label or self.method
        return f"{name} W={self.world_size}" if self.world_size > 1 else name

    def to_dict(self) -> dict[str, Any]:
        out = json.loads(canonical_json(asdict(self)))
        if out.get("resources") is None:
            out.pop("resources", None)  # a job that runs anywhere: the dict records made before the key
        if out.get("world_size") == 1:
            out.pop("world_size")  # one process: as records made before the field
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "JobSpec":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})
