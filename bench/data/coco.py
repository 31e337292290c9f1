"""MS-COCO 2014 as multi-label classification (the papers' protocol).

Layout (``<data_root>/coco2014/`` or ``<data_root>`` itself)::

    annotations/instances_train2014.json   annotations/instances_val2014.json
    train2014/*.jpg                         val2014/*.jpg

An image's labels are the categories of ALL its instance annotations (crowd
included); images without any instance annotation are dropped: 82,081 of 82,783
train and 40,137 of 40,504 val images (asserted when the JSON is the full set).
Splits: train = train2014 minus a seeded validation carve-out (``val_fraction``),
val = that carve-out (model selection), test = val2014 (what every paper reports).
Class index: ascending category id (``class_order: id``, ASL/CSRA/KMCL) or
alphabetical by name (``alphabetical``, ML-GCN/TDRG files); see
``bench.data.base.class_permutation`` to move between them.
"""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from bench.data.base import DataError, MultiLabelData, carve_validation
from bench.data.cache import (SplitFiles, assemble, data_folder, require_file, resolve_options,
                              subset_train)

DEFAULTS: dict[str, Any] = {"class_order": "id"}
CLASS_ORDERS = ("id", "alphabetical")
#: (images in the official JSON, images with >= 1 instance annotation)
FULL_SET_COUNTS = {"train2014": (82783, 82081), "val2014": (40504, 40137)}
LAYOUT = ("<data_root>/coco2014/ (or <data_root>/) containing annotations/instances_train2014.json, "
          "annotations/instances_val2014.json, train2014/*.jpg, val2014/*.jpg")


def coco_folder(data_root: str | None) -> Path:
    root = data_folder(data_root, "coco2014", LAYOUT)
    for candidate in (root / "coco2014", root / "coco", root):
        if (candidate / "annotations").is_dir():
            return candidate
    raise DataError(f"{root}: no COCO annotations/ folder in coco2014/, coco/ or the root itself; "
                    f"expected layout: {LAYOUT}")


def read_instances(path: Path) -> dict[str, Any]:
    """The instances JSON, with a one-line DataError for a missing or malformed file."""
    require_file(path, "COCO annotation file", LAYOUT)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: malformed JSON at line {err.lineno} ({err.msg}); "
                        "re-download or re-extract the annotations") from None
    for key in ("images", "annotations", "categories"):
        if not isinstance(data, dict) or key not in data:
            raise DataError(f"{path}: not a COCO instances file (no {key!r} list); "
                            "use annotations/instances_<split>2014.json")
    return data


def ordered_categories(data: Mapping[str, Any], class_order: str) -> list[dict[str, Any]]:
    categories = sorted(data["categories"], key=lambda c: c["id"])
    if class_order == "alphabetical":
        categories = sorted(categories, key=lambda c: c["name"])
    return categories


def parse_split(path: Path, data: dict[str, Any], image_dir: Path, categories: list[dict[str, Any]],
                split: str) -> SplitFiles:
    """Images with >= 1 instance annotation and their (N, C) label matrix, in image-id order.
    ``data`` is ``read_instances(path)``."""
    from pycocotools.coco import COCO

    column = {c["id"]: i for i, c in enumerate(categories)}
    for ann in data["annotations"]:
        if ann.get("category_id") not in column:
            raise DataError(f"{path}: annotation {ann.get('id')} has category_id "
                            f"{ann.get('category_id')!r} absent from 'categories'; fix or re-download the file")
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco.createIndex()
    image_ids = sorted(i for i in coco.getImgIds() if coco.imgToAnns.get(i))
    targets = np.zeros((len(image_ids), len(categories)), np.int8)
    names = []
    for row, image_id in enumerate(image_ids):
        for ann in coco.imgToAnns[image_id]:  # crowd annotations included
            targets[row, column[ann["category_id"]]] = 1
        names.append(coco.imgs[image_id]["file_name"])
    total, expected = FULL_SET_COUNTS[split]
    if len(data["images"]) == total and len(image_ids) != expected:
        raise DataError(f"{path}: full {split} set but {len(image_ids)} annotated images, expected "
                        f"{expected}; the file looks altered, re-download it")
    return SplitFiles([str(image_dir / n) for n in names], names, targets)


def load(options: dict[str, Any], *, resolution: int, data_root: str | None,
         cache_dir: Path | None) -> MultiLabelData:
    opts = resolve_options("coco2014", DEFAULTS, options)
    if opts["class_order"] not in CLASS_ORDERS:
        raise DataError(f"coco2014: class_order={opts['class_order']!r} must be one of {', '.join(CLASS_ORDERS)}")
    folder = coco_folder(data_root)
    train_json = folder / "annotations" / "instances_train2014.json"
    val_json = folder / "annotations" / "instances_val2014.json"
    train_data = read_instances(train_json)
    categories = ordered_categories(train_data, opts["class_order"])
    full_train = parse_split(train_json, train_data, folder / "train2014", categories, "train2014")
    del train_data
    test = parse_split(val_json, read_instances(val_json), folder / "val2014", categories, "val2014")
    train_idx, val_idx = carve_validation(len(full_train.ids), opts["val_fraction"], opts["split_seed"])
    conventions: dict[str, Any] = {
        "dataset": "coco2014", "class_order": opts["class_order"],
        "category_ids": [c["id"] for c in categories],
        "image_filter": "images with >= 1 instance annotation (crowd included)",
        "splits": "train = train2014 minus val carve-out; val = carve-out; test = val2014 (papers' protocol)",
        "val_fraction": opts["val_fraction"], "split_seed": opts["split_seed"],
        "annotated_images": {"train2014": len(full_train.ids), "val2014": len(test.ids)},
    }
    train = subset_train(full_train.take(train_idx), opts, conventions)
    splits = {"train": train, "val": full_train.take(val_idx), "test": test}
    return assemble("coco2014", [c["name"] for c in categories], splits, resolution=resolution,
                    cache_dir=cache_dir, opts=opts, conventions=conventions)
