"""Mixture losses against quadrature and explicit loops over the formulas."""
from __future__ import annotations

import math

import pytest
import torch

from methods.base import HparamError
from methods.losses import (bhattacharyya_log_coefficient, gaussian_log_density, gmm_correlation,
                            gmm_log_inner_product, kmcl_kernel_contrastive_loss, kmcl_reconstruction_loss,
                            label_overlap, mixture_nll, probabilistic_contrastive_loss)



@pytest.fixture(autouse=True)
def _float64():
    """Quadrature comparisons need float64; restore the default for other test modules."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def _mixtures(n: int, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    pi = torch.softmax(torch.randn(n, k, generator=g), dim=1)
    mu = 2 * torch.randn(n, k, generator=g)
    var = 0.5 + torch.rand(n, k, generator=g) * 2
    return pi, mu, var


def _density(grid: torch.Tensor, pi: torch.Tensor, mu: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """Mixture density of one sample at grid points (P, dim)."""
    dim = grid.shape[1]
    out = torch.zeros(grid.shape[0])
    for k in range(pi.shape[0]):
        sq = (grid - mu[k]).square().sum(1)
        out += pi[k] * (2 * math.pi * var[k]) ** (-dim / 2) * torch.exp(-sq / (2 * var[k]))
    return out


@pytest.mark.parametrize("dim", [1, 2])
def test_gmm_correlation_matches_quadrature(dim: int) -> None:
    pi, mu, var = _mixtures(3, 3, seed=dim)
    axis = torch.linspace(-14, 14, 1201 if dim == 1 else 351)
    step = float(axis[1] - axis[0])
    grid = axis[:, None] if dim == 1 else torch.cartesian_prod(axis, axis)
    dens = [_density(grid, pi[i], mu[i], var[i]) for i in range(3)]
    expected = torch.tensor([[float((a * b).sum() / torch.sqrt((a * a).sum() * (b * b).sum())) for b in dens]
                             for a in dens])
    got = gmm_correlation(pi, mu, var, pi, mu, var, dim)
    assert torch.allclose(got, expected, atol=1e-6)
    inner = gmm_log_inner_product(pi, mu, var, pi, mu, var, dim).exp()
    assert torch.allclose(inner[0, 1], (dens[0] * dens[1]).sum() * step ** dim, rtol=1e-5)


def test_gmm_correlation_symmetric_self_one_and_chunking() -> None:
    pi, mu, var = _mixtures(5, 4, seed=3)
    corr = gmm_correlation(pi, mu, var, pi, mu, var, 16)
    assert torch.allclose(corr, corr.T, atol=1e-12)
    assert torch.allclose(corr.diagonal(), torch.ones(5), atol=1e-12)
    assert (corr <= 1 + 1e-12).all() and (corr >= 0).all()
    chunked = gmm_correlation(pi, mu, var, pi, mu, var, 16, chunk_elements=1)
    assert torch.allclose(corr, chunked, atol=1e-12)
    log_pi = pi.log()
    assert torch.allclose(corr, gmm_correlation(log_pi, mu, var, log_pi, mu, var, 16, log_weights=True))


def test_gmm_correlation_finite_under_extreme_inputs() -> None:
    torch.set_default_dtype(torch.float32)  # the training dtype; the fixture restores the default
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 10, generator=g).requires_grad_()
    mu = (50 * torch.sign(torch.randn(6, 10, generator=g))).requires_grad_()
    var = torch.ones(6, 10, requires_grad=True)
    log_pi = torch.log_softmax(logits, 1)
    corr = gmm_correlation(log_pi, mu, var, log_pi, mu, var, 128, log_weights=True, chunk_elements=100)
    assert torch.isfinite(corr).all()
    assert torch.allclose(corr.diagonal(), torch.ones(6), atol=1e-4)
    labels = (torch.rand(6, 10, generator=g) < 0.3).float()
    z = torch.randn(6, 128)
    loss = (probabilistic_contrastive_loss(corr, labels, alpha=0.0) + corr.sum() + mixture_nll(z, log_pi, mu, var)
            + kmcl_kernel_contrastive_loss(bhattacharyya_log_coefficient(mu, var, 128), labels)
            + kmcl_reconstruction_loss(z, logits, mu, var, labels))
    loss.backward()
    assert torch.isfinite(loss)
    for t in (logits, mu, var):
        assert torch.isfinite(t.grad).all()


def _pcl_loop(sim, labels, alpha, tau, overlap):
    m = sim.shape[0]
    total = 0.0
    for i in range(m):
        yi = labels[i].clamp(min=0)
        terms, count = 0.0, 0
        denom = sum(math.exp(sim[i, l] / tau) for l in range(m) if l != i)
        for j in range(m):
            if j == i:
                continue
            yj = labels[j].clamp(min=0)
            inter = float((yi * yj).sum())
            if overlap == "jaccard":
                union = float(yi.sum() + yj.sum()) - inter
                d = inter / union if union > 0 else 0.0
            else:
                norm = math.sqrt(float(yi.sum() * yj.sum()))
                d = inter / norm if norm > 0 else 0.0
            if d >= alpha:
                count += 1
                terms += d * math.log(math.exp(sim[i, j] / tau) / denom)
        total += -terms / count if count else 0.0
    return total


@pytest.mark.parametrize("overlap,alpha", [("jaccard", 0.5), ("cosine", 0.6), ("jaccard", 0.0)])
def test_probabilistic_contrastive_loss_matches_loop(overlap: str, alpha: float) -> None:
    g = torch.Generator().manual_seed(1)
    sim = torch.rand(7, 7, generator=g)
    labels = (torch.rand(7, 4, generator=g) < 0.5).double()
    labels[0, 1] = -1
    got = probabilistic_contrastive_loss(sim, labels, alpha, 0.2, overlap)
    assert math.isclose(float(got), _pcl_loop(sim, labels, alpha, 0.2, overlap), rel_tol=1e-6)
    mean = probabilistic_contrastive_loss(sim, labels, alpha, 0.2, overlap, reduction="mean")
    assert math.isclose(float(mean), float(got) / 7, rel_tol=1e-9)


def test_label_overlap_and_bad_arguments() -> None:
    y = torch.tensor([[1., 1, 0], [1, 0, 0], [0, 0, 0]])
    assert torch.allclose(label_overlap(y, "jaccard")[0], torch.tensor([1.0, 0.5, 0.0]))
    assert torch.allclose(label_overlap(y, "cosine")[0, 1], torch.tensor(1 / math.sqrt(2)))
    sim = torch.zeros(3, 3)
    for kwargs in ({"alpha": 1.5}, {"tau": 0.0}, {"overlap": "dice"}):
        with pytest.raises(HparamError):
            probabilistic_contrastive_loss(sim, y, **kwargs)


def test_mixture_nll_and_densities_match_torch_distributions() -> None:
    pi, mu, var = _mixtures(4, 3, seed=5)
    z = torch.randn(4, 6)
    expected = 0.0
    for i in range(4):
        p = sum(pi[i, k] * torch.distributions.MultivariateNormal(
            mu[i, k] * torch.ones(6), var[i, k] * torch.eye(6)).log_prob(z[i]).exp() for k in range(3))
        expected -= math.log(float(p))
    assert math.isclose(float(mixture_nll(z, pi.log(), mu, var)), expected, rel_tol=1e-9)
    mu_a, var_a = torch.randn(4, 3, 6), 0.5 + torch.rand(4, 3, 6)
    dens = gaussian_log_density(z, mu_a, var_a)
    ref = torch.distributions.Normal(mu_a, var_a.sqrt()).log_prob(z[:, None, :]).sum(2)
    assert torch.allclose(dens, ref)


@pytest.mark.parametrize("dim", [1, 2])
def test_bhattacharyya_matches_quadrature(dim: int) -> None:
    mu = torch.tensor([[0.3], [-1.2]])
    var = torch.tensor([[0.7], [1.9]])
    axis = torch.linspace(-15, 15, 1501 if dim == 1 else 401)
    step = float(axis[1] - axis[0])
    grid = axis[:, None] if dim == 1 else torch.cartesian_prod(axis, axis)
    p, q = (_density(grid, torch.ones(1), mu[i], var[i]) for i in range(2))
    expected = float(torch.sqrt(p * q).sum() * step ** dim)
    got = bhattacharyya_log_coefficient(mu, var, dim).exp()
    assert math.isclose(float(got[0, 1, 0]), expected, rel_tol=1e-5)
    aniso = bhattacharyya_log_coefficient(mu[:, :, None].expand(2, 1, dim), var[:, :, None].expand(2, 1, dim), 0)
    assert torch.allclose(aniso, bhattacharyya_log_coefficient(mu, var, dim))


@pytest.mark.parametrize("jaccard", ["inside_log", "weight"])
def test_kmcl_kernel_contrastive_matches_loop(jaccard: str) -> None:
    g = torch.Generator().manual_seed(2)
    mu, var = torch.randn(6, 4, generator=g), 1 + torch.rand(6, 4, generator=g)
    y = (torch.rand(6, 4, generator=g) < 0.4).double()
    y[5] = 0  # an anchor without positives
    bc = bhattacharyya_log_coefficient(mu, var, 3).exp()
    total = 0.0
    for i in range(6):
        acc, npos = 0.0, 0
        for j in range(6):
            shared = [k for k in range(4) if j != i and y[i, k] == 1 and y[j, k] == 1]
            if not shared:
                continue
            npos += 1
            jac = float((y[i] * y[j]).sum() / ((y[i] + y[j]).clamp(max=1)).sum())
            for k in shared:
                ratio = math.exp(bc[i, j, k] / 0.17) / sum(math.exp(bc[i, l, k] / 0.17) for l in range(6) if l != i)
                acc += math.log(jac * ratio) if jaccard == "inside_log" else jac * math.log(ratio)
        total += -acc / npos if npos else 0.0
    got = kmcl_kernel_contrastive_loss(bc.log(), y, 0.17, jaccard)
    assert math.isclose(float(got), total / 6, rel_tol=1e-9)


def test_kmcl_reconstruction_matches_loop() -> None:
    g = torch.Generator().manual_seed(4)
    z, logits = torch.randn(3, 2, generator=g), torch.randn(3, 4, generator=g)
    mu, var = torch.randn(3, 4, 2, generator=g), 1 + torch.rand(3, 4, 2, generator=g)
    y = torch.tensor([[1., 0, 1, 0], [0, 0, 0, 0], [0, 1, -1, 0]])
    total = 0.0
    for i in range(3):
        w = torch.sigmoid(logits[i])
        kern = torch.exp(-0.5 * ((z[i] - mu[i]) ** 2 / var[i]).sum(1))
        if (y[i] == 1).any():
            total += -math.log(float((w * kern * (y[i] == 1)).sum() / (w * kern).sum()))
    got = kmcl_reconstruction_loss(z, logits, mu, var, y)
    assert math.isclose(float(got), total / 3, rel_tol=1e-9)


def test_chunked_inner_product_gradients() -> None:
    pi, mu, var = _mixtures(3, 2, seed=7)
    inputs = (pi.log().requires_grad_(), mu.requires_grad_(), var.requires_grad_())

    def fn(lp, m, v):
        return gmm_log_inner_product(lp, m, v, lp[:2], m[:2], v[:2], 3, log_weights=True, chunk_elements=4)
    assert torch.autograd.gradcheck(fn, inputs)


def test_asl_and_bce_keep_float64_and_upcast_half() -> None:
    from methods.losses import asymmetric_loss, bce_loss
    x = torch.tensor([[2.0, -1.0 + 1e-12, 0.3]], dtype=torch.float64)
    y = torch.tensor([[1.0, 0.0, -1.0]], dtype=torch.float64)
    # by hand, float64: positive log sigmoid(2); negative: p_m = min(1 - p + 0.05, 1), weight p_m... (1-p_m)^4
    p0, p1 = 1 / (1 + math.exp(-2.0)), 1 / (1 + math.exp(1.0 - 1e-12))
    pm = min(1 - p1 + 0.05, 1.0)
    asl_hand = -(math.log(p0) + math.log(pm) * (1 - pm) ** 4)
    bce_hand = (-math.log(p0) - math.log(1 - p1)) / 3  # mean over all 3 entries, ignored one adds 0
    asl = asymmetric_loss(x, y, 4.0, 0.0, 0.05, 1e-8, "sum")
    bce = bce_loss(x, y)
    assert asl.dtype == torch.float64 and bce.dtype == torch.float64
    assert math.isclose(float(asl), asl_hand, rel_tol=1e-14)
    assert math.isclose(float(bce), bce_hand, rel_tol=1e-14)
    # the 1e-12 is below float32 resolution: a float32 computation could not see it
    shifted = asymmetric_loss(x - torch.tensor([[0.0, 1e-12, 0.0]], dtype=torch.float64), y, 4.0, 0.0, 0.05)
    assert float(shifted) != float(asl)
    for half in (torch.float16, torch.bfloat16):
        assert asymmetric_loss(x.to(half), y.to(half)).dtype == torch.float32
        assert bce_loss(x.to(half), y).dtype == torch.float32
    assert asymmetric_loss(x.float(), y.float()).dtype == torch.float32


def _log_space_correlation(lp_a, mu_a, var_a, lp_b, mu_b, var_b, dim):
    """The previous implementation: exp(L_ab - L_aa / 2 - L_bb / 2), every L a logsumexp."""
    log_ab = gmm_log_inner_product(lp_a, mu_a, var_a, lp_b, mu_b, var_b, dim, log_weights=True)
    log_aa = gmm_log_inner_product(lp_a, mu_a, var_a, lp_a, mu_a, var_a, dim, log_weights=True).diagonal()
    log_bb = gmm_log_inner_product(lp_b, mu_b, var_b, lp_b, mu_b, var_b, dim, log_weights=True).diagonal()
    return torch.exp(log_ab - 0.5 * log_aa[:, None] - 0.5 * log_bb[None, :])


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("chunk", [1, 50, 10**9])
def test_blocked_correlation_equals_log_space_values_and_gradients(symmetric: bool, chunk: int) -> None:
    g = torch.Generator().manual_seed(5)
    lp = torch.log_softmax(torch.randn(9, 7, generator=g), 1).requires_grad_()
    mu = (0.3 * torch.randn(9, 7, generator=g)).requires_grad_()
    var = (1 + torch.rand(9, 7, generator=g)).requires_grad_()
    upstream = torch.randn(9, 9 if symmetric else 4, generator=g)
    b = (lp, mu, var) if symmetric else (lp[2:6] * 1, mu[2:6] * 1, var[2:6] * 1)
    got = gmm_correlation(lp, mu, var, *b, 64, log_weights=True, chunk_elements=chunk)
    expected = _log_space_correlation(lp, mu, var, *b, 64)
    assert torch.allclose(got, expected, rtol=1e-12, atol=0)
    grads = torch.autograd.grad((got * upstream).sum(), (lp, mu, var), retain_graph=True)
    ref = torch.autograd.grad((expected * upstream).sum(), (lp, mu, var))
    for a, r in zip(grads, ref):
        assert torch.allclose(a, r, rtol=1e-10, atol=1e-12)
    with torch.no_grad():  # the forward-only path keeps no sums
        assert torch.allclose(gmm_correlation(lp, mu, var, *b, 64, log_weights=True, chunk_elements=chunk), got,
                              rtol=1e-13, atol=0)


def test_blocked_correlation_float32_accuracy_and_tiny_values() -> None:
    """fp32 at n = 128 within 1e-4 relative of float64, and correlations near underflow exact."""
    torch.set_default_dtype(torch.float32)
    g = torch.Generator().manual_seed(6)
    lp = torch.log_softmax(torch.randn(12, 10, generator=g), 1)
    mu = 0.3 * torch.randn(12, 10, generator=g)
    var = 2 + torch.nn.functional.elu(torch.randn(12, 10, generator=g))
    mu[:3] += 2.5  # three mixtures far away: correlations down to 3e-40 with the others
    got = gmm_correlation(lp, mu, var, lp, mu, var, 128, log_weights=True)
    ref = _log_space_correlation(lp.double(), mu.double(), var.double(), lp.double(), mu.double(),
                                 var.double(), 128)
    normal = ref > torch.finfo(torch.float32).tiny * 2 ** 20
    assert (ref < 1e-30).any() and normal.sum() > 100
    assert ((got.double() - ref).abs() / ref)[normal].max() < 1e-4
    assert (got.double() - ref).abs().max() < 1e-4 and torch.isfinite(got).all()


def test_blocked_correlation_half_inputs_computed_in_float32() -> None:
    torch.set_default_dtype(torch.float32)
    g = torch.Generator().manual_seed(8)
    lp = torch.log_softmax(torch.randn(6, 5, generator=g), 1).bfloat16()
    mu, var = (0.3 * torch.randn(6, 5, generator=g)).bfloat16(), (1 + torch.rand(6, 5, generator=g)).bfloat16()
    got = gmm_correlation(lp, mu, var, lp, mu, var, 128, log_weights=True)
    assert got.dtype == torch.float32
    ref = gmm_correlation(lp.float(), mu.float(), var.float(), lp.float(), mu.float(), var.float(), 128,
                          log_weights=True)
    assert torch.allclose(got, ref, rtol=1e-6, atol=0)
