"""ASL: Asymmetric Loss For Multi-Label Classification (Ridnik et al., ICCV 2021).

Same network as the baseline (GAP + linear); the loss is
``methods.losses.asymmetric_loss`` with the paper's training-script setting
(gamma_neg 4, gamma_pos 0, clip 0.05, eps 1e-8, SUM reduction). The reference
class default gamma_pos = 1 is NOT the paper's value.
"""
from __future__ import annotations

from methods import register
from methods.base import BuildContext, Hparams, MethodSpec, check_choice, check_range
from methods.heads import GapLinearModel
from methods.losses import asymmetric_loss

DEFAULTS = {
    "gamma_neg": 4.0,
    "gamma_pos": 0.0,
    "clip": 0.05,
    "eps": 1e-8,
    "reduction": "sum",
    "detach_focusing": True,  # the official training script's disable_torch_grad_focal_loss
}

SEARCH_SPACE = {
    "gamma_neg": lambda rng: float(rng.choice([1.0, 2.0, 3.0, 4.0, 5.0])),
    "gamma_pos": lambda rng: float(rng.choice([0.0, 1.0])),
    "clip": lambda rng: float(rng.choice([0.0, 0.02, 0.05, 0.1])),
}


def build(ctx: BuildContext, hp: Hparams) -> GapLinearModel:
    def loss(logits, y):
        return asymmetric_loss(logits, y, hp["gamma_neg"], hp["gamma_pos"], hp["clip"], hp["eps"],
                               hp["reduction"], hp["detach_focusing"])
    return GapLinearModel(ctx, loss)


def validate(hp: Hparams) -> None:
    check_range(hp, "gamma_neg", 0)
    check_range(hp, "gamma_pos", 0)
    check_range(hp, "clip", 0, 1)
    check_range(hp, "eps", 0, low_open=True)
    check_choice(hp, "reduction", ("sum", "mean"))
    check_choice(hp, "detach_focusing", (True, False))


SPEC = register(MethodSpec(
    name="asl",
    paper="Ridnik et al., Asymmetric Loss For Multi-Label Classification, ICCV 2021",
    summary="GAP + linear head + asymmetric loss",
    defaults=DEFAULTS,
    build=build,
    search_space=SEARCH_SPACE,
    validate=validate,
    recipe={"optimizer": "adam", "lr": 1e-4, "weight_decay": 1e-4, "true_weight_decay": True,
            "schedule": "onecycle", "pct_start": 0.2, "planned_epochs": 80, "epochs": 40,
            "batch_size": 128, "ema": 0.9997, "augmentation": "cutout+randaugment",
            "normalize": "none", "backbone": "tresnet_m", "resolution": 224},
))
