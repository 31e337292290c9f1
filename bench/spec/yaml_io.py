"""Reading suite and sweep files: YAML (1.2 floats, duplicate keys refused, errors with line and
column), ``--set KEY=VALUE`` overrides, the file-name rule, and the variant name of a run with
overrides (results/<suite>+<hash>/: a ``--set`` run never mixes with the suite's own records)."""
from __future__ import annotations

import copy
import hashlib
import re
from pathlib import Path
from typing import Any, Sequence

import yaml

from bench.errors import SpecError


class DuplicateKeyError(yaml.MarkedYAMLError):
    """A mapping names one key twice (``budget:`` written twice): the last would silently win."""


class SpecLoader(yaml.SafeLoader):
    """YAML as PyYAML reads it, except that ``1e-3`` is a float (YAML 1.2), not the string
    PyYAML's 1.1 rules make of it -- in suite files and ``--set`` values alike -- and that a key
    given twice in one mapping is an error."""

    def construct_mapping(self, node, deep=False):  # noqa: ANN001 -- PyYAML's signature
        if isinstance(node, yaml.MappingNode):
            self.flatten_mapping(node)
            seen: dict[Any, Any] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    hash(key)
                except TypeError:
                    continue
                if key in seen:
                    raise DuplicateKeyError(None, None, f"key {key!r} given twice (first at line "
                                            f"{seen[key].line + 1})", key_node.start_mark)
                seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep)


SpecLoader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"""^(?:
    [-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
   |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
   |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
   |[-+]?\.(?:inf|Inf|INF)
   |\.(?:nan|NaN|NAN))$""", re.X), list("-+0123456789."))


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=SpecLoader)  # noqa: S506 -- a SafeLoader subclass


def yaml_error_text(err: yaml.YAMLError) -> str:
    """'line L, column C: problem' of a YAML error (the first line of PyYAML's text otherwise)."""
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    if mark is None:
        return problem
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"


def read_yaml_file(path: Path) -> Any:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise SpecError(f"{path}: cannot read ({err})") from None
    try:
        return load_yaml(text)
    except DuplicateKeyError as err:
        raise SpecError(f"{path}: {yaml_error_text(err)}; keep one (the file would otherwise "
                        "silently use the last)") from None
    except yaml.YAMLError as err:
        raise SpecError(f"{path}: not valid YAML at {yaml_error_text(err)}") from None


def read_spec_file(path: Path, sets: Sequence[str] = ()) -> tuple[dict[str, Any], str]:
    """(raw mapping, where) of a suite or sweep file: YAML parsed, ``--set`` overrides applied,
    ``name`` checked against the file name (filled in when absent). ``where`` names the file
    and the overrides, so every later error says where its value came from."""
    raw = read_yaml_file(path) or {}
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


VARIANT_SEP = "+"


def variant_name(name: str, sets: Sequence[str]) -> str:
    """The results folder of a run with ``--set`` overrides: ``<name>+<8 hex of the overrides>``
    (the overrides sorted and stripped, so their order does not matter); ``name`` without any."""
    if not sets:
        return name
    text = "\n".join(sorted(s.strip() for s in sets))
    return f"{name}{VARIANT_SEP}{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def base_name(name: str) -> str:
    return name.split(VARIANT_SEP, 1)[0]


_INDEX = re.compile(r"\[(\d+)\]")


def apply_sets(raw: dict[str, Any], sets: Sequence[str], where: str = "--set") -> dict[str, Any]:
    """``--set KEY=VALUE`` overrides: KEY is dotted into the file (``budget.epochs``,
    ``dataset.options.n_train``, ``methods.2.hparams.tau`` or ``methods[2].hparams.tau``, a row
    also by its label or method name: ``methods.csra.hparams.lam``); VALUE is parsed as YAML
    (``3``, ``1e-3``, ``null``, ``[0, 1]``). The result is validated like the file itself."""
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
