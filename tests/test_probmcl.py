"""ProbMCL builds from the registry, trains in both stages, and stage 2 leaves the encoder alone."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import methods
from methods.base import BuildContext, HparamError, StageContext

C = 10


def _ctx() -> BuildContext:
    return BuildContext(num_classes=C, class_names=tuple(f"c{i}" for i in range(C)),
                        train_targets=np.zeros((4, C)), backbone="smallcnn",
                        backbone_options={"widths": (8, 16, 16, 32)}, resolution=32, in_chans=1)


def _stage_ctx(stage: str, index: int) -> StageContext:
    return StageContext(stage, index, 1, "cpu", lambda: iter(()), np.zeros((4, C)))


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 1, 32, 32, generator=g)
    y = (torch.rand(6, C, generator=g) < 0.3).float()
    y[:, 0] = 1
    y[1, 3] = -1
    return x, y


def _train(model, stage: str, index: int, steps: int = 5, lr: float = 1e-3) -> list[float]:
    model.prepare_stage(stage, _stage_ctx(stage, index))
    model.train()
    opt = torch.optim.Adam(list(model.trainable_parameters(stage)), lr=lr)
    x, y = _batch()
    losses = []
    for _ in range(steps):
        views = [x + 0.05 * k for k in range(model.views(stage))]
        loss = model.loss(views, y, stage)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert all(np.isfinite(losses))
    return losses


def test_probmcl_two_stages_train_and_stage2_freezes_encoder() -> None:
    torch.manual_seed(0)
    spec = methods.get("probmcl")
    model = spec.build(_ctx(), spec.resolve({"mdn_hidden": 64, "n_dims": 16}))
    assert model.stages == ("contrastive", "classification")
    assert model.stage_epochs(120) == [80, 40] and model.stage_epochs(3) == [2, 1]
    assert model.views("contrastive") == 2 and model.views("classification") == 1
    losses = _train(model, "contrastive", 0)
    assert losses[-1] < losses[0]
    encoder = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    mdn = {k: v.clone() for k, v in model.mdn.state_dict().items()}
    fc_before = model.fc.weight.detach().clone()
    losses = _train(model, "classification", 1)
    assert losses[-1] < losses[0]
    for k, v in model.backbone.state_dict().items():  # weights AND BatchNorm running stats
        assert torch.equal(v, encoder[k]), k
    for k, v in model.mdn.state_dict().items():
        assert torch.equal(v, mdn[k]), k
    assert not torch.equal(model.fc.weight, fc_before)
    assert {id(p) for p in model.trainable_parameters("classification")} == {id(p) for p in model.fc.parameters()}
    x, _ = _batch()
    assert model(x).shape == (6, C)
    # the paper's probe reads unit-normalised h: not linear in the feature map, so no trick
    assert model.linear_classifier() is None
    pooled = model.features(x).mean(dim=(2, 3))
    w, b = model.fc.weight, model.fc.bias
    assert torch.allclose(model(x), torch.nn.functional.normalize(pooled, dim=1) @ w.T + b, atol=1e-5)
    model.hp["probe_input"] = "raw"  # the earlier reading: GAP feature, linear, trick applies
    w, b = model.linear_classifier()
    assert torch.allclose(model(x), pooled @ w.T + b, atol=1e-5)


def test_probmcl_fine_tune_stage2_trains_encoder_not_mdn() -> None:
    torch.manual_seed(0)
    spec = methods.get("probmcl")
    model = spec.build(_ctx(), spec.resolve({"mdn_hidden": 64, "n_dims": 16, "stage2": "fine-tune"}))
    _train(model, "contrastive", 0, steps=1)
    encoder = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    mdn = {k: v.clone() for k, v in model.mdn.state_dict().items()}
    losses = _train(model, "classification", 1)
    assert losses[-1] < losses[0]
    assert any(not torch.equal(v, encoder[k]) for k, v in model.backbone.state_dict().items())
    for k, v in model.mdn.state_dict().items():
        assert torch.equal(v, mdn[k]), k


@pytest.mark.parametrize("target", ["label-posterior", "label-conditional", "projection", "projection_detached",
                                    "encoder"])
def test_probmcl_nll_targets_give_finite_loss(target: str) -> None:
    spec = methods.get("probmcl")
    model = spec.build(_ctx(), spec.resolve({"mdn_hidden": 32, "n_dims": 8, "nll_target": target}))
    x, y = _batch()
    loss = model.loss([x, x], y, "contrastive")
    loss.backward()
    assert torch.isfinite(loss)


@pytest.mark.parametrize("bad", [{"alpha": 1.2}, {"tau": 0.0}, {"lambda_pcl": -1.0}, {"overlap": "dice"},
                                 {"nll_target": "z"}, {"stage1_fraction": 0.0}, {"stage1_fraction": 1.0},
                                 {"probe_input": "l2"}, {"n_dims": 0}, {"nope": 1}])
def test_probmcl_bad_hparams(bad: dict) -> None:
    with pytest.raises(HparamError):
        methods.get("probmcl").resolve(bad)


def test_probmcl_search_space_draws_valid_values() -> None:
    spec = methods.get("probmcl")
    for seed in range(5):
        spec.resolve(spec.sample(seed))
