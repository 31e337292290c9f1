"""The chunked pairwise Bhattacharyya distance (KMCL's anisotropic kernel) against the broadcast
formula: values and gradients (float64 gradcheck), across block sizes."""
from __future__ import annotations

import pytest
import torch

import methods.bhattacharyya as bh


def _broadcast(mu: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    m_i, m_j, v_i, v_j = mu[:, None], mu[None, :], var[:, None], var[None, :]
    s = v_i + v_j
    return (0.25 * (m_i - m_j).square() / s
            + 0.5 * (torch.log(s / 2) - 0.5 * (torch.log(v_i) + torch.log(v_j)))).sum(3)


def _inputs(m=6, k=3, n=5, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(m, k, n, generator=g, dtype=dtype).requires_grad_()
    var = (torch.rand(m, k, n, generator=g, dtype=dtype) + 0.05).requires_grad_()
    return mu, var


@pytest.mark.parametrize("block", [1, 7, 1 << 21])  # one row, several rows, everything at once
def test_values_and_gradients_equal_the_broadcast_formula(monkeypatch, block):
    monkeypatch.setattr(bh, "BLOCK_ELEMENTS", block)
    mu, var = _inputs()
    got, ref = bh.pairwise_bhattacharyya(mu, var), _broadcast(mu, var)
    assert torch.allclose(got, ref, rtol=0, atol=1e-12)
    assert torch.allclose(got, got.transpose(0, 1)) and torch.allclose(got.diagonal(0, 0, 1), torch.zeros(3, 6, dtype=got.dtype), atol=1e-12)
    w = torch.randn_like(ref)  # a non-symmetric upstream gradient
    g_got = torch.autograd.grad((got * w).sum(), (mu, var))
    g_ref = torch.autograd.grad((ref * w).sum(), (mu, var))
    for a, b in zip(g_got, g_ref):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)


def test_gradcheck():
    mu, var = _inputs(m=4, k=2, n=3)
    assert torch.autograd.gradcheck(bh.pairwise_bhattacharyya, (mu, var))


def test_float32_stays_float32_and_close():
    mu, var = _inputs(m=16, k=4, n=32, dtype=torch.float32)
    got = bh.pairwise_bhattacharyya(mu, var)
    assert got.dtype == torch.float32
    assert torch.allclose(got, _broadcast(mu.double(), var.double()).float(), rtol=1e-5, atol=1e-4)
