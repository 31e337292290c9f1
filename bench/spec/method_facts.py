"""What suite loading asks of the method registry -- the names, each method's defaults, a row's
resolved hyperparameters (or its one-line error), the model's training stages and the paper
recipe -- answered without importing torch where the answer is known (issue #27: `bench status`
and `--dry-run` spent most of their time importing torch through ``methods``).

* names and defaults are read from the method modules' source (bench.spec.listing's
  ``method_catalog``, checked against the imported registry by tests/test_cli_fast.py);
* a row's hyperparameters, the stages and the recipe come from the registry itself (their
  ``validate`` functions and model classes are code, in torch modules), and are kept under
  ``$BENCH_SPEC_CACHE_DIR`` (default ``.cache/spec``), keyed by the sha256 of every ``.py`` file
  under ``methods/``, the Python and numpy versions and the question: while no method file
  changes, the next suite load asks the file, not torch. A value is stored only when its JSON
  round trip gives it back equal (a tuple would come back a list: such values are never cached),
  so a hit returns what the registry returns. ``BENCH_SPEC_CACHE=0`` turns the cache off; a
  missing, unreadable or foreign file is a miss.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.metadata as md
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Mapping

REPO = Path(__file__).resolve().parents[2]
FORMAT = 1


def cache_dir() -> Path:
    return Path(os.environ.get("BENCH_SPEC_CACHE_DIR", ".cache/spec"))


def _enabled() -> bool:
    return os.environ.get("BENCH_SPEC_CACHE", "1") not in ("0", "false", "no")


@functools.lru_cache(maxsize=1)
def _catalog() -> dict[str, dict[str, Any]]:
    from bench.spec.source_read import method_catalog

    return {entry["name"]: entry for entry in method_catalog()}


def names() -> list[str]:
    """The registered methods, in the registry's order (``methods.names()``)."""
    return list(_catalog())


def defaults(method: str) -> dict[str, Any]:
    return dict(_catalog()[method]["defaults"])


@functools.lru_cache(maxsize=1)
def code_digest() -> str:
    """sha256 over (path, bytes) of every .py file under methods/, with the Python and numpy
    versions (a validate function may compare numbers through numpy)."""
    digest = hashlib.sha256(f"{FORMAT}|{sys.version}".encode())
    try:
        digest.update(md.version("numpy").encode())
    except md.PackageNotFoundError:
        pass
    for path in sorted((REPO / "methods").rglob("*.py")):
        if "__pycache__" not in path.parts:
            digest.update(path.relative_to(REPO).as_posix().encode() + b"\0")
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _exact(value: Any) -> bool:
    """True when ``value`` comes back equal and of the same types from JSON."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and _exact(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_exact(v) for v in value)
    return value is None or isinstance(value, (str, bool, int, float))


def _cached(question: Mapping[str, Any], compute: Callable[[], Any]) -> Any:
    """The stored answer to ``question`` (JSON), else ``compute()`` (stored when exact)."""
    if not _enabled():
        return compute()
    key = hashlib.sha256(json.dumps({"code": code_digest(), **question}, sort_keys=True).encode()).hexdigest()
    path = cache_dir() / f"{key}.json"
    try:
        stored = json.loads(path.read_text())
        if stored.get("key") == key and "value" in stored:
            return stored["value"]
    except (OSError, ValueError, AttributeError):
        pass
    value = compute()
    if _exact(value):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"key": key, "value": value}, sort_keys=True))
            os.replace(tmp, path)
        except OSError:
            pass  # a read-only checkout still loads suites, uncached
    return value


def resolve(method: str, hparams: Mapping[str, Any] | None) -> dict[str, Any]:
    """``methods.get(method).resolve(hparams)``: the defaults updated with ``hparams``; a bad
    name or value raises ValueError with the registry's message."""
    overrides = dict(hparams or {})
    if not _exact(overrides):  # not a JSON question: ask the registry
        return _registry_resolve(method, overrides)

    def compute() -> dict[str, Any]:
        try:
            return {"hparams": _registry_resolve(method, overrides)}
        except ValueError as err:
            return {"error": str(err)}

    answer = _cached({"ask": "resolve", "method": method, "hparams": overrides}, compute)
    if "error" in answer:
        raise ValueError(answer["error"])
    return answer["hparams"]


def _registry_resolve(method: str, overrides: dict[str, Any]) -> dict[str, Any]:
    import methods

    return methods.get(method).resolve(overrides)


def stages(method: str) -> tuple[str, ...] | None:
    """The training stages of the method's model, from its builder's return annotation (no
    model is built); None when the builder does not say."""
    found = _cached({"ask": "stages", "method": method}, lambda: _registry_stages(method))
    return None if found is None else tuple(found)


def _registry_stages(method: str) -> list[str] | None:
    import typing

    import methods

    try:
        model_cls = typing.get_type_hints(methods.get(method).build).get("return")
        return list(model_cls.stages)
    except Exception:  # noqa: BLE001 -- an unannotated builder: the runner checks at run time
        return None


def recipe(method: str) -> dict[str, Any]:
    """The method's paper recipe (``methods.get(method).recipe``)."""
    def compute() -> dict[str, Any]:
        import methods

        return dict(methods.get(method).recipe)

    return _cached({"ask": "recipe", "method": method}, compute)


@functools.lru_cache(maxsize=1)
def backbone_weights_names() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(the backbones methods.backbones.NAMED_WEIGHTS knows, its WEIGHT_OPTIONS), read from the
    module's source (both are literals there); imported (torch) only where the source cannot say."""
    from bench.spec.source_read import source_value

    try:
        return (tuple(source_value("methods.backbones", "NAMED_WEIGHTS")),
                tuple(source_value("methods.backbones", "WEIGHT_OPTIONS")))
    except Exception:  # noqa: BLE001 -- not a plain literal any more: ask the module
        from methods import backbones

        return (tuple(getattr(backbones, "NAMED_WEIGHTS", {})),
                tuple(getattr(backbones, "WEIGHT_OPTIONS", ("pretrained_path",))))
