"""Contrastive and mixture-density losses of ProbMCL and KMCL: label overlap, the probabilistic
contrastive loss, Gaussian / mixture negative log-likelihoods, the Bhattacharyya kernel loss."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from methods.bhattacharyya import pairwise_bhattacharyya
from methods.loss_utils import _LOG_2PI, _reduce, fp32_loss
from methods.gmm_similarity import _at_least_fp32


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


def _self_pairs(pairs: torch.Tensor, offset: int) -> torch.Tensor:
    """(A, M) bool, True at (i, offset + i): anchor i paired with itself among the M samples."""
    a, m = pairs.shape[:2]
    cols = torch.arange(m, device=pairs.device)
    return cols[None, :] == (torch.arange(a, device=pairs.device) + offset)[:, None]


@fp32_loss
def probabilistic_contrastive_loss(sim: torch.Tensor, labels: torch.Tensor, alpha: float = 0.6,
                                   tau: float = 0.2, overlap: str = "jaccard",
                                   reduction: str = "sum", offset: int | None = None) -> torch.Tensor:
    """ProbMCL's L_PCL (paper Eq. 3) over the M samples of a batch -> scalar.

    sim (M, M): similarity of the samples' mixtures; labels (M, C). For anchor i,
    A(i) = {j != i : D(y_i, y_j) >= alpha} and loss_i = -1/|A(i)| sum_{j in A(i)}
    D_ij log(exp(sim_ij / tau) / sum_{l != i} exp(sim_il / tau)). Anchors with an
    empty A(i) contribute 0. ``sum`` over anchors (the paper), or ``mean`` (/ M).
    ``offset`` (data parallel): sim is (A, M), the rank's A anchors -- samples offset .. offset+A-1
    of the M gathered ones, whose labels (M, C) are all given -- against all M samples.
    """
    from methods.base import HparamError

    if not 0.0 <= alpha <= 1.0:
        raise HparamError(f"probabilistic_contrastive_loss: alpha={alpha} must be in [0, 1]")
    if not tau > 0:
        raise HparamError(f"probabilistic_contrastive_loss: tau={tau} must be > 0")
    if overlap not in ("jaccard", "cosine"):
        raise HparamError(f"probabilistic_contrastive_loss: overlap={overlap!r} must be 'jaccard' or 'cosine'")
    m = sim.shape[0]
    eye = torch.eye(m, dtype=torch.bool, device=sim.device) if offset is None else _self_pairs(sim, offset)
    logits = (_at_least_fp32(sim) / tau).masked_fill(eye, float("-inf"))
    log_prob = (logits - torch.logsumexp(logits, dim=1, keepdim=True)).masked_fill(eye, 0.0)
    d = label_overlap(labels, overlap).to(sim.device)
    if offset is not None:
        d = d[offset:offset + m]
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
                                 jaccard: str = "inside_log", reduction: str = "mean",
                                 offset: int | None = None) -> torch.Tensor:
    """KMCL's kernel contrastive loss from per-class component similarities -> scalar.

    log_bc (M, M, K): log Bhattacharyya coefficient between component k of i and of j;
    targets (M, K) (-1 = 0). Logits s_ijk = BC_ijk / tau. Positives of anchor i:
    A(i) = {j != i sharing any label}; for each shared class k the term is
    log(exp(s_ijk) / sum_{l != i} exp(s_ilk)) (denominator over ALL other samples).
    ``jaccard="inside_log"`` (reference code): log(J_ij * ratio) -- J only adds a
    label-dependent constant, no gradient; ``"weight"``: J_ij * log(ratio) (ProbMCL's
    weighting). loss_i = -1/|A(i)| sum_{j in A(i)} sum_{k shared} term; empty A(i) -> 0;
    ``mean`` divides the anchor sum by M (the reference's /batch_size).
    ``offset`` (data parallel): log_bc is (A, M, K), anchors offset .. offset+A-1 of the M samples
    whose targets (M, K) are all given, against all M; ``mean`` then divides by A.
    """
    y = _at_least_fp32(targets.clamp(min=0))
    m = y.shape[0]
    eye = torch.eye(m, dtype=torch.bool, device=log_bc.device) if offset is None else _self_pairs(log_bc, offset)
    logits = (torch.exp(_at_least_fp32(log_bc)) / tau).masked_fill(eye[:, :, None], float("-inf"))
    log_ratio = (logits - torch.logsumexp(logits, dim=1, keepdim=True)).masked_fill(eye[:, :, None], 0.0)
    rows = slice(None) if offset is None else slice(offset, offset + log_bc.shape[0])
    shared = y[rows, None, :] * y[None, :, :] * (~eye)[:, :, None]         # (M, M, K)
    j = label_overlap(y, "jaccard")[rows]
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
