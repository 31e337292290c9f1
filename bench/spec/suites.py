"""sweeps/<name>.yaml -> SuiteSpec -> list[JobSpec], validated against the registries.

A suite fixes everything that must be identical across methods (data, backbone,
budget, optimiser of the equal-budget protocol, evaluator, seeds) and lists
method rows; a row brings only its method name, hyperparameter overrides and a
label. Every key is checked against the schema (bench/spec/schema.py: each key's
default, domain and doc, declared once): a misspelt key is an error naming the file
and key (and the nearest known one), every value against its domain (``validate_suite``),
at load, before any job folder exists. A suite's ``name:`` is its file name's stem (or
absent). ``--set KEY=VALUE`` (``apply_sets``) changes a loaded file like an edit would, and
makes the run a variant with its own results folder (``<name>+<hash>``, bench.spec.yaml_io).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import math

import yaml

from bench.errors import SpecError  # noqa: F401  (re-exported: bench.spec.suites.SpecError)

from bench.spec import method_facts, schema
from bench.spec.jobs import JobSpec
from bench.spec.named import check_backbone, check_dataset, min_resolution  # noqa: F401 (re-exported)
from bench.spec.named import need_choice as _need_choice
from bench.spec.schema import PROTOCOLS, WEIGHT_DECAY_MODES, did_you_mean  # noqa: F401 (re-exported)
from bench.spec.yaml_io import (SpecLoader, apply_sets, check_file_name, load_yaml,  # noqa: F401
                                read_spec_file, variant_name)

SUITES_DIR = Path(__file__).resolve().parents[2] / "sweeps"

#: The one place the defaults are declared is bench/spec/schema.py (runtime keys:
#: bench/train/settings.py); these dicts are read from it.
BUDGET_DEFAULTS: dict[str, Any] = schema.defaults(schema.BUDGET)
OPTIMIZER_DEFAULTS: dict[str, Any] = schema.defaults(schema.OPTIMIZER)
EVALUATION_DEFAULTS: dict[str, Any] = schema.defaults(schema.EVALUATION)
TOP_KEYS = {k.name for k in schema.TOP}
ROW_KEYS = {k.name for k in schema.ROW}


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
    overrides: tuple[str, ...] = ()  # the --set items of a variant run (name: <suite>+<hash>)
    resources: Mapping[str, Any] = field(default_factory=lambda: schema.defaults(schema.RESOURCES))

    @property
    def job_resources(self) -> Mapping[str, Any] | None:
        """What a job of this suite carries: {device, gpus} of a cuda suite, None for 'any'."""
        return dict(self.resources) if self.resources.get("device") == "cuda" else None


def suite_names() -> list[str]:
    return sorted(p.stem for p in SUITES_DIR.glob("*.yaml") if _is_suite_file(p))


def _is_suite_file(path: Path) -> bool:
    try:
        return "methods" in (yaml.safe_load(path.read_text()) or {})
    except yaml.YAMLError:
        return False


def _merge(where: str, defaults: Mapping[str, Any], given: Mapping[str, Any] | None) -> dict[str, Any]:
    return schema.merge(where, defaults, given)


def _named(where: str, value: Any) -> dict[str, Any]:
    """A {name, options} block; a bare string means no options."""
    if isinstance(value, str):
        return {"name": value, "options": {}}
    if not isinstance(value, Mapping) or "name" not in value:
        raise SpecError(f"{where}: expected a name or a mapping with 'name' (and 'options')")
    extra = sorted(set(value) - {"name", "options"})
    if extra:
        raise SpecError(f"{where}: unknown key {extra[0]!r}{did_you_mean(extra[0], ['name', 'options'])}; "
                        "known: name, options")
    return {"name": str(value["name"]), "options": dict(value.get("options") or {})}


def spec_path(name_or_path: str, kind: str, known: Sequence[str]) -> Path:
    """sweeps/<name>.yaml for a name, the path itself for a path; an unknown one names the
    nearest known name."""
    path = Path(name_or_path)
    if not path.suffix:
        path = SUITES_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise SpecError(f"unknown {kind} {name_or_path!r}{did_you_mean(name_or_path, known)}; "
                        f"known: {', '.join(known)}")
    return path


def load_suite(name_or_path: str, sets: Sequence[str] = ()) -> SuiteSpec:
    """Parse and validate a suite by name (sweeps/<name>.yaml) or path; ``sets`` are
    ``--set KEY=VALUE`` overrides applied to the file's contents before validation. With
    overrides the suite is a variant: its name (and results folder) is ``<name>+<hash>``."""
    path = spec_path(name_or_path, "suite", suite_names())
    raw, where = read_spec_file(path, sets)
    suite = parse_suite(raw, where)
    if sets:
        suite = replace(suite, name=variant_name(suite.name, sets), overrides=tuple(sets))
    return suite


def parse_suite(raw: Mapping[str, Any], where: str = "<suite>") -> SuiteSpec:
    if not isinstance(raw, Mapping):
        raise SpecError(f"{where}: expected a mapping at the top level")
    check_finite(raw, where)
    schema.merge(where, {k: None for k in TOP_KEYS}, raw)  # unknown keys, with the nearest known one
    for key in ("name", "dataset", "methods"):
        if key not in raw:
            raise SpecError(f"{where}: missing key {key!r}")
    protocol = raw.get("protocol", "equal-budget")
    if protocol not in PROTOCOLS:
        raise SpecError(f"{where}: protocol {protocol!r} must be one of {', '.join(PROTOCOLS)}")
    seeds = raw.get("seeds", [0])
    check_seeds(seeds, where)
    if not isinstance(raw["methods"] or [], list):
        raise SpecError(f"{where}: methods must be a list of method rows")
    rows = tuple(_parse_row(f"{where}: methods[{i}]", r) for i, r in enumerate(raw["methods"] or []))
    if not rows:
        raise SpecError(f"{where}: methods is empty")
    for key in ("budget", "optimizer", "evaluation", "executor", "cluster", "resources"):
        if raw.get(key) is not None and not isinstance(raw[key], Mapping):
            raise SpecError(f"{where}: {key} must be a mapping, not {raw[key]!r}")
    suite = SuiteSpec(
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
        resources=_merge(f"{where}: resources", schema.defaults(schema.RESOURCES), raw.get("resources")),
    )
    return validate_suite(suite, where)


def _parse_row(where: str, row: Any) -> MethodRow:
    if isinstance(row, str):
        row = {"method": row}
    if not isinstance(row, Mapping) or "method" not in row:
        raise SpecError(f"{where}: expected a method name or a mapping with 'method'")
    extra = sorted(set(row) - ROW_KEYS)
    if extra:
        raise SpecError(f"{where}: unknown key {extra[0]!r}{did_you_mean(extra[0], sorted(ROW_KEYS))}; "
                        "known: method, hparams, label")
    if row.get("hparams") is not None and not isinstance(row["hparams"], Mapping):
        raise SpecError(f"{where}: hparams must be a mapping of name: value, not {row['hparams']!r}")
    name = str(row["method"])
    known = method_facts.names()
    if name not in known:
        raise SpecError(f"{where}: unknown method {name!r}{did_you_mean(name, known)}; "
                        f"known: {', '.join(known)}")
    try:
        hparams = method_facts.resolve(name, row.get("hparams"))
    except ValueError as err:
        text = str(err)
        defaults = method_facts.defaults(name)
        unknown = [h for h in (row.get("hparams") or {}) if h not in defaults]
        hint = did_you_mean(unknown[0], sorted(defaults)) if unknown else ""
        raise SpecError(f"{where} ({name}): {text}{hint}") from None
    return MethodRow(name, hparams, str(row.get("label", "")))


# ----------------------------------------------------------------------------- value domains
def check_finite(value: Any, where: str, path: str = "") -> None:
    """Every number anywhere in a spec is finite: YAML's .nan / .inf are errors, naming the key."""
    if isinstance(value, float) and not math.isfinite(value):
        raise SpecError(f"{where}: {path or 'value'}={value} is not a finite number")
    if isinstance(value, Mapping):
        for k, v in value.items():
            check_finite(v, where, f"{path}.{k}" if path else str(k))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            check_finite(v, where, f"{path}[{i}]")


