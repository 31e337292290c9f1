"""sweeps/<name>.yaml -> SuiteSpec -> list[JobSpec], validated against the registries.

A suite fixes everything that must be identical across methods (data, backbone,
budget, optimiser of the equal-budget protocol, evaluator, seeds) and lists
method rows; a row brings only its method name, hyperparameter overrides and a
label. Every key is checked: a misspelt key is an error naming the file and key,
and every value against its domain (``validate_suite``), at load, before any job
folder exists. A suite's ``name:`` is its file name's stem (or absent).
``--set KEY=VALUE`` (``apply_sets``) changes a loaded file like an edit would.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import importlib
import math
import re

import yaml

from bench.errors import SpecError  # noqa: F401  (re-exported: bench.spec.suites.SpecError)

import methods
from bench.spec.jobs import JobSpec
from bench.train.settings import RUNTIME_DEFAULTS

SUITES_DIR = Path(__file__).resolve().parents[2] / "sweeps"

PROTOCOLS = ("equal-budget", "paper-recipe")

#: The one place the budget's and optimiser's defaults are declared.
BUDGET_DEFAULTS: dict[str, Any] = {
    "epochs": 6, "batch_size": 64, "resolution": 48, "train_images": None,
    "augmentation": "shift", "normalize": "none", "eval_batch_size": 256,
    "stage_split": None,  # None: each two-stage method's own default split
    # A contrastive stage under equal budget (bench.spec.protocol): "method" = its method's own
    # recipe for that stage (ProbMCL: RandAugment views, one lr for the whole network, as the
    # paper); "shared" = the suite's augmentation and backbone_lr_scale there too (before #20).
    "contrastive_recipe": "method",
    **RUNTIME_DEFAULTS,  # precision, ema, accumulate, workers, ... (bench/train/settings.py)
}
OPTIMIZER_DEFAULTS: dict[str, Any] = {
    "name": "adamw", "lr": 2e-3, "weight_decay": 1e-4, "schedule": "onecycle",
    "pct_start": 0.2, "momentum": 0.9, "grad_clip": None, "warmup_epochs": 0,
    "step_epochs": None, "step_gamma": 0.1,
    # lr of the backbone's parameters = lr x this, under both protocols (a head-only model has no
    # backbone group); 1.0: one lr for all. Fine-tuning as the papers (CSRA, ML-GCN): 0.1.
    "backbone_lr_scale": 1.0,
    "planned_epochs": None,  # schedule planned over more epochs than trained (ASL: 80, stopped at 40)
    # How weight_decay acts (null: the optimiser's own -- adam and sgd coupled, adamw decoupled).
    # coupled: L2 added to the gradient (torch Adam/SGD weight_decay), on weights only (ndim > 1:
    #   no decay on biases and norm parameters) -- the official ASL and KMCL code (add_weight_decay,
    #   Adam, 1e-4), and the paper-recipe protocol's default.
    # decoupled: AdamW, p <- p * (1 - lr * wd). Honest note: at the papers' lr 1e-4 and wd 1e-4,
    #   1 - 1e-8 rounds to 1.0 in float32 (below 2**-25), so this decay does NOTHING; it acts only
    #   where lr * wd >= ~3e-8 (e.g. wd 1e-2, AdamW's usual value). No decoupled SGD exists here:
    #   under paper-recipe the SGD recipes (CSRA, ML-GCN) stay coupled (their records say so).
    "weight_decay_mode": None,
}
WEIGHT_DECAY_MODES = (None, "coupled", "decoupled")
EVALUATION_DEFAULTS: dict[str, Any] = {
    "convention": "paper", "trick_lambdas": [0.02, 0.05, 0.1, 0.2, 0.5, 1.0],
}
TOP_KEYS = {"name", "description", "dataset", "backbone", "budget", "optimizer", "protocol",
            "evaluation", "seeds", "methods", "executor", "cluster", "notes"}


class SpecLoader(yaml.SafeLoader):
    """YAML as PyYAML reads it, except that ``1e-3`` is a float (YAML 1.2), not the string
    PyYAML's 1.1 rules make of it -- in suite files and ``--set`` values alike."""


