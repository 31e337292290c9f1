"""Pure, typed loss functions shared by the methods.

Convention for every loss here: ``targets`` is (B, C) float with 1 = positive,
0 = negative and -1 = ignore; ignored entries contribute nothing.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _loss_dtype(logits: torch.Tensor) -> torch.dtype:
    """At least float32: fp16 / bf16 logits are upcast, float64 stays float64."""
    return torch.promote_types(logits.dtype, torch.float32) if logits.is_floating_point() else torch.float32


def _mask(targets: torch.Tensor, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """(y, keep): y in {0, 1} with ignored entries set to 0, keep = 1 where not ignored."""
    keep = (targets >= 0).to(dtype)
    return targets.clamp(min=0).to(dtype), keep


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.mean()
    if reduction == "none":
        return loss
    raise ValueError(f"reduction={reduction!r} must be 'sum', 'mean' or 'none'")


def bce_loss(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Binary cross-entropy on logits (B, C) with ignore mask; ``mean`` over all entries.

    Computed in at least float32 (fp16 / bf16 logits are upcast; float64 stays float64)."""
    dtype = _loss_dtype(logits)
    y, keep = _mask(targets, dtype)
    loss = F.binary_cross_entropy_with_logits(logits.to(dtype), y, reduction="none") * keep
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

_LOG_2PI = math.log(2 * math.pi)
#: Elements of the (rows, B, K, K) pair tensor materialised at once by gmm_log_inner_product
#: (3e7 float32 = 120 MB per intermediate; a handful of intermediates stay alive).
GMM_CHUNK_ELEMENTS = 30_000_000


def _at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _as_log_weights(pi: torch.Tensor, log_weights: bool) -> torch.Tensor:
    return pi if log_weights else torch.log(pi.clamp(min=torch.finfo(pi.dtype).tiny))


def _pair_log_kernel(lp_a, mu_a, var_a, lp_b, mu_b, var_b, dim: int) -> torch.Tensor:
    """log int pi_a N_a pi_b N_b over all rows of a (R, K) x rows of b (B, K) -> (R, B, K, K)."""
    s = var_a[:, None, :, None] + var_b[None, :, None, :]
    d2 = (mu_a[:, None, :, None] - mu_b[None, :, None, :]).square()
    log_overlap = -0.5 * dim * (_LOG_2PI + torch.log(s)) - 0.5 * dim * d2 / s
    return log_overlap + lp_a[:, None, :, None] + lp_b[None, :, None, :]


def _log_inner_rows(lp_a, mu_a, var_a, lp_b, mu_b, var_b, dim: int) -> torch.Tensor:
    return torch.logsumexp(_pair_log_kernel(lp_a, mu_a, var_a, lp_b, mu_b, var_b, dim).flatten(2), dim=2)


