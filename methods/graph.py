"""Label graph and GCN classifier branch shared by ML-GCN and IML-GCN.

* :func:`cooccurrence` -- training-set label co-occurrence counts (M, N), the same
  content as ML-GCN's published ``*_adj.pkl`` files (``adj`` = M, ``nums`` = N).
* :func:`adjacency` -- the propagation matrix the GCN multiplies by, in two variants:

  ``paper``      ML-GCN paper Eqs. 7-8 (and IML-GCN Eqs. 3-4): P = M / N (row i = P(j|i)),
                 A = [P >= t]; off-diagonal A'_ij = p * A_ij / sum_{j != i} A_ij, diagonal
                 1 - p. Rows already sum to 1, so A' is used as is.
  ``reference``  the official code (util.gen_A + gen_adj): A = [P >= t] * p / (column sums
                 + 1e-6) + I (p = 0.25 there), then D^-1/2 A^T D^-1/2 with D = diag(row
                 sums of A), recomputed at every forward in the reference, constant here.

  The binarised diagonal is always zero (M has a zero diagonal), as in the reference.
* :class:`GcnClassifierModel` -- backbone -> pooling -> feature (B, d); a two-layer GCN
  (in -> hidden -> d, LeakyReLU 0.2, no bias) maps node features (C, in) to C classifiers
  (C, d); logits = feature @ W^T. The node features live in a buffer so checkpoints keep them.
"""
from __future__ import annotations

import math
from typing import Callable
import numpy as np
import torch
from torch import nn

from methods.backbones import build_backbone
from methods.base import BuildContext, MultiLabelModel
from methods.loss_utils import fp32_loss

ADJACENCY_VARIANTS = ("paper", "reference")
#: Re-weighting p of each variant (ML-GCN paper: 0.2; official code: 0.25), declared once.
VARIANT_P = {"paper": 0.2, "reference": 0.25}
POOLINGS = ("max", "avg")


def cooccurrence(targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Label counts of a training label matrix (N_img, C) in {1, 0, -1}.

    Returns M (C, C) int64, M_ij = #images with both i and j positive (zero diagonal),
    and N (C,) int64, N_i = #images with i positive. Ignored (-1) entries count as absent.
    """
    pos = (np.asarray(targets) == 1).astype(np.int64)
    m = pos.T @ pos
    n = np.diag(m).copy()
    np.fill_diagonal(m, 0)
    return m, n


def binarised_conditional(m: np.ndarray, n: np.ndarray, t: float) -> np.ndarray:
    """A (C, C) float64 in {0, 1}: A_ij = [M_ij / N_i >= t] (0 where N_i = 0), zero diagonal."""
    m = np.asarray(m, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(n[:, None] > 0, m / n[:, None], 0.0)
    a = (p >= t).astype(np.float64)
    np.fill_diagonal(a, 0.0)
    return a


def adjacency(m: np.ndarray, n: np.ndarray, t: float, p: float | None = None,
              variant: str = "paper") -> torch.Tensor:
    """The GCN propagation matrix (C, C) float32 from counts M (C, C), N (C,).

    ``t`` is the binarisation threshold, ``p`` the re-weighting (None: the variant's own,
    :data:`VARIANT_P`); see the module docstring for the two variants' formulas.
    """
    if variant not in ADJACENCY_VARIANTS:
        raise ValueError(f"adjacency variant {variant!r} must be one of {', '.join(ADJACENCY_VARIANTS)}")
    p = VARIANT_P[variant] if p is None else float(p)
    a = binarised_conditional(m, n, t)
    eye = np.eye(a.shape[0])
    if variant == "paper":
        rows = a.sum(axis=1, keepdims=True)
        off = np.divide(p * a, rows, out=np.zeros_like(a), where=rows > 0)
        out = off + (1.0 - p) * eye
    else:
        a = a * p / (a.sum(axis=0, keepdims=True) + 1e-6) + eye
        d = np.power(a.sum(axis=1), -0.5)
        out = d[:, None] * a.T * d[None, :]
    return torch.from_numpy(out.astype(np.float32))


class GraphClassifierBranch(nn.Module):
    """Two GCN layers (no bias): X (C, in) -> A (X W1) -> LeakyReLU(0.2) -> A (H W2) (C, out)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, adj: torch.Tensor) -> None:
        super().__init__()
        self.weight1 = nn.Parameter(torch.empty(in_dim, hidden_dim))
        self.weight2 = nn.Parameter(torch.empty(hidden_dim, out_dim))
        # Kipf & Welling / ML-GCN initialisation: U(-1/sqrt(fan_out), 1/sqrt(fan_out))
        for w in (self.weight1, self.weight2):
            bound = 1.0 / math.sqrt(w.shape[1])
            nn.init.uniform_(w, -bound, bound)
        self.register_buffer("adjacency", adj.float().clone())
        self.act = nn.LeakyReLU(0.2)

    def forward(self, node_features: torch.Tensor) -> torch.Tensor:
        h = self.act(self.adjacency @ (node_features @ self.weight1))
        return self.adjacency @ (h @ self.weight2)


class GcnClassifierModel(MultiLabelModel):
    """Backbone + pooling + GCN-generated classifiers (ML-GCN's network, IML-GCN's graph stage).

    ``node_features`` (C, in_dim) is stored as a buffer (checkpointed). It may be a
    function of the backbone width d returning a placeholder of the final shape, which a
    subclass fills later (IML-GCN's image features).
    """

    def __init__(self, ctx: BuildContext, node_features: torch.Tensor | Callable[[int], torch.Tensor],
                 adj: torch.Tensor, hidden_dim: int, pooling: str) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling {pooling!r} must be one of {', '.join(POOLINGS)}")
        self.backbone = build_backbone(ctx.backbone, ctx.in_chans, ctx.backbone_options)
        self.pooling = pooling
        if callable(node_features):
            node_features = node_features(self.backbone.num_features)
        self.register_buffer("node_features", node_features.float().clone())
        self.gcn = GraphClassifierBranch(node_features.shape[1], hidden_dim,
                                         self.backbone.num_features, adj)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images)

    def pooled(self, images: torch.Tensor) -> torch.Tensor:
        """Pooled image feature (B, d): adaptive max (ML-GCN) or average pooling."""
        fmap = self.features(images)
        return fmap.amax(dim=(2, 3)) if self.pooling == "max" else fmap.mean(dim=(2, 3))

    def classifiers(self) -> torch.Tensor:
        """The GCN's C classifiers (C, d)."""
        return self.gcn(self.node_features)

    @fp32_loss
    def logits(self, pooled: torch.Tensor) -> torch.Tensor:
        """pooled (B, d) @ classifiers^T, GCN included, in fp32 (upcast, autocast off)."""
        return pooled @ self.classifiers().t()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.logits(self.pooled(images))

    def lr_groups(self, stage: str) -> list[tuple[str, list[nn.Parameter], float]]:
        """(name, params, lr scale): ML-GCN trains the backbone at lr * 0.1 (``lrp``)."""
        return [("backbone", list(self.backbone.parameters()), 0.1),
                ("gcn", list(self.gcn.parameters()), 1.0)]

