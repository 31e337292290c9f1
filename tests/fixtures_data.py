"""Tiny datasets in the real on-disk formats (COCO JSON, VOCdevkit, generic CSV/JSON), built
from images drawn with PIL. Reusable by any test: ``make_coco_fixture(tmp_path) -> data_root``.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

#: COCO fixture facts the tests check against (hand-written, not computed by the loader).
COCO_CATEGORIES = [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}, {"id": 90, "name": "toothbrush"}]
#: file name -> category ids of its annotations (train2014); "t_empty" has none and is dropped.
COCO_TRAIN = {f"COCO_train2014_{i:012d}.jpg": cats for i, cats in enumerate(
    [[1], [3], [90, 1], [1, 3, 90], [3, 3], [90], [1], [3, 90], [1, 90], [3], [], [1, 3]], start=1)}
COCO_VAL = {"COCO_val2014_000000000001.jpg": [1, 90], "COCO_val2014_000000000002.jpg": [3],
            "COCO_val2014_000000000003.jpg": [], "COCO_val2014_000000000004.jpg": [90]}
#: annotation (file, category) marked iscrowd=1 (kept as a label)
COCO_CROWD = ("COCO_val2014_000000000002.jpg", 3)


def write_image(path: Path, seed: int, size: tuple[int, int] = (40, 30), fmt: str = "JPEG") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, fmt)


def _coco_json(files: dict[str, list[int]], first_id: int, crowd: tuple[str, int] | None) -> dict:
    images, annotations = [], []
    for k, (name, cats) in enumerate(files.items()):
        image_id = first_id + k
        images.append({"id": image_id, "file_name": name, "width": 40, "height": 30})
        for cat in cats:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": cat,
                                "iscrowd": int(crowd == (name, cat)), "bbox": [0, 0, 5, 5], "area": 25})
    return {"images": images, "annotations": annotations, "categories": COCO_CATEGORIES}


def make_coco_fixture(tmp_path: Path) -> Path:
    """data_root with coco2014/{annotations,train2014,val2014}; 11 + 3 annotated images."""
    folder = Path(tmp_path) / "coco2014"
    (folder / "annotations").mkdir(parents=True, exist_ok=True)
    for split, files, first_id, crowd in (("train2014", COCO_TRAIN, 100, None),
                                          ("val2014", COCO_VAL, 500, COCO_CROWD)):
        (folder / "annotations" / f"instances_{split}.json").write_text(
            json.dumps(_coco_json(files, first_id, crowd)))
        for k, name in enumerate(files):
            write_image(folder / split / name, seed=first_id + k)
    return Path(tmp_path)


#: VOC fixture: id -> [(class, difficult)]
VOC_TRAINVAL = {"000005": [("chair", False), ("chair", True)], "000007": [("car", False)],
                "000009": [("horse", False), ("person", True)], "000012": [("car", False), ("dog", True)],
                "000016": [("bicycle", False)], "000017": [("person", False), ("horse", False)],
                "000019": [("cat", False)], "000020": [("car", False), ("car", True)],
                "000021": [("dog", False), ("person", True)], "000023": [("bicycle", False)]}
VOC_TEST = {"000001": [("dog", False), ("person", False)], "000002": [("train", False), ("person", True)],
            "000004": [("car", False), ("tvmonitor", True)], "000006": [("pottedplant", True), ("chair", False)]}


def _voc_xml(objects: list[tuple[str, bool]]) -> str:
    body = "".join(f"<object><name>{n}</name><pose>Left</pose><truncated>0</truncated>"
                   f"<difficult>{int(d)}</difficult><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax>"
                   f"<ymax>5</ymax></bndbox></object>" for n, d in objects)
    return f"<annotation><folder>VOC2007</folder><size><width>40</width><height>30</height></size>{body}</annotation>"


def make_voc_fixture(tmp_path: Path) -> Path:
    """data_root with VOCdevkit/VOC2007 (10 trainval, 4 test images, some difficult objects)."""
    folder = Path(tmp_path) / "VOCdevkit" / "VOC2007"
    for sub in ("Annotations", "ImageSets/Main", "JPEGImages"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for split, items in (("trainval", VOC_TRAINVAL), ("test", VOC_TEST)):
        (folder / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in items))
        for image_id, objects in items.items():
            (folder / "Annotations" / f"{image_id}.xml").write_text(_voc_xml(objects))
            write_image(folder / "JPEGImages" / f"{image_id}.jpg", seed=int(image_id))
    return Path(tmp_path)


#: generic fixture rows: (path, labels, unknown, split)
GENERIC_ROWS = [("img/a.png", ["sky", "tree"], [], "train"), ("img/b.png", ["tree"], ["hat"], "train"),
                ("img/c.png", [], ["sky"], "train"), ("img/d.png", ["hat"], [], "train"),
                ("img/e.png", ["sky"], [], "val"), ("img/f.png", ["tree", "hat"], [], "test"),
                ("img/g.png", ["sky"], ["tree"], "test")]


def make_generic_fixture(tmp_path: Path, fmt: str = "csv") -> Path:
    """data_root with labels.csv (labels ';'-separated, unknown '|'-separated) or labels.json."""
    root = Path(tmp_path)
    for k, (path, *_rest) in enumerate(GENERIC_ROWS):
        write_image(root / path, seed=k, fmt="PNG")
    if fmt == "csv":
        lines = ["path,labels,unknown,split"] + [f"{p},{';'.join(l)},{'|'.join(u)},{s}"
                                                  for p, l, u, s in GENERIC_ROWS]
        (root / "labels.csv").write_text("\n".join(lines) + "\n")
    else:
        (root / "labels.json").write_text(json.dumps(
            [{"path": p, "labels": l, "unknown": u, "split": s} for p, l, u, s in GENERIC_ROWS]))
    return root
