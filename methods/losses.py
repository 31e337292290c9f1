"""Pure, typed loss functions shared by the methods.

Convention for every loss here: ``targets`` is (B, C) float with 1 = positive,
0 = negative and -1 = ignore; ignored entries contribute nothing.

Every public loss is ``@fp32_loss``: under mixed precision (``budget.precision: bf16 | fp16``)
it runs with autocast off and its fp16 / bf16 tensor arguments upcast to float32, so no
matmul, log or exp of a loss runs in half precision; float64 inputs stay float64.
"""
from __future__ import annotations

import functools
import math
from typing import Callable, TypeVar

import torch
import torch.nn.functional as F

from methods.bhattacharyya import pairwise_bhattacharyya

_F = TypeVar("_F", bound=Callable)
_HALF = (torch.float16, torch.bfloat16)


def fp32_loss(fn: _F) -> _F:
    """Run ``fn`` with autocast disabled and half-precision tensor arguments upcast to float32."""
    def up(v):
        return v.float() if isinstance(v, torch.Tensor) and v.dtype in _HALF else v

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]
        kind = tensors[0].device.type if tensors else "cpu"
        with torch.autocast(kind, enabled=False):
            return fn(*(up(a) for a in args), **{k: up(v) for k, v in kwargs.items()})
    return wrapper  # type: ignore[return-value]


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


@fp32_loss
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


@fp32_loss
def gmm_log_self_inner_product(pi: torch.Tensor, mu: torch.Tensor, var: torch.Tensor, dim: int,
                               *, log_weights: bool = False) -> torch.Tensor:
    """log int p(z)^2 dz of each mixture (N, K) -> (N,) (the diagonal of gmm_log_inner_product)."""
    lp = _as_log_weights(pi, log_weights)
    s = var[:, :, None] + var[:, None, :]
    d2 = (mu[:, :, None] - mu[:, None, :]).square()
    terms = -0.5 * dim * (_LOG_2PI + torch.log(s)) - 0.5 * dim * d2 / s + lp[:, :, None] + lp[:, None, :]
    return torch.logsumexp(terms.flatten(1), dim=1)


#: Elements of one (rows x K, cols x K) block of gmm_correlation's pair terms on the CPU: small enough
#: that the handful of block-sized buffers stay in a core's L2 cache (2^18 float32 = 1 MiB each).
GMM_BLOCK_ELEMENTS = 1 << 18


def _block_ranges(n: int, size: int) -> list[tuple[int, int]]:
    return [(s, min(n, s + size)) for s in range(0, n, size)]


def _corr_block(la, ma, va, lb, mb, vb, c: float, with_grad: bool) -> list[torch.Tensor]:
    """The pair terms of one block, rows a = (i, k) (Ra = I K) by columns b = (j, l) (Rb = J L).

    E_ab = exp(T'_ab), T' = la_a + lb_b - c (log s + d^2 / s), s = va_a + vb_b, d = ma_a - mb_b,
    c = dim / 2 (the constant -c log 2 pi and the -L_ii / 2 normalisers are folded into la, lb).
    Returns [E] or, ``with_grad``, [E, E d / s, E (1 - d^2 / s) / s]: the terms' derivatives
    with respect to la, ma (times -2c) and va (times -c)."""
    s = va[:, None] + vb[None, :]
    d = ma[:, None] - mb[None, :]
    if not with_grad:
        u = d.square_().div_(s)                  # before s is overwritten by its log
        return [s.log_().add_(u).mul_(-c).add_(la[:, None]).add_(lb[None, :]).exp_()]
    r = torch.reciprocal(s)
    dr = d * r                                   # d / s
    u = d.mul_(dr)                               # d^2 / s
    e = s.log_().add_(u).mul_(-c).add_(la[:, None]).add_(lb[None, :]).exp_()
    e_dr = dr.mul_(e)                            # E d / s
    e_r = r.mul_(e)                              # E / s
    e_s = e_r.sub_(u.mul_(e_r))                  # E (1 - d^2 / s) / s
    return [e, e_dr, e_s]


