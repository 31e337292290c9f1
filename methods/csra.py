"""CSRA: Residual Attention, a simple but effective method for multi-label recognition
(Zhu & Wu, ICCV 2021), and its training-free trick (paper Fig. 1 / Table 1).

Network: backbone feature map -> :class:`methods.heads.MultiHeadCSRA` (H branches of
1x1-conv class scores, logit = mean_HW + lambda * attention, summed over branches); BCE.

Defaults = the paper's MS-COCO ResNet-101 setting (Sec. 4, "MS-COCO"): H = 6 heads,
lambda = 0.5. The official README is inconsistent (4 vs 6 heads for this model); the
paper's text says six, so six it is. Named alternatives:
  * VOC2007 / VOC2012 (paper Sec. 4): ``{"num_heads": 1, "lam": 0.1}`` (T = 1);
  * MS-COCO ResNet-cut: ``{"num_heads": 6, "lam": 0.4}``; VIT-L16: ``{"num_heads": 8, "lam": 1.0}``;
  * Table 6 ablation: ``mode`` "average" / "spatial" / "both"; Table 8: ``normalize_weights``.

Training-free trick: :func:`training_free_logits` applies an already trained linear
classifier as a 1x1 conv on the feature map and returns mean_HW + Lambda * max_HW of the
per-location scores (CSRA with H = 1, T = inf on a frozen head). The runner calls it on
any model whose ``linear_classifier()`` is not None (CSRA's own head is not one).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from methods import register
from methods.backbones import build_backbone
from methods.base import (BuildContext, HparamError, Hparams, MethodSpec, MultiLabelModel,
                          check_choice, check_range)
from methods.heads import CSRA_MODES, CSRA_TEMPERATURES, MultiHeadCSRA
from methods.losses import bce_loss

DEFAULTS = {
    "num_heads": 6,  # paper Sec. 4, MS-COCO with ResNet-101
    "lam": 0.5,
    "normalize_weights": True,  # paper Sec. 3.4 (Table 8: no accuracy effect, faster convergence)
    "mode": "both",
}

SEARCH_SPACE = {
    "lam": lambda rng: float(rng.choice([0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 1.0])),
    "num_heads": lambda rng: int(rng.choice(sorted(CSRA_TEMPERATURES))),
}

#: Paper Table 1 "Fixed lambda" of the training-free trick.
FIXED_LAMBDA = {"resnet": 0.02, "other": 0.2}


def fixed_lambda(backbone_name: str) -> float:
    """The paper's fixed Lambda for a backbone: 0.02 for the ResNet family, 0.2 otherwise."""
    name = backbone_name.lower()
    family = "resnet" if name.startswith(("resnet", "resnext", "wide_resnet")) else "other"
    return FIXED_LAMBDA[family]


def training_free_logits(feature_map: torch.Tensor, weight: torch.Tensor,
                         bias: torch.Tensor | None = None, lam: float = 0.02) -> torch.Tensor:
    """CSRA's training-free trick: logits (B, C) from a feature map (B, d, H, W).

    ``weight`` (C, d) and ``bias`` (C,) are a trained GAP + linear classifier's. Per
    location s = W f + b (B, C, H*W); logit = mean_HW s + lam * max_HW s. With lam = 0 it
    equals the linear head on GAP features (the baseline's own logits).
    """
    scores = torch.einsum("bdn,cd->bcn", feature_map.flatten(2).float(), weight.float())
    if bias is not None:
        scores = scores + bias.float().view(1, -1, 1)
    return scores.mean(dim=2) + lam * scores.max(dim=2).values


class CsraModel(MultiLabelModel):
    """Backbone -> multi-head CSRA -> logits (B, C); one stage, one view, BCE (mean)."""

    def __init__(self, ctx: BuildContext, hp: Hparams) -> None:
        super().__init__()
        self.backbone = build_backbone(ctx.backbone, ctx.in_chans, ctx.backbone_options)
        self.head = MultiHeadCSRA(self.backbone.num_features, ctx.num_classes, int(hp["num_heads"]),
                                  float(hp["lam"]), bool(hp["normalize_weights"]), str(hp["mode"]))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))

    def loss(self, views: Sequence[torch.Tensor], targets: torch.Tensor, stage: str) -> torch.Tensor:
        return bce_loss(self(views[0]), targets, reduction="mean")

    def linear_classifier(self) -> None:
        """CSRA has no GAP + linear head: the training-free trick does not apply to it."""
        return None

    def lr_groups(self, stage: str) -> list[tuple[str, list[nn.Parameter], float]]:
        """(name, params, lr scale): the paper trains the head at 10x the backbone's lr
        (0.1 vs 0.01); with the recipe's lr = 0.1 the backbone's scale is 0.1."""
        return [("backbone", list(self.backbone.parameters()), RECIPE["backbone_lr_scale"]),
                ("head", list(self.head.parameters()), 1.0)]


def build(ctx: BuildContext, hp: Hparams) -> CsraModel:
    return CsraModel(ctx, hp)


def validate(hp: Hparams) -> None:
    if not isinstance(hp["num_heads"], int) or isinstance(hp["num_heads"], bool) \
            or hp["num_heads"] not in CSRA_TEMPERATURES:
        raise HparamError(f"hyperparameter num_heads={hp['num_heads']!r} must be a whole number of "
                          f"heads, one of {sorted(CSRA_TEMPERATURES)}: the head counts for which "
                          "the CSRA paper (Sec. 3.3) fixes the heads' temperatures")
    check_range(hp, "lam", 0)  # finite (check_range rejects NaN and inf)
    check_choice(hp, "normalize_weights", (True, False))
    check_choice(hp, "mode", CSRA_MODES)


#: Paper Sec. 4 "Training details" + the official main.py (StepLR step 5 epochs on COCO,
#: 4 on VOC, gamma 0.1; 2 warm-up epochs; head lr 0.1 = 10x backbone lr 0.01).
RECIPE = {"optimizer": "sgd", "lr": 0.1, "backbone_lr_scale": 0.1, "momentum": 0.9,
          "weight_decay": 1e-4, "schedule": "step", "warmup_epochs": 2, "step_epochs": 5,
          "step_gamma": 0.1, "epochs": 30, "batch_size": 16, "resolution": 448,
          "augmentation": "flip-crop", "normalize": "none", "backbone": "resnet101"}

SPEC = register(MethodSpec(
    name="csra",
    paper="Zhu & Wu, Residual Attention: A Simple but Effective Method for Multi-Label "
          "Recognition, ICCV 2021",
    summary="backbone + multi-head class-specific residual attention (mean + lambda * attention) + BCE",
    defaults=DEFAULTS,
    build=build,
    search_space=SEARCH_SPACE,
    recipe=RECIPE,
    validate=validate,
))

__all__ = ["training_free_logits", "fixed_lambda", "FIXED_LAMBDA", "CsraModel", "SPEC"]
