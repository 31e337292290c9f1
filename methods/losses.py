"""Pure, typed loss functions shared by the methods.

Convention for every loss here: ``targets`` is (B, C) float with 1 = positive,
0 = negative and -1 = ignore; ignored entries contribute nothing.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _mask(targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(y, keep): y in {0, 1} with ignored entries set to 0, keep = 1 where not ignored."""
    keep = (targets >= 0).to(torch.float32)
    return targets.clamp(min=0).to(torch.float32), keep


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.mean()
    if reduction == "none":
        return loss
    raise ValueError(f"reduction={reduction!r} must be 'sum', 'mean' or 'none'")


def bce_loss(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Binary cross-entropy on logits (B, C) with ignore mask; ``mean`` over all entries."""
    y, keep = _mask(targets)
    loss = F.binary_cross_entropy_with_logits(logits.float(), y, reduction="none") * keep
    return _reduce(loss, reduction)


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
    """
    y, keep = _mask(targets)
    p = torch.sigmoid(logits.float())
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
