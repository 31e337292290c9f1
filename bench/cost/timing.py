"""`bench cost --timing`: training-step and inference time relative to the plain baseline.

Measured in one process on the machine at hand, same backbone, batch and synthetic data.
Each repetition runs every model's step (fastest of INNER_CALLS calls) in an order rotated
per repetition; the ratio to the baseline's step of the SAME repetition is taken (machine
drift cancels) and the median over repetitions reported. Multi-stage methods: one ratio
per stage's step. A "baseline" row measures the noise floor (its ratio should be ~1).
"""
from __future__ import annotations

import time
from typing import Callable, Sequence

import numpy as np
import torch

from bench.cost.count import CostConfig, synthetic_images, build_model, stage_context, synthetic_targets

#: Calls per task and repetition; the fastest is kept (robust to other processes' spikes).
INNER_CALLS = 3


def _min_time(fn: Callable[[], None], calls: int) -> float:
    best = float("inf")
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _step_fns(cfg: CostConfig, stage_index: int | None, batch: int) -> Callable[[], None]:
    """A closure running one training step of stage ``stage_index`` (None: one inference)."""
    model = build_model(cfg)
    stages = model.stages if stage_index is None else model.stages[:stage_index + 1]
    for i, stage in enumerate(stages):
        model.prepare_stage(stage, stage_context(cfg, stage, i))
    images = synthetic_images(cfg, batch, 3)
    if stage_index is None:
        model.eval()

        def infer() -> None:
            with torch.no_grad():
                model(images)
        return infer
    stage = model.stages[stage_index]
    views = [synthetic_images(cfg, batch, 20 + v) for v in range(model.views(stage))]
    targets = torch.as_tensor(np.resize(synthetic_targets(cfg.num_classes), (batch, cfg.num_classes)),
                              dtype=torch.float32)
    opt = torch.optim.SGD(list(model.trainable_parameters(stage)), lr=1e-6)
    model.train()

    def train() -> None:
        opt.zero_grad(set_to_none=True)
        model.loss(views, targets, stage).backward()
        opt.step()
    return train


def time_ratios(configs: Sequence[CostConfig], batch: int = 8, reps: int = 5,
                log: Callable[[str], None] = lambda s: None) -> dict[tuple[str, str], float]:
    """{(label, stage or 'inference'): median over reps of time / baseline time}, same backbone,
    batch and process; each repetition runs every model's step (fastest of INNER_CALLS calls) in
    rotating order, divided by the baseline's of the same repetition (drift cancels)."""
    out: dict[tuple[str, str], float] = {}
    groups: dict[tuple, list[CostConfig]] = {}
    for cfg in configs:
        key = (cfg.backbone, cfg.resolution, cfg.num_classes, cfg.in_chans, repr(cfg.backbone_options))
        groups.setdefault(key, []).append(cfg)
    for group in groups.values():
        base = CostConfig("baseline", group[0].backbone, group[0].resolution, group[0].num_classes,
                          {}, group[0].in_chans, "baseline", backbone_options=group[0].backbone_options)
        tasks: list[tuple[tuple[str, str], str, Callable[[], None]]] = [
            (("", "train"), "train", _step_fns(base, 0, batch)),
            (("", "inference"), "infer", _step_fns(base, None, batch))]
        for cfg in group:
            try:
                label = cfg.label or cfg.method
                for s, stage in enumerate(build_model(cfg).stages):
                    tasks.append(((label, stage), "train", _step_fns(cfg, s, batch)))
                tasks.append(((label, "inference"), "infer", _step_fns(cfg, None, batch)))
            except Exception as err:  # noqa: BLE001 -- counted rows already report it
                log(f"timing skipped for {cfg.label or cfg.method}: {err}")
        log(f"timing {len(tasks)} steps x {reps + 1} repetitions ({group[0].backbone})")
        samples: dict[tuple[str, str], list[float]] = {k: [] for k, _, _ in tasks}
        for rep in range(reps + 1):  # repetition 0 warms up
            times: dict[tuple[str, str], float] = {}
            for k, _, fn in tasks[rep % len(tasks):] + tasks[:rep % len(tasks)]:
                times[k] = _min_time(fn, INNER_CALLS)
            if rep:
                for k, kind, _ in tasks:
                    samples[k].append(times[k] / times[("", "train" if kind == "train" else "inference")])
        out.update({k: round(float(np.median(v)), 3) for k, v in samples.items() if k[0]})
    return out
