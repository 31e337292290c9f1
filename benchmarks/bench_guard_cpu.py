"""The non-finite guard of a CPU training step: device path vs host-memory shortcut (issue 28).

    .venv/bin/python benchmarks/bench_guard_cpu.py [--steps 30] [--reps 3] [--threads 1]

bench.train.guard.masked_update decides a step's update on the device (snapshot, update,
``torch.where``, copy back): no host read, what a GPU needs. On the CPU the flag is in host
memory and reading it is free, so the guard there is ``if finite: update()``
(``guard.HOST_READ_FREE``). This times both, alternating in one process, on the default
suite's step (smallcnn, 32 px, batch 64, AdamW + OneCycle, ``shift`` augmentation) for the
baseline and ProbMCL's contrastive stage, with and without EMA, and checks that the weights,
optimiser state and EMA after the steps are bit-identical.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import methods  # noqa: E402
from bench.data.base import Split  # noqa: E402
from bench.train import guard  # noqa: E402
from bench.train.data import Feed, epoch_batches  # noqa: E402
from bench.train.ema import make_ema  # noqa: E402
from bench.train.guard import optimizer_tensors  # noqa: E402
from bench.train.loop import Step, train_epoch  # noqa: E402
from bench.train.optim import build_optimizer, build_schedule, optimizer_groups  # noqa: E402
from bench.train.precision import grad_scaler  # noqa: E402
from bench.train.settings import Runtime  # noqa: E402
from methods.base import BuildContext, StageContext  # noqa: E402

C, SIDE, BATCH = 20, 32, 64
OPT = {"name": "adamw", "lr": 4e-3, "weight_decay": 1e-4, "schedule": "onecycle", "pct_start": 0.2,
       "momentum": 0.9, "backbone_lr_scale": 0.1}


def _split(n: int) -> Split:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, SIDE, SIDE, 1), dtype=np.uint8)
    targets = (rng.random((n, C)) < 0.15).astype(np.int8)
    return Split(images, targets, tuple(str(i) for i in range(n)))


def _train(method: str, stage: str, ema: float | None, steps: int, host: bool):
    guard.HOST_READ_FREE = {"cpu"} if host else set()
    split = _split(BATCH * steps)
    spec = methods.get(method)
    torch.manual_seed(0)
    ctx = BuildContext(num_classes=C, class_names=tuple(f"c{i}" for i in range(C)), train_targets=split.targets,
                       backbone="smallcnn", backbone_options={}, resolution=SIDE, in_chans=1)
    model = spec.build(ctx, spec.resolve({}))
    feed = Feed("cpu")
    for si, s in enumerate(model.stages[:model.stages.index(stage) + 1]):
        model.prepare_stage(s, StageContext(s, si, 1, "cpu", lambda: feed.plain(split, BATCH), split.targets))
    params = [p for p in model.trainable_parameters(stage) if p.requires_grad]
    opt = build_optimizer(optimizer_groups(model, stage, params, "equal-budget", OPT), OPT)
    step = Step(opt, build_schedule(opt, OPT, 1, steps), grad_scaler("cpu", "fp32"), make_ema(model, ema), params,
                None, Runtime())
    gen = torch.Generator().manual_seed(0)
    batches = epoch_batches(len(split), BATCH, gen)
    t0 = time.perf_counter()
    train_epoch(model, stage, split, batches, feed=feed, step=step, aug="shift", n_views=model.views(stage),
                generator=gen)
    seconds = time.perf_counter() - t0
    state = [*model.state_dict().values(), *optimizer_tensors(opt)]
    if step.ema is not None:
        state += list(step.ema.module.state_dict().values())
    return seconds / steps, [t.detach().clone() for t in state]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"# {args.steps} steps x {args.reps} reps, alternating, {args.threads} thread(s); median ms per step")
    same = True
    for method, stage, ema in [("baseline", "train", None), ("baseline", "train", 0.99),
                               ("probmcl", "contrastive", None)]:
        times: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(args.reps):
            states = {}
            for host in (False, True):
                seconds, states[host] = _train(method, stage, ema, args.steps, host)
                times[host].append(seconds)
            same &= all(torch.equal(a, b) for a, b in zip(states[False], states[True], strict=True))
        device, host = (statistics.median(times[h]) * 1e3 for h in (False, True))
        print(f"{method:8s} {stage:12s} ema {str(ema):5s}  device path {device:7.1f}  host shortcut {host:7.1f}"
              f"   x{device / host:.2f}")
    print(f"weights, optimiser state and EMA bit-identical: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
