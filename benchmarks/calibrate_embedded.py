"""Calibrate the difficulty of the embedded "mnist-mosaic" dataset with a plain baseline.

SmallCNN (in_chans=1) + global average (or max) pooling + linear + BCE, AdamW (lr 2e-3,
wd 1e-4), OneCycleLR (pct_start 0.2), batch 64, 6 epochs, random shift (pad 4 + crop).
Prints test mAP (sklearn average_precision_score, macro over classes) and timings.

    .venv/bin/python benchmarks/calibrate_embedded.py --pool avg
    .venv/bin/python benchmarks/calibrate_embedded.py --pool max --option noise=0.12
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import average_precision_score
from torch import nn

from bench.data.embedded import load
from methods.backbones import SmallCNN


class Baseline(nn.Module):
    def __init__(self, num_classes: int, pool: str) -> None:
        super().__init__()
        self.body = SmallCNN(in_chans=1)
        self.pool = pool
        self.head = nn.Linear(self.body.num_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fmap = self.body(x)  # (B, C, h, w)
        feat = fmap.mean((2, 3)) if self.pool == "avg" else fmap.amax((2, 3))
        return self.head(feat)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """(N, H, W, 1) uint8 -> (N, 1, H, W) float in about [-1, 1]."""
    return (torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5) - 1.0


def random_shift(x: torch.Tensor, pad: int, gen: torch.Generator) -> torch.Tensor:
    """Zero-pad (background = -1) by ``pad`` and crop back at a random offset per image."""
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), value=-1.0)
    offs = torch.randint(0, 2 * pad + 1, (n, 2), generator=gen)
    return torch.stack([padded[i, :, dy:dy + h, dx:dx + w] for i, (dy, dx) in enumerate(offs.tolist())])


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch: int = 256) -> np.ndarray:
    model.eval()
    return torch.cat([model(x[i:i + batch]) for i in range(0, len(x), batch)]).sigmoid().numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pool", choices=("avg", "max"), default="avg")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0, help="model init / batch order seed")
    ap.add_argument("--resolution", type=int, default=48)
    ap.add_argument("--option", action="append", default=[], help="dataset option key=value")
    ap.add_argument("--cache-dir", default=".cache/data")
    args = ap.parse_args()
    torch.set_num_threads(2)
    options = {k: json.loads(v) if v[:1].isdigit() or v[:1] in "-." else v
               for k, v in (o.split("=", 1) for o in args.option)}

    t0 = time.time()
    data = load(options, resolution=args.resolution, cache_dir=Path(args.cache_dir))
    t_data = time.time() - t0
    x_train, y_train = to_tensor(data.train.images), torch.from_numpy(data.train.targets).float()
    x_test, y_test = to_tensor(data.test.images), data.test.targets

    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    model = Baseline(data.num_classes, args.pool)
    batch = 64
    steps = args.epochs * ((len(x_train) + batch - 1) // batch)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps, pct_start=0.2)
    t1 = time.time()
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(x_train), generator=gen)
        total = 0.0
        for i in range(0, len(perm), batch):
            idx = perm[i:i + batch]
            loss = F.binary_cross_entropy_with_logits(model(random_shift(x_train[idx], 4, gen)), y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        print(f"epoch {epoch + 1}: train loss {total / len(x_train):.4f} ({time.time() - t1:.0f} s)", flush=True)
    t_train = time.time() - t1
    scores = predict(model, x_test)
    test_map = 100 * average_precision_score(y_test, scores, average="macro")
    result = {"pool": args.pool, "epochs": args.epochs, "seed": args.seed, "options": options,
              "test_mAP": round(float(test_map), 2), "data_s": round(t_data, 1),
              "train_s": round(t_train, 1), "train_img_per_s": round(args.epochs * len(x_train) / t_train),
              "fingerprint": data.fingerprint}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
