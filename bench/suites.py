"""sweeps/<name>.yaml -> SuiteSpec -> list[JobSpec], validated against the registries.

A suite fixes everything that must be identical across methods (data, backbone,
budget, optimiser of the equal-budget protocol, evaluator, seeds) and lists
method rows; a row brings only its method name, hyperparameter overrides and a
label. Every key is checked: a misspelt key is an error naming the file and key.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

import methods
from bench.jobs import JobSpec

SUITES_DIR = Path(__file__).resolve().parent.parent / "sweeps"

PROTOCOLS = ("equal-budget", "paper-recipe")

#: The one place the budget's and optimiser's defaults are declared.
BUDGET_DEFAULTS: dict[str, Any] = {
    "epochs": 6, "batch_size": 64, "resolution": 48, "train_images": None,
    "augmentation": "shift", "normalize": "none", "eval_batch_size": 256,
    "stage_split": None,  # None: each two-stage method's own default split
}
OPTIMIZER_DEFAULTS: dict[str, Any] = {
    "name": "adamw", "lr": 2e-3, "weight_decay": 1e-4, "schedule": "onecycle",
    "pct_start": 0.2, "momentum": 0.9, "grad_clip": None, "warmup_epochs": 0,
    "step_epochs": None, "step_gamma": 0.1,
    "backbone_lr_scale": 1.0,  # paper-recipe only: read by methods' lr_groups
    "planned_epochs": None,  # schedule planned over more epochs than trained (ASL: 80, stopped at 40)
}
EVALUATION_DEFAULTS: dict[str, Any] = {
    "convention": "paper", "trick_lambdas": [0.02, 0.05, 0.1, 0.2, 0.5, 1.0],
}
TOP_KEYS = {"name", "description", "dataset", "backbone", "budget", "optimizer", "protocol",
            "evaluation", "seeds", "methods", "executor", "cluster", "notes"}


class SpecError(ValueError):
    """A suite or sweep file is malformed; the message names file and key."""


@dataclass(frozen=True)
class MethodRow:
    method: str
    hparams: Mapping[str, Any] = field(default_factory=dict)
    label: str = ""


@dataclass(frozen=True)
class SuiteSpec:
    name: str
    description: str
    dataset: Mapping[str, Any]
    backbone: Mapping[str, Any]
    budget: Mapping[str, Any]
    optimizer: Mapping[str, Any]
    protocol: str
    evaluation: Mapping[str, Any]
    seeds: tuple[int, ...]
    rows: tuple[MethodRow, ...]
    executor: Mapping[str, Any] = field(default_factory=dict)
    cluster: Mapping[str, Any] = field(default_factory=dict)
    source: str = ""


def suite_names() -> list[str]:
    return sorted(p.stem for p in SUITES_DIR.glob("*.yaml") if _is_suite_file(p))


def _is_suite_file(path: Path) -> bool:
    try:
        return "methods" in (yaml.safe_load(path.read_text()) or {})
    except yaml.YAMLError:
        return False


def _merge(where: str, defaults: Mapping[str, Any], given: Mapping[str, Any] | None) -> dict[str, Any]:
    given = dict(given or {})
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise SpecError(f"{where}: unknown key {unknown[0]!r}; known: {', '.join(sorted(defaults))}")
    return {**defaults, **given}


def _named(where: str, value: Any) -> dict[str, Any]:
    """A {name, options} block; a bare string means no options."""
    if isinstance(value, str):
        return {"name": value, "options": {}}
    if not isinstance(value, Mapping) or "name" not in value:
        raise SpecError(f"{where}: expected a name or a mapping with 'name' (and 'options')")
    extra = sorted(set(value) - {"name", "options"})
    if extra:
        raise SpecError(f"{where}: unknown key {extra[0]!r}; known: name, options")
    return {"name": str(value["name"]), "options": dict(value.get("options") or {})}


def load_suite(name_or_path: str) -> SuiteSpec:
    """Parse and validate a suite by name (sweeps/<name>.yaml) or path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = SUITES_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise SpecError(f"unknown suite {name_or_path!r}; known: {', '.join(suite_names())}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise SpecError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    return parse_suite(raw, str(path))


def parse_suite(raw: Mapping[str, Any], where: str = "<suite>") -> SuiteSpec:
    unknown = sorted(set(raw) - TOP_KEYS)
    if unknown:
        raise SpecError(f"{where}: unknown key {unknown[0]!r}; known: {', '.join(sorted(TOP_KEYS))}")
    for key in ("name", "dataset", "methods"):
        if key not in raw:
            raise SpecError(f"{where}: missing key {key!r}")
    protocol = raw.get("protocol", "equal-budget")
    if protocol not in PROTOCOLS:
        raise SpecError(f"{where}: protocol {protocol!r} must be one of {', '.join(PROTOCOLS)}")
    seeds = raw.get("seeds", [0])
    if not isinstance(seeds, list) or not all(isinstance(s, int) for s in seeds) or not seeds:
        raise SpecError(f"{where}: seeds must be a non-empty list of integers")
    rows = tuple(_parse_row(f"{where}: methods[{i}]", r) for i, r in enumerate(raw["methods"] or []))
    if not rows:
        raise SpecError(f"{where}: methods is empty")
    return SuiteSpec(
        name=str(raw["name"]), description=str(raw.get("description", "")),
        dataset=_named(f"{where}: dataset", raw["dataset"]),
        backbone=_named(f"{where}: backbone", raw.get("backbone", "smallcnn")),
        budget=_merge(f"{where}: budget", BUDGET_DEFAULTS, raw.get("budget")),
        optimizer=_merge(f"{where}: optimizer", OPTIMIZER_DEFAULTS, raw.get("optimizer")),
        protocol=protocol,
        evaluation=_merge(f"{where}: evaluation", EVALUATION_DEFAULTS, raw.get("evaluation")),
        seeds=tuple(seeds), rows=rows,
        executor=dict(raw.get("executor") or {}), cluster=dict(raw.get("cluster") or {}),
        source=where,
    )


def _parse_row(where: str, row: Any) -> MethodRow:
    if isinstance(row, str):
        row = {"method": row}
    if not isinstance(row, Mapping) or "method" not in row:
        raise SpecError(f"{where}: expected a method name or a mapping with 'method'")
    extra = sorted(set(row) - {"method", "hparams", "label"})
    if extra:
        raise SpecError(f"{where}: unknown key {extra[0]!r}; known: method, hparams, label")
    spec = methods.get(str(row["method"]))
    try:
        hparams = spec.resolve(row.get("hparams"))
    except ValueError as err:
        raise SpecError(f"{where}: {err}") from None
    return MethodRow(spec.name, hparams, str(row.get("label", "")))


#: Recipe keys the suite always decides: a suite is one (backbone, resolution) configuration.
SUITE_DECIDES = ("backbone", "resolution", "large", "views")


def recipe_budget(suite: SuiteSpec, method: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(budget, optimizer) of a job: the suite's, or under 'paper-recipe' the method's recipe
    laid over the suite's. Keys the suite decides (SUITE_DECIDES) and keys the runner cannot
    apply (e.g. EMA) are listed in ``budget['recipe_not_applied']``, so the record says so."""
    budget, optimizer = dict(suite.budget), dict(suite.optimizer)
    if suite.protocol != "paper-recipe":
        return budget, optimizer
    not_applied = []
    for key, value in methods.get(method).recipe.items():
        if key == "optimizer":
            optimizer["name"] = value
        elif key == "true_weight_decay":
            continue  # applied below, once the optimiser name is known
        elif key == "stage_epochs":
            budget["stage_split"] = list(value.values())
        elif key in optimizer:
            optimizer[key] = value
        elif key in budget:
            budget[key] = value
        else:
            not_applied.append(key)
    if optimizer["name"] == "adam" and methods.get(method).recipe.get("true_weight_decay"):
        optimizer["name"] = "adamw"  # decoupled ("true") weight decay
    budget["recipe_not_applied"] = sorted(not_applied)
    return budget, optimizer


def expand_jobs(suite: SuiteSpec, seeds: tuple[int, ...] | None = None,
                data_root: str | None = None) -> list[JobSpec]:
    """One JobSpec per (row, seed), rows in suite order, seeds inner."""
    jobs = []
    for row in suite.rows:
        budget, optimizer = recipe_budget(suite, row.method)
        for seed in seeds or suite.seeds:
            jobs.append(JobSpec(
                method=row.method, hparams=dict(row.hparams), dataset=suite.dataset,
                backbone=suite.backbone, budget=budget, optimizer=optimizer,
                protocol=suite.protocol, evaluation=suite.evaluation, seed=int(seed),
                label=row.label or row.method, suite=suite.name, data_root=data_root,
            ))
    return jobs