SpecLoader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"""^(?:
    [-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
   |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
   |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
   |[-+]?\.(?:inf|Inf|INF)
   |\.(?:nan|NaN|NAN))$""", re.X), list("-+0123456789."))


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=SpecLoader)  # noqa: S506 -- a SafeLoader subclass


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


def load_suite(name_or_path: str, sets: Sequence[str] = ()) -> SuiteSpec:
    """Parse and validate a suite by name (sweeps/<name>.yaml) or path; ``sets`` are
    ``--set KEY=VALUE`` overrides applied to the file's contents before validation."""
    path = Path(name_or_path)
    if not path.suffix:
        path = SUITES_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise SpecError(f"unknown suite {name_or_path!r}; known: {', '.join(suite_names())}")
    raw, where = read_spec_file(path, sets)
    return parse_suite(raw, where)


def read_spec_file(path: Path, sets: Sequence[str] = ()) -> tuple[dict[str, Any], str]:
    """(raw mapping, where) of a suite or sweep file: YAML parsed, ``--set`` overrides applied,
    ``name`` checked against the file name (filled in when absent). ``where`` names the file
    and the overrides, so every later error says where its value came from."""
    try:
        raw = load_yaml(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise SpecError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: expected a mapping at the top level")
    where = str(path) + (f" with --set {' --set '.join(sets)}" if sets else "")
    raw = apply_sets(raw, sets, where)
    return check_file_name(raw, path, where), where


def check_file_name(raw: dict[str, Any], path: Path, where: str | None = None) -> dict[str, Any]:
    """A suite's (or sweep's) ``name`` must equal its file name's stem: results go to
    results/<name>/, so a renamed copy keeping the old name would mix its jobs with the
    original's. An absent name is the stem."""
    if raw.get("name") is None:
        return {**raw, "name": path.stem}
    if str(raw["name"]) != path.stem:
        raise SpecError(f"{where or path}: name {raw['name']!r} differs from the file name "
                        f"{path.stem!r} (results go to results/<name>/); set name: {path.stem} "
                        "or remove the name: line")
    return raw


_INDEX = re.compile(r"\[(\d+)\]")


def apply_sets(raw: dict[str, Any], sets: Sequence[str], where: str = "--set") -> dict[str, Any]:
    """``--set KEY=VALUE`` overrides: KEY is dotted into the file (``budget.epochs``,
    ``dataset.options.n_train``, ``methods.2.hparams.tau`` or ``methods[2].hparams.tau``, a row
    also by its label or method name: ``methods.csra.hparams.lam``); VALUE is parsed as YAML
    (``3``, ``1e-3``, ``null``, ``[0, 1]``). The result is validated like the file itself."""
    import copy

    raw = copy.deepcopy(raw)
    for item in sets:
        key, eq, text = item.partition("=")
        key = _INDEX.sub(r".\1", key.strip())
        parts = [p for p in key.split(".")]
        if not eq or not key or "" in parts:
            raise SpecError(f"{where}: --set {item!r}: expected KEY=VALUE, e.g. budget.epochs=3")
        try:
            value = load_yaml(text)
        except yaml.YAMLError as err:
            raise SpecError(f"{where}: --set {item!r}: value is not valid YAML "
                            f"({str(err).splitlines()[0]})") from None
        node: Any = raw
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            here = ".".join(parts[:depth + 1])
            if isinstance(node, list):
                index = _row_index(node, part, where, item)
                if last:
                    node[index] = value
                    break
                child = node[index]
                if isinstance(child, str):  # a bare row name: "baseline" -> {method: baseline}
                    child = node[index] = {"method" if parts[0] == "methods" else "name": child}
            elif isinstance(node, dict):
                if last:
                    node[part] = value
                    break
                child = node.get(part)
                if child is None:
                    child = node[part] = {}
                elif isinstance(child, str) and part in ("dataset", "backbone"):
                    child = node[part] = {"name": child}  # a bare name: {name, options}
            else:
                raise SpecError(f"{where}: --set {item!r}: {'.'.join(parts[:depth])} is a "
                                f"{type(node).__name__}, it has no key {part!r}")
            if not isinstance(child, (dict, list)):
                raise SpecError(f"{where}: --set {item!r}: {here}={child!r} is not a mapping or list")
            node = child
    return raw


def _row_index(rows: list, part: str, where: str, item: str) -> int:
    if part.lstrip("-").isdigit():
        index = int(part)
        if not -len(rows) <= index < len(rows):
            raise SpecError(f"{where}: --set {item!r}: index {index} is out of range ({len(rows)} entries)")
        return index
    names = [r if isinstance(r, str) else str(r.get("label") or r.get("method") or "")
             if isinstance(r, dict) else "" for r in rows]
    hits = [i for i, n in enumerate(names) if n == part]
    if not hits:
        hits = [i for i, r in enumerate(rows) if isinstance(r, dict) and str(r.get("method")) == part]
    if len(hits) != 1:
        raise SpecError(f"{where}: --set {item!r}: {part!r} matches {len(hits)} entries; give an index "
                        f"(0..{len(rows) - 1}) or a unique label: {', '.join(names)}")
    return hits[0]


def parse_suite(raw: Mapping[str, Any], where: str = "<suite>") -> SuiteSpec:
    if not isinstance(raw, Mapping):
        raise SpecError(f"{where}: expected a mapping at the top level")
    check_finite(raw, where)
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
    check_seeds(seeds, where)
    if not isinstance(raw["methods"] or [], list):
        raise SpecError(f"{where}: methods must be a list of method rows")
    rows = tuple(_parse_row(f"{where}: methods[{i}]", r) for i, r in enumerate(raw["methods"] or []))
    if not rows:
        raise SpecError(f"{where}: methods is empty")
    for key in ("budget", "optimizer", "evaluation", "executor", "cluster"):
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
    )
    return validate_suite(suite, where)