def check_seeds(seeds: Any, where: str) -> None:
    if (not isinstance(seeds, list) or not seeds
            or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)):
        raise SpecError(f"{where}: seeds must be a non-empty list of integers")
    if len(set(seeds)) != len(seeds):
        raise SpecError(f"{where}: seeds {seeds} repeat a seed (the same job twice)")


def check_budget(where: str, budget: Mapping[str, Any]) -> None:
    schema.check_section(where, "budget", schema.BUDGET, budget)


def check_optimizer(where: str, opt: Mapping[str, Any]) -> None:
    schema.check_section(where, "optimizer", schema.OPTIMIZER, opt)
    if opt["weight_decay_mode"] == "decoupled" and opt["name"] == "sgd":
        raise SpecError(f"{where}: optimizer.weight_decay_mode=decoupled needs adam or adamw "
                        "(torch SGD's weight decay is coupled)")


def check_evaluation(where: str, evaluation: Mapping[str, Any]) -> None:
    schema.check_section(where, "evaluation", schema.EVALUATION, evaluation)


def validate_suite(suite: SuiteSpec, where: str) -> SuiteSpec:
    """Every value of a parsed suite against its domain (the suite's own and, under
    'paper-recipe', each row's recipe laid over it); returns ``suite`` or raises SpecError
    naming the file, row and key. Reads no data, creates nothing."""
    check_finite({"dataset": suite.dataset, "backbone": suite.backbone, "budget": suite.budget,
                  "optimizer": suite.optimizer, "evaluation": suite.evaluation}, where)
    from bench.spec.listing import resolve_choices
    from bench.spec.weights import resolve_normalize

    resolve_choices()  # the choice lists read from source: augment, optim, metrics not imported (torch)

    if suite.budget.get("normalize") in ("weights", "none", "imagenet"):  # normalisation from the weights
        normalize = resolve_normalize(where, suite.backbone, suite.budget["normalize"])
        suite = replace(suite, budget={**suite.budget, "normalize": normalize})
    check_budget(where, suite.budget)
    check_backbone(where, suite.backbone, suite.budget["resolution"])
    check_dataset(where, suite.dataset, suite.budget["resolution"])
    if suite.dataset["name"] == "mnist-mosaic":  # its training size is known without data
        from bench.data.embedded import MosaicOptions

        n = MosaicOptions.parse(dict(suite.dataset.get("options") or {})).n_train
        n = min(n, suite.budget["train_images"] or n)
        for i, row in enumerate(suite.rows):
            bs = recipe_budget(suite, row.method)[0]["batch_size"]
            if bs > n:
                raise SpecError(f"{where}: methods[{i}] ({row.method}): budget.batch_size={bs} exceeds the "
                                f"{n} training images (dataset.options.n_train / budget.train_images)")
    check_optimizer(where, suite.optimizer)
    check_evaluation(where, suite.evaluation)
    schema.check_section(where, "resources", schema.RESOURCES, suite.resources)
    extra = sorted(set(suite.executor) - {"name"})
    if extra:
        raise SpecError(f"{where}: executor: unknown key {extra[0]!r}; known: name")
    _need_choice(where, "executor.name", suite.executor.get("name", "local"), ("local", "slurm"))
    if suite.cluster:
        from bench.spec.cluster import parse_cluster

        parse_cluster(suite.cluster, f"{where}: cluster")  # one-line BenchError (exit 2)
    for i, row in enumerate(suite.rows):
        try:
            budget, optimizer = recipe_budget(suite, row.method)
        except SpecError as err:  # e.g. decoupled decay asked of a recipe's SGD
            raise SpecError(f"{where}: methods[{i}] ({row.method} paper recipe): {err}") from None
        if suite.protocol == "paper-recipe":
            check_budget(f"{where}: methods[{i}] ({row.method} paper recipe)", budget)
            check_optimizer(f"{where}: methods[{i}] ({row.method} paper recipe)", optimizer)
        stages = method_stages(row.method)
        split = budget.get("stage_split")
        if split is not None and stages is not None and len(split) != len(stages):
            raise SpecError(f"{where}: methods[{i}] ({row.method}): budget.stage_split={list(split)} "
                            f"needs {len(stages)} entr{'y' if len(stages) == 1 else 'ies'}, one per stage "
                            f"{list(stages)}")
    return suite


