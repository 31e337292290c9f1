"""Method registry: name -> MethodSpec. One module per method, imported explicitly here.

A new method is one file in this folder that calls ``register(MethodSpec(...))``,
plus one line in ``_MODULES`` below, its test, and a suite entry.
"""
from __future__ import annotations

import importlib

from methods.base import HparamError, MethodSpec

_MODULES = (
    "baseline",
    "asl",
    "kmcl",
    "probmcl",
    "csra",
    "mlgcn",
    "imlgcn",
)

_REGISTRY: dict[str, MethodSpec] = {}


def register(spec: MethodSpec) -> MethodSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"method {spec.name!r} registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def _load() -> None:
    if not _REGISTRY:
        for module in _MODULES:
            importlib.import_module(f"methods.{module}")


def get(name: str) -> MethodSpec:
    """The registered method ``name``; a clear error naming the known ones otherwise."""
    _load()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise HparamError(f"unknown method {name!r}; known: {', '.join(names())}") from None


def names() -> list[str]:
    _load()
    return list(_REGISTRY)


__all__ = ["register", "get", "names", "MethodSpec", "HparamError"]