def _parse_row(where: str, row: Any) -> MethodRow:
    if isinstance(row, str):
        row = {"method": row}
    if not isinstance(row, Mapping) or "method" not in row:
        raise SpecError(f"{where}: expected a method name or a mapping with 'method'")
    extra = sorted(set(row) - {"method", "hparams", "label"})
    if extra:
        raise SpecError(f"{where}: unknown key {extra[0]!r}; known: method, hparams, label")
    if row.get("hparams") is not None and not isinstance(row["hparams"], Mapping):
        raise SpecError(f"{where}: hparams must be a mapping of name: value, not {row['hparams']!r}")
    spec = methods.get(str(row["method"]))
    try:
        hparams = spec.resolve(row.get("hparams"))
    except ValueError as err:
        raise SpecError(f"{where} ({spec.name}): {err}") from None
    return MethodRow(spec.name, hparams, str(row.get("label", "")))


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


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _need_int(where: str, key: str, v: Any, low: int, *, none_ok: bool = False) -> None:
    if v is None and none_ok:
        return
    if not _is_int(v) or v < low:
        raise SpecError(f"{where}: {key}={v!r} must be an integer >= {low}" + (" or null" if none_ok else ""))


def _need_num(where: str, key: str, v: Any, low: float | None = None, high: float | None = None, *,
              low_open: bool = False, high_open: bool = False, none_ok: bool = False) -> None:
    if v is None and none_ok:
        return
    ok = _is_num(v)
    if ok and low is not None:
        ok = v > low if low_open else v >= low
    if ok and high is not None:
        ok = v < high if high_open else v <= high
    if not ok:
        lo = "" if low is None else ("(" if low_open else "[") + f"{low}, "
        hi = "" if high is None else f"{high}" + (")" if high_open else "]")
        domain = f"in {lo}{hi}" if low is not None and high is not None else (
            f"{'>' if low_open else '>='} {low}" if low is not None else f"{'<' if high_open else '<='} {high}")
        raise SpecError(f"{where}: {key}={v!r} must be a finite number {domain}"
                        + (" or null" if none_ok else ""))


