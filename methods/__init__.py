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


_loaded = False


def _load() -> None:
    """Import every method module once (a direct import of one module registers only it)."""
    global _loaded
    if not _loaded:
        for module in _MODULES:
            importlib.import_module(f"methods.{module}")
        _loaded = True


def get(name: str) -> MethodSpec:
    """The registered method ``name``; a clear error naming the known ones otherwise."""
    _load()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise HparamError(f"unknown method {name!r}; known: {', '.join(names())}") from None


def names() -> list[str]:
    """Registered method names in ``_MODULES`` order (stable, whatever was imported first)."""
    _load()
    rank = {m: i for i, m in enumerate(_MODULES)}
    return sorted(_REGISTRY, key=lambda n: (rank.get(n, len(rank)), n))


__all__ = ["register", "get", "names", "MethodSpec", "HparamError"]
