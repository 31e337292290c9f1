"""Sweep specs: sweeps/<name>.yaml -> SweepSpec -> list[JobSpec].

A sweep varies hyperparameters of chosen methods over seeds ON TOP OF a base
suite, which fixes everything else (dataset, backbone, budget, optimiser,
protocol, evaluation)::

    name: ablation-probmcl-tau
    suite: default                # base suite (sweeps/default.yaml) or a YAML path
    seeds: [0, 1, 2]              # optional; the base suite's seeds otherwise
    budget: {epochs: 2}           # optional partial overrides of the base suite's
    cluster: {time_min: 30}       # optional, for the slurm executor
    search:
      - method: probmcl
        hparams: {overlap: jaccard}                # fixed for this entry
        grid: {tau: [0.05, 0.1, 0.2, 0.5, 1.0]}    # Cartesian product of the lists
      - method: csra
        random: {trials: 8, hparams: [lam, num_heads], seed: 0}

``random`` draws trial t with ``MethodSpec.sample(seed + t, names)``: each
hyperparameter from its own generator seeded by (trial seed, name), DomainBed
style, so adding a name to the search does not change the others' draws. Jobs
get ``suite = <sweep name>``, so records go to ``<results>/<sweep name>/``.
Sweep files use ``search:`` (not ``methods:``), so ``bench run`` never takes one
for a suite.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

import methods
from bench.spec.jobs import JobSpec
from bench.spec.schema import did_you_mean
from bench.spec.suites import (BUDGET_DEFAULTS, EVALUATION_DEFAULTS, OPTIMIZER_DEFAULTS, SUITES_DIR,
                               SpecError, SuiteSpec, _merge, _named, check_finite, check_seeds, load_suite,
                               read_spec_file, recipe_budget, spec_path, validate_suite, variant_name,
                               weights_identity)

TOP_KEYS = {"name", "description", "suite", "seeds", "search", "dataset", "backbone", "budget",
            "optimizer", "evaluation", "executor", "cluster", "resources", "notes"}
ENTRY_KEYS = {"method", "hparams", "grid", "random", "label", "budget"}
RANDOM_KEYS = {"trials", "hparams", "seed"}


@dataclass(frozen=True)
class SearchEntry:
    """One method's part of a sweep: the concrete hyperparameter sets it expands to."""

    method: str
    hparam_sets: tuple[Mapping[str, Any], ...]  # each fully resolved (defaults + overrides)
    varied: tuple[str, ...]  # names that vary (for labels)
    label: str = ""  # format string over the varied names, e.g. "tau={tau}"
    budget: Mapping[str, Any] = field(default_factory=dict)  # this entry's budget overrides


@dataclass(frozen=True)
class SweepSpec:
    name: str
    description: str
    base: SuiteSpec  # the base suite with the sweep's overrides applied
    entries: tuple[SearchEntry, ...]
    seeds: tuple[int, ...]
    executor: Mapping[str, Any] = field(default_factory=dict)
    cluster: Mapping[str, Any] = field(default_factory=dict)
    source: str = ""
    overrides: tuple[str, ...] = ()  # the --set items of a variant run (name: <sweep>+<hash>)


def sweep_names() -> list[str]:
    """Names of the sweep files in sweeps/ (those with a ``search:`` key)."""
    out = []
    for path in sorted(SUITES_DIR.glob("*.yaml")):
        try:
            if "search" in (yaml.safe_load(path.read_text()) or {}):
                out.append(path.stem)
        except yaml.YAMLError:
            continue
    return out


def load_sweep(name_or_path: str, sets: Sequence[str] = ()) -> SweepSpec:
    """Parse and validate a sweep by name (sweeps/<name>.yaml) or path; ``sets``: ``--set``
    overrides of the sweep file (bench.spec.suites.apply_sets), e.g. budget.epochs=3."""
    path = spec_path(name_or_path, "sweep", sweep_names())
    raw, where = read_spec_file(path, sets)  # YAML, --set, name == file name
    sweep = parse_sweep(raw, where)
    if sets:  # a variant: its own results folder, <name>+<hash of the overrides>
        sweep = replace(sweep, name=variant_name(sweep.name, sets), overrides=tuple(sets))
    return sweep