class _ShiftedCorrelation(torch.autograd.Function):
    """corr_ij = sum_{k,l} exp(T'_ijkl), in cache-sized blocks of (i, j) pairs.

    Inputs: the shifted log-weights la, lb (., K) and the means and variances. The backward
    pass needs, per pair (i, j), only the sums over l (a side) and over k (b side) of the terms
    and of their two derivative factors, so the forward pass keeps those partial sums
    (3 tensors of A x K x B and 3 of B x K x A; 63 MB in all at 2N = 256, K = 80 when a is b) and
    the backward pass is a few contractions with the upstream gradient: no term is recomputed.
    ``symmetric``: a and b are the same mixtures; only blocks on and above the diagonal are
    evaluated (the pair (j, i) has the same terms as (i, j), with d of the opposite sign), only
    the a-side sums are kept and the b-side gradient is folded into the a side."""

    @staticmethod
    def forward(ctx, la, ma, va, lb, mb, vb, c: float, rows: int, symmetric: bool,  # type: ignore[override]
                with_grad: bool):
        n_a, k_a = la.shape
        n_b, k_b = lb.shape
        n_sums = 3 if with_grad else 1
        sums_a = [la.new_empty(n_a, k_a, n_b) for _ in range(n_sums)]      # [i, k, j]: sum over l
        sums_b = sums_a if symmetric else [la.new_empty(n_b, k_b, n_a) for _ in range(n_sums)]
        flat = [t.reshape(-1) for t in (la, ma, va, lb, mb, vb)]
        for i0, i1 in _block_ranges(n_a, rows):
            a_side = [t[i0 * k_a:i1 * k_a] for t in flat[:3]]
            for j0, j1 in _block_ranges(n_b, rows):
                if symmetric and j1 <= i0:
                    continue
                b_side = [t[j0 * k_b:j1 * k_b] for t in flat[3:]]
                terms = _corr_block(*a_side, *b_side, c, with_grad)
                diagonal = symmetric and j0 == i0
                for x, (term, sa, sb) in enumerate(zip(terms, sums_a, sums_b)):
                    four = term.view(i1 - i0, k_a, j1 - j0, k_b)
                    sa[i0:i1, :, j0:j1] = four.sum(3)
                    if not diagonal:
                        part = four.sum(1).permute(1, 2, 0)                   # [j, l, i]
                        sb[j0:j1, :, i0:i1] = part.neg_() if symmetric and x == 1 else part
        corr = sums_a[0].sum(1)
        if with_grad:
            ctx.save_for_backward(*sums_a, *([] if symmetric else sums_b))
        ctx.c, ctx.symmetric = c, symmetric
        return corr

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):  # type: ignore[override]
        c, symmetric = ctx.c, ctx.symmetric
        saved = ctx.saved_tensors
        if symmetric:
            g = grad_out + grad_out.T  # corr_ij and corr_ji are one value; la is lb
            e, e_dr, e_s = (torch.einsum("ikj,ij->ik", t, g) for t in saved)
            return e, (-2 * c) * e_dr, (-c) * e_s, None, None, None, None, None, None, None
        e_a, dr_a, s_a = (torch.einsum("ikj,ij->ik", t, grad_out) for t in saved[:3])
        e_b, dr_b, s_b = (torch.einsum("jli,ij->jl", t, grad_out) for t in saved[3:])
        return (e_a, (-2 * c) * dr_a, (-c) * s_a, e_b, (2 * c) * dr_b, (-c) * s_b,
                None, None, None, None)


