"""`bench list [suites|sweeps|methods|datasets|keys]`: what can be run and every knob it has,
read from the registries and the schema (bench/spec/schema.py); ``keys --format md`` is
docs/suite-keys.md."""
from __future__ import annotations

import argparse
import dataclasses
import importlib
from typing import Any

import yaml

import methods
from bench.spec import schema


def _description(name: str) -> str:
    from bench.spec.suites import SUITES_DIR

    try:
        raw = yaml.safe_load((SUITES_DIR / f"{name}.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return ""
    return " ".join(str(raw.get("description") or "").split())[:100]


def _value(v: Any) -> str:
    return "null" if v is None else str(v).lower() if isinstance(v, bool) else str(v)


def dataset_options(name: str) -> dict[str, Any]:
    """The options of dataset ``name`` with their defaults (no data read)."""
    if name == "mnist-mosaic":
        from bench.data.embedded import MosaicOptions

        return {f.name: f.default for f in dataclasses.fields(MosaicOptions)}
    from bench.data.cache import COMMON_DEFAULTS

    module = importlib.import_module(f"bench.data.{ {'coco2014': 'coco', 'voc2007': 'voc'}.get(name, name) }")
    return {**COMMON_DEFAULTS, **getattr(module, "DEFAULTS", {})}


def lines(what: str) -> list[str]:
    from bench import data as datasets
    from bench.spec.suites import suite_names
    from bench.spec.sweeps import sweep_names

    out: list[str] = []
    if what in ("all", "suites"):
        out += ["suites (bench run --suite NAME):"]
        out += [f"  {n:<30} {_description(n)}" for n in suite_names()]
    if what in ("all", "sweeps"):
        out += ["sweeps (bench sweep NAME):"]
        out += [f"  {n:<30} {_description(n)}" for n in sweep_names()]
    if what in ("all", "methods"):
        out += ["methods (rows: {method: NAME, hparams: {...}}; defaults are the papers'):"]
        for n in methods.names():
            spec = methods.get(n)
            out.append(f"  {n:<10} {spec.paper}: {spec.summary}")
            out += [f"      {k} = {_value(v)}" + ("   (searchable)" if k in spec.search_space else "")
                    for k, v in spec.defaults.items()]
    if what in ("all", "datasets"):
        out += ["datasets (dataset: {name: NAME, options: {...}}):"]
        for n in datasets.names():
            opts = ", ".join(f"{k}={_value(v)}" for k, v in dataset_options(n).items())
            out.append(f"  {n:<14} {opts}")
    if what in ("all", "keys"):
        out += ["suite keys (docs/suite-keys.md):"]
        for section, keys in schema.SECTIONS.items():
            out.append(f"  {section}:")
            out += [f"    {k.name:<20} {_value(k.default):<14} {k.domain.text.replace('{epochs}', 'epochs')}"
                    f"{' -- ' + k.doc if k.doc else ''}" for k in keys]
    return out


def main(args: argparse.Namespace) -> int:
    if args.format == "md":
        print(schema.keys_markdown())
    else:
        print("\n".join(lines(args.what)))
    return 0
