"""IML-GCN: Improved Multi-Label GCN (Singh, Oyedotun, Ghorbel & Aouada, 2022). No public code.

Two stages on one network (backbone + GAP, a linear head, ML-GCN's graph branch):

1. ``backbone``: train backbone + GAP + linear with ASL (the paper's "train the CNN to
   convergence"; ASL settings = ``methods.asl.DEFAULTS``).
2. ``graph``: before its first epoch, one pass over the training split (unaugmented,
   ``StageContext.iterate_train``) gives F_I[c] = mean GAP feature of the training images
   where c is positive (Eq. 5); node features are F_I (``image``), F_PCA = PCA of F_I to C
   dims (``pca``, Eq. 6; C rows give rank <= C - 1 after centring, so the last column is ~0,
   and columns beyond d are zero when d < C), or word embeddings (``word``, Table 3's F_W).
   The GCN branch (in -> 1024 -> d, adjacency threshold tau = 0.1, "paper" re-weighting of
   Eq. 4) then produces the classifiers applied to the GAP feature, trained with ASL.

Decisions (the paper is silent):
* Backbone in stage 2: NOT frozen by default -- the paper trains "the model" (the whole
  CNN-GCN framework, whose parameter count it reports) for 40 epochs with Adam lr 1e-3.
  ``freeze_backbone=True`` freezes weights and BatchNorm statistics instead.
* Node features are computed once, from the stage-1 backbone, and kept fixed in buffers
  (``node_features``, ``node_features_ready``) so a resumed run never recomputes them from
  a backbone already changed by stage 2.
* ``stage1_fraction`` = 0.5: the CNN is trained to convergence with ASL's own recipe (40
  epochs for TResNet-M), then IML-GCN is trained 40 epochs: an equal split of the budget.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import torch
from torch import nn

from methods import global_batch, register
from methods.asl import DEFAULTS as ASL_DEFAULTS
from methods.asl import SPEC as ASL_SPEC
from methods.base import (BuildContext, HparamError, Hparams, MethodSpec, StageContext,
                          check_choice, check_range)
from methods.embeddings import label_embeddings
from methods.graph import GcnClassifierModel, adjacency, cooccurrence
from methods.heads import Fp32Linear
from methods.losses import asymmetric_loss
from methods.mlgcn import validate_graph

NODE_FEATURES = ("image", "pca", "word")

DEFAULTS = {
    "node_features": "pca",  # the paper's best (Table 1/3: F_PCA)
    "stage1_fraction": 0.5,
    "freeze_backbone": False,
    "threshold": 0.1,  # tau (paper "Implementation details")
    "adj_p": None,  # None = the adjacency variant's own p (methods.graph.VARIANT_P)
    "adjacency_variant": "paper",  # the paper restates ML-GCN's Eq. 4
    "gcn_hidden": 1024,
    "pooling": "avg",  # F_GAP: TResNet's global average pooling
    "embeddings": "glove50",  # only for node_features="word"
    "class_order": None,
}

#: Stage 1 under the paper-recipe protocol: ASL's recipe (optimiser, schedule, EMA, augmentation).
STAGE1_RECIPE = {
    "optimizer": {"name": ASL_SPEC.recipe["optimizer"], "weight_decay_mode": "coupled",
                  **{k: ASL_SPEC.recipe[k] for k in ("lr", "weight_decay", "schedule", "pct_start",
                                                      "planned_epochs")}},
    "augmentation": ASL_SPEC.recipe["augmentation"], "ema": ASL_SPEC.recipe["ema"],
}

SEARCH_SPACE = {
    "threshold": lambda rng: float(rng.choice([0.05, 0.1, 0.2, 0.3, 0.4])),
    "stage1_fraction": lambda rng: float(rng.choice([0.25, 0.5, 0.75])),
}


def class_mean_features(iterate_train, model: "ImlGcnModel", num_classes: int) -> torch.Tensor:
    """F_I (C, d): mean pooled feature of the images where each class is positive (Eq. 5);
    a class with no positive image gets the mean over all images."""
    sums, counts, total, n = None, torch.zeros(num_classes), None, 0
    with torch.no_grad():
        for images, targets in iterate_train():
            feats = model.pooled(images).float().cpu()
            pos = (targets.float().cpu() == 1).float()
            sums = pos.t() @ feats if sums is None else sums + pos.t() @ feats
            counts += pos.sum(0)
            total = feats.sum(0) if total is None else total + feats.sum(0)
            n += feats.shape[0]
    if sums is None and global_batch.world_size() > 1:  # data parallel: this rank's shard is empty
        d = model.backbone.num_features
        sums, total = torch.zeros(num_classes, d), torch.zeros(d)
    if sums is None:
        raise ValueError("IML-GCN: iterate_train yielded no batches; cannot compute image node features")
    if global_batch.world_size() > 1:  # data parallel: each rank passed over its shard of the split
        sums, counts, total = (global_batch.all_reduce_sum(t) for t in (sums, counts, total))
        n = int(global_batch.all_reduce_sum(torch.tensor([float(n)])).item())
    mean_all = total / max(n, 1)
    return torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], mean_all)


def pca_project(f: torch.Tensor, dims: int) -> torch.Tensor:
    """Rows of ``f`` (C, d) projected on their top ``dims`` principal components -> (C, dims)."""
    centred = f.double() - f.double().mean(0, keepdim=True)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    proj = centred @ vh[:dims].t()
    if proj.shape[1] < dims:
        proj = torch.cat([proj, proj.new_zeros(f.shape[0], dims - proj.shape[1])], dim=1)
    return proj.float()


class ImlGcnModel(GcnClassifierModel):
    stages = ("backbone", "graph")

    def __init__(self, ctx: BuildContext, hp: Hparams) -> None:
        mode = hp["node_features"]
        m, n = cooccurrence(ctx.train_targets)
        adj = adjacency(m, n, float(hp["threshold"]), hp["adj_p"], str(hp["adjacency_variant"]))
        if mode == "word":
            nodes = torch.from_numpy(label_embeddings(hp["embeddings"], ctx.class_names, hp["class_order"]))
        else:  # placeholder of the final shape, filled by prepare_stage("graph")
            def nodes(d: int) -> torch.Tensor:
                return torch.zeros(ctx.num_classes, d if mode == "image" else ctx.num_classes)
        super().__init__(ctx, nodes, adj, int(hp["gcn_hidden"]), str(hp["pooling"]))
        d = self.backbone.num_features
        self.register_buffer("node_features_ready", torch.tensor(mode == "word"))
        self.fc = Fp32Linear(d, ctx.num_classes)
        self.mode, self.num_classes = mode, ctx.num_classes
        self.stage1_fraction, self.freeze_backbone = float(hp["stage1_fraction"]), bool(hp["freeze_backbone"])
        self.asl = {k: ASL_DEFAULTS[k] for k in ("gamma_neg", "gamma_pos", "clip", "eps", "reduction",
                                                  "detach_focusing")}
        self._backbone_frozen = False

    def stage_epochs(self, total_epochs: int) -> list[int]:
        first = round(total_epochs * self.stage1_fraction)
        first = min(max(first, 1 if total_epochs > 1 else 0), total_epochs - 1)
        return [first, total_epochs - first]

    def prepare_stage(self, stage: str, ctx: StageContext) -> None:
        self._backbone_frozen = stage == "graph" and self.freeze_backbone
        self.backbone.requires_grad_(not self._backbone_frozen)
        if stage == "graph" and not bool(self.node_features_ready):
            was_training = self.training
            self.eval()
            f_image = class_mean_features(ctx.iterate_train, self, self.num_classes)
            self.train(was_training)
            nodes = f_image if self.mode == "image" else pca_project(f_image, self.num_classes)
            self.node_features.copy_(nodes.to(self.node_features.device))
            self.node_features_ready.fill_(True)

    def train(self, mode: bool = True) -> "ImlGcnModel":
        super().train(mode)
        if self._backbone_frozen:
            self.backbone.eval()  # frozen stage 2: BatchNorm statistics stay those of stage 1
        return self

    def trainable_parameters(self, stage: str) -> Iterator[nn.Parameter]:
        if stage == "backbone":
            return iter([*self.backbone.parameters(), *self.fc.parameters()])
        params = list(self.gcn.parameters())
        return iter(params if self.freeze_backbone else [*self.backbone.parameters(), *params])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if bool(self.node_features_ready):
            return super().forward(images)
        return self.fc(self.pooled(images))  # stage 1: GAP + linear

    def loss(self, views: Sequence[torch.Tensor], targets: torch.Tensor, stage: str) -> torch.Tensor:
        if stage == "backbone":
            logits = self.fc(self.pooled(views[0]))
        else:
            logits = self.logits(self.pooled(views[0]))
        return asymmetric_loss(logits, targets, **self.asl)

    def lr_groups(self, stage: str) -> list[tuple[str, list[nn.Parameter], float]]:
        """One lr for everything (the paper uses Adam lr 1e-3 throughout)."""
        return [("all", list(self.trainable_parameters(stage)), 1.0)]


def build(ctx: BuildContext, hp: Hparams) -> ImlGcnModel:
    return ImlGcnModel(ctx, hp)


def validate(hp: Hparams) -> None:
    check_choice(hp, "node_features", NODE_FEATURES)
    check_range(hp, "stage1_fraction", 0, 1, low_open=True)
    if hp["stage1_fraction"] >= 1:
        raise HparamError(f"hyperparameter stage1_fraction={hp['stage1_fraction']} must be < 1 "
                          "(the graph stage needs epochs too)")
    check_choice(hp, "freeze_backbone", (True, False))
    validate_graph(hp)


SPEC = register(MethodSpec(
    name="imlgcn",
    paper="Singh, Oyedotun, Ghorbel & Aouada, IML-GCN: Improved Multi-Label Graph Convolutional "
          "Network for Efficient yet Precise Image Classification, AAAI-W 2022",
    summary="stage 1: CNN + GAP + linear (ASL); stage 2: ML-GCN branch on image-feature node "
            "embeddings (F_I / PCA) from the stage-1 CNN (ASL)",
    defaults=DEFAULTS,
    build=build,
    search_space=SEARCH_SPACE,
    validate=validate,
    # Paper: Adam, wd 5e-4, lr 1e-3 x0.1 at epochs 10/20/30, 40 epochs for IML-GCN after the
    # CNN's own 40 (ASL recipe): 80 epochs at stage1_fraction 0.5. Stage 1 ("train the CNN to
    # convergence" with ASL) uses ASL's own recipe: stage_recipe, applied by bench.run.runner.
    recipe={"optimizer": "adam", "lr": 1e-3, "weight_decay": 5e-4, "schedule": "step",
            "step_epochs": 10, "step_gamma": 0.1, "epochs": 80, "batch_size": 128,
            "resolution": 224, "augmentation": "randaugment", "normalize": "none",
            "backbone": "tresnet_m", "stage_recipe": {"backbone": STAGE1_RECIPE}},
))
