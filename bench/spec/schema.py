"""The suite-file schema, declared once: every key of every section with its default, domain
and doc. The errors (:func:`check_section`), ``bench list --keys`` and docs/suite-keys.md
(:func:`keys_markdown`) all come from the tables below.

A domain checks one value and says in words what it accepts; the error is always
``<file>: <section>.<key>=<value> must be <what>``. Defaults of the budget's runtime keys are
declared in bench/train/settings.py (``RUNTIME_DEFAULTS``) and read from there; their domain is
settings.runtime_problem, so the rule lives beside the code that uses them.
"""
from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from bench.errors import SpecError
from bench.spec.cluster import CLUSTER_DEFAULTS, CLUSTER_DOMAINS
from bench.train.settings import PRECISIONS, RUNTIME_DEFAULTS


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def did_you_mean(word: Any, known: Sequence[str]) -> str:
    """'; did you mean 'x'?' for a near miss of ``word`` among ``known`` (difflib), else ''."""
    close = difflib.get_close_matches(str(word), [str(k) for k in known], n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


# ----------------------------------------------------------------------------- domains
class Domain:
    text = "any value"

    def ok(self, v: Any, ctx: Mapping[str, Any]) -> bool:
        return True

    def check(self, where: str, key: str, v: Any, ctx: Mapping[str, Any]) -> None:
        if not self.ok(v, ctx):
            raise SpecError(f"{where}: {key}={v!r} must be {self.describe(ctx)}")

    def describe(self, ctx: Mapping[str, Any]) -> str:
        return self.text


@dataclass(frozen=True)
class Int(Domain):
    low: int
    null: bool = False

    @property
    def text(self) -> str:
        return f"an integer >= {self.low}" + (" or null" if self.null else "")

    def ok(self, v: Any, ctx: Mapping[str, Any]) -> bool:
        return (v is None and self.null) or (is_int(v) and v >= self.low)


@dataclass(frozen=True)
class Num(Domain):
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    null: bool = False

    @property
    def text(self) -> str:
        lo = "" if self.low is None else ("(" if self.low_open else "[") + f"{self.low}, "
        hi = "" if self.high is None else f"{self.high}" + (")" if self.high_open else "]")
        if self.low is not None and self.high is not None:
            domain = f"in {lo}{hi}"
        elif self.low is not None:
            domain = f"{'>' if self.low_open else '>='} {self.low}"
        else:
            domain = f"{'<' if self.high_open else '<='} {self.high}"
        return f"a finite number {domain}" + (" or null" if self.null else "")

    def ok(self, v: Any, ctx: Mapping[str, Any]) -> bool:
        if v is None and self.null:
            return True
        good = is_num(v)
        if good and self.low is not None:
            good = v > self.low if self.low_open else v >= self.low
        if good and self.high is not None:
            good = v < self.high if self.high_open else v <= self.high
        return good


class Choice(Domain):
    """One of ``values`` (a tuple, or a callable giving it: the lists live beside their code)."""

    def __init__(self, values: Sequence[Any] | Callable[[], Sequence[Any]]) -> None:
        self._values = values

    @property
    def values(self) -> tuple[Any, ...]:
        return tuple(self._values() if callable(self._values) else self._values)

    @property
    def text(self) -> str:
        return "one of " + ", ".join("null" if a is None else str(a) for a in self.values)

    def ok(self, v: Any, ctx: Mapping[str, Any]) -> bool:
        return v in self.values and not isinstance(v, bool)


class Bool(Domain):
    text = "true or false"

    def ok(self, v: Any, ctx: Mapping[str, Any]) -> bool:
        return isinstance(v, bool)


class Shape(Domain):
    """A key whose value is checked by its section's own code (a block, a list of rows): the text
    says what it takes."""

    def __init__(self, text: str) -> None:
        self.text = text


class Rule(Domain):
    """A domain given by a predicate over (value, section) and its text (may use the section)."""

    def __init__(self, text: str, ok: Callable[[Any, Mapping[str, Any]], bool]) -> None:
        self.text, self._ok = text, ok

    def ok(self, v: Any, ctx: Mapping[str, Any]) -> bool:
        return self._ok(v, ctx)

    def describe(self, ctx: Mapping[str, Any]) -> str:
        return self.text.format(**ctx) if "{" in self.text else self.text


class Runtime(Domain):
    """A runtime key: checked by bench.train.settings.runtime_problem (the whole budget at once)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def check(self, where: str, key: str, v: Any, ctx: Mapping[str, Any]) -> None:
        from bench.train.settings import runtime_problem

        problem = runtime_problem(ctx)
        if problem and f"budget.{problem[0]}" == key:
            raise SpecError(f"{where}: budget.{problem[0]}={problem[1]!r} must be {problem[2]}")


@dataclass(frozen=True)
class Key:
    name: str
    default: Any
    domain: Domain
    doc: str


def _split_ok(v: Any, b: Mapping[str, Any]) -> bool:
    return v is None or (isinstance(v, (list, tuple)) and bool(v) and all(is_int(e) and e >= 0 for e in v)
                         and sum(v) == b.get("epochs"))


def _augmentations() -> tuple[str, ...]:
    from bench.train.augment import AUGMENTATIONS
    return tuple(AUGMENTATIONS)


def _normalizations() -> tuple[str, ...]:
    from bench.train.augment import NORMALIZATIONS
    return (*NORMALIZATIONS, "weights")


def _contrastive_recipes() -> tuple[str, ...]:
    from bench.spec.protocol import CONTRASTIVE_RECIPES
    return tuple(CONTRASTIVE_RECIPES)


def _optimizers() -> tuple[str, ...]:
    from bench.train.optim import OPTIMIZERS
    return tuple(OPTIMIZERS)


def _schedules() -> tuple[str, ...]:
    from bench.train.optim import SCHEDULES
    return tuple(SCHEDULES)


def _conventions() -> tuple[str, ...]:
    from bench.evaluate.metrics import CONVENTIONS
    return tuple(CONVENTIONS)


_RUNTIME_DOCS = {
    "precision": (f"one of {', '.join(PRECISIONS)}", "autocast precision (fp16: CUDA only, with a GradScaler)"),
    "ema": ("null or a decay strictly between 0 and 1 (e.g. 0.9997)", "EMA of the weights (ASL, KMCL: 0.9997)"),
    "accumulate": ("an integer >= 1 dividing batch_size", "micro-batches per optimiser step; batch_size stays the step's batch"),
    "max_nonfinite_steps": ("an integer >= 0", "skipped inf/NaN steps a job may have before it fails"),
    "sync_batchnorm": ("true or false", "with W > 1 data-parallel processes: BatchNorm normalises by the "
                       "global batch's statistics (SyncBatchNorm), as on one GPU; no effect with one process"),
    "workers": ("an integer >= 0", "DataLoader worker processes (0: in the training process); not in the job id"),
    "channels_last": ("true or false", "NHWC model and inputs; not in the job id"),
    "cudnn_benchmark": ("true or false", "let cuDNN pick the fastest kernels (CUDA only); not in the job id"),
    "compile": ("true or false", "torch.compile the backbone; not in the job id"),
    "image_cache": ("true or false", "file datasets: decode once into a memmap cache; not in the job id"),
}

BUDGET: tuple[Key, ...] = (
    Key("epochs", 6, Int(1), "training epochs (every method the same under equal-budget)"),
    Key("batch_size", 64, Int(1), "images per optimiser step"),
    Key("resolution", 48, Rule("an integer >= 16 (smallcnn) or >= 32 (timm models)", lambda v, b: True),
        "input side in pixels (checked against the backbone)"),
    Key("train_images", None, Int(1, null=True), "cap on training images (null: all)"),
    Key("augmentation", "shift", Choice(_augmentations), "training augmentation"),
    Key("normalize", "none", Choice(_normalizations),
        "input normalisation; weights: the pretrained weights' own mean/std (timm's config), which a "
        "contradicting value is refused against"),
    Key("eval_batch_size", 256, Int(1), "images per evaluation batch"),
    Key("stage_split", None, Rule("null or a list of epochs >= 0 per stage summing to budget.epochs={epochs}",
                                  _split_ok), "epochs per training stage of a two-stage method (null: its own split)"),
    Key("contrastive_recipe", "method", Choice(_contrastive_recipes),
        "a contrastive stage under equal budget: 'method' = its method's own views and backbone lr "
        "(ProbMCL: RandAugment, one lr, as the paper; bench/spec/protocol.py), 'shared' = the suite's"),
    *(Key(k, v, Runtime(_RUNTIME_DOCS[k][0]), _RUNTIME_DOCS[k][1]) for k, v in RUNTIME_DEFAULTS.items()),
)

WEIGHT_DECAY_MODES = (None, "coupled", "decoupled")
OPTIMIZER: tuple[Key, ...] = (
    Key("name", "adamw", Choice(_optimizers), "optimiser"),
    Key("lr", 2e-3, Num(0, low_open=True), "peak learning rate"),
    Key("weight_decay", 1e-4, Num(0), "weight decay (how it acts: weight_decay_mode)"),
    Key("schedule", "onecycle", Choice(_schedules), "learning-rate schedule"),
    Key("pct_start", 0.2, Num(0, 1, low_open=True, high_open=True), "onecycle: fraction of steps warming up"),
    Key("momentum", 0.9, Num(0, 1, high_open=True), "SGD momentum"),
    Key("grad_clip", None, Num(0, low_open=True, null=True), "gradient-norm clip (null: none)"),
    Key("warmup_epochs", 0, Int(0), "linear warm-up epochs (cosine, step, constant)"),
    Key("step_epochs", None, Int(1, null=True), "step schedule: epochs between lr drops"),
    Key("step_gamma", 0.1, Num(0, 1, low_open=True), "step schedule: lr factor per drop"),
    Key("backbone_lr_scale", 1.0, Num(0, 1, low_open=True),
        "lr of the backbone's parameters = lr x this (papers' fine-tuning: 0.1)"),
    Key("planned_epochs", None, Int(1, null=True), "schedule planned over more epochs than trained (ASL: 80)"),
    Key("weight_decay_mode", None, Choice(WEIGHT_DECAY_MODES),
        "null: the optimiser's own (adam, sgd coupled; adamw decoupled); coupled: L2 on weights; decoupled: AdamW"),
)

EVALUATION: tuple[Key, ...] = (
    Key("convention", "paper", Choice(_conventions), "metric convention (bench.evaluate.metrics.CONVENTIONS)"),
    Key("trick_lambdas", [0.02, 0.05, 0.1, 0.2, 0.5, 1.0],
        Rule("a non-empty list of finite numbers >= 0",
             lambda v, e: isinstance(v, (list, tuple)) and bool(v) and all(is_num(x) and x >= 0 for x in v)),
        "lambdas of the test-time trick evaluated per record"),
)

_CLUSTER_DOCS = {
    "partition": "Slurm partition", "account": "Slurm account", "qos": "Slurm QOS",
    "time_min": "wall-clock limit of one attempt (a timed-out job is requeued and resumes)",
    "cpus_per_task": "CPUs per task (and torch threads)",
    "mem_gb": "memory per node (null: a GPU suite asks 64 GB per task, others the partition's default)",
    "gpus_per_node": "GPUs per node (null: the suite's resources.gpus when resources.device is cuda)",
    "nodes": "nodes per job", "tasks_per_node": "tasks per node (DDP ranks; a GPU suite: one per GPU)",
    "array_parallelism": "array tasks running at once", "sbatch": "extra sbatch options (a mapping)",
    "setup": "shell lines run before the job", "max_requeues": "preemptions / timeouts tolerated",
    "signal_delay_s": "USR2 this long before the time limit", "job_name": "Slurm job name",
    "gpu_mem_gb": "memory of one GPU: a job whose estimated peak exceeds it is refused at load",
    "gpu_tflops": "effective training TFLOP/s of one GPU assumed by the dry run's GPU-hour estimate",
}
CLUSTER: tuple[Key, ...] = tuple(Key(k, v, Shape(CLUSTER_DOMAINS[k][1]), _CLUSTER_DOCS.get(k, ""))
                                 for k, v in CLUSTER_DEFAULTS.items())

#: Where a suite's jobs must run. Not in the job id: a job computes the same on any device (the
#: record says which); the Slurm executor asks for the GPUs, and a job of a cuda suite stops in
#: its first seconds where CUDA is absent (bench/run/devices.py).
DEVICES = ("any", "cuda")
RESOURCES: tuple[Key, ...] = (
    Key("device", "any", Choice(DEVICES),
        "cuda: the suite needs CUDA GPUs (a job without one stops at once, exit 2; --device cpu runs it "
        "on a CPU on purpose); any: whatever the machine has"),
    Key("gpus", 1, Int(1), "GPUs per job when device is cuda (one DDP rank each); Slurm asks for them"),
)

NAMED: tuple[Key, ...] = (
    Key("name", None, Shape("a registered name (bench list)"), "a bare string means no options"),
    Key("options", {}, Shape("a mapping"), "options of that name (bench list shows them)"),
)
ROW: tuple[Key, ...] = (
    Key("method", None, Shape("a registered method (bench list methods)"), "required"),
    Key("hparams", {}, Shape("a mapping of the method's hyperparameters"), "overrides of the method's defaults"),
    Key("label", "", Shape("a string"), "row label (default: the method name)"),
)
PROTOCOLS = ("equal-budget", "paper-recipe")
TOP: tuple[Key, ...] = (
    Key("name", None, Shape("the file name's stem"), "results go to results/<name>/ (absent: the stem)"),
    Key("description", "", Shape("a string"), "one line for bench list"),
    Key("dataset", None, Shape("a name or {name, options}"), "required (section dataset)"),
    Key("backbone", "smallcnn", Shape("smallcnn or a timm model name, or {name, options}"), "section backbone"),
    Key("budget", {}, Shape("a mapping"), "section budget"),
    Key("optimizer", {}, Shape("a mapping"), "section optimizer"),
    Key("protocol", "equal-budget", Choice(PROTOCOLS), "equal-budget: one budget for all; paper-recipe: each paper's"),
    Key("evaluation", {}, Shape("a mapping"), "section evaluation"),
    Key("seeds", [0], Shape("a non-empty list of distinct integers"), "one job per row and seed"),
    Key("methods", None, Shape("a non-empty list of rows"), "required (section methods)"),
    Key("executor", {}, Shape("{name: local} or {name: slurm}"), "where jobs run (--executor overrides)"),
    Key("cluster", {}, Shape("a mapping"), "section cluster (slurm executor only)"),
    Key("resources", {}, Shape("a mapping"), "section resources: the device a job needs (not in the job id)"),
    Key("notes", None, Shape("any text"), "free text"),
)

#: section name -> its keys; the order of docs/suite-keys.md.
SECTIONS: dict[str, tuple[Key, ...]] = {
    "top level": TOP, "budget": BUDGET, "optimizer": OPTIMIZER, "evaluation": EVALUATION,
    "dataset": NAMED, "backbone": NAMED, "methods": ROW, "cluster": CLUSTER, "resources": RESOURCES,
}


def defaults(keys: Sequence[Key]) -> dict[str, Any]:
    return {k.name: (list(k.default) if isinstance(k.default, list) else
                     dict(k.default) if isinstance(k.default, dict) else k.default) for k in keys}


def merge(where: str, keys: Sequence[Key] | Mapping[str, Any], given: Mapping[str, Any] | None) -> dict[str, Any]:
    """The section's defaults updated with ``given``; an unknown key names the file and the
    nearest known key."""
    known = keys if isinstance(keys, Mapping) else defaults(keys)
    given = dict(given or {})
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise SpecError(f"{where}: unknown key {unknown[0]!r}{did_you_mean(unknown[0], list(known))}; "
                        f"known: {', '.join(sorted(known))}")
    return {**known, **given}


def check_section(where: str, section: str, keys: Sequence[Key], values: Mapping[str, Any]) -> None:
    """Every key of ``values`` against its domain, in declaration order."""
    for key in keys:
        if key.name in values:
            key.domain.check(where, f"{section}.{key.name}", values[key.name], values)


def _default_text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def keys_markdown() -> str:
    """docs/suite-keys.md: every section's keys, defaults, domains and docs (`bench list --keys`)."""
    out = ["# Suite keys", "", "Generated from bench/spec/schema.py by `bench list keys --format md` "
           "(a test keeps this page current). Runtime keys' defaults are declared in "
           "bench/train/settings.py. Sweep files take the same sections (their values override the "
           "base suite's) plus `suite:`, `search:` (see bench/spec/sweeps.py).", ""]
    for section, keys in SECTIONS.items():
        out += [f"## {section}", "", "| key | default | allowed | what it does |", "|---|---|---|---|"]
        for k in keys:
            allowed = k.domain.text.replace("{epochs}", "epochs") if isinstance(k.domain.text, str) else ""
            out.append(f"| `{k.name}` | `{_default_text(k.default)}` | {allowed} | {k.doc} |")
        out.append("")
    return "\n".join(out)
