"""Shared heads: the "backbone + global average pooling + linear" model and CSRA's heads.

Every head computes in fp32 under mixed precision (``budget.precision: bf16 | fp16``): the
backbone runs under autocast, the head's input is upcast and its matmul runs with autocast off
(:class:`Fp32Linear`, ``fp32_loss``), so logits -- hence scores -- and mixture parameters are
fp32 numbers, not bf16 ones cast up. In fp32 this is the identity (same ops, same values).
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch import nn

from methods.backbones import build_backbone
from methods.base import BuildContext, MultiLabelModel
from methods.loss_utils import fp32_loss

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class Fp32Linear(nn.Linear):
    """``nn.Linear`` whose output is computed in fp32 under autocast (input upcast, autocast off);
    the same parameters, initialisation and state_dict keys as ``nn.Linear``."""

    forward = fp32_loss(nn.Linear.forward)


class GapLinearModel(MultiLabelModel):
    """Backbone -> global average (or max) pooling -> linear (d -> C); one stage, one view.

    The plain baseline and ASL are this network with different losses, and the
    CSRA training-free trick applies to it unchanged.
    """

    def __init__(self, ctx: BuildContext, loss_fn: LossFn, pooling: str = "avg") -> None:
        super().__init__()
        self.pooling = pooling
        self.backbone = build_backbone(ctx.backbone, ctx.in_chans, ctx.backbone_options)
        self.fc = Fp32Linear(self.backbone.num_features, ctx.num_classes)
        self.loss_fn = loss_fn

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        fmap = self.features(images)
        pooled = fmap.amax(dim=(2, 3)) if self.pooling == "max" else fmap.mean(dim=(2, 3))
        return self.fc(pooled)

    def loss(self, views: Sequence[torch.Tensor], targets: torch.Tensor, stage: str) -> torch.Tensor:
        return self.loss_fn(self(views[0]), targets)

    def linear_classifier(self) -> tuple[torch.Tensor, torch.Tensor | None] | None:
        """The trick (mean + Lambda max of per-location scores) presumes average pooling."""
        return (self.fc.weight, self.fc.bias) if self.pooling == "avg" else None


# ---------------------------------------------------------------------------
# CSRA: class-specific residual attention (Zhu & Wu, ICCV 2021), Eqs. 7-9, Fig. 3.
# ---------------------------------------------------------------------------

#: Temperatures per head count (paper Sec. 3.4); ``inf`` = max pooling (the reference's T=99).
CSRA_TEMPERATURES: dict[int, tuple[float, ...]] = {
    1: (1.0,),
    2: (1.0, math.inf),
    4: (1.0, 2.0, 4.0, math.inf),
    6: (1.0, 2.0, 3.0, 4.0, 5.0, math.inf),
    8: (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, math.inf),
}
#: Paper Table 6: "average" = class-agnostic average pooling only (the baseline logit),
#: "spatial" = class-specific attention only, "both" = CSRA (base + lambda * attention).
CSRA_MODES = ("both", "average", "spatial")


def residual_attention_logits(scores: torch.Tensor, temperature: float, lam: float,
                              mode: str = "both") -> torch.Tensor:
    """Logits (B, C) from per-location class scores ``scores`` (B, C, N), N = h*w.

    base = mean_k s_k; att = sum_k softmax(T s)_k s_k, or max_k s_k when T = inf;
    "both" -> base + lam * att, "average" -> base, "spatial" -> att.
    """
    if mode not in CSRA_MODES:
        raise ValueError(f"CSRA mode {mode!r} must be one of {', '.join(CSRA_MODES)}")
    base = scores.mean(dim=2)
    if mode == "average":
        return base
    if math.isinf(temperature):
        att = scores.max(dim=2).values
    else:
        att = (torch.softmax(scores * temperature, dim=2) * scores).sum(dim=2)
    return att if mode == "spatial" else base + lam * att


class ResidualAttentionHead(nn.Module):
    """One CSRA branch: a 1x1 conv (no bias) d -> C gives score maps, then residual attention.

    With ``normalize_weights`` the scores are divided by each class weight's L2 norm
    (the classifier m_i -> m_i / ||m_i||, paper Sec. 3.4 and Table 8; the reference does it).
    """

    def __init__(self, in_dim: int, num_classes: int, temperature: float, lam: float,
                 normalize_weights: bool = True, mode: str = "both") -> None:
        super().__init__()
        self.classifier = nn.Conv2d(in_dim, num_classes, 1, bias=False)
        self.temperature, self.lam = float(temperature), float(lam)
        self.normalize_weights, self.mode = normalize_weights, mode

    def score_maps(self, feature_map: torch.Tensor) -> torch.Tensor:
        """(B, d, h, w) -> class scores per location (B, C, h*w)."""
        scores = self.classifier(feature_map).flatten(2)
        if self.normalize_weights:
            scores = scores / self.classifier.weight.flatten(1).norm(dim=1).view(1, -1, 1)
        return scores

    def forward(self, feature_map: torch.Tensor) -> torch.Tensor:
        return residual_attention_logits(self.score_maps(feature_map), self.temperature, self.lam,
                                         self.mode)


class MultiHeadCSRA(nn.Module):
    """H residual-attention branches with the paper's fixed temperatures; logits summed."""

    def __init__(self, in_dim: int, num_classes: int, num_heads: int, lam: float,
                 normalize_weights: bool = True, mode: str = "both") -> None:
        super().__init__()
        if num_heads not in CSRA_TEMPERATURES:
            raise ValueError(f"CSRA num_heads={num_heads} must be one of {sorted(CSRA_TEMPERATURES)}")
        self.temperatures = CSRA_TEMPERATURES[num_heads]
        self.heads = nn.ModuleList(
            ResidualAttentionHead(in_dim, num_classes, t, lam, normalize_weights, mode)
            for t in self.temperatures)

    @fp32_loss
    def forward(self, feature_map: torch.Tensor) -> torch.Tensor:
        """Logits (B, C) in fp32 (the feature map upcast, autocast off)."""
        return torch.stack([head(feature_map) for head in self.heads]).sum(dim=0)
