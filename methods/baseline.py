"""Plain baseline: backbone + global average pooling + linear head + BCE.

The reference point every method is compared against on the same backbone,
pooling and budget (the comparison ML-GCN's users ask for).
"""
from __future__ import annotations

from methods import register
from methods.base import BuildContext, Hparams, MethodSpec, check_choice
from methods.heads import GapLinearModel
from methods.losses import bce_loss

# pooling "max" is the max-pooled baseline ML-GCN should be compared against (same backbone,
# pooling and budget; ML-GCN's README: GMP 81.9 vs GAP 77.3 on COCO).
DEFAULTS = {"reduction": "mean", "pooling": "avg"}


def build(ctx: BuildContext, hp: Hparams) -> GapLinearModel:
    return GapLinearModel(ctx, lambda logits, y: bce_loss(logits, y, reduction=hp["reduction"]),
                          pooling=hp["pooling"])


def validate(hp: Hparams) -> None:
    check_choice(hp, "reduction", ("mean", "sum"))
    check_choice(hp, "pooling", ("avg", "max"))


SPEC = register(MethodSpec(
    name="baseline",
    paper="(none) -- global average pooling + linear + BCE, the common baseline of all three papers",
    summary="GAP + linear head + binary cross-entropy",
    defaults=DEFAULTS,
    build=build,
    validate=validate,
    recipe={"optimizer": "adam", "lr": 1e-4, "weight_decay": 1e-4, "schedule": "onecycle",
            "epochs": 40, "batch_size": 128, "augmentation": "randaugment"},
))
