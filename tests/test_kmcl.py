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


def test_kmcl_bc_scale_validated() -> None:
    spec = methods.get("kmcl")
    assert spec.resolve({})["bc_scale"] == "paper"
    assert spec.resolve({"bc_scale": "official-times-n"})["bc_scale"] == "official-times-n"
    with pytest.raises(HparamError, match="bc_scale"):
        spec.resolve({"bc_scale": "times-n"})


def test_bhattacharyya_official_times_n_by_hand() -> None:
    """Two diagonal Gaussians in n = 2 dims, per-dimension terms written out by hand."""
    mu = torch.tensor([[[0.0, 1.0]], [[2.0, 1.0]]], dtype=torch.float64)   # (M=2, K=1, n=2)
    var = torch.tensor([[[1.0, 2.0]], [[3.0, 2.0]]], dtype=torch.float64)
    # dim 1: 1/4 (0-2)^2/(1+3) + 1/2 log(4 / (2 sqrt 3)); dim 2: 0 + 1/2 log(4 / (2 sqrt 4)) = 0
    bd = 0.25 * 4 / 4 + 0.5 * np.log(4 / (2 * np.sqrt(3.0)))
    from methods.losses import bhattacharyya_log_coefficient
    paper = bhattacharyya_log_coefficient(mu, var, 2)
    official = bhattacharyya_log_coefficient(mu, var, 2, scale=2.0)
    assert paper.dtype == torch.float64
    assert np.isclose(float(paper[0, 1, 0]), -bd, rtol=1e-14, atol=0)
    assert np.isclose(float(official[0, 1, 0]), -2 * bd, rtol=1e-14, atol=0)
    assert float(official[0, 0, 0]) == 0.0


def test_kmcl_official_times_n_scales_the_anisotropic_kernel_term() -> None:
    import methods.losses as L
    spec = methods.get("kmcl")
    x, y = _batch()
    values = {}
    for scale in ("paper", "official-times-n"):
        torch.manual_seed(0)
        model = spec.build(_ctx(), spec.resolve({"n_dims": 16, "bc_scale": scale}))
        model.eval()
        logits, mix = model.head(model.features(x).mean(dim=(2, 3)))
        # by hand: distance = n * sum over dims of the per-dimension terms (official) or the plain sum
        m_i, m_j, v_i, v_j = mix.mu[:, None], mix.mu[None, :], mix.var[:, None], mix.var[None, :]
        per_dim = 0.25 * (m_i - m_j) ** 2 / (v_i + v_j) + 0.5 * torch.log((v_i + v_j) / (2 * torch.sqrt(v_i * v_j)))
        factor = 16.0 if scale == "official-times-n" else 1.0
        kcl = L.kmcl_kernel_contrastive_loss(-factor * per_dim.sum(3), y, 0.17, "inside_log", reduction="mean")
        asl = L.asymmetric_loss(logits, y, 4.0, 0.0, 0.05, 1e-7, "sum", True)
        recon = L.kmcl_reconstruction_loss(mix.z, logits, mix.mu, mix.var, y, False, reduction="mean")
        got = model.loss([x], y, "train")
        assert torch.allclose(got, asl + recon + kcl, rtol=1e-5)
        values[scale] = float(got)
    assert values["paper"] != values["official-times-n"]
    # isotropic: the reference's distance already equals ours, the option changes nothing
    iso = []
    for scale in ("paper", "official-times-n"):
        torch.manual_seed(0)
        model = spec.build(_ctx(), spec.resolve({"n_dims": 16, "covariance": "isotropic", "bc_scale": scale}))
        iso.append(float(model.loss([x], y, "train")))
    assert iso[0] == iso[1]
