"""CSRA head, its Table-6 modes, normalisation, heads table, and the training-free trick."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import methods
from methods.base import BuildContext, HparamError
from methods.csra import FIXED_LAMBDA, fixed_lambda, training_free_logits
from methods.heads import (CSRA_TEMPERATURES, MultiHeadCSRA, ResidualAttentionHead,
                           residual_attention_logits)

C, D = 10, 6


def _head(temperature: float, lam: float, normalize: bool, mode: str = "both",
          weight: torch.Tensor | None = None) -> ResidualAttentionHead:
    head = ResidualAttentionHead(D, C, temperature, lam, normalize, mode)
    if weight is not None:
        with torch.no_grad():
            head.classifier.weight.copy_(weight.view(C, D, 1, 1))
    return head


def test_max_branch_on_frozen_linear_head_equals_training_free_logits():
    torch.manual_seed(0)
    fmap, weight = torch.randn(3, D, 4, 5), torch.randn(C, D)
    head = _head(math.inf, 0.3, normalize=False, weight=weight)
    torch.testing.assert_close(head(fmap), training_free_logits(fmap, weight, None, lam=0.3))


def test_training_free_logits_hand_computation_and_lambda_zero_is_the_linear_head():
    fmap = torch.tensor([[[[1.0, 2.0], [3.0, -4.0]]]])  # B=1, d=1, 2x2
    weight, bias = torch.tensor([[2.0], [-1.0]]), torch.tensor([0.5, 0.0])
    # class 0: s = 2f + 0.5 = [2.5, 4.5, 6.5, -7.5]: mean 1.5, max 6.5
    # class 1: s = -f = [-1, -2, -3, 4]: mean -0.5, max 4
    out = training_free_logits(fmap, weight, bias, lam=0.1)
    torch.testing.assert_close(out, torch.tensor([[1.5 + 0.65, -0.5 + 0.4]]))
    torch.manual_seed(1)
    fmap, fc = torch.randn(2, D, 3, 3), nn.Linear(D, C)
    torch.testing.assert_close(training_free_logits(fmap, fc.weight, fc.bias, lam=0.0),
                               fc(fmap.mean(dim=(2, 3))), rtol=1e-5, atol=1e-5)


def test_fixed_lambda_table():
    assert FIXED_LAMBDA == {"resnet": 0.02, "other": 0.2}
    assert fixed_lambda("resnet101") == 0.02 and fixed_lambda("ResNet50") == 0.02
    assert fixed_lambda("efficientnet_lite0") == 0.2 and fixed_lambda("smallcnn") == 0.2


def test_softmax_branch_against_hand_computation():
    scores = torch.tensor([[[1.0, 2.0, 3.0]]])  # (B=1, C=1, N=3)
    for temperature in (1.0, 2.0):
        e = [math.exp(temperature * s) for s in (1, 2, 3)]
        att = sum(w * s for w, s in zip(e, (1, 2, 3))) / sum(e)
        out = residual_attention_logits(scores, temperature, lam=0.4)
        assert out.item() == pytest.approx(2.0 + 0.4 * att, rel=1e-6)
    assert residual_attention_logits(scores, math.inf, 0.4).item() == pytest.approx(2.0 + 0.4 * 3.0)


def test_table6_modes():
    torch.manual_seed(2)
    fmap, weight = torch.randn(2, D, 3, 3), torch.randn(C, D)
    scores = torch.einsum("bdn,cd->bcn", fmap.flatten(2), weight)
    base = scores.mean(2)
    att = (torch.softmax(scores, 2) * scores).sum(2)
    outs = {m: _head(1.0, 0.5, False, m, weight)(fmap) for m in ("both", "average", "spatial")}
    torch.testing.assert_close(outs["average"], base)  # = GAP + linear (no bias): the baseline
    torch.testing.assert_close(outs["spatial"], att)
    torch.testing.assert_close(outs["both"], base + 0.5 * att)


def test_weight_normalisation_on_off():
    torch.manual_seed(3)
    fmap, weight = torch.randn(2, D, 3, 3), torch.randn(C, D)
    unit = weight / weight.norm(dim=1, keepdim=True)
    torch.testing.assert_close(_head(1.0, 0.2, True, weight=weight)(fmap),
                               _head(1.0, 0.2, False, weight=unit)(fmap), rtol=1e-5, atol=1e-5)
    # normalised logits are invariant to the weights' scale; unnormalised ones are not
    torch.testing.assert_close(_head(2.0, 0.2, True, weight=3 * weight)(fmap),
                               _head(2.0, 0.2, True, weight=weight)(fmap), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(_head(2.0, 0.2, False, weight=3 * weight)(fmap),
                              _head(2.0, 0.2, False, weight=weight)(fmap))


def test_heads_temperature_table_and_sum():
    inf = math.inf
    assert CSRA_TEMPERATURES == {1: (1,), 2: (1, inf), 4: (1, 2, 4, inf), 6: (1, 2, 3, 4, 5, inf),
                                 8: (1, 2, 3, 4, 5, 6, 7, inf)}
    torch.manual_seed(4)
    fmap = torch.randn(2, D, 3, 3)
    for h, temps in CSRA_TEMPERATURES.items():
        mh = MultiHeadCSRA(D, C, h, lam=0.3)
        assert len(mh.heads) == h and [hd.temperature for hd in mh.heads] == list(temps)
        torch.testing.assert_close(mh(fmap), sum(hd(fmap) for hd in mh.heads))
    with pytest.raises(ValueError):
        MultiHeadCSRA(D, C, 3, lam=0.3)


def _ctx() -> BuildContext:
    rng = np.random.default_rng(0)
    return BuildContext(num_classes=C, class_names=tuple(f"c{i}" for i in range(C)),
                        train_targets=(rng.random((30, C)) < 0.3).astype(np.float32),
                        backbone="smallcnn", backbone_options={}, resolution=32, in_chans=1)


def test_csra_model_defaults_trains_and_interfaces():
    spec = methods.get("csra")
    hp = spec.resolve()
    assert hp == {"num_heads": 6, "lam": 0.5, "normalize_weights": True, "mode": "both"}
    model = spec.build(_ctx(), hp)
    assert model.linear_classifier() is None
    torch.manual_seed(5)
    x, y = torch.randn(4, 1, 32, 32), (torch.rand(4, C) < 0.3).float()
    assert model.features(x).shape == (4, model.backbone.num_features, 4, 4)
    assert len(model.head.heads) == 6
    opt = torch.optim.Adam(list(model.trainable_parameters("train")), lr=1e-3)
    losses = []
    for _ in range(5):
        loss = model.loss([x], y, "train")
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]
    names = {n for n, _, _ in model.lr_groups("train")}
    assert names == {"backbone", "head"}


@pytest.mark.parametrize("bad", [{"num_heads": 3}, {"num_heads": True}, {"lam": -0.1},
                                 {"lam": "big"}, {"mode": "max"}, {"normalize_weights": 1.5}])
def test_bad_hparams(bad):
    with pytest.raises(HparamError):
        methods.get("csra").resolve(bad)


def test_num_heads_error_says_what_a_head_count_is():
    # issue #27: num_heads=2.5 used to cite "temperature tables", which a user cannot act on
    with pytest.raises(HparamError) as err:
        methods.get("csra").resolve({"num_heads": 2.5})
    text = str(err.value)
    assert "num_heads=2.5" in text and "whole number of heads" in text and "[1, 2, 4, 6, 8]" in text
    assert "temperature tables" not in text