def _base_suite(where: str, raw: Mapping[str, Any]) -> SuiteSpec:
    name = raw["suite"]
    path = Path(str(name))
    if path.suffix and not path.is_absolute():
        path = Path(where).parent / path  # a relative path is relative to the sweep file
    try:
        base = load_suite(str(path) if path.suffix else str(name))
    except SpecError as err:
        raise SpecError(f"{where}: suite: {err}") from None
    overrides: dict[str, Any] = {}
    if "dataset" in raw:
        overrides["dataset"] = _named(f"{where}: dataset", raw["dataset"])
    if "backbone" in raw:
        overrides["backbone"] = _named(f"{where}: backbone", raw["backbone"])
    for key, defaults in (("budget", BUDGET_DEFAULTS), ("optimizer", OPTIMIZER_DEFAULTS),
                          ("evaluation", EVALUATION_DEFAULTS), ("resources", base.resources)):
        if key in raw:
            _merge(f"{where}: {key}", defaults, raw[key])  # key check only
            overrides[key] = {**getattr(base, key), **dict(raw[key] or {})}
    return validate_suite(replace(base, **overrides), where)  # the sweep's values too


def parse_sweep(raw: Mapping[str, Any], where: str = "<sweep>") -> SweepSpec:
    if not isinstance(raw, Mapping):
        raise SpecError(f"{where}: expected a mapping at the top level")
    check_finite(raw, where)  # .nan / .inf anywhere, naming the key
    unknown = sorted(set(raw) - TOP_KEYS)
    if unknown:
        raise SpecError(f"{where}: unknown key {unknown[0]!r}{did_you_mean(unknown[0], sorted(TOP_KEYS))}; "
                        f"known: {', '.join(sorted(TOP_KEYS))}")
    for key in ("name", "suite", "search"):
        if key not in raw:
            raise SpecError(f"{where}: missing key {key!r}")
    base = _base_suite(where, raw)
    seeds = raw.get("seeds", list(base.seeds))
    check_seeds(seeds, where)
    search = raw["search"]
    if not isinstance(search, list) or not search:
        raise SpecError(f"{where}: search must be a non-empty list of method entries")
    entries = tuple(_parse_entry(f"{where}: search[{i}]", e) for i, e in enumerate(search))
    return SweepSpec(
        name=str(raw["name"]), description=str(raw.get("description", "")), base=base,
        entries=entries, seeds=tuple(seeds),
        executor={**base.executor, **dict(raw.get("executor") or {})},
        cluster={**base.cluster, **dict(raw.get("cluster") or {})}, source=where)


def _parse_entry(where: str, entry: Any) -> SearchEntry:
    if not isinstance(entry, Mapping) or "method" not in entry:
        raise SpecError(f"{where}: expected a mapping with 'method' (and grid/random/hparams)")
    extra = sorted(set(entry) - ENTRY_KEYS)
    if extra:
        raise SpecError(f"{where}: unknown key {extra[0]!r}{did_you_mean(extra[0], sorted(ENTRY_KEYS))}; "
                        f"known: {', '.join(sorted(ENTRY_KEYS))}")
    if "grid" in entry and "random" in entry:
        raise SpecError(f"{where}: give either 'grid' or 'random', not both")
    name = str(entry["method"])
    if name not in methods.names():
        raise SpecError(f"{where}: unknown method {name!r}{did_you_mean(name, methods.names())}; "
                        f"known: {', '.join(methods.names())}")
    spec = methods.get(name)
    fixed = dict(entry.get("hparams") or {})
    if "random" in entry:
        draws, varied = _random_draws(where, spec, entry["random"], fixed)
    else:
        draws, varied = _grid_draws(where, entry.get("grid") or {}, fixed)
    resolved = []
    for hp in draws:
        try:
            resolved.append(spec.resolve(hp))
        except ValueError as err:
            raise SpecError(f"{where}: {err}") from None
    budget = entry.get("budget") or {}
    if not isinstance(budget, Mapping):
        raise SpecError(f"{where}: budget must be a mapping of budget keys (e.g. {{epochs: 33, stage_split: [26, 7]}})")
    return SearchEntry(spec.name, tuple(resolved), varied, str(entry.get("label", "")), dict(budget))


