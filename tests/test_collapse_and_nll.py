"""ProbMCL's label-aware NLL readings, the collapse check, and thresholds tuned on validation."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import methods
from bench.evaluate.thresholds import global_threshold, per_class_thresholds, tuned_metrics
from methods.base import BuildContext
from methods.diagnostics import collapse_stats, effective_rank
from methods.losses import gaussian_log_density, mixture_label_nll


def _mixture(m=4, k=3, n=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(m, n, generator=g, dtype=torch.float64)
    log_pi = torch.log_softmax(torch.randn(m, k, generator=g, dtype=torch.float64), 1)
    mu = torch.randn(m, k, generator=g, dtype=torch.float64)
    var = 1 + torch.rand(m, k, generator=g, dtype=torch.float64)
    return z, log_pi, mu, var


def test_label_nll_readings_by_hand():
    z, log_pi, mu, var = _mixture()
    y = torch.tensor([[1, 0, 1], [0, 1, 0], [0, 0, 0], [1, -1, 0]], dtype=torch.float64)
    joint = (log_pi + gaussian_log_density(z, mu, var)).exp()
    post = cond = 0.0
    for i in range(4):
        own = sum(joint[i, k] for k in range(3) if y[i, k] == 1)
        if own == 0:
            continue  # no positive: contributes nothing
        post += -math.log(own / joint[i].sum())
        cond += -math.log(own)
    got_post = mixture_label_nll(z, log_pi, mu, var, y, "label-posterior")
    got_cond = mixture_label_nll(z, log_pi, mu, var, y, "label-conditional")
    assert got_post.dtype == torch.float64
    assert float(got_post) == pytest.approx(post, rel=1e-12)
    assert float(got_cond) == pytest.approx(cond, rel=1e-12)


def test_label_nll_gradient_is_finite_with_an_unlabelled_row():
    z, log_pi, mu, var = _mixture()
    z.requires_grad_(True)
    y = torch.zeros(4, 3, dtype=torch.float64)
    y[0, 1] = 1
    mixture_label_nll(z, log_pi, mu, var, y).backward()
    assert torch.isfinite(z.grad).all() and float(z.grad[1:].abs().sum()) == 0.0


def test_collapse_check_catches_a_collapsed_encoder():
    g = torch.Generator().manual_seed(0)
    healthy = collapse_stats(torch.randn(64, 32, generator=g), torch.relu(torch.randn(64, 16, generator=g)),
                             torch.rand(64, 64, generator=g))
    assert not healthy["collapsed"] and healthy["effective_rank"] > 20
    same = torch.randn(1, 32, generator=g).repeat(64, 1) + 1e-9 * torch.randn(64, 32, generator=g)
    collapsed = collapse_stats(same, torch.zeros(64, 16), torch.ones(64, 64))
    assert collapsed["collapsed"] and collapsed["dead_fraction"] == 1.0
    assert collapsed["similarity_std"] == 0.0 and collapsed["effective_rank"] < 2
    assert effective_rank(torch.eye(8)) == pytest.approx(7.0, rel=1e-6)  # centred: rank 7, flat spectrum


def test_probmcl_representation_check_on_a_model():
    spec = methods.get("probmcl")
    ctx = BuildContext(num_classes=4, class_names=tuple("abcd"), train_targets=np.zeros((2, 4)),
                       backbone="smallcnn", backbone_options={"widths": (8, 8, 8, 16)}, resolution=16, in_chans=1)
    model = spec.build(ctx, spec.resolve({"mdn_hidden": 32, "n_dims": 8}))
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(16, 1, 16, 16, generator=g), None) for _ in range(3)]
    stats = model.representation_check(batches)
    assert stats["images"] == 48 and stats["feature_dim"] == 16 and stats["projection_dim"] == 8
    assert set(stats) >= {"dead_fraction", "similarity_std", "effective_rank", "collapsed"}
    with torch.no_grad():  # kill the projection: every unit dead, every similarity equal
        model.mdn.mlp[2].weight.zero_()
        model.mdn.mlp[2].bias.fill_(-1.0)
    assert model.representation_check(batches)["collapsed"]


def test_tuned_thresholds_on_validation():
    rng = np.random.default_rng(0)
    y = (rng.random((400, 3)) < 0.3).astype(np.int8)
    scores = np.clip(0.6 + 0.3 * y + 0.05 * rng.standard_normal(y.shape), 0, 1)  # every score > 0.5
    t = per_class_thresholds(scores, y)
    assert np.all((t > 0.7) & (t < 0.9))  # between the negatives (~0.6) and positives (~0.9)
    assert 0.7 < global_threshold(scores, y) < 0.9
    out = tuned_metrics(scores, y, scores, y)
    assert out["per_class"]["CF1"] > 95 and out["global"]["CF1"] > 95
    assert len(out["per_class"]["threshold"]) == 3
    # a class without a validation positive keeps the paper's 0.5
    y2 = y.copy()
    y2[:, 2] = 0
    assert per_class_thresholds(scores, y2)[2] == 0.5
