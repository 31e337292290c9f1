"""`bench list [suites|sweeps|methods|datasets|keys]`: what can be run and every knob it has,
read from the registries and the schema (bench/spec/schema.py); ``keys --format md`` is
docs/suite-keys.md.

It answers without importing torch: suites and sweeps are read from their YAML, and the method
registry's listing (name, paper, summary, defaults, searchable keys) is read from the method
modules' source (``method_catalog``), falling back to importing the registry (torch) only when a
module declares them in a way that is not a plain literal. tests/test_cli_fast.py checks that the
source reading equals the imported registry."""
from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib
from pathlib import Path
from typing import Any

import yaml

from bench.spec import schema
from bench.spec.source_read import _NotLiteral, method_catalog, source_value  # noqa: F401 (re-exported)

REPO = Path(__file__).resolve().parents[2]
SWEEPS_DIR = REPO / "sweeps"  # == bench.spec.suites.SUITES_DIR (that module imports torch)


def _yaml_files() -> dict[str, dict]:
    out = {}
    for path in sorted(SWEEPS_DIR.glob("*.yaml"), key=lambda p: p.stem):
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(raw, dict):
            out[path.stem] = raw
    return out


def suite_and_sweep_names() -> tuple[list[str], list[str]]:
    """(suite names, sweep names) of sweeps/*.yaml: a suite has ``methods:``, a sweep ``search:``
    (as ``bench.spec.suites.suite_names`` / ``bench.spec.sweeps.sweep_names``)."""
    files = _yaml_files()
    return ([n for n, raw in files.items() if "methods" in raw],
            [n for n, raw in files.items() if "search" in raw])


def _description(raw: dict) -> str:
    return " ".join(str(raw.get("description") or "").split())  # whole: a listing never cuts


def _sweep_scale(raw: dict) -> str:
    """What tells a sweep from its twin: the suite it runs on, its seeds and where it runs."""
    seeds = raw.get("seeds")
    where = ("runs locally" if (raw.get("executor") or {}).get("name") == "local"
             else "has a cluster block (for --executor slurm)" if raw.get("cluster") else "")
    parts = [f"on suite {raw.get('suite')}" if raw.get("suite") else "",
             f"seeds {seeds}" if seeds is not None else "", where]
    return " [" + ", ".join(p for p in parts if p) + "]"


def _value(v: Any) -> str:
    return "null" if v is None else str(v).lower() if isinstance(v, bool) else str(v)


def resolve_choices() -> None:
    """Give every suite-key Choice whose list lives beside its code (a function importing it
    from a torch module, ``bench.spec.schema``) that list, read from the source: the listing then
    needs no torch. A list that cannot be read so stays as it is (imported when shown)."""
    import inspect

    for keys in schema.SECTIONS.values():
        for key in keys:
            values = getattr(key.domain, "_values", None)
            if not callable(values):
                continue
            try:
                body = ast.parse(inspect.getsource(values)).body[0].body
                imp = next(n for n in body if isinstance(n, ast.ImportFrom))
                read = source_value(imp.module, imp.names[0].name)
                key.domain._values = _returned(body, imp.names[0].name, tuple(read))
            except (_NotLiteral, StopIteration, OSError, TypeError, SyntaxError, AttributeError):
                continue


def _returned(body: list, name: str, read: tuple) -> tuple:
    """What the choice function returns, with the imported list read from source: ``tuple(NAME)``
    or a tuple of ``*NAME`` and literals (``(*NORMALIZATIONS, "weights")``)."""
    ret = next(n for n in body if isinstance(n, ast.Return)).value
    if isinstance(ret, ast.Tuple):
        out: list = []
        for elt in ret.elts:
            if isinstance(elt, ast.Starred) and isinstance(elt.value, ast.Name) and elt.value.id == name:
                out.extend(read)
            elif isinstance(elt, ast.Constant):
                out.append(elt.value)
            else:
                raise _NotLiteral(name)
        return tuple(out)
    return read


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

    files = _yaml_files()
    suites, sweeps = suite_and_sweep_names()
    width = max(map(len, files), default=0) + 2
    out: list[str] = []
    if what in ("all", "suites"):
        out += ["suites (bench run --suite NAME):"]
        out += [f"  {n:<{width}}{_description(files[n])}" for n in suites]
    if what in ("all", "sweeps"):
        out += ["sweeps (bench sweep NAME):"]
        out += [f"  {n:<{width}}{_description(files[n])}{_sweep_scale(files[n])}" for n in sweeps]
    if what in ("all", "methods"):
        out += ["methods (rows: {method: NAME, hparams: {...}}; defaults are the papers'):"]
        for spec in method_catalog():
            out.append(f"  {spec['name']:<10} {spec['paper']}: {spec['summary']}")
            out += [f"      {k} = {_value(v)}" + ("   (searchable)" if k in spec["searchable"] else "")
                    for k, v in spec["defaults"].items()]
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
    resolve_choices()
    if args.format == "md":
        print(schema.keys_markdown())
    else:
        print("\n".join(lines(args.what)))
    return 0
