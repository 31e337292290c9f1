"""In-domain stand-in for ImageNet pretraining, for the CPU suites (backbone option
``weights: in-domain``).

All three papers fine-tune ImageNet-pretrained backbones. No ImageNet weights exist offline
for the small CPU encoder, so it is pretrained ONCE on a single-object classification task
drawn from the embedded dataset's TRAINING source pools only (never a validation or test
object, not even as clutter): one object per image, class uniform, the same renderer and
noise as the multi-label images but larger objects and less clutter (:data:`RECIPE`),
softmax cross-entropy over all classes.

The result is cached under ``<cache>/pretrained/<backbone>-in-domain-<fingerprint>.pt``,
where the fingerprint hashes :data:`RECIPE`, the backbone, its options, the
input channels and the data options that change the pretraining images. A sidecar JSON holds
the recipe, the fingerprint, the weights' sha256, the held-out accuracy (on further
training-pool images) and where it was made; every record that uses the weights carries it.
Concurrent jobs wait on a file lock, so a Slurm array pretrains once.
"""
from __future__ import annotations

import fcntl
import hashlib
import io
import json
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from bench.train.augment import augment, to_float
from bench.data.base import DataError
from bench.run.provenance import cpu_model
from bench.run.store import atomic_write_bytes, atomic_write_json
from bench.train.data import epoch_batches
from bench.train.optim import build_optimizer, build_schedule, derived_seed

#: The pretraining recipe (declared once; part of the cache fingerprint). Objects are drawn
#: larger than in the mosaics (30-75 % of a 32 px canvas: 10-24 px, the mosaics' 6-18 px
#: after their 6x6 vs 4x4 final maps) with less clutter, so the task is learnable in a few
#: CPU minutes; the encoder is fully convolutional, so one pretraining serves every resolution.
RECIPE: dict[str, Any] = {
    "version": 2,
    "task": "single-object classification, all classes, TRAINING source pools only",
    "resolution": 32, "min_size": 0.3, "max_size": 0.75, "clutter": 3.0,
    "images": 12000, "holdout_images": 1000, "epochs": 6, "batch_size": 128,
    "optimizer": {"name": "adamw", "lr": 3e-3, "weight_decay": 1e-4, "schedule": "onecycle",
                  "pct_start": 0.2, "momentum": 0.9},
    "augmentation": "shift", "seed": 0,
}
#: Dataset options that change the pretraining images (sizes and clutter are the recipe's;
#: the split sizes and the seed do not matter).
_DATA_KEYS = ("variant", "noise")


def _fingerprint(backbone: str, options: Mapping[str, Any], in_chans: int,
                 data_options: Mapping[str, Any], normalize: str) -> str:
    text = json.dumps({"recipe": RECIPE, "backbone": backbone, "options": dict(options),
                       "in_chans": in_chans, "normalize": normalize,
                       "data": {k: data_options[k] for k in _DATA_KEYS}}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def in_domain_weights(dataset: Mapping[str, Any], backbone: str, options: Mapping[str, Any],
                      in_chans: int, normalize: str, cache_dir: str | Path,
                      progress: bool = True) -> dict[str, Any]:
    """The cached in-domain weights for this backbone and data (pretrained now if missing).

    Returns the sidecar info: {path, sha256, fingerprint, recipe, holdout_accuracy, ...}."""
    from bench.data.embedded import MosaicOptions

    if dataset.get("name") != "mnist-mosaic":
        raise DataError(f"backbone option weights: in-domain needs the embedded dataset mnist-mosaic, "
                        f"not {dataset.get('name')!r}; give ImageNet weights (weights: imagenet or a path)")
    opts = MosaicOptions.parse(dataset.get("options") or {})
    build_opts = {k: v for k, v in options.items() if k not in ("weights", "pretrained_path", "weights_sha256")}
    key = _fingerprint(backbone, build_opts, in_chans, asdict(opts), normalize)
    folder = Path(cache_dir) / "pretrained"
    folder.mkdir(parents=True, exist_ok=True)
    weights, sidecar = folder / f"{backbone}-in-domain-{key}.pt", folder / f"{backbone}-in-domain-{key}.json"
    with open(folder / f"{key}.lock", "a+") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)  # one process pretrains; the others wait
        if sidecar.is_file() and weights.is_file():
            return json.loads(sidecar.read_text())
        if progress:
            print(f"pretraining {backbone} in-domain (fingerprint {key}, once; cached in {folder})", flush=True)
        state, info = _pretrain(opts, backbone, build_opts, in_chans, normalize)
        buf = io.BytesIO()
        torch.save(state, buf)
        atomic_write_bytes(weights, buf.getvalue())
        info.update(path=str(weights.resolve()), sha256=hashlib.sha256(buf.getvalue()).hexdigest(),
                    fingerprint=key, recipe=RECIPE)
        atomic_write_json(sidecar, info)  # written last: its presence means the weights are complete
        return info


def _pretrain(opts: Any, backbone: str, build_opts: Mapping[str, Any], in_chans: int,
              normalize: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    from bench.data.embedded import render_split
    from methods.backbones import build_backbone

    t0 = time.perf_counter()
    n, n_hold = RECIPE["images"], RECIPE["holdout_images"]
    single = replace(opts, min_objects=1, max_objects=1, seed=RECIPE["seed"], min_size=RECIPE["min_size"],
                     max_size=RECIPE["max_size"], clutter=RECIPE["clutter"])
    resolution = RECIPE["resolution"]
    rendered = render_split(single, resolution, "train", n + n_hold, single_object=True)
    images, labels = rendered.images, rendered.targets.argmax(1)
    torch.manual_seed(derived_seed(RECIPE["seed"], "pretrain-init"))
    net = build_backbone(backbone, in_chans, build_opts)
    head = nn.Linear(net.num_features, rendered.targets.shape[1])
    model = nn.Sequential(net, nn.AdaptiveAvgPool2d(1), nn.Flatten(), head)
    params = list(model.parameters())
    opt = build_optimizer([("all", params, 1.0)], RECIPE["optimizer"])
    bs, epochs = RECIPE["batch_size"], RECIPE["epochs"]
    sched = build_schedule(opt, RECIPE["optimizer"], epochs, n // bs)
    y_all = torch.from_numpy(labels.astype(np.int64))
    for epoch in range(epochs):
        model.train()
        gen = torch.Generator().manual_seed(derived_seed(RECIPE["seed"], "pretrain", epoch))
        for idx in epoch_batches(n, bs, gen):
            x = augment(torch.from_numpy(np.ascontiguousarray(images[idx])), RECIPE["augmentation"], gen, normalize)
            loss = nn.functional.cross_entropy(model(x), y_all[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    with torch.no_grad():
        hold = torch.from_numpy(np.ascontiguousarray(images[n:]))
        pred = torch.cat([model(to_float(hold[i:i + 256], normalize)).argmax(1) for i in range(0, n_hold, 256)])
    accuracy = float((pred == y_all[n:]).float().mean()) * 100
    info = {"holdout_accuracy": round(accuracy, 2), "final_train_loss": round(float(loss.detach()), 4),
            "seconds": round(time.perf_counter() - t0, 1), "threads": torch.get_num_threads(),
            "machine": cpu_model(), "backbone": backbone, "in_chans": in_chans,
            "pool": "train", "classes": int(rendered.targets.shape[1])}
    return {k: v.detach().clone() for k, v in net.state_dict().items()}, info
