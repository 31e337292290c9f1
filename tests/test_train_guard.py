"""The non-finite guard of the training step (bench.train.guard, bench.train.loop), decided on the
device: a skipped step leaves the weights, the optimiser state and the EMA exactly as they were;
the skips are counted and the budget is enforced at the end of the epoch."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from bench.data.base import Split
from bench.train.data import Feed
from bench.train.ema import make_ema
from bench.train import guard
from bench.train.guard import masked_update, optimizer_tensors
from bench.train.loop import NonFiniteError, Step, train_epoch
from bench.train.optim import build_optimizer, build_schedule
from bench.train.precision import grad_scaler
from bench.train.settings import Runtime
from methods.base import MultiLabelModel
from methods.losses import bce_loss

C = 3


@pytest.fixture(autouse=True, params=["device", "host"])
def path(request, monkeypatch):
    """Every test twice: the device path (update, then undo where not finite; what a GPU runs) and
    the host path (``if finite: update()``; what a CPU run takes, the flag being in host memory)."""
    monkeypatch.setattr(guard, "HOST_READ_FREE", {"cpu"} if request.param == "host" else set())
    return request.param

CFG = {"name": "adamw", "lr": 0.05, "weight_decay": 1e-2, "schedule": "constant", "momentum": 0.9}


class Poisoned(MultiLabelModel):
    """A linear model whose loss is NaN on the steps listed in ``poison`` (0-based)."""

    def __init__(self, poison: set[int]) -> None:
        super().__init__()
        self.fc = nn.Linear(3 * 4 * 4, C)
        self.poison, self.calls = poison, 0

    def forward(self, images):
        return self.fc(images.flatten(1))

    def loss(self, views, targets, stage):
        loss = bce_loss(self(views[0]), targets)
        self.calls += 1
        return loss * float("nan") if self.calls - 1 in self.poison else loss


def _split() -> Split:
    rng = np.random.default_rng(0)
    return Split(rng.integers(0, 256, (16, 4, 4, 3), dtype=np.uint8),
                 (rng.random((16, C)) < 0.5).astype(np.int8), tuple(map(str, range(16))))


def _run(batches: list[np.ndarray], poison: set[int], optimizer: str = "adamw", budget: int = 10):
    torch.manual_seed(0)
    model = Poisoned(poison)
    params = list(model.parameters())
    cfg = {**CFG, "name": optimizer}
    opt = build_optimizer([("all", params, 1.0)], cfg)
    step = Step(opt, build_schedule(opt, cfg, 1, len(batches)), grad_scaler("cpu", "fp32"), make_ema(model, 0.5),
                params, None, Runtime(max_nonfinite_steps=budget))
    result = train_epoch(model, "train", _split(), batches, feed=Feed("cpu"), step=step, aug="none", n_views=1,
                         generator=torch.Generator().manual_seed(0))
    return model, step, result


def _state(model, step) -> list[torch.Tensor]:
    return [*model.state_dict().values(), *step.ema.module.state_dict().values(), *optimizer_tensors(step.opt)]


@pytest.mark.parametrize("optimizer", ["adamw", "adam", "sgd"])
def test_a_skipped_step_leaves_no_trace(optimizer):
    """Steps 0, 1 (NaN), 2 end exactly where steps 0, 2 end: weights, optimiser state (Adam's step
    counter included) and EMA, bit for bit; the skip is counted."""
    b = [np.arange(0, 8), np.arange(8, 16), np.arange(4, 12)]
    poisoned_model, poisoned_step, result = _run(b, {1}, optimizer)
    clean_model, clean_step, clean = _run([b[0], b[2]], set(), optimizer)
    assert result.nonfinite_steps == 1 and clean.nonfinite_steps == 0
    for x, y in zip(_state(poisoned_model, poisoned_step), _state(clean_model, clean_step), strict=True):
        assert torch.equal(x, y)


def test_a_skipped_first_step_leaves_adams_fresh_state():
    b = [np.arange(0, 8), np.arange(8, 16)]
    poisoned_model, poisoned_step, result = _run(b, {0})
    clean_model, clean_step, _ = _run([b[1]], set())
    assert result.nonfinite_steps == 1
    for x, y in zip(_state(poisoned_model, poisoned_step), _state(clean_model, clean_step), strict=True):
        assert torch.equal(x, y)


def test_the_budget_fails_the_epoch_in_which_it_is_exceeded():
    b = [np.arange(0, 8), np.arange(8, 16), np.arange(4, 12)]
    with pytest.raises(NonFiniteError, match="2 non-finite training steps"):
        _run(b, {0, 2}, budget=1)
    _, _, result = _run(b, {0, 2}, budget=2)
    assert result.nonfinite_steps == 2


def test_masked_update_keeps_a_finite_update_bit_for_bit():
    x = torch.randn(5, generator=torch.Generator().manual_seed(1))
    a, b = x.clone(), x.clone()
    masked_update(torch.tensor(True), lambda: [a], lambda: a.mul_(1.1).add_(0.3))
    b.mul_(1.1).add_(0.3)
    assert torch.equal(a, b)
    masked_update(torch.tensor(False), lambda: [a], lambda: a.mul_(float("nan")))
    assert torch.equal(a, b)


def test_persistent_workers_serve_every_pass_of_a_split_with_the_same_numbers():
    """workers > 0: one loader per split for the Feed's life (no pool forked per epoch or per
    evaluation pass), each pass's batches in its order, equal to the in-process path."""
    split = _split()
    passes = [[np.arange(0, 8), np.arange(8, 16)], [np.arange(4, 12)], [np.arange(2, 10), np.arange(0, 8)]]
    feed, plain = Feed("cpu", workers=1), Feed("cpu", workers=0)
    pids = []
    for batches in passes:
        got, want = list(feed.raw(split, batches)), list(plain.raw(split, batches))
        assert len(got) == len(want)
        for (x, t), (y, u) in zip(got, want):
            assert torch.equal(x, y) and torch.equal(t, u)
        (_, _, loader), = feed._loaders.values()
        pids.append([w.pid for w in loader._iterator._workers])
    assert pids[0] == pids[1] == pids[2]
    half = feed.raw(split, passes[0])
    next(half)  # a pass left unfinished (ProbMCL's representation check stops early)
    for (x, _), (y, _) in zip(feed.raw(split, passes[2]), plain.raw(split, passes[2]), strict=True):
        assert torch.equal(x, y)
