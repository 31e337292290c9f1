"""ProbMCL: Probabilistic Multi-label Contrastive Learning (Sajedi et al., ICASSP 2024).

Stage "contrastive": two augmented views of each image (2N samples) -> encoder ->
GAP -> unit-normalised h -> MDN (``methods.mixture.ProbMCLMixtureHead``) -> a
K = C component isotropic Gaussian mixture in R^n per sample. Loss (paper Eq. 4):
L = L_NLL + lambda * L_PCL, both SUMMED over the 2N samples as in Eqs. 2-3;
Sim = the mixtures' correlation coefficient (``methods.losses.gmm_correlation``,
closed form, log space).

Stage "classification": the MDN is dropped from the optimiser, the encoder is
frozen (requires_grad False AND its BatchNorm layers kept in eval mode, so the
running statistics learned in stage 1 are not overwritten -- "frozen" in the
linear-probe sense), and a linear classifier on GAP features is trained with ASL
at its default hyperparameters (``methods.asl.DEFAULTS``). forward = encoder ->
GAP -> linear, so ``linear_classifier`` exposes (W, b) for CSRA's trick.

What is z in L_NLL? The paper writes -log p(z | x_i) without saying what z is.
``nll_target`` chooses:
  * "projection" (default): z = the MDN's n-dim hidden output (its second hidden
    layer, 128 nodes = the figure's n). This mirrors KMCL (same authors), whose
    reconstruction term scores the feature the mixture head reads; it is the only
    n-dimensional quantity in the paper's architecture. Gradients reach both z and
    the mixture, so the term pulls features toward component means (bounded:
    var > 1 keeps -log N from diverging).
  * "projection_detached": same z with stop-gradient: the NLL only fits the mixture.
  * "encoder": z = the unit-normalised encoder feature h mapped to n dims by a
    FIXED random orthonormal projection (seeded, not trained, so it cannot collapse).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from methods import register
from methods.asl import DEFAULTS as ASL_DEFAULTS
from methods.backbones import build_backbone
from methods.base import (BuildContext, HparamError, Hparams, MethodSpec, MultiLabelModel, StageContext,
                          check_choice, check_range)
from methods.losses import asymmetric_loss, gmm_correlation, mixture_nll, probabilistic_contrastive_loss
from methods.mixture import ProbMCLMixtureHead

NLL_TARGETS = ("projection", "projection_detached", "encoder")

DEFAULTS = {
    "lambda_pcl": 0.3,
    "tau": 0.2,
    "alpha": 0.6,             # MS-COCO; the paper uses 0.5 on ADP
    "overlap": "jaccard",
    "n_dims": 128,
    "mdn_hidden": 2048,
    "nll_target": "projection",
    "stage1_fraction": 80 / 120,  # 80 contrastive + 40 classification epochs
    # Paper: the encoder is frozen in stage 2 (a linear probe). "fine-tune" also trains the
    # encoder there -- an explicit deviation, for encoders trained from scratch (CPU scale).
    "stage2": "linear-probe",
}
STAGE2_MODES = ("linear-probe", "fine-tune")

SEARCH_SPACE = {
    "tau": lambda rng: float(rng.choice([0.05, 0.1, 0.2, 0.3, 0.5])),
    "alpha": lambda rng: float(rng.choice([0.3, 0.4, 0.5, 0.6, 0.7, 0.8])),
    "lambda_pcl": lambda rng: float(10 ** rng.uniform(-1.5, 0.5)),
    "overlap": lambda rng: str(rng.choice(["jaccard", "cosine"])),
}


class ProbMCLModel(MultiLabelModel):
    stages = ("contrastive", "classification")

    def __init__(self, ctx: BuildContext, hp: Hparams) -> None:
        super().__init__()
        self.hp = dict(hp)
        self.backbone = build_backbone(ctx.backbone, ctx.in_chans, ctx.backbone_options)
        d = self.backbone.num_features
        self.mdn = ProbMCLMixtureHead(d, ctx.num_classes, hp["n_dims"], hp["mdn_hidden"])
        self.fc = nn.Linear(d, ctx.num_classes)
        gen = torch.Generator().manual_seed(0)
        q, _ = torch.linalg.qr(torch.randn(max(d, hp["n_dims"]), min(d, hp["n_dims"]), generator=gen))
        self.register_buffer("encoder_projection", q if d >= hp["n_dims"] else q.T, persistent=False)
        self.encoder_frozen = False

    # -- stages -------------------------------------------------------------
    def stage_epochs(self, total_epochs: int) -> list[int]:
        first = int(round(total_epochs * self.hp["stage1_fraction"]))
        if total_epochs >= 2:
            first = min(max(first, 1), total_epochs - 1)
        return [first, total_epochs - first]

    def views(self, stage: str) -> int:
        return 2 if stage == "contrastive" else 1

    def prepare_stage(self, stage: str, ctx: StageContext) -> None:
        classification = stage == "classification"
        frozen = classification and self.hp["stage2"] == "linear-probe"
        for p in self.backbone.parameters():
            p.requires_grad_(not frozen)
        for p in self.mdn.parameters():
            p.requires_grad_(not classification)  # the MDN is discarded in stage 2
        for p in self.fc.parameters():
            p.requires_grad_(classification)
        self.encoder_frozen = frozen
        self.train(self.training)

    def train(self, mode: bool = True) -> "ProbMCLModel":
        super().train(mode)
        if self.encoder_frozen:
            self.backbone.eval()
            self.mdn.eval()
        return self

    def trainable_parameters(self, stage: str):
        if stage == "classification":
            encoder = [] if self.hp["stage2"] == "linear-probe" else list(self.backbone.parameters())
            return iter([*encoder, *self.fc.parameters()])
        return iter([*self.backbone.parameters(), *self.mdn.parameters()])

    # -- forward ------------------------------------------------------------
    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images)

    def pooled(self, images: torch.Tensor) -> torch.Tensor:
        if self.encoder_frozen:
            with torch.no_grad():
                return self.backbone(images).mean(dim=(2, 3))
        return self.backbone(images).mean(dim=(2, 3))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pooled(images))

    def linear_classifier(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.fc.weight, self.fc.bias

    # -- losses -------------------------------------------------------------
    def contrastive_loss(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """L_NLL + lambda L_PCL on a batch of M samples (already the 2N views)."""
        h = self.backbone(images).mean(dim=(2, 3))
        mix = self.mdn(h)
        target = self.hp["nll_target"]
        if target == "projection":
            z = mix.z
        elif target == "projection_detached":
            z = mix.z.detach()
        else:
            z = nn.functional.normalize(h, dim=1) @ self.encoder_projection
        nll = mixture_nll(z, mix.log_pi, mix.mu, mix.var, reduction="sum")
        sim = gmm_correlation(mix.log_pi, mix.mu, mix.var, mix.log_pi, mix.mu, mix.var,
                              self.hp["n_dims"], log_weights=True)
        pcl = probabilistic_contrastive_loss(sim, targets, self.hp["alpha"], self.hp["tau"],
                                             self.hp["overlap"], reduction="sum")
        return nll + self.hp["lambda_pcl"] * pcl

    def loss(self, views: Sequence[torch.Tensor], targets: torch.Tensor, stage: str) -> torch.Tensor:
        if stage == "contrastive":
            return self.contrastive_loss(torch.cat(list(views), 0), targets.repeat(len(views), 1))
        if stage == "classification":
            a = ASL_DEFAULTS
            return asymmetric_loss(self(views[0]), targets, a["gamma_neg"], a["gamma_pos"], a["clip"],
                                   a["eps"], a["reduction"], a["detach_focusing"])
        raise ValueError(f"probmcl has no stage {stage!r}; stages: {self.stages}")


def build(ctx: BuildContext, hp: Hparams) -> ProbMCLModel:
    return ProbMCLModel(ctx, hp)


def validate(hp: Hparams) -> None:
    check_range(hp, "alpha", 0, 1)
    check_range(hp, "tau", 0, low_open=True)
    check_range(hp, "lambda_pcl", 0)
    check_choice(hp, "overlap", ("jaccard", "cosine"))
    check_choice(hp, "nll_target", NLL_TARGETS)
    check_choice(hp, "stage2", STAGE2_MODES)
    check_range(hp, "stage1_fraction", 0, 1, low_open=True)
    for name in ("n_dims", "mdn_hidden"):
        v = hp[name]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise HparamError(f"hyperparameter {name}={v!r} must be a positive integer")


SPEC = register(MethodSpec(
    name="probmcl",
    paper="Sajedi et al., ProbMCL: Simple Probabilistic Contrastive Learning for Multi-label "
          "Visual Classification, ICASSP 2024",
    summary="two stages: MDN mixture contrastive pre-training (NLL + PCL), then ASL linear probe",
    defaults=DEFAULTS,
    build=build,
    search_space=SEARCH_SPACE,
    validate=validate,
    recipe={"optimizer": "adam", "lr": 1e-4, "schedule": "onecycle",
            "stage_epochs": {"contrastive": 80, "classification": 40}, "epochs": 120,
            "batch_size": 128, "augmentation": "randaugment", "views": {"contrastive": 2},
            "backbone": "tresnet_m", "resolution": 224,
            "large": {"backbone": "tresnet_l", "resolution": 448}},
))
