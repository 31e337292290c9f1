"""`bench cost`'s count cache: the rows :func:`bench.cost.count.measure` returned for one
configuration (and its backbone's size, for the row notes), reused while nothing they depend on has changed (issue #28: building and
tracing ResNet-101 / TResNet-L at 448 px is most of `bench cost --suite coco-tables`).

Key (sha256) over everything a row is computed from:

* the configuration: every :class:`~bench.cost.count.CostConfig` field and ``all_stages``;
* the code: the bytes of every ``.py`` file under ``methods/`` (the models, their losses and
  stages; they import nothing from ``bench``) and ``bench/cost/`` (the counting, the paper
  values a row carries);
* the libraries: torch, torchvision, timm, fvcore, numpy and Python versions.

One JSON file per key under ``$BENCH_COST_CACHE_DIR`` (default ``.cache/cost``, beside the data
cache); written atomically; a row list is stored only when its JSON round trip is exact, so a
hit returns rows equal to a recomputation. A missing, unreadable or foreign file is a miss.
``BENCH_COST_CACHE=0`` turns the cache off. Failures (error rows) are never cached.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata as md
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parent.parent.parent
CODE_DIRS = ("methods", "bench/cost")
PACKAGES = ("torch", "torchvision", "timm", "fvcore", "numpy")
FORMAT = 1


def cache_dir() -> Path:
    return Path(os.environ.get("BENCH_COST_CACHE_DIR", ".cache/cost"))


def enabled() -> bool:
    return os.environ.get("BENCH_COST_CACHE", "1") not in ("0", "false", "no")


def _version(name: str) -> str:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return "absent"


def code_digest(root: Path = REPO) -> str:
    """sha256 over (path, bytes) of every .py file under :data:`CODE_DIRS`, in path order."""
    digest = hashlib.sha256()
    for folder in CODE_DIRS:
        for path in sorted((root / folder).rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            digest.update(path.relative_to(root).as_posix().encode() + b"\0")
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def cache_key(cfg: Any, all_stages: bool, code: str | None = None) -> str:
    """The key of one configuration's rows (see the module docstring)."""
    fields = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    payload = {"format": FORMAT, "config": fields, "all_stages": bool(all_stages),
               "code": code if code is not None else code_digest(),
               "packages": {n: _version(n) for n in PACKAGES}, "python": sys.version.split()[0]}
    text = json.dumps(payload, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


def cached(key: str, compute: Callable[[], Any]) -> tuple[Any, bool]:
    """(value, hit): the JSON value stored under ``key``, else ``compute()`` (stored when its
    JSON round trip is exact)."""
    if not enabled():
        return compute(), False
    path = cache_dir() / f"{key}.json"
    try:
        stored = json.loads(path.read_text())
        if stored.get("key") == key and "value" in stored:
            return stored["value"], True
    except (OSError, ValueError, AttributeError):
        pass
    value = compute()
    text = json.dumps({"key": key, "value": value}, sort_keys=True)
    if json.loads(text)["value"] == value:  # only what comes back equal
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(text)
            os.replace(tmp, path)
        except OSError:
            pass  # a read-only checkout still counts, uncached
    return value, False