def _grid_draws(where: str, grid: Any, fixed: dict[str, Any]) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
    if not isinstance(grid, Mapping):
        raise SpecError(f"{where}: grid must map hyperparameter names to lists of values")
    names = tuple(grid)
    for name in names:
        if not isinstance(grid[name], list) or not grid[name]:
            raise SpecError(f"{where}: grid.{name} must be a non-empty list of values")
        if name in fixed:
            raise SpecError(f"{where}: {name!r} is both fixed (hparams) and varied (grid)")
    combos = itertools.product(*(grid[n] for n in names))
    return [{**fixed, **dict(zip(names, combo))} for combo in combos], names


def _random_draws(where: str, spec: methods.MethodSpec, block: Any,
                  fixed: dict[str, Any]) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
    if not isinstance(block, Mapping):
        raise SpecError(f"{where}: random must be a mapping with trials (and hparams, seed)")
    extra = sorted(set(block) - RANDOM_KEYS)
    if extra:
        raise SpecError(f"{where}: random: unknown key {extra[0]!r}; known: {', '.join(sorted(RANDOM_KEYS))}")
    trials, seed = block.get("trials"), block.get("seed", 0)
    if not isinstance(trials, int) or trials < 1 or not isinstance(seed, int):
        raise SpecError(f"{where}: random.trials must be a positive integer and random.seed an integer")
    names = tuple(block.get("hparams") or sorted(spec.search_space))
    missing = [n for n in names if n not in spec.search_space]
    if missing:
        raise SpecError(f"{where}: method '{spec.name}' has no search space for {missing[0]!r}; "
                        f"searchable: {', '.join(sorted(spec.search_space))}")
    draws = []
    for t in range(trials):
        sampled = spec.sample(seed + t, names)
        draws.append({**{n: sampled[n] for n in names}, **fixed})
    return draws, names


def _label(entry: SearchEntry, hp: Mapping[str, Any]) -> str:
    values = {n: hp[n] for n in entry.varied}
    if entry.label:
        try:
            return entry.label.format(**values)
        except (KeyError, IndexError, ValueError) as err:
            raise SpecError(f"label {entry.label!r}: cannot format ({err})") from None
    shown = " ".join(f"{n}={_short(v)}" for n, v in values.items())
    return f"{entry.method} {shown}".strip()


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _entry_suite(base: SuiteSpec, entry: SearchEntry) -> SuiteSpec:
    """The base suite with the entry's own budget overrides (validated like the suite's)."""
    if not entry.budget:
        return base
    unknown = sorted(set(entry.budget) - set(BUDGET_DEFAULTS))
    if unknown:
        raise SpecError(f"search entry {entry.method!r}: unknown budget key {unknown[0]!r}")
    from bench.spec.suites import MethodRow

    only = (MethodRow(entry.method, dict(entry.hparam_sets[0]) if entry.hparam_sets else {}),)
    return validate_suite(replace(base, budget={**base.budget, **entry.budget}, rows=only),
                          f"search entry {entry.method!r}{' ' + entry.label if entry.label else ''}")


def expand_sweep(sweep: SweepSpec, seeds: tuple[int, ...] | None = None,
                 data_root: str | None = None, missing_weights_ok: bool = False) -> list[JobSpec]:
    """One JobSpec per (entry, hparam set, seed), in file order, seeds inner; duplicates dropped."""
    jobs: dict[str, JobSpec] = {}
    base = sweep.base
    backbone = weights_identity(base.backbone, sweep.source, missing_weights_ok)  # as a suite's jobs: same ids
    for entry in sweep.entries:
        budget, optimizer = recipe_budget(_entry_suite(base, entry), entry.method)
        for hp in entry.hparam_sets:
            label = _label(entry, hp)
            for seed in seeds or sweep.seeds:
                job = JobSpec(method=entry.method, hparams=dict(hp), dataset=base.dataset,
                              backbone=backbone, budget=budget, optimizer=optimizer,
                              protocol=base.protocol, evaluation=base.evaluation, seed=int(seed),
                              label=label, suite=sweep.name, data_root=data_root,
                              resources=base.job_resources)
                jobs.setdefault(job.job_id, job)
    return list(jobs.values())
