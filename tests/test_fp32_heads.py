"""Scores from fp32 logits under mixed precision: every method's head computes in fp32 under bf16
autocast (CPU), and ProbMCL's / KMCL's mixture parameters reach the fp32 losses as fp32; in fp32
the heads are the same ops as before (``nn.Linear``'s parameters and state_dict keys)."""
from __future__ import annotations

import pytest
import torch

import methods
from bench.train.precision import autocast
from methods.base import BuildContext, StageContext

C, SIDE = 5, 16
STAGES = [("asl", "train"), ("baseline", "train"), ("csra", "train"), ("kmcl", "train"), ("mlgcn", "train"),
          ("imlgcn", "backbone"), ("imlgcn", "graph"), ("probmcl", "contrastive"), ("probmcl", "classification")]


def _model(method: str, stage: str):
    torch.manual_seed(0)
    targets = (torch.rand(16, C, generator=torch.Generator().manual_seed(1)) < 0.5).to(torch.int8).numpy()
    spec = methods.get(method)
    hp = spec.resolve({"embeddings": "onehot"} if method == "mlgcn" else {})
    ctx = BuildContext(num_classes=C, class_names=tuple(f"c{i}" for i in range(C)), train_targets=targets,
                       backbone="smallcnn", backbone_options={}, resolution=SIDE, in_chans=3)
    model = spec.build(ctx, hp).eval()
    images = torch.rand(4, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(2))
    for si, s in enumerate(model.stages[:model.stages.index(stage) + 1]):
        model.prepare_stage(s, StageContext(s, si, 1, "cpu", lambda: iter([(images, torch.ones(4, C))]), targets))
    return model, images


@pytest.mark.parametrize("method,stage", STAGES, ids=[f"{m}-{s}" for m, s in STAGES])
def test_logits_are_fp32_under_bf16_autocast(method, stage):
    model, images = _model(method, stage)
    with torch.no_grad(), autocast("cpu", "bf16"):
        features = model.features(images)
        pooled = features.mean(dim=(2, 3))
        logits = model(images)
    assert features.dtype == torch.bfloat16  # the backbone does run in bf16
    assert logits.dtype == torch.float32
    if method == "csra":  # the head itself ran in fp32 on the bf16 feature map (not a bf16 conv upcast)
        assert torch.equal(logits, model.head(features.float()))
    if method in ("asl", "baseline"):
        assert torch.equal(logits, model.fc(pooled.float()))
    with torch.no_grad():
        plain = model(images)
    assert (logits - plain).abs().max() < 0.1  # the same logits, at bf16 backbone precision


@pytest.mark.parametrize("method", ["probmcl", "kmcl"])
def test_mixture_parameters_are_fp32_under_bf16_autocast(method):
    model, images = _model(method, "contrastive" if method == "probmcl" else "train")
    with torch.no_grad(), autocast("cpu", "bf16"):
        h = model.features(images).mean(dim=(2, 3))
        out = model.mdn(h) if method == "probmcl" else model.head(h)
    mix = out if method == "probmcl" else out[1]
    if method == "kmcl":
        assert out[0].dtype == torch.float32  # the pi logits = the scores
    assert {mix.log_pi.dtype, mix.mu.dtype, mix.var.dtype} == {torch.float32}


def test_fp32_linear_is_nn_linear_in_fp32():
    from methods.heads import Fp32Linear

    torch.manual_seed(3)
    ours = Fp32Linear(7, 4)
    torch.manual_seed(3)
    theirs = torch.nn.Linear(7, 4)
    x = torch.randn(3, 7)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert torch.equal(ours.weight, theirs.weight) and torch.equal(ours(x), theirs(x))
