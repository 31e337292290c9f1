"""Generic multi-label format for everything else (VG-500, ADP, WIDER-Attribute, a user's own data).

Option ``file`` (relative to the data root, or absolute) names either

* a CSV with a header: ``path``, ``labels`` (names separated by ";" or "|"),
  optional ``split`` (train/val/test) and optional ``unknown`` (labels whose
  value is unspecified, same separators), or
* a JSON list of ``{"path": ..., "labels": [...], "unknown": [...]?, "split": ...?}``.

Image paths are relative to option ``image_root`` (relative to the data root) or
to the annotation file's folder. Classes: option ``classes`` (a list, or a file
with one name per line) or the sorted union of all names. Unknown labels are -1
(ignored) in val/test targets and, in training, ``unknown_train: negative``
(WIDER's convention) or ``ignore``. Without a split column, ``test_fraction``
carves a seeded test split; without val rows, ``val_fraction`` carves val from train.
"""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from bench.data.base import DataError, MultiLabelData, carve_validation
from bench.data.cache import SplitFiles, assemble, data_folder, require_file, resolve_options, subset_train

DEFAULTS: dict[str, Any] = {"file": None, "classes": None, "image_root": None,
                            "unknown_train": "negative", "test_fraction": None, "name": "generic"}
UNKNOWN_TRAIN = {"negative": 0, "ignore": -1}
SPLITS = ("train", "val", "test")
LAYOUT = ("option file: a CSV (columns path, labels[, split][, unknown]) or a JSON list of "
          "{path, labels[, split][, unknown]}, image paths relative to image_root or the file's folder")
_SEPARATORS = re.compile(r"[;|]")


def _names(value: Any, where: str) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [v.strip() for v in _SEPARATORS.split(value) if v.strip()]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return [v.strip() for v in value]
    raise DataError(f"{where}: labels must be a list of names or a ';'/'|'-separated string")


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows {path, labels, unknown, split, where} of a CSV or JSON annotation file."""
    require_file(path, "annotation file", LAYOUT)
    if path.suffix.lower() == ".json":
        try:
            raw = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise DataError(f"{path}: malformed JSON at line {err.lineno} ({err.msg}); fix the file") from None
        if not isinstance(raw, list):
            raise DataError(f"{path}: expected a JSON list of {{path, labels, ...}} objects")
        entries = [(f"{path} item {i}", r) for i, r in enumerate(raw)]
    else:
        with path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or not {"path", "labels"} <= set(reader.fieldnames):
                raise DataError(f"{path}: CSV header must have columns 'path' and 'labels' "
                                f"(got {reader.fieldnames}); add a header row")
            entries = [(f"{path} row {i + 2}", r) for i, r in enumerate(reader)]
    rows = []
    for where, r in entries:
        if not isinstance(r, Mapping) or not r.get("path"):
            raise DataError(f"{where}: missing 'path'; every entry needs an image path")
        split = (r.get("split") or "").strip() or None
        if split is not None and split not in SPLITS:
            raise DataError(f"{where}: split {split!r} must be one of {', '.join(SPLITS)}")
        rows.append({"path": str(r["path"]).strip(), "labels": _names(r.get("labels"), where),
                     "unknown": _names(r.get("unknown"), where), "split": split, "where": where})
    if not rows:
        raise DataError(f"{path}: no images listed")
    return rows


def read_classes(value: Any, root: Path | None) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, list):
        return [str(v) for v in value]
    path = Path(value) if Path(value).is_absolute() or root is None else root / value
    require_file(path, "classes file (one class name per line)", LAYOUT)
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def targets_of(rows: list[dict[str, Any]], classes: list[str]) -> np.ndarray:
    """(N, C) int8: 1 labelled, -1 unknown, 0 otherwise; a name not in ``classes`` raises."""
    column = {c: i for i, c in enumerate(classes)}
    targets = np.zeros((len(rows), len(classes)), np.int8)
    for n, r in enumerate(rows):
        for value, key in ((-1, "unknown"), (1, "labels")):
            for name in r[key]:
                if name not in column:
                    raise DataError(f"{r['where']}: label {name!r} is not a known class; add it to "
                                    "the classes option/file or fix the row")
                targets[n, column[name]] = value
        if set(r["labels"]) & set(r["unknown"]):
            raise DataError(f"{r['where']}: a label is both in labels and unknown; keep one")
    return targets


def load(options: dict[str, Any], *, resolution: int, data_root: str | None,
         cache_dir: Path | None) -> MultiLabelData:
    opts = resolve_options("generic", DEFAULTS, options)
    if not opts["file"]:
        raise DataError(f"dataset 'generic' needs option file; {LAYOUT}")
    if opts["unknown_train"] not in UNKNOWN_TRAIN:
        raise DataError(f"generic: unknown_train={opts['unknown_train']!r} must be one of {', '.join(UNKNOWN_TRAIN)}")
    file = Path(opts["file"])
    root = None if file.is_absolute() and not data_root else data_folder(data_root, "generic", LAYOUT)
    file = file if file.is_absolute() else root / file
    rows = read_rows(file)
    explicit = read_classes(opts["classes"], root)
    classes = explicit or sorted({n for r in rows for n in r["labels"] + r["unknown"]})
    image_root = file.parent if opts["image_root"] is None else (root or file.parent) / opts["image_root"]
    everything = SplitFiles([str(image_root / r["path"]) for r in rows], [r["path"] for r in rows],
                            targets_of(rows, classes))
    conventions: dict[str, Any] = {
        "dataset": opts["name"], "annotation_file": file.name,
        "class_order": "as given" if explicit else "sorted union of names",
        "unknown_eval": "ignored (-1) in val and test targets", "unknown_train": opts["unknown_train"],
        "val_fraction": opts["val_fraction"], "split_seed": opts["split_seed"],
    }
    split_of = np.array([r["split"] or "" for r in rows], dtype="<U5")
    if not (split_of != "").any():
        if opts["test_fraction"] is None:
            raise DataError(f"{file}: no split column/field; add one (train/val/test) or set option test_fraction")
        rest, test_idx = carve_validation(len(rows), opts["test_fraction"], opts["split_seed"] + 1)
        split_of[test_idx], split_of[rest] = "test", "train"
        conventions["test_split"] = f"seeded carve-out, test_fraction={opts['test_fraction']}"
    elif (split_of == "").any():
        missing = rows[int(np.flatnonzero(split_of == "")[0])]["where"]
        raise DataError(f"{missing}: empty split; give every row train, val or test")
    train_idx, val_idx, test_idx = (np.flatnonzero(split_of == s) for s in SPLITS)
    if len(train_idx) == 0 or len(test_idx) == 0:
        raise DataError(f"{file}: needs at least one train and one test image")
    if len(val_idx) == 0:
        keep, carved = carve_validation(len(train_idx), opts["val_fraction"], opts["split_seed"])
        train_idx, val_idx = train_idx[keep], train_idx[carved]
        conventions["val_split"] = "carved from train"
    train = everything.take(train_idx)
    train.targets[train.targets == -1] = UNKNOWN_TRAIN[opts["unknown_train"]]
    train = subset_train(train, opts, conventions)
    splits = {"train": train, "val": everything.take(val_idx), "test": everything.take(test_idx)}
    return assemble(opts["name"], classes, splits, resolution=resolution, cache_dir=cache_dir,
                    opts=opts, conventions=conventions)