def method_stages(method: str) -> tuple[str, ...] | None:
    """The training stages of a method's model, read from its builder's return annotation
    (no model is built); None when the builder does not say."""
    return method_facts.stages(method)


#: Recipe keys the suite always decides: a suite is one (backbone, resolution) configuration.
#: They are listed in ``budget.recipe_suite_decides``, not among the keys not applied.
SUITE_DECIDES = ("backbone", "resolution", "large")
#: Recipe keys the method's model applies itself (ProbMCL's two contrastive views).
MODEL_APPLIES = ("views",)


def effective_optimizer(name: str, mode: str | None) -> tuple[str, str]:
    """(optimizer name, weight-decay mode) after ``weight_decay_mode``: coupled is torch Adam/SGD
    (L2 on the weights only, see bench.train.optim.param_groups), decoupled is torch AdamW."""
    if mode is None:
        return name, "decoupled" if name == "adamw" else "coupled"
    if mode == "decoupled":
        if name == "sgd":
            raise SpecError("optimizer.weight_decay_mode=decoupled needs adam or adamw, not sgd")
        return "adamw", mode
    return ("adam" if name == "adamw" else name), mode


def recipe_budget(suite: SuiteSpec, method: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(budget, optimizer) of a job: the suite's, or under 'paper-recipe' the method's recipe
    laid over the suite's. Keys the suite decides (SUITE_DECIDES) and keys the runner cannot
    apply are listed in ``budget['recipe_not_applied']`` (empty for every registered method: a
    test holds it so); ``stage_recipe`` (IML-GCN's stage 1 = ASL's recipe) becomes
    ``budget['stage_recipe']`` for the runner (``bench.run.runner.stage_recipe``).
    The optimiser's name and ``weight_decay_mode`` come out resolved (effective_optimizer)."""
    budget, optimizer = dict(suite.budget), dict(suite.optimizer)
    if suite.protocol == "paper-recipe":
        not_applied, decided = [], []
        for key, value in method_facts.recipe(method).items():
            if key in SUITE_DECIDES:
                decided.append(key)
            elif key in MODEL_APPLIES:
                continue
            elif key == "stage_recipe":
                budget["stage_recipe"] = {stage: dict(v) for stage, v in value.items()}
            elif key == "optimizer":
                optimizer["name"] = value
            elif key == "true_weight_decay":
                # The papers' text ("true weight decay") reads as decoupled; the official ASL and
                # KMCL code is Adam + coupled L2 on the weights (add_weight_decay), the default
                # here. The text's reading stays reachable: optimizer.weight_decay_mode: decoupled.
                continue
            elif key == "stage_epochs":
                budget["stage_split"] = list(value.values())
            elif key in optimizer:
                optimizer[key] = value
            elif key in budget:
                budget[key] = value
            else:
                not_applied.append(key)
        budget["recipe_not_applied"] = sorted(not_applied)
        budget["recipe_suite_decides"] = sorted(decided)
        if optimizer["name"] == "sgd" and optimizer.get("weight_decay_mode") == "decoupled":
            optimizer["weight_decay_mode"] = None  # SGD recipes (CSRA, ML-GCN) stay coupled
    optimizer["name"], optimizer["weight_decay_mode"] = effective_optimizer(
        optimizer["name"], optimizer.get("weight_decay_mode"))
    from bench.spec.protocol import contrastive_stage

    return contrastive_stage(budget, suite.protocol, method, method_stages(method)), optimizer


def weights_identity(backbone: Mapping[str, Any], where: str = "suite",
                     missing_ok: bool = False) -> Mapping[str, Any]:
    """The backbone block with the weights file's sha256 in its options, so the job id changes
    when the weights do: the registry's fixed sha256 for ``weights: imagenet``, the file's own
    for a local path (checked again when the weights load). ``in-domain`` weights are identified
    by their recipe in the code fingerprint (bench/run/pretrain.py). ``weights: imagenet`` of a
    timm backbone (bench.spec.weights.REGISTRY) resolves to the cached hub file, its sha256, tag
    and source; ``weights: none`` is removed (from scratch)."""
    options = dict(backbone.get("options") or {})
    weights = options.get("weights") or options.get("pretrained_path")
    from bench.spec.weights import REGISTRY, resolve_backbone

    if weights in ("imagenet", "none") and (weights == "none" or backbone["name"] in REGISTRY):
        return resolve_backbone(backbone, where, missing_ok)  # the timm hub file in the local cache (or none)
    if not weights or weights == "in-domain" or options.get("weights_sha256"):
        return backbone
    from methods.backbones import NAMED_WEIGHTS, file_sha256

    if weights == "imagenet":
        options["weights_sha256"] = NAMED_WEIGHTS[backbone["name"]]["sha256"]
    elif Path(str(weights)).is_file():
        options["weights_sha256"] = file_sha256(str(weights))
    return {**backbone, "options": options}


def expand_jobs(suite: SuiteSpec, seeds: tuple[int, ...] | None = None,
                data_root: str | None = None, missing_weights_ok: bool = False) -> list[JobSpec]:
    """One JobSpec per (row, seed), rows in suite order, seeds inner. ``missing_weights_ok``
    (--dry-run): weights absent from the local cache are marked, not an error."""
    jobs = []
    backbone = weights_identity(suite.backbone, suite.source or suite.name, missing_weights_ok)
    for row in suite.rows:
        budget, optimizer = recipe_budget(suite, row.method)
        for seed in seeds or suite.seeds:
            jobs.append(JobSpec(
                method=row.method, hparams=dict(row.hparams), dataset=suite.dataset,
                backbone=backbone, budget=budget, optimizer=optimizer,
                protocol=suite.protocol, evaluation=suite.evaluation, seed=int(seed),
                label=row.label or row.method, suite=suite.name, data_root=data_root,
                resources=suite.job_resources,
            ))
    return jobs
