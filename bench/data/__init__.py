"""Dataset registry: name -> loader returning a MultiLabelData.

A loader is ``load(options, *, resolution, data_root, cache_dir) -> MultiLabelData``
where ``options`` is the suite's ``dataset.options`` mapping (the loader rejects
unknown keys), ``data_root`` the user's data folder (None for embedded sets) and
``cache_dir`` where decoded/resized image caches live (None: the file-based loaders decode
lazily, in the training DataLoader's workers; the embedded set is always cached).
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Callable, Mapping

from bench.data.base import DataError, MultiLabelData, Split

#: dataset name -> "module:function"; modules are imported only when used.
_LOADERS: dict[str, str] = {
    "mnist-mosaic": "bench.data.embedded:load",
    "coco2014": "bench.data.coco:load",
    "voc2007": "bench.data.voc:load",
    "generic": "bench.data.generic:load",
}

Loader = Callable[..., MultiLabelData]


def names() -> list[str]:
    return sorted(_LOADERS)


def get_loader(name: str) -> Loader:
    if name not in _LOADERS:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(names())}")
    module, func = _LOADERS[name].split(":")
    return getattr(importlib.import_module(module), func)


def load(name: str, options: Mapping[str, Any] | None, *, resolution: int,
         data_root: str | None = None, cache_dir: str | Path | None = ".cache/data",
         image_cache: bool = True) -> MultiLabelData:
    """Load dataset ``name`` at ``resolution`` (images resized to resolution x resolution);
    ``image_cache=False``: file-based datasets decode on access instead of into the cache."""
    lazy = not image_cache and name != "mnist-mosaic"
    return get_loader(name)(dict(options or {}), resolution=resolution, data_root=data_root,
                            cache_dir=None if lazy else Path(cache_dir))


__all__ = ["DataError", "MultiLabelData", "Split", "load", "names", "get_loader"]
