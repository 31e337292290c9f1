"""ProbMCL: Probabilistic Multi-label Contrastive Learning (Sajedi et al., ICASSP 2024).

Stage "contrastive": two augmented views of each image (2N samples) -> encoder ->
GAP -> unit-normalised h -> MDN (``methods.mixture.ProbMCLMixtureHead``) -> a
K = C component isotropic Gaussian mixture in R^n per sample. Loss (paper Eq. 4):
L = L_NLL + lambda * L_PCL, both SUMMED over the 2N samples as in Eqs. 2-3 (data parallel: each
rank's anchors against the gathered mixtures of the whole batch, methods/global_batch.py);
Sim = the mixtures' correlation coefficient (``methods.losses.gmm_correlation``,
closed form, log space).

Stage "classification": the MDN is dropped from the optimiser, the encoder is
frozen (requires_grad False AND its BatchNorm layers kept in eval mode, so the
running statistics learned in stage 1 are not overwritten -- "frozen" in the
linear-probe sense), and a linear classifier on GAP features is trained with ASL
at its default hyperparameters (``methods.asl.DEFAULTS``). forward = encoder ->
GAP -> linear, so ``linear_classifier`` exposes (W, b) for CSRA's trick.

What is L_NLL? The paper writes -log p(z | x_i) (Eq. 2) without saying what z is.
Its own evidence: lambda "equalizes the gradients" of the two terms, and "lower lambda
reduces the contrastive effect (resembling ASL)" (Sec. 3.3) -- so L_NLL alone must behave
like a supervised classification loss: it uses the labels. ``nll_target`` chooses:
  * "label-posterior" (default): with one component per class (K = C),
    -log( sum_{k in y} pi_k N_k(z) / sum_k pi_k N_k(z) ), the posterior mass of the
    sample's classes given its projection z (the MDN's n-dim hidden output): the
    reconstruction term of KMCL, the same authors' method (with the paper's normalised
    Gaussians and softmax pi). Per sample it is O(log C), the scale of one PCL anchor
    term, so lambda = 0.3 balances the two summed terms as the paper says.
  * "label-conditional": -log sum_{k in y} pi_k N_k(z), the joint density of z and a
    true class (a density in R^n: its scale grows with n).
  * label-free readings (they ignore y; measured to COLLAPSE at CPU scale: every
    projection unit dead, every pairwise similarity 1.0, the NLL ~99 % of the loss):
    "projection" (z = the MDN hidden output, gradients to both), "projection_detached"
    (stop-gradient on z), "encoder" (h through a FIXED random orthonormal projection).
After the contrastive stage ``representation_check`` measures collapse
(``methods.diagnostics``): the record carries the figures and the verdict.

The linear probe reads the unit-normalised h (``probe_input: normalised``, the paper:
the MDN and the probe both see normalised h); ``raw`` reads the GAP feature as the
earlier code did. With a normalised input the head is not linear in the feature map,
so CSRA's training-free trick does not apply (``linear_classifier`` is None).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from methods import global_batch, register
from methods.asl import DEFAULTS as ASL_DEFAULTS
from methods.backbones import build_backbone
from methods.base import (BuildContext, HparamError, Hparams, MethodSpec, MultiLabelModel, StageContext,
                          check_choice, check_range)
from methods.diagnostics import collapse_stats
from methods.heads import Fp32Linear
from methods.losses import (LABEL_NLL_READINGS, asymmetric_loss, gmm_correlation, mixture_label_nll, mixture_nll,
                            probabilistic_contrastive_loss)
from methods.mixture import ProbMCLMixtureHead

NLL_TARGETS = (*LABEL_NLL_READINGS, "projection", "projection_detached", "encoder")
PROBE_INPUTS = ("normalised", "raw")
#: Images of the representation check after the contrastive stage.
CHECK_IMAGES = 512

DEFAULTS = {
    "lambda_pcl": 0.3,
    "tau": 0.2,
    "alpha": 0.6,             # MS-COCO; the paper uses 0.5 on ADP
    "overlap": "jaccard",
    "n_dims": 128,
    "mdn_hidden": 2048,
    "nll_target": "label-posterior",
    "probe_input": "normalised",  # paper: the probe reads unit-normalised h
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
        self.fc = Fp32Linear(d, ctx.num_classes)  # fp32 logits under mixed precision
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
        h = self.pooled(images)
        return self.fc(nn.functional.normalize(h, dim=1) if self.hp["probe_input"] == "normalised" else h)

    def linear_classifier(self) -> tuple[torch.Tensor, torch.Tensor | None] | None:
        if self.hp["probe_input"] == "normalised":
            return None  # normalise-then-linear is not linear in the feature map: no trick
        return self.fc.weight, self.fc.bias

    #: The stage after which the runner calls ``representation_check``.
    checked_stage = "contrastive"

    @torch.no_grad()
    def representation_check(self, batches) -> dict:
        """Collapse figures (methods.diagnostics) on up to CHECK_IMAGES unaugmented images."""
        was = self.training
        self.eval()
        hs, zs, mixes = [], [], []
        seen = 0
        for images, _ in batches:
            h = self.backbone(images).mean(dim=(2, 3))
            mix = self.mdn(h)
            hs.append(h)
            zs.append(mix.z)
            mixes.append(mix)
            seen += len(images)
            if seen >= CHECK_IMAGES:
                break
        self.train(was)
        cat = lambda name: torch.cat([getattr(m, name) for m in mixes])[:CHECK_IMAGES]  # noqa: E731
        lp, mu, var = cat("log_pi"), cat("mu"), cat("var")
        sim = gmm_correlation(lp, mu, var, lp, mu, var, self.hp["n_dims"], log_weights=True)
        return collapse_stats(torch.cat(hs)[:CHECK_IMAGES], torch.cat(zs)[:CHECK_IMAGES], sim)

    # -- losses -------------------------------------------------------------
    def contrastive_loss(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """L_NLL + lambda L_PCL on a batch of M samples (already the 2N views)."""
        h = self.backbone(images).mean(dim=(2, 3))
        mix = self.mdn(h)
        target = self.hp["nll_target"]
        if target in LABEL_NLL_READINGS:
            nll = mixture_label_nll(mix.z, mix.log_pi, mix.mu, mix.var, targets, target, reduction="sum")
        else:
            nll = mixture_nll(self._label_free_z(h, mix.z, target), mix.log_pi, mix.mu, mix.var, reduction="sum")
        if global_batch.world_size() == 1:
            sim = gmm_correlation(mix.log_pi, mix.mu, mix.var, mix.log_pi, mix.mu, mix.var,
                                  self.hp["n_dims"], log_weights=True)
            offset = None
        else:  # data parallel: this rank's anchors against the mixtures of the whole global batch
            sim = gmm_correlation(mix.log_pi, mix.mu, mix.var, global_batch.gather(mix.log_pi),
                                  global_batch.gather(mix.mu), global_batch.gather(mix.var),
                                  self.hp["n_dims"], log_weights=True)
            offset, targets = global_batch.rank() * len(targets), global_batch.gather(targets)
        pcl = probabilistic_contrastive_loss(sim, targets, self.hp["alpha"], self.hp["tau"],
                                             self.hp["overlap"], reduction="sum", offset=offset)
        self.loss_parts = {"nll": nll.detach(), "lambda_pcl": (self.hp["lambda_pcl"] * pcl).detach()}
        return nll + self.hp["lambda_pcl"] * pcl

    def _label_free_z(self, h: torch.Tensor, z: torch.Tensor, target: str) -> torch.Tensor:
        if target == "projection":
            return z
        if target == "projection_detached":
            return z.detach()
        return nn.functional.normalize(h, dim=1) @ self.encoder_projection

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
    check_choice(hp, "probe_input", PROBE_INPUTS)
    check_range(hp, "stage1_fraction", 0, 1, low_open=True)
    if hp["stage1_fraction"] >= 1:
        raise HparamError(f"hyperparameter stage1_fraction={hp['stage1_fraction']} must be < 1 "
                          "(the classification stage needs epochs)")
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
