"""Every registered method, automatically (timm-style): a new method is tested by being registered.

Each builds from its paper defaults on a tiny CPU configuration, trains a few steps in every
stage on a fixed batch with a finite, decreasing loss, and returns (B, C) logits; its defaults
and every search-space draw pass its own validator.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import methods
from methods.base import BuildContext, MultiLabelModel, StageContext

C, B = 10, 8


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(B, 1, 32, 32, generator=g)
    y = (torch.rand(B, C, generator=g) < 0.3).float()
    y[:, 0] = 1.0
    return x, y


def _ctx(train_targets: np.ndarray) -> BuildContext:
    return BuildContext(num_classes=C, class_names=("zero", "one", "two", "three", "four", "five",
                                                    "six", "seven", "eight", "nine"),
                        train_targets=train_targets, backbone="smallcnn",
                        backbone_options={"widths": (8, 16, 16, 32)}, resolution=32, in_chans=1)


@pytest.mark.parametrize("name", methods.names())
def test_method_trains_every_stage_with_decreasing_finite_loss(name: str) -> None:
    spec = methods.get(name)
    x, y = _batch()
    torch.manual_seed(0)
    hp = spec.resolve({"embeddings": "onehot"} if "embeddings" in spec.defaults else {})
    model = spec.build(_ctx(y.numpy().astype(np.int8)), hp)
    assert isinstance(model, MultiLabelModel)
    assert len(model.stage_epochs(6)) == len(model.stages) and sum(model.stage_epochs(6)) == 6
    for index, stage in enumerate(model.stages):
        model.prepare_stage(stage, StageContext(stage, index, 1, "cpu", lambda: iter([(x, y)]),
                                                y.numpy().astype(np.int8)))
        model.train()
        params = [p for p in model.trainable_parameters(stage) if p.requires_grad]
        assert params, f"{name}/{stage}: nothing to train"
        opt = torch.optim.Adam(params, lr=1e-3)
        losses = []
        for _ in range(6):
            loss = model.loss([x] * model.views(stage), y, stage)
            assert loss.ndim == 0 and torch.isfinite(loss), f"{name}/{stage}: loss {loss}"
            opt.zero_grad()
            loss.backward()
            assert all(torch.isfinite(p.grad).all() for p in params if p.grad is not None)
            opt.step()
            losses.append(loss.item())
        assert losses[-1] < losses[0], f"{name}/{stage}: loss did not decrease: {losses}"
    model.eval()
    with torch.no_grad():
        assert model(x).shape == (B, C)
        assert model.features(x).ndim == 4


@pytest.mark.parametrize("name", methods.names())
def test_defaults_and_search_space_pass_the_validator(name: str) -> None:
    spec = methods.get(name)
    assert spec.paper and spec.summary and spec.recipe
    spec.resolve({})
    for seed in range(5):
        spec.resolve(spec.sample(seed))


@pytest.mark.parametrize("name", methods.names())
def test_non_finite_and_mistyped_values_are_refused(name: str) -> None:
    """NaN compares False with everything, so a range check alone lets it through: every numeric
    hyperparameter of every method refuses NaN and +-inf; a bool refuses 0/1."""
    from methods.base import HparamError

    spec = methods.get(name)
    numeric = [k for k, v in spec.defaults.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    for key in numeric:
        for bad in (float("nan"), float("inf"), float("-inf")):
            with pytest.raises(HparamError, match=key):
                spec.resolve({key: bad})
    for key in [k for k, v in spec.defaults.items() if isinstance(v, bool)]:
        with pytest.raises(HparamError, match=key):
            spec.resolve({key: int(not spec.defaults[key])})