def _need_choice(where: str, key: str, v: Any, allowed: Sequence[Any]) -> None:
    if v not in allowed or isinstance(v, bool):
        shown = ", ".join("null" if a is None else str(a) for a in allowed)
        raise SpecError(f"{where}: {key}={v!r} must be one of {shown}")


def min_resolution(backbone: str) -> int:
    """Smallest input side a backbone takes: smallcnn (total stride 8) 16 px, timm models 32."""
    return 16 if backbone == "smallcnn" else 32


def check_backbone(where: str, backbone: Mapping[str, Any], resolution: Any) -> None:
    name, options = backbone["name"], dict(backbone.get("options") or {})
    if "pretrained_path" in options and not isinstance(options["pretrained_path"], str):
        raise SpecError(f"{where}: backbone.options.pretrained_path={options['pretrained_path']!r} "
                        "must be a file path")
    from methods import backbones

    NAMED_WEIGHTS = getattr(backbones, "NAMED_WEIGHTS", {})  # noqa: N806
    WEIGHT_OPTIONS = getattr(backbones, "WEIGHT_OPTIONS", ("pretrained_path",))  # noqa: N806

    weights = options.get("weights")
    if weights is not None and not isinstance(weights, str):
        raise SpecError(f"{where}: backbone.options.weights={weights!r} must be imagenet, in-domain or a file path")
    from bench.spec.weights import REGISTRY, check_declared

    if weights == "imagenet" and name not in NAMED_WEIGHTS and name not in REGISTRY:
        raise SpecError(f"{where}: backbone.options.weights=imagenet: no ImageNet weights known for {name!r} "
                        f"(known: {', '.join([*NAMED_WEIGHTS, *REGISTRY])}); give a local file path instead")
    if weights == "none" and name == "smallcnn":
        raise SpecError(f"{where}: backbone.options.weights=none is for timm backbones; smallcnn without "
                        "weights: remove the key")
    if weights == "in-domain" and name != "smallcnn":
        raise SpecError(f"{where}: backbone.options.weights=in-domain is made for smallcnn only, not {name!r}")
    if name == "smallcnn":
        extra = sorted(set(options) - {"widths", *WEIGHT_OPTIONS})
        if extra:
            raise SpecError(f"{where}: backbone 'smallcnn' has no option {extra[0]!r}; known: "
                            f"{', '.join(sorted({'widths', *WEIGHT_OPTIONS}))}")
        widths = options.get("widths", [24, 48, 96, 192])
        if (not isinstance(widths, (list, tuple)) or len(widths) != 4
                or not all(_is_int(w) and w >= 1 for w in widths)):
            raise SpecError(f"{where}: backbone.options.widths={widths!r} must be 4 positive integers")
    else:
        import timm

        if not timm.is_model(name):
            raise SpecError(f"{where}: unknown backbone {name!r}: neither 'smallcnn' nor a timm model "
                            "name (timm.list_models() lists them)")
    check_declared(where, name, options)  # a timm backbone says imagenet, a file, or none
    low = min_resolution(name)
    if not _is_int(resolution) or resolution < low:
        raise SpecError(f"{where}: budget.resolution={resolution!r} must be an integer >= {low} "
                        f"for backbone {name!r}")
    if name.startswith("tresnet") and resolution % 4:
        raise SpecError(f"{where}: budget.resolution={resolution} must be a multiple of 4 for backbone "
                        f"{name!r} (its space-to-depth stem)")


