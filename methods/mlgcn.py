"""ML-GCN: Multi-Label Image Recognition with Graph Convolutional Networks (Chen et al., CVPR 2019).

Backbone -> adaptive global MAX pooling (the reference's 14x14 max pool, valid at any
size) -> feature (B, d). A two-layer GCN (in -> 1024 -> d, LeakyReLU 0.2, no bias) maps
the label embeddings (C, in) over the co-occurrence graph to C classifiers (C, d);
logits = feature @ W^T (see :mod:`methods.graph`). Loss: MultiLabelSoftMarginLoss, which
is exactly BCE-with-logits averaged over batch and classes (``bce_loss(..., "mean")``).

Defaults are the paper's: t = 0.4, p = 0.2 ("paper" re-weighting). The official code's
graph is ``adjacency_variant="reference"`` (p = 0.25, column normalisation, then
D^-1/2 A^T D^-1/2). The adjacency is built from the TRAINING split's labels only
(``BuildContext.train_targets``). Node features: the paper's 300-d GloVe file is a user
input (``embeddings="file:PATH"`` + ``class_order``); the default is the real GloVe 6B
50-d vectors that install offline (``glove50``), recorded with the run's hparams.
"""
from __future__ import annotations

from typing import Sequence

import torch

from methods import register
from methods.base import BuildContext, HparamError, Hparams, MethodSpec, check_choice, check_range
from methods.embeddings import check_source, label_embeddings
from methods.graph import ADJACENCY_VARIANTS, POOLINGS, GcnClassifierModel, adjacency, cooccurrence
from methods.losses import bce_loss

DEFAULTS = {
    "threshold": 0.4,  # t (paper tau) of the binarised conditional probability
    "adj_p": None,  # re-weighting p; None = the variant's own (paper 0.2, reference 0.25)
    "adjacency_variant": "paper",
    "gcn_hidden": 1024,
    "pooling": "max",
    "embeddings": "glove50",
    "class_order": None,  # row names of a 'file:' embeddings source (list / 'file:NAMES.txt' / 'sorted')
}

SEARCH_SPACE = {
    "threshold": lambda rng: float(rng.choice([0.1, 0.2, 0.3, 0.4, 0.5])),
    "adj_p": lambda rng: float(rng.choice([0.1, 0.2, 0.25, 0.3, 0.4])),
}


class MlGcnModel(GcnClassifierModel):
    """One stage, one view; MultiLabelSoftMargin (= mean BCE) on feature @ GCN classifiers^T."""

    def loss(self, views: Sequence[torch.Tensor], targets: torch.Tensor, stage: str) -> torch.Tensor:
        return bce_loss(self(views[0]), targets, reduction="mean")


def build_adjacency(ctx: BuildContext, hp: Hparams) -> torch.Tensor:
    """The GCN propagation matrix from the training labels and the graph hyperparameters."""
    m, n = cooccurrence(ctx.train_targets)
    return adjacency(m, n, float(hp["threshold"]), hp["adj_p"], str(hp["adjacency_variant"]))


def build(ctx: BuildContext, hp: Hparams) -> MlGcnModel:
    emb = label_embeddings(hp["embeddings"], ctx.class_names, hp["class_order"])
    return MlGcnModel(ctx, torch.from_numpy(emb), build_adjacency(ctx, hp), int(hp["gcn_hidden"]),
                      str(hp["pooling"]))


def validate_graph(hp: Hparams) -> None:
    """Checks shared by ML-GCN and IML-GCN."""
    check_range(hp, "threshold", 0, 1, low_open=True)
    if hp["adj_p"] is not None:
        check_range(hp, "adj_p", 0, 1)
    check_choice(hp, "adjacency_variant", ADJACENCY_VARIANTS)
    if not isinstance(hp["gcn_hidden"], int) or isinstance(hp["gcn_hidden"], bool) or hp["gcn_hidden"] < 1:
        raise HparamError(f"hyperparameter gcn_hidden={hp['gcn_hidden']!r} must be a positive integer")
    check_choice(hp, "pooling", POOLINGS)
    check_source(hp["embeddings"])
    if str(hp["embeddings"]).startswith("file:") and hp["class_order"] is None:
        raise HparamError(f"hyperparameter embeddings={hp['embeddings']!r} needs class_order: the names "
                          "of the file's rows in order (a list, 'file:NAMES.txt' or 'sorted')")


SPEC = register(MethodSpec(
    name="mlgcn",
    paper="Chen, Wei, Wang & Guo, Multi-Label Image Recognition with Graph Convolutional "
          "Networks, CVPR 2019",
    summary="backbone + global max pooling; classifiers = 2-layer GCN over label embeddings "
            "on the co-occurrence graph; MultiLabelSoftMargin loss",
    defaults=DEFAULTS,
    build=build,
    search_space=SEARCH_SPACE,
    validate=validate_graph,
    # Official demo_coco_gcn.py: 20 epochs with the lr step at epoch 30 (= never), batch 16.
    recipe={"optimizer": "sgd", "lr": 0.1, "backbone_lr_scale": 0.1, "momentum": 0.9,
            "weight_decay": 1e-4, "grad_clip": 10.0, "schedule": "constant", "epochs": 20,
            "batch_size": 16, "resolution": 448, "augmentation": "flip-crop",
            "normalize": "imagenet", "backbone": "resnet101"},
))
