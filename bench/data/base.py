"""What every dataset loader returns: decoded, resized uint8 images + label matrices.

Every loader (embedded mosaics, COCO-2014, VOC2007, generic CSV/JSON) produces a
:class:`MultiLabelData`: three :class:`Split` s of images already decoded and
resized to the suite's resolution, stored as a (N, H, W, C) uint8 array -- in
memory for small sets, a ``numpy.memmap`` cache file for large ones (built once,
reused by every method and seed) -- and a (N, C) int8 target matrix with
1 = positive, 0 = negative, -1 = ignore (VOC "difficult", unknown attributes).

``conventions`` names every choice the loader made (class order, difficult
policy, validation carve-out...) and ``fingerprint`` hashes the content; both go
into every record.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np


class DataError(ValueError):
    """Bad or missing data: the message names the file (and row) and what to do."""


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # (N, H, W, C) uint8, possibly a memmap
    targets: np.ndarray  # (N, num_classes) int8 in {1, 0, -1}
    ids: tuple[str, ...]  # image file names / ids, for inspection and per-image records

    def __post_init__(self) -> None:
        n = len(self.ids)
        if self.images.shape[0] != n or self.targets.shape[0] != n:
            raise DataError(f"split sizes disagree: {self.images.shape[0]} images, "
                            f"{self.targets.shape[0]} target rows, {n} ids")

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class MultiLabelData:
    name: str
    classes: tuple[str, ...]
    train: Split
    val: Split  # carved from the training data: model selection happens here, never on test
    test: Split
    conventions: Mapping[str, Any] = field(default_factory=dict)
    fingerprint: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_chans(self) -> int:
        return int(self.train.images.shape[-1])

    def split(self, name: str) -> Split:
        return {"train": self.train, "val": self.val, "test": self.test}[name]


def fingerprint_arrays(*arrays: np.ndarray, extra: str = "") -> str:
    """Short sha256 over array contents (chunked, so memmaps are not loaded whole)."""
    h = hashlib.sha256(extra.encode())
    for a in arrays:
        h.update(str(a.shape).encode() + str(a.dtype).encode())
        flat = a.reshape(-1) if a.flags.c_contiguous else np.ascontiguousarray(a).reshape(-1)
        step = 1 << 24
        for i in range(0, flat.shape[0], step):
            h.update(np.ascontiguousarray(flat[i:i + step]).tobytes())
    return h.hexdigest()[:16]


def class_permutation(classes_from: tuple[str, ...] | list[str],
                      classes_to: tuple[str, ...] | list[str]) -> np.ndarray:
    """Index array ``p`` with ``x_to = x_from[..., p]``: re-orders class columns (labels,
    word vectors, co-occurrence rows) from one class order to another, e.g. COCO's
    id order to ML-GCN's alphabetical files. Both must hold the same names."""
    position = {name: i for i, name in enumerate(classes_from)}
    missing = [name for name in classes_to if name not in position]
    if missing or len(classes_from) != len(classes_to):
        raise DataError(f"class lists differ (e.g. {missing[:1] or 'lengths'}); a class-ordered "
                        "file must name exactly the dataset's classes")
    return np.array([position[name] for name in classes_to], dtype=np.int64)


def carve_validation(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic (train_idx, val_idx) split of range(n); both sorted."""
    if not 0 < fraction < 1:
        raise DataError(f"val_fraction={fraction} must be in (0, 1)")
    perm = np.random.default_rng(seed).permutation(n)
    n_val = max(1, int(round(n * fraction)))
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])