def check_dataset(where: str, dataset: Mapping[str, Any], resolution: Any) -> None:
    """Name and options of the dataset, checked without reading any data."""
    from bench import data as datasets
    from bench.data.base import DataError

    name, options = dataset["name"], dict(dataset.get("options") or {})
    if name not in datasets.names():
        raise SpecError(f"{where}: unknown dataset {name!r}; known: {', '.join(datasets.names())}")
    try:
        if name == "mnist-mosaic":
            from bench.data.embedded import MosaicOptions

            MosaicOptions.parse(options)
            if _is_int(resolution) and not 16 <= resolution <= 512:
                raise SpecError(f"{where}: budget.resolution={resolution} must be in [16, 512] for "
                                "dataset 'mnist-mosaic'")
            return
        from bench.data.cache import resolve_options

        module = importlib.import_module(f"bench.data.{ {'coco2014': 'coco', 'voc2007': 'voc'}.get(name, name) }")
        opts = resolve_options(name, getattr(module, "DEFAULTS", {}), options)
    except DataError as err:
        raise SpecError(f"{where}: dataset.options: {err}") from None
    _need_num(where, "dataset.options.val_fraction", opts["val_fraction"], 0, 1, low_open=True, high_open=True)
    _need_int(where, "dataset.options.split_seed", opts["split_seed"], 0)
    for key in ("skip_bad_images", "labels_only"):
        if not isinstance(opts[key], bool):
            raise SpecError(f"{where}: dataset.options.{key}={opts[key]!r} must be true or false")
    choices = {"coco2014": ("class_order", ("id", "alphabetical")),
               "voc2007": ("difficult_train", ("positive", "negative", "ignore")),
               "generic": ("unknown_train", ("negative", "ignore"))}
    if name in choices:
        key, allowed = choices[name]
        _need_choice(where, f"dataset.options.{key}", opts[key], allowed)
    if name == "generic":
        _need_num(where, "dataset.options.test_fraction", opts["test_fraction"], 0, 1, low_open=True,
                  high_open=True, none_ok=True)


def check_budget(where: str, budget: Mapping[str, Any]) -> None:
    from bench.train.augment import AUGMENTATIONS, NORMALIZATIONS

    for key in ("epochs", "batch_size", "eval_batch_size"):
        _need_int(where, f"budget.{key}", budget[key], 1)
    _need_int(where, "budget.train_images", budget["train_images"], 1, none_ok=True)
    _need_choice(where, "budget.augmentation", budget["augmentation"], AUGMENTATIONS)
    _need_choice(where, "budget.normalize", budget["normalize"], NORMALIZATIONS)
    from bench.spec.protocol import CONTRASTIVE_RECIPES

    _need_choice(where, "budget.contrastive_recipe", budget.get("contrastive_recipe", "method"), CONTRASTIVE_RECIPES)
    split = budget["stage_split"]
    if split is not None and (not isinstance(split, (list, tuple)) or not split
                              or not all(_is_int(e) and e >= 0 for e in split)
                              or sum(split) != budget["epochs"]):
        raise SpecError(f"{where}: budget.stage_split={split!r} must be null or a list of epochs >= 0 "
                        f"per stage summing to budget.epochs={budget['epochs']}")
    from bench.train.settings import runtime_problem

    problem = runtime_problem(budget)
    if problem:
        key, value, allowed = problem
        raise SpecError(f"{where}: budget.{key}={value!r} must be {allowed}")


