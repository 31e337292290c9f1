"""Pure, typed loss functions shared by the methods.

Convention for every loss here: ``targets`` is (B, C) float with 1 = positive,
0 = negative and -1 = ignore; ignored entries contribute nothing.

Every public loss is ``@fp32_loss``: under mixed precision (``budget.precision: bf16 | fp16``)
it runs with autocast off and its fp16 / bf16 tensor arguments upcast to float32, so no
matmul, log or exp of a loss runs in half precision; float64 inputs stay float64.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from methods.loss_utils import _loss_dtype, _mask, _reduce, fp32_loss  # noqa: F401  (shared helpers)
from methods.gmm_similarity import (GMM_BLOCK_ELEMENTS, GMM_CHUNK_ELEMENTS, gmm_correlation,  # noqa: F401
                                    gmm_log_inner_product, gmm_log_self_inner_product)
from methods.contrastive_losses import (LABEL_NLL_READINGS, bhattacharyya_log_coefficient,  # noqa: F401
                                        gaussian_log_density, kmcl_kernel_contrastive_loss,
                                        kmcl_reconstruction_loss, label_overlap, mixture_label_nll,
                                        mixture_nll, probabilistic_contrastive_loss)



@fp32_loss
def bce_loss(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Binary cross-entropy on logits (B, C) with ignore mask; ``mean`` over all entries.

    Computed in at least float32 (fp16 / bf16 logits are upcast; float64 stays float64)."""
    dtype = _loss_dtype(logits)
    y, keep = _mask(targets, dtype)
    loss = F.binary_cross_entropy_with_logits(logits.to(dtype), y, reduction="none") * keep
    return _reduce(loss, reduction)


@fp32_loss
def asymmetric_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    gamma_neg: float = 4.0,
    gamma_pos: float = 0.0,
    clip: float = 0.05,
    eps: float = 1e-8,
    reduction: str = "sum",
    detach_focusing: bool = False,
) -> torch.Tensor:
    """ASL (Ridnik et al., ICCV 2021) on logits (B, C) -> scalar (or (B, C) for 'none').

    p = sigmoid(x); on negatives the shifted probability p_m = min(1 - p + clip, 1)
    replaces 1 - p. L = y log p + (1 - y) log p_m, w = (1 - pt)^(gamma_pos y +
    gamma_neg (1 - y)) with pt = p y + p_m (1 - y); loss = -L w. The official
    reduction is a sum. ``detach_focusing`` computes w without gradient (the
    reference's ``disable_torch_grad_focal_loss``) under a scoped no_grad, so the
    caller's grad mode is never changed (the reference re-enables grad globally).
    Computed in at least float32 (fp16 / bf16 logits are upcast; float64 stays float64).
    """
    dtype = _loss_dtype(logits)
    y, keep = _mask(targets, dtype)
    p = torch.sigmoid(logits.to(dtype))
    p_neg = (1 - p + clip).clamp(max=1) if clip and clip > 0 else 1 - p
    log_lik = y * torch.log(p.clamp(min=eps)) + (1 - y) * torch.log(p_neg.clamp(min=eps))
    if gamma_neg > 0 or gamma_pos > 0:
        def focusing() -> torch.Tensor:
            pt = p * y + p_neg * (1 - y)
            return torch.pow(1 - pt, gamma_pos * y + gamma_neg * (1 - y))
        if detach_focusing:
            with torch.no_grad():
                w = focusing()
        else:
            w = focusing()
        log_lik = log_lik * w
    return _reduce(-log_lik * keep, reduction)


# ---------------------------------------------------------------------------
# Gaussian-mixture losses (ProbMCL, KMCL). Everything below works in log space.
# A mixture of K isotropic components in R^dim is given per sample by weights
# pi (., K) (or log-weights), scalar means mu (., K) -- component k is
# N(z; mu_k 1, var_k I) -- and scalar variances var (., K).
# ---------------------------------------------------------------------------

#: Elements of the (rows, B, K, K) pair tensor materialised at once by gmm_log_inner_product
