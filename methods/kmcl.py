"""KMCL-style end-to-end multi-label contrastive learning (Sajedi et al., arXiv 2307.03967).

One stage, one view. Encoder -> GAP -> 1x1 down-projection to n = 128 -> mixture
head (``methods.mixture.KMCLMixtureHead``): pi logits (K = C) are the ASL logits
and, through a sigmoid, the mixture weights; means and variances
(var = 2 + ELU + 1e-7) per component, anisotropic (K x n) or isotropic.

Loss = ASL(pi logits) + lambda_recon * reconstruction + lambda_kcl * kernel contrastive.

Facts read from the reference code (mahdihosseini/KMCL: train.py, Kmcl_Class.py,
src/loss_functions/losses.py) that set the defaults here:
  * the three terms are added with weight 1 each (no lambdas in the code);
  * ASL gamma_neg 4, gamma_pos 0, clip 0.05, focusing weight without gradient, SUM
    reduction, eps 1e-7 (its loss class default; ASL's own is 1e-8);
  * reconstruction: -log(sum_{k positive} sigmoid_k N_k(z) / sum_k sigmoid_k N_k(z)) with
    UNNORMALISED Gaussians (no (2 pi var)^(-n/2) factor), z = the down-projected feature,
    averaged over the batch;
  * kernel contrastive: per-class Bhattacharyya coefficient BC between component k of
    two samples, logits BC / 0.17, positives share any label, the Jaccard index sits
    INSIDE the log (a constant with no gradient), denominator over all samples but the
    anchor, anchor sum divided by the batch size;
  * default covariance "anisotropic" (--loss-case), similarity "BC"; ONE augmented view
    per image (no second view), so ``views`` = 1;
  * recipe: Adam lr 2e-4, true weight decay 1e-4, OneCycleLR pct_start 0.2, 40 epochs,
    batch 64, EMA 0.9997, AMP, Cutout + RandAugment, ImageNet mean/std normalisation,
    TResNet-M 224.
Divergences (deliberate): everything is computed in log space (the reference
evaluates Gaussians in linear space, clamps at 1.17549e-38 and SKIPS steps whose loss
is not finite; we never skip), samples without positive labels add 0 to the
reconstruction term (the reference adds a clamped constant), and the down-projection
is applied in the isotropic case too (the reference only uses it when anisotropic).
Bhattacharyya scale (``bc_scale``): in the ANISOTROPIC case the reference sums the
per-dimension Bhattacharyya terms and then multiplies the distance by n (= n_dims;
src/loss_functions/losses.py, the two BD lines of the anisotropic branch), so at n = 128
the coefficient vanishes (median about 3e-41 instead of 0.48) and the kernel-contrastive
gradient is about 1e-28. ``"paper"`` (default) uses the Bhattacharyya distance as defined
(sum over dimensions, no factor); ``"official-times-n"`` reproduces the reference's x n.
In the isotropic case the reference's distance already equals ours (n x the
per-dimension term), so both values give the same loss there.
"""
from __future__ import annotations

from typing import Sequence

import torch

from methods import global_batch, register
from methods.asl import DEFAULTS as ASL_DEFAULTS
from methods.backbones import build_backbone
from methods.base import BuildContext, HparamError, Hparams, MethodSpec, MultiLabelModel, check_choice, check_range
from methods.losses import (asymmetric_loss, bhattacharyya_log_coefficient, kmcl_kernel_contrastive_loss,
                            kmcl_reconstruction_loss)
from methods.mixture import KMCLMixtureHead

ASL_EPS = 1e-7  # the reference KMCL_Loss default (ASL's own default is 1e-8)

DEFAULTS = {
    "lambda_recon": 1.0,
    "lambda_kcl": 1.0,
    "tau": 0.17,
    "n_dims": 128,
    "covariance": "anisotropic",
    "jaccard": "inside_log",
    "recon_normalised": False,
    "bc_scale": "paper",
}
BC_SCALES = ("paper", "official-times-n")