def gmm_log_inner_product(
    pi_a: torch.Tensor, mu_a: torch.Tensor, var_a: torch.Tensor,
    pi_b: torch.Tensor, mu_b: torch.Tensor, var_b: torch.Tensor,
    dim: int, *, log_weights: bool = False, chunk_elements: int = GMM_CHUNK_ELEMENTS,
) -> torch.Tensor:
    """log int p_a(z) p_b(z) dz for every mixture of a (A, K) against every one of b (B, K) -> (A, B).

    Closed form per component pair: int N(z; a 1, s_a I) N(z; b 1, s_b I) dz =
    (2 pi (s_a + s_b))^(-dim/2) exp(-dim (a - b)^2 / (2 (s_a + s_b))); the pairs are
    combined with a logsumexp over K x K. Rows of a are processed in chunks of
    ``chunk_elements // (B K K)`` and each chunk is recomputed in backward
    (activation checkpointing), so peak memory is a few chunks, not the whole
    (A, B, K, K) tensor. Differentiable once (no double backward).
    """
    lp_a, lp_b = _as_log_weights(pi_a, log_weights), _as_log_weights(pi_b, log_weights)
    rows = max(1, chunk_elements // max(1, mu_b.shape[0] * mu_a.shape[1] * mu_b.shape[1]))
    return _ChunkedLogInner.apply(lp_a, mu_a, var_a, lp_b, mu_b, var_b, dim, rows)


class _ChunkedLogInner(torch.autograd.Function):
    """Row-chunked log inner products; backward recomputes each chunk (checkpointing by hand,
    so the (A, B, K, K) tensor never exists whole, neither in forward nor in backward)."""

    @staticmethod
    def forward(ctx, lp_a, mu_a, var_a, lp_b, mu_b, var_b, dim: int, rows: int):  # type: ignore[override]
        ctx.save_for_backward(lp_a, mu_a, var_a, lp_b, mu_b, var_b)
        ctx.dim, ctx.rows = dim, rows
        with torch.no_grad():
            return torch.cat([_log_inner_rows(lp_a[s:s + rows], mu_a[s:s + rows], var_a[s:s + rows],
                                              lp_b, mu_b, var_b, dim)
                              for s in range(0, mu_a.shape[0], rows)], dim=0)

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        a_side, b_side = ctx.saved_tensors[:3], ctx.saved_tensors[3:]
        grads_a = [torch.zeros_like(t) for t in a_side]
        grads_b = [torch.zeros_like(t) for t in b_side]
        with torch.enable_grad():
            b_leaves = [t.detach().requires_grad_() for t in b_side]
            for s in range(0, a_side[1].shape[0], ctx.rows):
                a_leaves = [t[s:s + ctx.rows].detach().requires_grad_() for t in a_side]
                out = _log_inner_rows(*a_leaves, *b_leaves, ctx.dim)
                parts = torch.autograd.grad(out, a_leaves + b_leaves, grad_out[s:s + ctx.rows])
                for g, p in zip(grads_a, parts[:3]):
                    g[s:s + ctx.rows] += p
                for g, p in zip(grads_b, parts[3:]):
                    g += p
        return (*grads_a, *grads_b, None, None)


def gmm_log_self_inner_product(pi: torch.Tensor, mu: torch.Tensor, var: torch.Tensor, dim: int,
                               *, log_weights: bool = False) -> torch.Tensor:
    """log int p(z)^2 dz of each mixture (N, K) -> (N,) (the diagonal of gmm_log_inner_product)."""
    lp = _as_log_weights(pi, log_weights)
    s = var[:, :, None] + var[:, None, :]
    d2 = (mu[:, :, None] - mu[:, None, :]).square()
    terms = -0.5 * dim * (_LOG_2PI + torch.log(s)) - 0.5 * dim * d2 / s + lp[:, :, None] + lp[:, None, :]
    return torch.logsumexp(terms.flatten(1), dim=1)


def gmm_correlation(
    pi_a: torch.Tensor, mu_a: torch.Tensor, var_a: torch.Tensor,
    pi_b: torch.Tensor, mu_b: torch.Tensor, var_b: torch.Tensor,
    dim: int, *, log_weights: bool = False, chunk_elements: int = GMM_CHUNK_ELEMENTS,
) -> torch.Tensor:
    """Correlation coefficient int p_a p_b / sqrt(int p_a^2 int p_b^2) -> (A, B), values in [0, 1].

    pi_*: (., K) weights summing to 1 (or log-weights if ``log_weights``); mu_*, var_*:
    (., K) scalar mean and variance of each isotropic component in R^dim. Computed as
    exp(L_ab - L_aa / 2 - L_bb / 2) with every L a log inner product (log space).
    """
    log_ab = gmm_log_inner_product(pi_a, mu_a, var_a, pi_b, mu_b, var_b, dim,
                                   log_weights=log_weights, chunk_elements=chunk_elements)
    log_aa = gmm_log_self_inner_product(pi_a, mu_a, var_a, dim, log_weights=log_weights)
    log_bb = gmm_log_self_inner_product(pi_b, mu_b, var_b, dim, log_weights=log_weights)
    return torch.exp(log_ab - 0.5 * log_aa[:, None] - 0.5 * log_bb[None, :])


def label_overlap(labels: torch.Tensor, overlap: str = "jaccard") -> torch.Tensor:
    """Pairwise overlap D(y_i, y_j) of label vectors (M, C) in {1, 0, -1 (= 0)} -> (M, M) in [0, 1].

    jaccard: |y_i & y_j| / |y_i | y_j|; cosine: y_i . y_j / (||y_i|| ||y_j||) (the paper
    prints ||y||^2 in the cosine's denominator, a typo: that is not a cosine). 0/0 -> 0.
    """
    y = _at_least_fp32(labels.clamp(min=0))
    inter = y @ y.T
    count = y.sum(1)
    if overlap == "jaccard":
        denom = count[:, None] + count[None, :] - inter
    elif overlap == "cosine":
        denom = torch.sqrt(count[:, None] * count[None, :])
    else:
        raise ValueError(f"overlap={overlap!r} must be 'jaccard' or 'cosine'")
    return torch.where(denom > 0, inter / denom.clamp(min=1e-12), torch.zeros_like(inter))


def probabilistic_contrastive_loss(sim: torch.Tensor, labels: torch.Tensor, alpha: float = 0.6,
                                   tau: float = 0.2, overlap: str = "jaccard",
                                   reduction: str = "sum") -> torch.Tensor:
    """ProbMCL's L_PCL (paper Eq. 3) over the M samples of a batch -> scalar.

    sim (M, M): similarity of the samples' mixtures; labels (M, C). For anchor i,
    A(i) = {j != i : D(y_i, y_j) >= alpha} and loss_i = -1/|A(i)| sum_{j in A(i)}
    D_ij log(exp(sim_ij / tau) / sum_{l != i} exp(sim_il / tau)). Anchors with an
    empty A(i) contribute 0. ``sum`` over anchors (the paper), or ``mean`` (/ M).
    """
    from methods.base import HparamError

    if not 0.0 <= alpha <= 1.0:
        raise HparamError(f"probabilistic_contrastive_loss: alpha={alpha} must be in [0, 1]")
    if not tau > 0:
        raise HparamError(f"probabilistic_contrastive_loss: tau={tau} must be > 0")
    if overlap not in ("jaccard", "cosine"):
        raise HparamError(f"probabilistic_contrastive_loss: overlap={overlap!r} must be 'jaccard' or 'cosine'")
    m = sim.shape[0]
    eye = torch.eye(m, dtype=torch.bool, device=sim.device)
    logits = (_at_least_fp32(sim) / tau).masked_fill(eye, float("-inf"))
    log_prob = (logits - torch.logsumexp(logits, dim=1, keepdim=True)).masked_fill(eye, 0.0)
    d = label_overlap(labels, overlap).to(sim.device)
    positive = (d >= alpha) & ~eye
    n_pos = positive.sum(1)
    per_anchor = -(d * log_prob * positive).sum(1) / n_pos.clamp(min=1)
    return _reduce(per_anchor, reduction)


def gaussian_log_density(z: torch.Tensor, mu: torch.Tensor, var: torch.Tensor,
                         normalised: bool = True) -> torch.Tensor:
    """log N(z; mean_k, var_k) of z (M, n) under each of K components -> (M, K).

    Isotropic: mu, var (M, K) scalars (mean mu_k 1, covariance var_k I). Diagonal
    ("anisotropic"): mu, var (M, K, n). ``normalised=False`` drops the
    -n/2 log(2 pi var) term (KMCL's unnormalised kernel).
    """
    n = z.shape[1]
    if mu.dim() == 2:
        sq = (z.square().sum(1, keepdim=True) - 2 * mu * z.sum(1, keepdim=True) + n * mu.square())
        log_k = -0.5 * sq.clamp(min=0) / var
        log_norm = -0.5 * n * (_LOG_2PI + torch.log(var))
    else:
        log_k = -0.5 * ((z[:, None, :] - mu).square() / var).sum(2)
        log_norm = -0.5 * (_LOG_2PI + torch.log(var)).sum(2)
    return log_k + log_norm if normalised else log_k


def mixture_nll(z: torch.Tensor, log_pi: torch.Tensor, mu: torch.Tensor, var: torch.Tensor,
                reduction: str = "sum") -> torch.Tensor:
    """-log sum_k pi_k N(z; mu_k 1, var_k I) per sample (paper Eq. 2) -> scalar ('sum' as the paper).

    z (M, n); log_pi (M, K) log mixture weights (log_softmax); mu, var (M, K) or (M, K, n).
    """
    return _reduce(-torch.logsumexp(log_pi + gaussian_log_density(z, mu, var), dim=1), reduction)


def bhattacharyya_log_coefficient(mu: torch.Tensor, var: torch.Tensor, dim: int,
                                  scale: float = 1.0) -> torch.Tensor:
    """log BC = -Bhattacharyya distance between component k of sample i and component k of j.

    mu, var (M, K) isotropic scalars in R^dim, or (M, K, n) diagonal (``dim`` unused) -> (M, M, K).
    BD = 1/8 d^T S^-1 d + 1/2 log(det S / sqrt(det S_i det S_j)), S = (S_i + S_j) / 2; per
    dimension 1/4 (mu_i - mu_j)^2 / (v_i + v_j) + 1/2 log((v_i + v_j) / (2 sqrt(v_i v_j))).
    ``scale`` multiplies the distance (1 = the definition; KMCL's official anisotropic code
    uses n, see ``methods.kmcl``).
    """
    m_i, m_j, v_i, v_j = mu[:, None], mu[None, :], var[:, None], var[None, :]
    s = v_i + v_j
    per_dim = 0.25 * (m_i - m_j).square() / s + 0.5 * (torch.log(s / 2) - 0.5 * (torch.log(v_i) + torch.log(v_j)))
    distance = per_dim.sum(3) if mu.dim() == 3 else dim * per_dim
    return -(distance if scale == 1.0 else scale * distance)


def kmcl_kernel_contrastive_loss(log_bc: torch.Tensor, targets: torch.Tensor, tau: float = 0.17,
                                 jaccard: str = "inside_log", reduction: str = "mean") -> torch.Tensor:
    """KMCL's kernel contrastive loss from per-class component similarities -> scalar.

    log_bc (M, M, K): log Bhattacharyya coefficient between component k of i and of j;
    targets (M, K) (-1 = 0). Logits s_ijk = BC_ijk / tau. Positives of anchor i:
    A(i) = {j != i sharing any label}; for each shared class k the term is
    log(exp(s_ijk) / sum_{l != i} exp(s_ilk)) (denominator over ALL other samples).
    ``jaccard="inside_log"`` (reference code): log(J_ij * ratio) -- J only adds a
    label-dependent constant, no gradient; ``"weight"``: J_ij * log(ratio) (ProbMCL's
    weighting). loss_i = -1/|A(i)| sum_{j in A(i)} sum_{k shared} term; empty A(i) -> 0;
    ``mean`` divides the anchor sum by M (the reference's /batch_size).
    """
    y = _at_least_fp32(targets.clamp(min=0))
    m = y.shape[0]
    eye = torch.eye(m, dtype=torch.bool, device=log_bc.device)
    logits = (torch.exp(_at_least_fp32(log_bc)) / tau).masked_fill(eye[:, :, None], float("-inf"))
    log_ratio = (logits - torch.logsumexp(logits, dim=1, keepdim=True)).masked_fill(eye[:, :, None], 0.0)
    shared = y[:, None, :] * y[None, :, :] * (~eye)[:, :, None]            # (M, M, K)
    j = label_overlap(y, "jaccard")
    positive = (shared.sum(2) > 0)
    if jaccard == "inside_log":
        terms = (log_ratio + torch.log(j.clamp(min=1e-12))[:, :, None]) * shared
    elif jaccard == "weight":
        terms = j[:, :, None] * log_ratio * shared
    else:
        raise ValueError(f"jaccard={jaccard!r} must be 'inside_log' or 'weight'")
    per_anchor = -terms.sum((1, 2)) / positive.sum(1).clamp(min=1)
    return _reduce(per_anchor, reduction)


def kmcl_reconstruction_loss(z: torch.Tensor, pi_logits: torch.Tensor, mu: torch.Tensor,
                             var: torch.Tensor, targets: torch.Tensor, normalised: bool = False,
                             reduction: str = "mean") -> torch.Tensor:
    """KMCL's NLL-style reconstruction: -log(sum_{k pos} w_k N_k(z) / sum_k w_k N_k(z)) -> scalar.

    z (M, n) the projected feature; pi_logits (M, K) with w = sigmoid(pi_logits) (normalising
    w to sum 1 cancels in the ratio); mu, var (M, K) or (M, K, n); targets (M, K). The
    reference uses unnormalised Gaussians (``normalised=False``). Samples without a
    positive label contribute 0 (the reference clamps them to a constant). ``mean`` over M.
    """
    y = _at_least_fp32(targets.clamp(min=0))
    log_w = F.logsigmoid(_at_least_fp32(pi_logits)) + gaussian_log_density(z, mu, var, normalised)
    log_pos = torch.logsumexp(log_w.masked_fill(y <= 0, -1e30), dim=1)  # finite: no NaN grads
    has_pos = y.sum(1) > 0
    per_sample = torch.where(has_pos, torch.logsumexp(log_w, dim=1) - log_pos,
                             torch.zeros_like(log_pos))
    return _reduce(per_sample, reduction)
