"""Closed-form similarities of isotropic Gaussian mixtures (ProbMCL's Sim, KMCL's kernels):
log inner products, self inner products and the correlation coefficient, chunked and blocked
with analytic backward passes so memory stays bounded."""
from __future__ import annotations

import math

import torch

from methods.loss_utils import _LOG_2PI, fp32_loss

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

