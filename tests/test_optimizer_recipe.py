"""The paper-recipe optimiser (issue 12): the official ASL / KMCL code trains with torch Adam and
COUPLED L2 weight decay 1e-4 on the weights only (add_weight_decay: no decay on biases and norm
parameters). Under the ASL paper recipe the weights after N steps must equal those of that
optimiser written out by hand, weight decay must visibly change them, and the decoupled
(AdamW) reading stays reachable -- where, at lr x wd = 1e-8, it is a float32 no-op."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import methods
from bench.spec.suites import SpecError, expand_jobs, load_suite
from bench.train.optim import build_optimizer
from methods.base import BuildContext
from tests.helpers import tiny_suite

C, B, STEPS = 10, 8, 5


def _job(tmp_path, **optimizer):
    path = tiny_suite(tmp_path, methods=["asl"], protocol="paper-recipe",
                      **({"optimizer": optimizer} if optimizer else {}))
    return expand_jobs(load_suite(str(path)))[0]


def _model_and_batches():
    g = torch.Generator().manual_seed(0)
    batches = [(torch.rand(B, 1, 24, 24, generator=g), (torch.rand(B, C, generator=g) < 0.3).float())
               for _ in range(STEPS)]
    ctx = BuildContext(num_classes=C, class_names=tuple(str(i) for i in range(C)),
                       train_targets=np.zeros((4, C), np.int8), backbone="smallcnn",
                       backbone_options={"widths": (8, 8, 8, 16)}, resolution=24, in_chans=1)
    torch.manual_seed(0)
    model = methods.get("asl").build(ctx, methods.get("asl").resolve({}))
    # A column of the head that never gets a gradient would show coupled decay most clearly;
    # every parameter does get one here, so the check below is the general one.
    return model, batches


def _train(model, batches, opt) -> dict[str, torch.Tensor]:
    model.train()
    for x, y in batches:
        loss = model.loss([x], y, "train")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _adam_coupled_by_hand(model, batches, lr: float, wd: float) -> dict[str, torch.Tensor]:
    """torch.optim.Adam's update written out: g += wd * p for ndim > 1 only, then Adam."""
    b1, b2, eps = 0.9, 0.999, 1e-8
    params = [p for p in model.parameters() if p.requires_grad]
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    model.train()
    for t, (x, y) in enumerate(batches, start=1):
        loss = model.loss([x], y, "train")
        for p in params:
            p.grad = None
        loss.backward()
        with torch.no_grad():
            for p, mi, vi in zip(params, m, v):
                g = p.grad + wd * p if p.ndim > 1 else p.grad  # coupled L2, weights only
                mi.mul_(b1).add_(g, alpha=1 - b1)
                vi.mul_(b2).addcmul_(g, g, value=1 - b2)
                step = lr / (1 - b1 ** t)
                denom = (vi.sqrt() / (1 - b2 ** t) ** 0.5).add_(eps)
                p.addcdiv_(mi, denom, value=-step)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_asl_paper_recipe_is_adam_with_coupled_l2_on_weights_only(tmp_path):
    job = _job(tmp_path)
    opt_cfg = job.optimizer
    assert opt_cfg["name"] == "adam" and opt_cfg["weight_decay_mode"] == "coupled"
    assert opt_cfg["lr"] == 1e-4 and opt_cfg["weight_decay"] == 1e-4  # ASL's official values
    model, batches = _model_and_batches()
    reference = copy.deepcopy(model)
    opt = build_optimizer(model.lr_groups("train"), opt_cfg)
    assert isinstance(opt, torch.optim.Adam) and not isinstance(opt, torch.optim.AdamW)
    for group in opt.param_groups:  # biases and norm parameters carry no decay
        assert all(p.ndim > 1 for p in group["params"]) if group["weight_decay"] else True
        assert group["weight_decay"] in (0.0, 1e-4)
        if any(p.ndim <= 1 for p in group["params"]):
            assert group["weight_decay"] == 0.0
    trained = _train(model, batches, opt)

    by_hand = _adam_coupled_by_hand(reference, batches, lr=1e-4, wd=1e-4)
    for k in trained:
        torch.testing.assert_close(trained[k], by_hand[k], rtol=1e-5, atol=1e-7, msg=k)

    # torch Adam with the two groups built here (weights: wd, the rest: none) -- the official code
    ref2 = copy.deepcopy(_model_and_batches()[0])
    weights = [p for p in ref2.parameters() if p.ndim > 1]
    others = [p for p in ref2.parameters() if p.ndim <= 1]
    official = torch.optim.Adam([{"params": weights, "weight_decay": 1e-4},
                                 {"params": others, "weight_decay": 0.0}], lr=1e-4)
    ref2_state = _train(ref2, batches, official)
    for k in trained:
        assert torch.equal(trained[k], ref2_state[k]), k


