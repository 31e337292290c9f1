"""PASCAL VOC 2007 as multi-label classification.

Layout (``<data_root>/VOCdevkit/VOC2007/``, ``<data_root>/VOC2007/`` or ``<data_root>``)::

    Annotations/<id>.xml   ImageSets/Main/trainval.txt   ImageSets/Main/test.txt   JPEGImages/<id>.jpg

Full set: trainval 5,011 / test 4,952 images, 20 classes in VOC's alphabetical
order. A class whose only objects in an image are "difficult" is, in training,
``difficult_train: positive`` (ML-GCN/TDRG/KMCL), ``negative`` (CSRA/mmpretrain)
or ``ignore`` (-1, masked out of the loss); in the validation carve-out and the
test split it is always -1, so AP ignores it (every reference); whether P/R
count it as negative is the evaluator's ``ignore_in_pr`` option.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np

from bench.data.base import DataError, MultiLabelData, carve_validation
from bench.data.cache import (SplitFiles, assemble, data_folder, require_file, resolve_options,
                              subset_train)

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
               "train", "tvmonitor")
DEFAULTS: dict[str, Any] = {"difficult_train": "positive"}
DIFFICULT_POLICIES = {"positive": 1, "negative": 0, "ignore": -1}
FULL_SET_COUNTS = {"trainval": 5011, "test": 4952}
LAYOUT = ("<data_root>/VOCdevkit/VOC2007/ (or <data_root>/VOC2007/ or <data_root>/) containing "
          "Annotations/<id>.xml, ImageSets/Main/trainval.txt, ImageSets/Main/test.txt, JPEGImages/<id>.jpg")


def voc_folder(data_root: str | None) -> Path:
    root = data_folder(data_root, "voc2007", LAYOUT)
    for candidate in (root / "VOCdevkit" / "VOC2007", root / "VOC2007", root):
        if (candidate / "Annotations").is_dir():
            return candidate
    raise DataError(f"{root}: no VOC2007 Annotations/ folder in VOCdevkit/VOC2007/, VOC2007/ or the "
                    f"root itself; expected layout: {LAYOUT}")


def read_objects(path: Path) -> list[tuple[str, bool]]:
    """(class name, difficult) of every object in one annotation XML."""
    require_file(path, "VOC annotation XML", LAYOUT)
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        raise DataError(f"{path}: malformed XML ({err}); re-extract the VOC2007 annotations") from None
    objects = []
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        if name not in VOC_CLASSES:
            raise DataError(f"{path}: object class {name!r} is not a VOC2007 class; fix the file")
        objects.append((name, (obj.findtext("difficult") or "0").strip() == "1"))
    if not objects:
        raise DataError(f"{path}: no <object> element; every VOC2007 image has one, re-extract the file")
    return objects


def label_row(objects: list[tuple[str, bool]], difficult_value: int) -> np.ndarray:
    """1 for a class with a non-difficult object, ``difficult_value`` for difficult-only, else 0."""
    row = np.zeros(len(VOC_CLASSES), np.int8)
    column = {name: i for i, name in enumerate(VOC_CLASSES)}
    for name, difficult in objects:
        if difficult:
            if row[column[name]] != 1:
                row[column[name]] = difficult_value
        else:
            row[column[name]] = 1
    return row


def parse_split(folder: Path, split: str) -> tuple[SplitFiles, np.ndarray]:
    """(files with evaluation targets (difficult-only = -1), difficult-only mask) of ``split``."""
    list_file = require_file(folder / "ImageSets" / "Main" / f"{split}.txt", "VOC image list", LAYOUT)
    ids = [line.split()[0] for line in list_file.read_text().splitlines() if line.strip()]
    if not ids:
        raise DataError(f"{list_file}: empty image list; re-extract ImageSets/Main")
    rows = [label_row(read_objects(folder / "Annotations" / f"{i}.xml"), -1) for i in ids]
    targets = np.stack(rows)
    files = SplitFiles([str(folder / "JPEGImages" / f"{i}.jpg") for i in ids],
                       [f"{i}.jpg" for i in ids], targets)
    return files, targets == -1


def load(options: dict[str, Any], *, resolution: int, data_root: str | None,
         cache_dir: Path | None) -> MultiLabelData:
    opts = resolve_options("voc2007", DEFAULTS, options)
    policy = opts["difficult_train"]
    if policy not in DIFFICULT_POLICIES:
        raise DataError(f"voc2007: difficult_train={policy!r} must be one of {', '.join(DIFFICULT_POLICIES)}")
    folder = voc_folder(data_root)
    trainval, difficult_only = parse_split(folder, "trainval")
    test, _ = parse_split(folder, "test")
    train_idx, val_idx = carve_validation(len(trainval.ids), opts["val_fraction"], opts["split_seed"])
    train = trainval.take(train_idx)
    train.targets[difficult_only[train_idx]] = DIFFICULT_POLICIES[policy]
    conventions: dict[str, Any] = {
        "dataset": "voc2007", "class_order": "voc alphabetical",
        "difficult_train": policy, "difficult_eval": "ignored (-1) in val and test targets",
        "splits": "train = trainval minus val carve-out; val = carve-out; test = VOC2007 test",
        "val_fraction": opts["val_fraction"], "split_seed": opts["split_seed"],
        "full_set": len(trainval.ids) == FULL_SET_COUNTS["trainval"] and len(test.ids) == FULL_SET_COUNTS["test"],
        "list_sizes": {"trainval": len(trainval.ids), "test": len(test.ids)},
    }
    train = subset_train(train, opts, conventions)
    splits = {"train": train, "val": trainval.take(val_idx), "test": test}
    return assemble("voc2007", VOC_CLASSES, splits, resolution=resolution, cache_dir=cache_dir,
                    opts=opts, conventions=conventions)
