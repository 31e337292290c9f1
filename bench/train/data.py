"""From a split to model inputs on the device: batch order, loader, copy, augmentation, prediction.

The data path (GPU-grade, the same code on the CPU):

1. :func:`epoch_batches` fixes the epoch's batches (a generator seeded by the job's seed, stage
   and epoch), so a resumed epoch sees the same images in the same order.
2. :meth:`Feed.raw` serves those batches as **uint8** (B, H, W, C) tensors -- from the in-memory
   array, the memmap cache, or JPEG files decoded in the workers (``bench.data.cache.LazyImages``)
   -- through a ``DataLoader`` with ``budget.workers`` processes and prefetch, pinned when the
   device is CUDA, copied with ``non_blocking=True`` (4x fewer bytes than float32). The workers
   are PERSISTENT: one loader per split for the Feed's life, its sampler handing out each pass's
   index arrays, so no worker pool is forked per epoch or per evaluation pass.
3. :meth:`Feed.views` augments ON THE DEVICE as batched tensor ops (``bench.train.augment``), every
   random draw from the epoch's CPU generator: the numbers do not depend on ``workers``.

Only the uint8 gather runs in the workers; nothing random does. No per-step host sync here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import nn

from bench.train.augment import augment, to_float
from bench.data.base import Split
from bench.train.precision import autocast


def epoch_batches(n: int, batch_size: int, generator: torch.Generator) -> list[np.ndarray]:
    """Shuffled, sorted-within-batch index arrays; the last partial batch is dropped so every
    method sees exactly epochs x floor(n / batch_size) x batch_size images."""
    perm = torch.randperm(n, generator=generator).numpy()
    steps = n // batch_size
    if steps == 0:
        raise ValueError(f"budget batch_size={batch_size} exceeds the {n} training images")
    return [np.sort(perm[i * batch_size:(i + 1) * batch_size]) for i in range(steps)]


def plain_batches(n: int, batch_size: int) -> list[np.ndarray]:
    """Fixed-order index arrays covering all ``n`` images (evaluation; last batch may be short)."""
    return [np.arange(i, min(n, i + batch_size)) for i in range(0, n, batch_size)]


class RawBatches(torch.utils.data.Dataset):
    """Item i = (uint8 images (B, H, W, C), float32 targets (B, C)) of ``batches[i]``.

    Indexing ``split.images`` is all a worker does: a memmap read or, for a
    ``LazyImages`` split, the JPEG decoding and resizing."""

    def __init__(self, split: Split, batches: Sequence[np.ndarray]) -> None:
        self.split, self.batches = split, list(batches)

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = self.batches[i]
        images = torch.from_numpy(np.ascontiguousarray(self.split.images[idx]))
        targets = torch.from_numpy(np.asarray(self.split.targets[idx], dtype=np.float32))
        return images, targets


class SplitRows(torch.utils.data.Dataset):
    """Item ``idx`` (an index array) = (uint8 images (B, H, W, C), float32 targets (B, C)) of a
    split: the dataset of a persistent loader, whose sampler yields the index arrays."""

    def __init__(self, split: Split) -> None:
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return RawBatches(self.split, [idx])[0]


class _Pass:
    """A loader's sampler: the index arrays of the current pass, replaced before each pass (the
    sampler runs in the main process, so persistent workers see the new ones)."""

    def __init__(self) -> None:
        self.batches: list[np.ndarray] = []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


@dataclass(frozen=True)
class Feed:
    """How batches reach the model: device, normalisation and the runtime settings."""

    device: str
    normalize: str = "none"
    workers: int = 0
    channels_last: bool = False
    precision: str = "fp32"
    prefetch: int = 4  # batches each worker keeps ready
    #: id(split) -> (split, sampler, loader): one persistent loader per split (workers > 0)
    _loaders: dict = field(default_factory=dict, init=False, compare=False, repr=False)

    @property
    def on_cuda(self) -> bool:
        return str(self.device).startswith("cuda")

    def raw(self, split: Split, batches: Sequence[np.ndarray]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(uint8 images (B, H, W, C), targets (B, C)) on the device, in ``batches`` order."""
        dataset = RawBatches(split, batches)
        if self.workers == 0:
            source: Iterator = (dataset[i] for i in range(len(dataset)))
            if self.on_cuda:
                source = ((x.pin_memory(), t.pin_memory()) for x, t in source)
        else:
            source = self._loader(split, batches)
        for images, targets in source:
            yield (images.to(self.device, non_blocking=True),
                   targets.to(self.device, non_blocking=True))

    def _loader(self, split: Split, batches: Sequence[np.ndarray]) -> Iterator:
        """An iterator over ``batches`` from the split's persistent loader (made on first use)."""
        if id(split) not in self._loaders:
            sampler = _Pass()
            loader = torch.utils.data.DataLoader(
                SplitRows(split), batch_size=None, sampler=sampler, num_workers=self.workers,
                pin_memory=self.on_cuda, prefetch_factor=self.prefetch, persistent_workers=True)
            self._loaders[id(split)] = (split, sampler, loader)
        _, sampler, loader = self._loaders[id(split)]
        sampler.batches = list(batches)
        return iter(loader)

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        """Memory format of a model input (B, C, H, W)."""
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def views(self, images: torch.Tensor, n_views: int, aug: str,
              generator: torch.Generator) -> list[torch.Tensor]:
        """``n_views`` independent augmentations (B, C, H, W) float32 of a uint8 device batch."""
        return [self.finish(augment(images, aug, generator, self.normalize)) for _ in range(n_views)]

    def plain(self, split: Split, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Fixed-order, unaugmented (images (B, C, H, W) float, targets (B, C)) over a split."""
        for images, targets in self.raw(split, plain_batches(len(split), batch_size)):
            yield self.finish(to_float(images, self.normalize)), targets


@torch.no_grad()
def predict_scores(model: nn.Module, split: Split, batch_size: int, feed: Feed) -> np.ndarray:
    """Sigmoid scores (N, C) in float32 (computed from fp32 logits: no fp16 saturation ties)."""
    model.eval()
    out = []
    for x, _ in feed.plain(split, batch_size):
        with autocast(feed.device, feed.precision):
            logits = model(x)
        out.append(torch.sigmoid(logits.float()).cpu())
    return torch.cat(out).numpy().astype(np.float32)


@torch.no_grad()
def predict_training_free(model: nn.Module, split: Split, lambdas: list[float], batch_size: int,
                          feed: Feed) -> dict[float, np.ndarray]:
    """Scores of CSRA's training-free trick on the model's own linear head, per Lambda."""
    from methods.csra import training_free_logits

    weight, bias = model.linear_classifier()
    model.eval()
    out: dict[float, list[torch.Tensor]] = {lam: [] for lam in lambdas}
    for x, _ in feed.plain(split, batch_size):
        with autocast(feed.device, feed.precision):
            fmap = model.features(x)
        for lam in lambdas:
            out[lam].append(torch.sigmoid(training_free_logits(fmap.float(), weight, bias, lam).float()).cpu())
    return {lam: torch.cat(v).numpy().astype(np.float32) for lam, v in out.items()}
