"""Decoded + resized image cache shared by the file-based loaders (coco2014, voc2007, generic).

Decoding a 640x480 JPEG costs several ms; a suite trains many methods x seeds on
the same images. So each split's images are decoded ONCE (PIL, JPEG draft mode),
squash-resized to resolution x resolution (ASL-style: the aspect ratio is not
kept), and written to a ``numpy.memmap`` of shape (N, R, R, 3) uint8 plus an
``index.json``, under ``cache_dir/<dataset>-<split>-r<R>-<key>/``. The key hashes
the dataset name, the split's file list (paths and sizes) and the resolution, so a
different file list or resolution builds a new cache and an unchanged one is
reused. The folder is built under a temporary name and renamed into place
(atomic: a crash never leaves a half cache that looks complete).

Without a cache (``budget.image_cache: false``: no disk for a 74 GB COCO memmap at 448 px)
each split's images are a :class:`LazyImages`: indexing it decodes and resizes the files with
the same :func:`decode_resized`, so the numbers are the cache's; the training DataLoader's
workers do that decoding (``bench.train.data``), in parallel with the model.

This module also holds what the three loaders share: their common options and
the assembly of a :class:`MultiLabelData` from per-split file lists.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from PIL import Image

from bench.data.base import DataError, MultiLabelData, Split, fingerprint_arrays

CACHE_VERSION = 1
RESIZE_CONVENTION = "squash to RxR (aspect ratio not kept), PIL bilinear, JPEG draft decode"
#: Options every file-based loader accepts (declared once, here).
COMMON_DEFAULTS: dict[str, Any] = {
    "val_fraction": 0.1,  # carved from the training split for model selection
    "split_seed": 0,  # seed of the validation carve-out and of train_subset
    "train_subset": None,  # keep a fixed, seeded subset of N training images (KMCL's small budget)
    "skip_bad_images": False,  # skip missing/truncated images (counted) instead of failing
    "labels_only": False,  # parse annotations only: no decoding, images are (N, 0, 0, 3)
}
_CHUNK = 32
_IN_PROCESS_BELOW = 128  # fewer images than this: decode without a pool


def resolve_options(dataset: str, defaults: Mapping[str, Any], options: Mapping[str, Any]) -> dict[str, Any]:
    """``defaults`` (loader-specific + common) updated with ``options``; unknown keys raise."""
    known = {**COMMON_DEFAULTS, **defaults}
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise DataError(f"dataset {dataset!r} has no option {unknown[0]!r}; known: {', '.join(sorted(known))}")
    resolved = {**known, **options}
    subset = resolved["train_subset"]
    if subset is not None and (not isinstance(subset, int) or isinstance(subset, bool) or subset < 1):
        raise DataError(f"dataset {dataset!r}: train_subset={subset!r} must be a positive integer or null")
    return resolved


def decode_resized(path: str, resolution: int) -> np.ndarray:
    """(R, R, 3) uint8 of the image at ``path``; raises OSError/ValueError on bad files."""
    with Image.open(path) as img:
        if img.format == "JPEG":
            img.draft("RGB", (resolution, resolution))  # DCT-domain downscale: decodes far less
        rgb = img.convert("RGB").resize((resolution, resolution), Image.BILINEAR)
        return np.asarray(rgb, dtype=np.uint8)


def _decode_chunk(task: tuple[str, int, int, int, list[str]]) -> list[tuple[int, str]]:
    """Pool worker: decode ``paths`` into rows start.. of the memmap; return (row, error) of failures."""
    mm_path, n, resolution, start, paths = task
    mm = np.memmap(mm_path, dtype=np.uint8, mode="r+", shape=(n, resolution, resolution, 3))
    failures = []
    for offset, path in enumerate(paths):
        try:
            mm[start + offset] = decode_resized(path, resolution)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
            failures.append((start + offset, f"{type(err).__name__}: {err}"))
    mm.flush()
    return failures


class LazyImages:
    """An (N, R, R, 3) uint8 array-like over image files, decoded when indexed (no cache).

    Supports what the data path uses: ``shape``, ``len``, and indexing by an int, a slice or
    an integer array (returns a numpy array, decoded with :func:`decode_resized`)."""

    dtype = np.dtype(np.uint8)

    def __init__(self, paths: Sequence[str], resolution: int) -> None:
        self.paths, self.resolution = [str(p) for p in paths], int(resolution)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.paths), self.resolution, self.resolution, 3)

    def __len__(self) -> int:
        return len(self.paths)

    def _one(self, i: int) -> np.ndarray:
        try:
            return decode_resized(self.paths[i], self.resolution)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
            raise DataError(f"{self.paths[i]}: image file unreadable ({type(err).__name__}: {err}); "
                            "restore it, or build the cache with skip_bad_images: true") from None

    def __getitem__(self, idx: Any) -> np.ndarray:
        if isinstance(idx, (int, np.integer)):
            return self._one(int(idx))
        rows = range(len(self))[idx] if isinstance(idx, slice) else np.asarray(idx).reshape(-1)
        out = np.empty((len(rows), self.resolution, self.resolution, 3), np.uint8)
        for k, i in enumerate(rows):
            out[k] = self._one(int(i))
        return out


@dataclass(frozen=True)
class CachedImages:
    images: np.ndarray  # (N_kept, R, R, 3) uint8 memmap, read-only
    kept: np.ndarray  # indices into the requested paths that are in ``images``
    skipped: tuple[str, ...]  # paths skipped as bad (only with skip_bad)
    key: str
    folder: Path


def cache_key(dataset: str, paths: Sequence[str], resolution: int) -> str:
    """Hash of (dataset, file list with sizes, resolution, cache version)."""
    h = hashlib.sha256(f"{CACHE_VERSION}|{dataset}|{resolution}|{RESIZE_CONVENTION}".encode())
    for p in paths:
        size = os.stat(p).st_size if os.path.exists(p) else -1
        h.update(f"{p}\0{size}\n".encode())
    return h.hexdigest()[:16]


def _workers() -> int:
    return max(1, int(os.environ.get("BENCH_CACHE_WORKERS", os.cpu_count() or 1)))


def _open(folder: Path) -> CachedImages:
    index = json.loads((folder / "index.json").read_text())
    n, r = index["n"], index["resolution"]
    images = np.memmap(folder / "images.u8", dtype=np.uint8, mode="r", shape=(n, r, r, 3)) if n else \
        np.zeros((0, r, r, 3), np.uint8)
    return CachedImages(images, np.asarray(index["kept"], dtype=np.int64), tuple(index["skipped"]),
                        index["key"], folder)


def cached_images(dataset: str, split: str, paths: Sequence[str], resolution: int, cache_dir: Path,
                  *, skip_bad: bool = False) -> CachedImages:
    """The split's images decoded + resized, from the cache or built into it (atomically)."""
    paths = [str(p) for p in paths]
    key = cache_key(dataset, paths, resolution)
    folder = Path(cache_dir) / f"{dataset}-{split}-r{resolution}-{key}"
    if (folder / "index.json").is_file():
        cached = _open(folder)
        if cached.skipped and not skip_bad:
            raise DataError(f"{cached.skipped[0]}: image file missing or unreadable (cached as bad in "
                            f"{folder}); restore it or set dataset option skip_bad_images: true")
        return cached
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing and not skip_bad:  # fail before decoding for an hour
        raise DataError(f"{missing[0]}: image file missing ({len(missing)} of {len(paths)} in {dataset}/"
                        f"{split}); restore it or set dataset option skip_bad_images: true")
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    tmp = Path(cache_dir) / f".tmp-{folder.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        kept, skipped = _build(tmp, paths, resolution, skip_bad, dataset, split)
        (tmp / "index.json").write_text(json.dumps({
            "key": key, "dataset": dataset, "split": split, "n": len(kept), "resolution": resolution,
            "resize": RESIZE_CONVENTION, "kept": kept, "skipped": skipped,
            "files": [paths[i] for i in kept]}))
        try:
            os.rename(tmp, folder)
        except OSError:  # another process finished the same cache first: use theirs
            shutil.rmtree(tmp, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _open(folder)


def _build(tmp: Path, paths: list[str], resolution: int, skip_bad: bool, dataset: str,
           split: str) -> tuple[list[int], list[str]]:
    n = len(paths)
    mm_path = str(tmp / "images.u8")
    if n == 0:
        return [], []
    np.memmap(mm_path, dtype=np.uint8, mode="w+", shape=(n, resolution, resolution, 3)).flush()
    tasks = [(mm_path, n, resolution, s, paths[s:s + _CHUNK]) for s in range(0, n, _CHUNK)]
    workers = min(_workers(), len(tasks))
    if n >= _IN_PROCESS_BELOW:
        print(f"bench: caching {n} images of {dataset}/{split} at {resolution} px "
              f"({workers} processes) ...", file=sys.stderr, flush=True)
    failures: list[tuple[int, str]] = []
    if n < _IN_PROCESS_BELOW or workers == 1:
        for task in tasks:
            failures += _decode_chunk(task)
            if failures and not skip_bad:
                break
    else:
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        with multiprocessing.get_context(method).Pool(workers) as pool:
            for chunk_failures in pool.imap_unordered(_decode_chunk, tasks):
                failures += chunk_failures
                if failures and not skip_bad:
                    break  # leaving the block terminates the pool
    failures.sort()
    if failures and not skip_bad:
        row, err = failures[0]
        raise DataError(f"{paths[row]}: image file missing or unreadable ({err}); restore it or "
                        f"set dataset option skip_bad_images: true ({len(failures)} found before stopping)")
    bad = {row for row, _ in failures}
    kept = [i for i in range(n) if i not in bad]
    if bad:
        _compact(mm_path, n, resolution, kept)
    return kept, [paths[row] for row in sorted(bad)]


def _compact(mm_path: str, n: int, resolution: int, kept: list[int]) -> None:
    """Move the kept rows to the front (in order) and truncate the file."""
    mm = np.memmap(mm_path, dtype=np.uint8, mode="r+", shape=(n, resolution, resolution, 3))
    for j, i in enumerate(kept):
        if i != j:
            mm[j] = mm[i]
    mm.flush()
    del mm
    os.truncate(mm_path, len(kept) * resolution * resolution * 3)


@dataclass(frozen=True)
class SplitFiles:
    """One split as the annotation parser sees it, before any pixel is decoded."""
    paths: list[str]  # absolute image paths
    ids: list[str]  # names shown to users (file names relative to the image folder)
    targets: np.ndarray  # (N, C) int8 in {1, 0, -1}

    def take(self, idx: np.ndarray) -> "SplitFiles":
        return SplitFiles([self.paths[i] for i in idx], [self.ids[i] for i in idx], self.targets[idx])


def subset_train(train: SplitFiles, opts: Mapping[str, Any], conventions: dict[str, Any]) -> SplitFiles:
    """Apply ``train_subset`` (fixed, seeded) and record the kept id list's hash."""
    n = opts["train_subset"]
    if n is None or n >= len(train.ids):
        return train
    idx = np.sort(np.random.default_rng([opts["split_seed"], 1]).permutation(len(train.ids))[:n])
    train = train.take(idx)
    conventions["train_subset"] = n
    conventions["train_subset_ids_sha256"] = hashlib.sha256("\n".join(train.ids).encode()).hexdigest()[:16]
    return train


def assemble(dataset: str, classes: Sequence[str], splits: Mapping[str, SplitFiles], *,
             resolution: int, cache_dir: Path | None, opts: Mapping[str, Any],
             conventions: dict[str, Any]) -> MultiLabelData:
    """MultiLabelData from the three splits' file lists: decode via the cache, lazily when
    ``cache_dir`` is None (:class:`LazyImages`), or not at all (labels_only)."""
    built: dict[str, Split] = {}
    skipped = 0
    for name in ("train", "val", "test"):
        files = splits[name]
        if opts["labels_only"]:
            images: np.ndarray = np.zeros((len(files.ids), 0, 0, 3), np.uint8)
            built[name] = Split(images, files.targets, tuple(files.ids))
            continue
        if cache_dir is None:
            missing = [p for p in files.paths if not os.path.isfile(p)]
            if missing:
                raise DataError(f"{missing[0]}: image file missing ({len(missing)} of {len(files.paths)} in "
                                f"{dataset}/{name}); restore it (skip_bad_images needs budget.image_cache: true)")
            built[name] = Split(LazyImages(files.paths, resolution), files.targets, tuple(files.ids))
            continue
        cached = cached_images(dataset, name, files.paths, resolution, cache_dir,
                               skip_bad=opts["skip_bad_images"])
        skipped += len(cached.skipped)
        built[name] = Split(cached.images, files.targets[cached.kept],
                            tuple(files.ids[i] for i in cached.kept))
    conventions.update({"resize": RESIZE_CONVENTION, "resolution": resolution,
                        "image_cache": cache_dir is not None,
                        "skipped_images": skipped, "labels_only": bool(opts["labels_only"]),
                        "split_sizes": {k: len(v) for k, v in built.items()}})
    # labels + file lists (not cache keys), so `bench data inspect` shows the run's fingerprint
    ids = "\n".join(f"{k}:{i}" for k in ("train", "val", "test") for i in built[k].ids)
    fingerprint = fingerprint_arrays(*(built[k].targets for k in ("train", "val", "test")),
                                     extra="|".join([dataset, *classes, ids]))
    return MultiLabelData(dataset, tuple(classes), built["train"], built["val"], built["test"],
                          conventions=conventions, fingerprint=fingerprint)


def require_file(path: Path, what: str, layout: str) -> Path:
    """``path`` if it is a file; else a DataError saying what is missing and the expected layout."""
    if not path.is_file():
        raise DataError(f"{path}: {what} not found; expected layout: {layout}")
    return path


def data_folder(data_root: str | None, dataset: str, layout: str) -> Path:
    """The user's data root (argument, set by the CLI from --data-root or $BENCH_DATA_ROOT)."""
    root = data_root or os.environ.get("BENCH_DATA_ROOT")
    if not root:
        raise DataError(f"dataset {dataset!r} needs a data root: pass --data-root DIR or set "
                        f"BENCH_DATA_ROOT; expected layout: {layout}")
    if not Path(root).is_dir():
        raise DataError(f"data root {root} is not a folder; expected layout: {layout}")
    return Path(root)