SEARCH_SPACE = {
    "tau": lambda rng: float(rng.choice([0.05, 0.1, 0.17, 0.3, 0.5])),
    "lambda_recon": lambda rng: float(10 ** rng.uniform(-1, 1)),
    "lambda_kcl": lambda rng: float(10 ** rng.uniform(-1, 1)),
}


class KMCLModel(MultiLabelModel):
    def __init__(self, ctx: BuildContext, hp: Hparams) -> None:
        super().__init__()
        self.hp = dict(hp)
        self.backbone = build_backbone(ctx.backbone, ctx.in_chans, ctx.backbone_options)
        self.head = KMCLMixtureHead(self.backbone.num_features, ctx.num_classes, hp["n_dims"],
                                    hp["covariance"])

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head.logits(self.features(images).mean(dim=(2, 3)))

    def linear_classifier(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The down-projection and pi layer composed: logits are linear in the GAP feature."""
        return self.head.composed_linear()

    def loss(self, views: Sequence[torch.Tensor], targets: torch.Tensor, stage: str) -> torch.Tensor:
        logits, mix = self.head(self.features(views[0]).mean(dim=(2, 3)))
        a = ASL_DEFAULTS
        asl = asymmetric_loss(logits, targets, a["gamma_neg"], a["gamma_pos"], a["clip"], ASL_EPS,
                              "sum", True)
        recon = kmcl_reconstruction_loss(mix.z, logits, mix.mu, mix.var, targets,
                                         self.hp["recon_normalised"], reduction="mean")
        official_n = self.hp["bc_scale"] == "official-times-n" and mix.mu.dim() == 3  # anisotropic only
        mu, var, offset = mix.mu, mix.var, None
        if global_batch.world_size() > 1:  # data parallel: this rank's anchors against the whole batch
            mu, var, offset = global_batch.gather(mu), global_batch.gather(var), global_batch.rank() * len(targets)
            targets = global_batch.gather(targets)
        log_bc = bhattacharyya_log_coefficient(mu, var, self.hp["n_dims"],
                                               scale=float(self.hp["n_dims"]) if official_n else 1.0)
        if offset is not None:  # the rank's rows of the (B, B, K) kernel (the pairwise kernel runs whole)
            log_bc = log_bc[offset:offset + len(logits)]
        kcl = kmcl_kernel_contrastive_loss(log_bc, targets, self.hp["tau"], self.hp["jaccard"], reduction="mean",
                                           offset=offset)
        return asl + self.hp["lambda_recon"] * recon + self.hp["lambda_kcl"] * kcl


def build(ctx: BuildContext, hp: Hparams) -> KMCLModel:
    return KMCLModel(ctx, hp)


def validate(hp: Hparams) -> None:
    check_range(hp, "lambda_recon", 0)
    check_range(hp, "lambda_kcl", 0)
    check_range(hp, "tau", 0, low_open=True)
    check_choice(hp, "covariance", ("anisotropic", "isotropic"))
    check_choice(hp, "jaccard", ("inside_log", "weight"))
    check_choice(hp, "recon_normalised", (True, False))
    check_choice(hp, "bc_scale", BC_SCALES)
    v = hp["n_dims"]
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise HparamError(f"hyperparameter n_dims={v!r} must be a positive integer")


SPEC = register(MethodSpec(
    name="kmcl",
    paper="Sajedi et al., End-to-End Supervised Multilabel Contrastive Learning, arXiv 2307.03967 (2023)",
    summary="KMCL-style: mixture head (pi logits = ASL logits) + reconstruction + Bhattacharyya "
            "kernel contrastive, one stage",
    defaults=DEFAULTS,
    build=build,
    search_space=SEARCH_SPACE,
    validate=validate,
    recipe={"optimizer": "adam", "lr": 2e-4, "weight_decay": 1e-4, "true_weight_decay": True,
            "schedule": "onecycle", "pct_start": 0.2, "epochs": 40, "batch_size": 64, "ema": 0.9997,
            "augmentation": "cutout+randaugment", "normalize": "imagenet", "backbone": "tresnet_m",
            "resolution": 224},
))
