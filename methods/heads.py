"""Shared heads and the shared "backbone + global average pooling + linear" model."""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from methods.backbones import build_backbone
from methods.base import BuildContext, MultiLabelModel

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class GapLinearModel(MultiLabelModel):
    """Backbone -> global average pooling -> linear (d -> C); one stage, one view.

    The plain baseline and ASL are this network with different losses, and the
    CSRA training-free trick applies to it unchanged.
    """

    def __init__(self, ctx: BuildContext, loss_fn: LossFn) -> None:
        super().__init__()
        self.backbone = build_backbone(ctx.backbone, ctx.in_chans, ctx.backbone_options)
        self.fc = nn.Linear(self.backbone.num_features, ctx.num_classes)
        self.loss_fn = loss_fn

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(images).mean(dim=(2, 3)))

    def loss(self, views: Sequence[torch.Tensor], targets: torch.Tensor, stage: str) -> torch.Tensor:
        return self.loss_fn(self(views[0]), targets)

    def linear_classifier(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.fc.weight, self.fc.bias
