"""Backbones shared by every method: a feature-map encoder with ``num_features``.

``build_backbone(name, in_chans, options)`` returns a module mapping images
(B, in_chans, H, W) to the last feature map (B, d, h, w). ``smallcnn`` is the
CPU-scale encoder of the embedded suites (total stride 8: 48 px -> 6x6, so
spatial heads have a map to attend over); any other name is built by timm with
``pretrained=False`` -- weights only ever come from an explicit local file
(``options.pretrained_path``); nothing here touches the network.
"""
from __future__ import annotations

import os
from typing import Any, Mapping

import torch
from torch import nn

os.environ.setdefault("HF_HUB_OFFLINE", "1")


class SmallCNN(nn.Module):
    """Four conv stages (widths 24-48-96-192, strides 2-1-2-2), ~0.65 M parameters."""

    def __init__(self, in_chans: int = 3, widths: tuple[int, ...] = (24, 48, 96, 192)) -> None:
        super().__init__()
        strides = (2, 1, 2, 2)
        layers: list[nn.Module] = []
        c_in = in_chans
        for i, (c_out, stride) in enumerate(zip(widths, strides)):
            layers += [nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
            if i > 0:
                layers += [nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
            c_in = c_out
        self.body = nn.Sequential(*layers)
        self.num_features = widths[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class TimmFeatures(nn.Module):
    """A timm model reduced to its feature extractor (``forward_features``)."""

    def __init__(self, name: str, in_chans: int, options: Mapping[str, Any]) -> None:
        super().__init__()
        import timm

        kwargs = {k: v for k, v in options.items() if k != "pretrained_path"}
        try:
            self.model = timm.create_model(name, pretrained=False, num_classes=0, global_pool="",
                                           in_chans=in_chans, **kwargs)
        except RuntimeError as err:  # timm: "Unknown model (...)"
            raise ValueError(f"unknown backbone {name!r}: {err}") from None
        self.num_features = int(self.model.num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x)


def build_backbone(name: str, in_chans: int = 3, options: Mapping[str, Any] | None = None) -> nn.Module:
    """Feature-map encoder ``name``; weights from ``options['pretrained_path']`` if given."""
    options = dict(options or {})
    if name == "smallcnn":
        widths = tuple(options.pop("widths", (24, 48, 96, 192)))
        path = options.pop("pretrained_path", None)
        if options:
            raise ValueError(f"backbone 'smallcnn' has no option {sorted(options)[0]!r}")
        net: nn.Module = SmallCNN(in_chans, widths)
    else:
        path = options.get("pretrained_path")
        net = TimmFeatures(name, in_chans, options)
    if path:
        load_local_weights(net, path)
    return net


def load_local_weights(net: nn.Module, path: str) -> None:
    """Load a state dict from a local file; shapes must match, missing heads are allowed."""
    if not os.path.isfile(path):
        raise ValueError(f"pretrained_path {path!r} does not exist; give a local .pth/.pt file")
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    target = net.model if isinstance(net, TimmFeatures) else net
    missing, unexpected = target.load_state_dict(state, strict=False)
    body_missing = [k for k in missing if not k.startswith(("fc.", "head", "classifier"))]
    if body_missing:
        raise ValueError(f"pretrained_path {path!r} lacks {len(body_missing)} backbone weights, e.g. {body_missing[0]}")