def check_optimizer(where: str, opt: Mapping[str, Any]) -> None:
    from bench.train.optim import OPTIMIZERS, SCHEDULES

    _need_choice(where, "optimizer.name", opt["name"], OPTIMIZERS)
    _need_num(where, "optimizer.lr", opt["lr"], 0, low_open=True)
    _need_num(where, "optimizer.weight_decay", opt["weight_decay"], 0)
    _need_choice(where, "optimizer.schedule", opt["schedule"], SCHEDULES)
    _need_num(where, "optimizer.pct_start", opt["pct_start"], 0, 1, low_open=True, high_open=True)
    _need_num(where, "optimizer.momentum", opt["momentum"], 0, 1, high_open=True)
    _need_num(where, "optimizer.grad_clip", opt["grad_clip"], 0, low_open=True, none_ok=True)
    _need_int(where, "optimizer.warmup_epochs", opt["warmup_epochs"], 0)
    _need_int(where, "optimizer.step_epochs", opt["step_epochs"], 1, none_ok=True)
    _need_num(where, "optimizer.step_gamma", opt["step_gamma"], 0, 1, low_open=True)
    _need_num(where, "optimizer.backbone_lr_scale", opt["backbone_lr_scale"], 0, 1, low_open=True)
    _need_int(where, "optimizer.planned_epochs", opt["planned_epochs"], 1, none_ok=True)
    _need_choice(where, "optimizer.weight_decay_mode", opt["weight_decay_mode"], WEIGHT_DECAY_MODES)
    if opt["weight_decay_mode"] == "decoupled" and opt["name"] == "sgd":
        raise SpecError(f"{where}: optimizer.weight_decay_mode=decoupled needs adam or adamw "
                        "(torch SGD's weight decay is coupled)")


def check_evaluation(where: str, evaluation: Mapping[str, Any]) -> None:
    from bench.evaluate.metrics import CONVENTIONS

    _need_choice(where, "evaluation.convention", evaluation["convention"], tuple(CONVENTIONS))
    lambdas = evaluation["trick_lambdas"]
    if not isinstance(lambdas, (list, tuple)) or not lambdas or not all(_is_num(x) and x >= 0 for x in lambdas):
        raise SpecError(f"{where}: evaluation.trick_lambdas={lambdas!r} must be a non-empty list of "
                        "finite numbers >= 0")


def validate_suite(suite: SuiteSpec, where: str) -> SuiteSpec:
    """Every value of a parsed suite against its domain (the suite's own and, under
    'paper-recipe', each row's recipe laid over it); returns ``suite`` or raises SpecError
    naming the file, row and key. Reads no data, creates nothing."""
    check_finite({"dataset": suite.dataset, "backbone": suite.backbone, "budget": suite.budget,
                  "optimizer": suite.optimizer, "evaluation": suite.evaluation}, where)
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
    import typing

    try:
        model_cls = typing.get_type_hints(methods.get(method).build).get("return")
        return tuple(model_cls.stages)
    except Exception:  # noqa: BLE001 -- an unannotated builder: the runner checks at run time
        return None


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
        for key, value in methods.get(method).recipe.items():
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


def weights_identity(backbone: Mapping[str, Any], where: str = "suite") -> Mapping[str, Any]:
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
        return resolve_backbone(backbone, where)  # the timm hub file in the local cache (or none)
    if not weights or weights == "in-domain" or options.get("weights_sha256"):
        return backbone
    from methods.backbones import NAMED_WEIGHTS, file_sha256

    if weights == "imagenet":
        options["weights_sha256"] = NAMED_WEIGHTS[backbone["name"]]["sha256"]
    elif Path(str(weights)).is_file():
        options["weights_sha256"] = file_sha256(str(weights))
    return {**backbone, "options": options}


def expand_jobs(suite: SuiteSpec, seeds: tuple[int, ...] | None = None,
                data_root: str | None = None) -> list[JobSpec]:
    """One JobSpec per (row, seed), rows in suite order, seeds inner."""
    jobs = []
    backbone = weights_identity(suite.backbone, suite.source or suite.name)
    for row in suite.rows:
        budget, optimizer = recipe_budget(suite, row.method)
        for seed in seeds or suite.seeds:
            jobs.append(JobSpec(
                method=row.method, hparams=dict(row.hparams), dataset=suite.dataset,
                backbone=backbone, budget=budget, optimizer=optimizer,
                protocol=suite.protocol, evaluation=suite.evaluation, seed=int(seed),
                label=row.label or row.method, suite=suite.name, data_root=data_root,
            ))
    return jobs