def test_weight_decay_visibly_changes_the_weights(tmp_path):
    """A weight row whose gradient is zero (class 0 of the head, gradient masked): without decay it
    never moves; with coupled L2 its gradient is wd * p, which Adam normalises to a step of ~lr
    per step toward 0 -- 5 x 1e-4 here, visible, and a bias of that class stays untouched."""
    job = _job(tmp_path)
    runs = {}
    for wd in (1e-4, 0.0):
        model, batches = _model_and_batches()
        start = model.fc.weight.detach().clone()
        mask = torch.ones_like(model.fc.weight)
        mask[0] = 0.0
        model.fc.weight.register_hook(lambda g: g * mask)
        bias_mask = torch.ones_like(model.fc.bias)
        bias_mask[0] = 0.0
        model.fc.bias.register_hook(lambda g: g * bias_mask)
        bias0 = model.fc.bias.detach()[0].clone()
        runs[wd] = _train(model, batches, build_optimizer(model.lr_groups("train"),
                                                          {**job.optimizer, "weight_decay": wd}))
        assert torch.equal(runs[wd]["fc.bias"][0], bias0)  # biases carry no decay
    row_decay, row_plain = runs[1e-4]["fc.weight"][0], runs[0.0]["fc.weight"][0]
    assert torch.equal(row_plain, start[0])  # no gradient, no decay: unchanged
    far = start[0].abs() > 1e-2  # away from 0 (a weight near 0 would cross it; g ~ eps there)
    assert far.sum() >= 4
    moved = (start[0].abs() - row_decay.abs())[far]  # toward zero, by ~lr per step
    torch.testing.assert_close(moved, torch.full_like(moved, STEPS * 1e-4), rtol=0.02, atol=0)
    # and the rest of the model follows a different trajectory
    other = [k for k, p in model.named_parameters() if p.ndim > 1 and k != "fc.weight"]
    assert all(not torch.equal(runs[1e-4][k], runs[0.0][k]) for k in other)


def test_decoupled_mode_is_adamw_and_a_float32_no_op_at_the_papers_values(tmp_path):
    job = _job(tmp_path, weight_decay_mode="decoupled")
    assert job.optimizer["name"] == "adamw" and job.optimizer["weight_decay_mode"] == "decoupled"
    model, batches = _model_and_batches()
    twin = copy.deepcopy(model)
    opt = build_optimizer(model.lr_groups("train"), job.optimizer)
    assert isinstance(opt, torch.optim.AdamW)
    decayed = _train(model, batches, opt)
    plain = _train(twin, batches, build_optimizer(twin.lr_groups("train"),
                                                  {**job.optimizer, "weight_decay": 0.0}))
    # lr x wd = 1e-8: p * (1 - 1e-8) rounds to p in float32 -- the decay does nothing (documented)
    assert all(torch.equal(decayed[k], plain[k]) for k in decayed)


def test_weight_decay_mode_domain_and_identity(tmp_path):
    coupled = _job(tmp_path)
    assert _job(tmp_path, weight_decay_mode="coupled").job_id == coupled.job_id  # the default
    assert _job(tmp_path, weight_decay_mode="decoupled").job_id != coupled.job_id
    with pytest.raises(SpecError, match="weight_decay_mode"):
        _job(tmp_path, weight_decay_mode="true")
    # equal-budget: adamw's own mode is decoupled; coupled turns it into torch Adam (L2)
    path = tiny_suite(tmp_path, name="eb", methods=["baseline"], optimizer={"name": "adamw"})
    eb = expand_jobs(load_suite(str(path)))[0]
    assert (eb.optimizer["name"], eb.optimizer["weight_decay_mode"]) == ("adamw", "decoupled")
    path = tiny_suite(tmp_path, name="eb2", methods=["baseline"],
                      optimizer={"name": "adamw", "weight_decay_mode": "coupled"})
    assert expand_jobs(load_suite(str(path)))[0].optimizer["name"] == "adam"
    path = tiny_suite(tmp_path, name="eb3", methods=["baseline"],
                      optimizer={"name": "sgd", "weight_decay_mode": "decoupled"})
    with pytest.raises(SpecError, match="decoupled needs adam or adamw"):
        load_suite(str(path))