@fp32_loss
def gmm_correlation(
    pi_a: torch.Tensor, mu_a: torch.Tensor, var_a: torch.Tensor,
    pi_b: torch.Tensor, mu_b: torch.Tensor, var_b: torch.Tensor,
    dim: int, *, log_weights: bool = False, chunk_elements: int = GMM_CHUNK_ELEMENTS,
) -> torch.Tensor:
    """Correlation coefficient int p_a p_b / sqrt(int p_a^2 int p_b^2) -> (A, B), values in [0, 1].

    pi_*: (., K) weights summing to 1 (or log-weights if ``log_weights``); mu_*, var_*:
    (., K) scalar mean and variance of each isotropic component in R^dim.

    Exact closed form, evaluated as corr_ij = sum_{k,l} exp(T_ijkl - L_ii / 2 - L_jj / 2), where
    T_ijkl = log w_ik + log w_jl - dim/2 log(2 pi s) - dim d^2 / (2 s) (s = v_ik + v_jl,
    d = m_ik - m_jl) is the log of one component pair's integral and L_ii = logsumexp_kl T_iikl
    the self inner products. By Cauchy-Schwarz every shifted term is <= corr_ij <= 1, so the
    shift by (L_ii + L_jj) / 2 replaces logsumexp's max pass and no log of the sum is needed.
    The (i, j) pairs are processed in cache-sized blocks (at most ``chunk_elements`` terms);
    the gradient of each term is g_ij times the term itself, so the forward pass keeps the
    per-pair sums over one component index that the backward pass needs (O(A K B) memory,
    never the A x B x K x K terms) and nothing is recomputed. When a and b are the same tensors
    (ProbMCL) only blocks on and above the diagonal are evaluated.
    Pairs whose correlation is below about 1e-30 (float32; 1e-246 in float64) are recomputed
    with an exact logsumexp so they keep full relative precision. Differentiable once.
    """
    symmetric = pi_a is pi_b and mu_a is mu_b and var_a is var_b
    lp_a = _as_log_weights(_at_least_fp32(pi_a), log_weights)
    lp_b = lp_a if symmetric else _as_log_weights(_at_least_fp32(pi_b), log_weights)
    mu_a, var_a = _at_least_fp32(mu_a), _at_least_fp32(var_a)  # fp16 / bf16 inputs: computed in fp32
    mu_b, var_b = (mu_a, var_a) if symmetric else (_at_least_fp32(mu_b), _at_least_fp32(var_b))
    log_aa = gmm_log_self_inner_product(lp_a, mu_a, var_a, dim, log_weights=True)
    log_bb = log_aa if symmetric else gmm_log_self_inner_product(lp_b, mu_b, var_b, dim, log_weights=True)
    c = 0.5 * dim
    la = lp_a - (0.5 * log_aa + 0.5 * c * _LOG_2PI)[:, None]
    lb = la if symmetric else lp_b - (0.5 * log_bb + 0.5 * c * _LOG_2PI)[:, None]
    k = mu_a.shape[1]
    # CPU: cache-sized blocks; an accelerator wants few large kernels, bounded by chunk_elements only
    budget = max(1, min(int(chunk_elements), GMM_BLOCK_ELEMENTS) if mu_a.device.type == "cpu" else int(chunk_elements))
    rows = max(1, int(math.isqrt(budget // max(1, k * mu_b.shape[1]))))
    inputs = (la, mu_a, var_a, lb, mu_b, var_b)
    with_grad = torch.is_grad_enabled() and any(t.requires_grad for t in inputs)
    corr = _ShiftedCorrelation.apply(*inputs, c, rows, symmetric, with_grad)
    with torch.no_grad():
        small = (corr < torch.finfo(corr.dtype).tiny ** 0.8).nonzero()
        if small.numel():  # rare: exact log-space values for correlations near float underflow
            delta = torch.zeros_like(corr)
            step = max(1, budget // max(1, k * mu_b.shape[1]))
            for s0 in range(0, small.shape[0], step):
                i, j = small[s0:s0 + step, 0], small[s0:s0 + step, 1]
                t = _pair_log_kernel_pairs(la[i], mu_a[i], var_a[i], lb[j], mu_b[j], var_b[j], dim)
                delta[i, j] = torch.exp(torch.logsumexp(t.flatten(1), dim=1)) - corr[i, j]
    if small.numel():
        # the value becomes the exact one; the gradient stays the blocks' (exact up to terms
        # below float underflow, i.e. an absolute error under 1e-38 per term)
        corr = corr + delta
    return corr


def _pair_log_kernel_pairs(la, ma, va, lb, mb, vb, dim: int) -> torch.Tensor:
    """T' of selected pairs: rows (P, K) of a against rows (P, K) of b -> (P, K, K) (constants folded in la, lb)."""
    s = va[:, :, None] + vb[:, None, :]
    d2 = (ma[:, :, None] - mb[:, None, :]).square()
    return la[:, :, None] + lb[:, None, :] - 0.5 * dim * (torch.log(s) + d2 / s)


@fp32_loss
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


@fp32_loss
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


@fp32_loss
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


@fp32_loss
def mixture_nll(z: torch.Tensor, log_pi: torch.Tensor, mu: torch.Tensor, var: torch.Tensor,
                reduction: str = "sum") -> torch.Tensor:
    """-log sum_k pi_k N(z; mu_k 1, var_k I) per sample (paper Eq. 2) -> scalar ('sum' as the paper).

    z (M, n); log_pi (M, K) log mixture weights (log_softmax); mu, var (M, K) or (M, K, n).
    """
    return _reduce(-torch.logsumexp(log_pi + gaussian_log_density(z, mu, var), dim=1), reduction)


#: Readings of ProbMCL's L_NLL that use the labels (see methods/probmcl.py).
LABEL_NLL_READINGS = ("label-posterior", "label-conditional")


@fp32_loss
def mixture_label_nll(z: torch.Tensor, log_pi: torch.Tensor, mu: torch.Tensor, var: torch.Tensor,
                      targets: torch.Tensor, reading: str = "label-posterior",
                      reduction: str = "sum") -> torch.Tensor:
    """Label-aware mixture NLL with one component per class (K = C) -> scalar.

    z (M, n); log_pi (M, K) log mixture weights; mu, var (M, K) isotropic or (M, K, n);
    targets (M, K) in {1, 0, -1} (-1 = ignore: treated as not positive). With
    J_k = log pi_k + log N(z; mu_k, var_k):
      "label-posterior":   -log( sum_{k in y} e^J_k / sum_k e^J_k ), the posterior mass of the
                           sample's own classes (KMCL's reconstruction term, same authors);
      "label-conditional": -log sum_{k in y} e^J_k, the joint density of z and a true class.
    A sample without a positive label contributes 0.
    """
    if reading not in LABEL_NLL_READINGS:
        raise ValueError(f"reading={reading!r} must be one of {', '.join(LABEL_NLL_READINGS)}")
    joint = log_pi + gaussian_log_density(z, mu, var)
    positive = targets > 0
    has = positive.any(1)
    positive = positive | ~has[:, None]  # rows without a positive: finite values, zeroed below
    own = torch.logsumexp(joint.masked_fill(~positive, -math.inf), dim=1)
    per_sample = -own if reading == "label-conditional" else torch.logsumexp(joint, dim=1) - own
    return _reduce(torch.where(has, per_sample, torch.zeros_like(per_sample)), reduction)


@fp32_loss
def bhattacharyya_log_coefficient(mu: torch.Tensor, var: torch.Tensor, dim: int,
                                  scale: float = 1.0) -> torch.Tensor:
    """log BC = -Bhattacharyya distance between component k of sample i and component k of j.

    mu, var (M, K) isotropic scalars in R^dim, or (M, K, n) diagonal (``dim`` unused) -> (M, M, K).
    BD = 1/8 d^T S^-1 d + 1/2 log(det S / sqrt(det S_i det S_j)), S = (S_i + S_j) / 2; per
    dimension 1/4 (mu_i - mu_j)^2 / (v_i + v_j) + 1/2 log((v_i + v_j) / (2 sqrt(v_i v_j))).
    ``scale`` multiplies the distance (1 = the definition; KMCL's official anisotropic code
    uses n, see ``methods.kmcl``).
    """
    if mu.dim() == 3:  # chunked forward and analytic backward (methods/bhattacharyya.py)
        distance = pairwise_bhattacharyya(mu, var)
    else:
        m_i, m_j, v_i, v_j = mu[:, None], mu[None, :], var[:, None], var[None, :]
        s = v_i + v_j
        distance = dim * (0.25 * (m_i - m_j).square() / s
                          + 0.5 * (torch.log(s / 2) - 0.5 * (torch.log(v_i) + torch.log(v_j))))
    return -(distance if scale == 1.0 else scale * distance)


@fp32_loss
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


@fp32_loss
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
