"""Mixture heads shared by ProbMCL and KMCL: features -> Gaussian-mixture parameters.

Both heads return a :class:`MixtureParams` with isotropic components
N(z; mu_k 1, var_k I) in R^n (``mu``/``var`` (B, K)) or, for KMCL's
anisotropic case, diagonal ones (``mu``/``var`` (B, K, n)).

Variance activations
--------------------
* ProbMCL ("modified ELU ensuring a minimum value of one"): var = 2 + ELU(x),
  so var > 1 (ELU > -1) and var = x + 2 for x > 0. The paper names the output
  a standard deviation in one place and a variance in another; we apply the
  floor to the VARIANCE, which is what bounds the NLL's log-variance term.
* KMCL (reference code): var = 2 + ELU(x) + 1e-7.

Under mixed precision the parameter layers (KMCL: also its down-projection, whose output gives
the pi logits = the scores) are :class:`methods.heads.Fp32Linear`: the mixture parameters reach
the fp32 losses as fp32 numbers. In fp32 this changes nothing.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from methods.heads import Fp32Linear

#: Uniform init range of the mixture-weight and mean heads' weights. The ProbMCL
#: paper says "uniformly initialized" without a range; KMCL's reference code uses
#: U(0, 0.1) for the mean weights, which we adopt for both.
UNIFORM_INIT = (0.0, 0.1)


@dataclass
class MixtureParams:
    """Per-sample mixture: ``log_pi`` (B, K) log-weights summing to 1 (logsumexp 0),
    ``mu``/``var`` (B, K) or (B, K, n), ``z`` (B, n) the n-dim feature the head read."""

    log_pi: torch.Tensor
    mu: torch.Tensor
    var: torch.Tensor
    z: torch.Tensor


def modified_elu_variance(x: torch.Tensor) -> torch.Tensor:
    """ProbMCL's variance activation: 2 + ELU(x) > 1."""
    return 2.0 + F.elu(x)


def _init_heads(pi: nn.Linear | None, mean: nn.Linear, var: nn.Linear) -> None:
    for head in (pi, mean):
        if head is not None:
            nn.init.uniform_(head.weight, *UNIFORM_INIT)
            nn.init.zeros_(head.bias)
    nn.init.ones_(var.weight)  # "covariance weights set constant at 1"
    nn.init.zeros_(var.bias)


class ProbMCLMixtureHead(nn.Module):
    """ProbMCL's MDN: unit-normalised h (B, H) -> Linear H->hidden -> ReLU -> Linear ->n -> ReLU
    -> three Linear n->K heads (pi softmax, scalar mu, var = 2 + ELU).

    The paper gives the layer sizes (2048, 128, 3C) and a SimCLR/SupCon-style MLP;
    the ReLU between layers is our reading of that convention. ``z`` is the
    n-dim hidden output (the "projected feature").
    """

    def __init__(self, in_features: int, num_components: int, n_dims: int = 128, hidden: int = 2048) -> None:
        super().__init__()
        self.n_dims = n_dims
        self.mlp = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(inplace=True),
                                 nn.Linear(hidden, n_dims), nn.ReLU(inplace=True))
        self.pi = Fp32Linear(n_dims, num_components)
        self.mean = Fp32Linear(n_dims, num_components)
        self.var = Fp32Linear(n_dims, num_components)
        _init_heads(self.pi, self.mean, self.var)

    def forward(self, h: torch.Tensor) -> MixtureParams:
        z = self.mlp(F.normalize(h, dim=1))
        return MixtureParams(F.log_softmax(self.pi(z), dim=1), self.mean(z),
                             modified_elu_variance(self.var(z)), z)


class KMCLMixtureHead(nn.Module):
    """KMCL's head: GAP feature (B, D) -> 1x1 down-projection (a Linear) to n -> pi logits (K = C,
    the ASL logits; sigmoid gives the mixture weights), means and variances.

    ``covariance``: "anisotropic" (reference default; per-component mean and variance
    vectors (K, n)) or "isotropic" (scalar mean and variance per component). The
    reference's isotropic mode skips the down-projection; here it is always applied
    so both cases live in R^n. ``log_pi`` of the returned params is log of the
    sigmoid weights normalised to sum 1; ``logits`` holds the raw pi logits.
    """

    def __init__(self, in_features: int, num_components: int, n_dims: int = 128,
                 covariance: str = "anisotropic") -> None:
        super().__init__()
        if covariance not in ("anisotropic", "isotropic"):
            raise ValueError(f"covariance={covariance!r} must be 'anisotropic' or 'isotropic'")
        self.k, self.n_dims, self.covariance = num_components, n_dims, covariance
        width = num_components * (n_dims if covariance == "anisotropic" else 1)
        self.down = Fp32Linear(in_features, n_dims)
        self.pi = Fp32Linear(n_dims, num_components)
        self.mean = Fp32Linear(n_dims, width)
        self.var = Fp32Linear(n_dims, width)
        _init_heads(None, self.mean, self.var)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """pi logits (B, K) from GAP features (B, D)."""
        return self.pi(self.down(h))

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, MixtureParams]:
        z = self.down(h)
        logits = self.pi(z)
        mu, var = self.mean(z), 2.0 + F.elu(self.var(z)) + 1e-7
        if self.covariance == "anisotropic":
            mu, var = mu.view(-1, self.k, self.n_dims), var.view(-1, self.k, self.n_dims)
        log_w = F.logsigmoid(logits)
        return logits, MixtureParams(log_w - torch.logsumexp(log_w, dim=1, keepdim=True), mu, var, z)

    def composed_linear(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The pi logits as ONE linear map of the GAP feature: (W (K, D), b (K,))."""
        weight = self.pi.weight @ self.down.weight
        return weight, self.pi.weight @ self.down.bias + self.pi.bias
