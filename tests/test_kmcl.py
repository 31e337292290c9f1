"""KMCL-style model: one stage, trains end to end, classifier is the composed linear map."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import methods
from methods.base import BuildContext, HparamError

C = 10


def _ctx() -> BuildContext:
    return BuildContext(num_classes=C, class_names=tuple(f"c{i}" for i in range(C)),
                        train_targets=np.zeros((4, C)), backbone="smallcnn",
                        backbone_options={"widths": (8, 16, 16, 32)}, resolution=32, in_chans=1)


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 1, 32, 32, generator=g)
    y = (torch.rand(6, C, generator=g) < 0.3).float()
    y[:, 0] = 1
    y[1, 3] = -1
    return x, y


def _train(model, steps: int = 5, lr: float = 1e-3) -> list[float]:
    model.train()
    opt = torch.optim.Adam(list(model.trainable_parameters("train")), lr=lr)
    x, y = _batch()
    losses = []
    for _ in range(steps):
        loss = model.loss([x], y, "train")
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert all(np.isfinite(losses))
    return losses


@pytest.mark.parametrize("covariance", ["anisotropic", "isotropic"])
def test_kmcl_trains_end_to_end(covariance: str) -> None:
    torch.manual_seed(0)
    spec = methods.get("kmcl")
    model = spec.build(_ctx(), spec.resolve({"covariance": covariance, "n_dims": 16}))
    assert model.stages == ("train",) and model.views("train") == 1
    losses = _train(model)
    assert losses[-1] < losses[0]
    x, _ = _batch()
    model.eval()
    w, b = model.linear_classifier()
    pooled = model.features(x).mean(dim=(2, 3))
    assert torch.allclose(model(x), pooled @ w.T + b, atol=1e-4)
    assert model(x).shape == (6, C)


def test_kmcl_weighted_jaccard_and_normalised_recon_are_finite() -> None:
    spec = methods.get("kmcl")
    model = spec.build(_ctx(), spec.resolve({"jaccard": "weight", "recon_normalised": True, "n_dims": 8}))
    x, y = _batch()
    loss = model.loss([x], y, "train")
    loss.backward()
    assert torch.isfinite(loss) and np.isfinite(float(loss))


@pytest.mark.parametrize("bad", [{"tau": -0.1}, {"lambda_kcl": -1.0}, {"covariance": "full"},
                                 {"jaccard": "outside"}, {"n_dims": 1.5}])
def test_kmcl_bad_hparams(bad: dict) -> None:
    with pytest.raises(HparamError):
        methods.get("kmcl").resolve(bad)
