"""The method interface every module in ``methods/`` implements.

A method is one small module that registers a :class:`MethodSpec`: its paper
reference, its defaults (the paper's values, declared once, here and nowhere
else), a search space for every tunable hyperparameter, its paper recipe, a
validator, and a builder returning a :class:`MultiLabelModel`.

The runner (``bench.run.runner``) drives every model the same way::

    model = spec.build(ctx, hparams)                  # ctx: BuildContext
    for stage, epochs in zip(model.stages, model.stage_epochs(total_epochs)):
        model.prepare_stage(stage, stage_ctx)         # freeze, compute node features...
        for each epoch, for each batch:
            views = [augment(batch) for _ in range(model.views(stage))]
            loss = model.loss(views, targets, stage)  # scalar
        (after each epoch of the LAST stage: validation mAP -> model selection)
    logits = model(images)                            # (B, C), evaluation

Targets passed to ``loss`` are float tensors (B, C) with 1 = positive,
0 = negative and -1 = ignore (VOC "difficult" under the ignore policy,
unknown attributes); losses in ``methods.losses`` mask -1 entries out.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import nn

Hparams = Mapping[str, Any]
#: A search-space entry draws one value from a numpy Generator (DomainBed style:
#: each hyperparameter has its own generator, seeded by (seed, name)).
Sampler = Callable[[np.random.Generator], Any]


class HparamError(ValueError):
    """A hyperparameter outside its domain; the message names it and says what is allowed."""


@dataclass(frozen=True)
class BuildContext:
    """Everything a builder may know about the data and the suite, and nothing else.

    ``train_targets`` is the TRAINING split's label matrix (N, C) in {1, 0, -1}
    (e.g. for ML-GCN's co-occurrence adjacency); never validation or test.
    """

    num_classes: int
    class_names: tuple[str, ...]
    train_targets: np.ndarray
    backbone: str
    backbone_options: Mapping[str, Any]
    resolution: int
    in_chans: int = 3
    device: str = "cpu"
    #: free-form, named options the suite passes through (e.g. embeddings_file)
    extras: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class StageContext:
    """What the runner hands a model at the start of each stage.

    ``iterate_train`` yields (images, targets) over the training split without
    augmentation, in fixed order, already normalised: images (B, 3, H, W) float,
    targets (B, C) float in {1, 0, -1}. IML-GCN uses it to compute F_I.
    """

    stage: str
    stage_index: int
    epochs: int
    device: str
    iterate_train: Callable[[], Iterator[tuple[torch.Tensor, torch.Tensor]]]
    train_targets: np.ndarray
    #: True when the stage restarts from a checkpoint taken inside it: the model's
    #: state (buffers included) is already restored, so do not recompute what is stored.
    resuming: bool = False


class MultiLabelModel(nn.Module):
    """Base class of every method's network. Override what differs.

    ``forward(images)`` returns logits (B, C); the evaluator applies a sigmoid in
    fp32. ``features(images)`` returns the backbone's last feature map
    (B, d, h, w): the CSRA training-free trick and cost accounting use it.
    """

    #: Names of the training stages, in order. One-stage methods keep ("train",).
    stages: tuple[str, ...] = ("train",)

    def stage_epochs(self, total_epochs: int) -> list[int]:
        """Split the suite's epoch budget over ``stages`` (one-stage: all of it)."""
        return [total_epochs]

    def views(self, stage: str) -> int:
        """How many independently augmented views of each image ``loss`` wants."""
        return 1

    def prepare_stage(self, stage: str, ctx: StageContext) -> None:
        """Called once before the first epoch of ``stage`` (and again on resume)."""

    def trainable_parameters(self, stage: str) -> Iterator[nn.Parameter]:
        """Parameters the optimiser of ``stage`` updates (default: all that require grad)."""
        return (p for p in self.parameters() if p.requires_grad)

    def lr_groups(self, stage: str) -> list[tuple[str, list[nn.Parameter], float]]:
        """(name, params, lr scale) groups of ``stage`` for the paper-recipe protocol (e.g. a
        backbone at 0.1x the head's lr). The equal-budget protocol uses one lr for all."""
        return [("all", list(self.trainable_parameters(stage)), 1.0)]

    def loss(self, views: Sequence[torch.Tensor], targets: torch.Tensor, stage: str) -> torch.Tensor:
        """Scalar training loss of one batch. views[k]: (B, 3, H, W); targets (B, C)."""
        raise NotImplementedError

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Last backbone feature map (B, d, h, w)."""
        raise NotImplementedError

    def linear_classifier(self) -> tuple[torch.Tensor, torch.Tensor | None] | None:
        """(weight (C, d), bias (C,) or None) when the model ends in GAP + a linear
        head on ``features`` -- the models CSRA's training-free trick applies to."""
        return None

    def selection_stage(self) -> str:
        """The stage after whose epochs validation mAP selects the checkpoint."""
        return self.stages[-1]


@dataclass(frozen=True)
class MethodSpec:
    """One registered method. ``defaults`` are the paper's values (declared once).

    ``search_space`` maps each tunable hyperparameter to a sampler; ``choices``
    (optional) gives the finite grid a sweep uses for an ablation. ``recipe`` is
    the paper's training recipe (optimiser, lr, schedule, epochs, batch size,
    augmentation, loss options) used by the ``paper-recipe`` protocol.
    """

    name: str
    paper: str
    summary: str
    defaults: Mapping[str, Any]
    build: Callable[[BuildContext, Hparams], MultiLabelModel]
    search_space: Mapping[str, Sampler] = field(default_factory=dict)
    recipe: Mapping[str, Any] = field(default_factory=dict)
    validate: Callable[[Hparams], None] | None = None

    def resolve(self, overrides: Hparams | None = None) -> dict[str, Any]:
        """Defaults updated with ``overrides``; unknown names and bad values raise HparamError."""
        overrides = dict(overrides or {})
        unknown = sorted(set(overrides) - set(self.defaults))
        if unknown:
            raise HparamError(
                f"method '{self.name}' has no hyperparameter {unknown[0]!r}; "
                f"known: {', '.join(sorted(self.defaults))}"
            )
        hp = {**self.defaults, **overrides}
        if self.validate is not None:
            self.validate(hp)
        return hp

    def sample(self, seed: int, names: Sequence[str] | None = None) -> dict[str, Any]:
        """Random-search draw: each hyperparameter from its own generator seeded by (seed, name)."""
        import zlib

        out = dict(self.defaults)
        for name in names if names is not None else sorted(self.search_space):
            rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
            out[name] = self.search_space[name](rng)
        return out


def check_range(hp: Hparams, name: str, low: float | None = None, high: float | None = None,
                *, low_open: bool = False) -> None:
    """Raise HparamError unless low <= hp[name] <= high (low < hp[name] if low_open)."""
    v = hp[name]
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        raise HparamError(f"hyperparameter {name}={v!r} must be a number")
    if not math.isfinite(v):  # NaN compares False with everything: it would pass any range
        raise HparamError(f"hyperparameter {name}={v} must be a finite number")
    if low is not None and (v <= low if low_open else v < low):
        raise HparamError(f"hyperparameter {name}={v} must be {'>' if low_open else '>='} {low}")
    if high is not None and v > high:
        raise HparamError(f"hyperparameter {name}={v} must be <= {high}")


def check_choice(hp: Hparams, name: str, allowed: Sequence[Any]) -> None:
    """Raise HparamError unless hp[name] is one of ``allowed`` (a bool only matches a bool:
    1 is not True, False is not 0)."""
    v = hp[name]
    if not any(v == a and isinstance(v, bool) == isinstance(a, bool) for a in allowed):
        raise HparamError(f"hyperparameter {name}={hp[name]!r} must be one of {list(allowed)}")
