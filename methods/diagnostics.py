"""Representation diagnostics: is a contrastively trained encoder collapsed?

:func:`collapse_stats` is pure: it takes features, projections and the pairwise similarity
matrix of a batch of (unaugmented) images and returns the three figures ProbMCL's records
carry after the contrastive stage, and a verdict by the fixed rule :data:`COLLAPSE_RULE`.
"""
from __future__ import annotations

import torch

#: A representation is collapsed when ANY of these holds (documented in every record).
COLLAPSE_RULE = {"dead_fraction_above": 0.9, "similarity_std_below": 1e-3, "effective_rank_below": 2.0}


def effective_rank(features: torch.Tensor) -> float:
    """exp(entropy) of the normalised singular values of the centred (M, d) features
    (Roy & Vetterli 2007): 1 for a rank-1 cloud, d for an isotropic one."""
    x = features.double() - features.double().mean(0, keepdim=True)
    s = torch.linalg.svdvals(x)
    if float(s.sum()) <= 0:
        return 0.0
    p = s / s.sum()
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def collapse_stats(features: torch.Tensor, projection: torch.Tensor, similarity: torch.Tensor) -> dict:
    """Collapse figures of a batch: features (M, d) encoder outputs, projection (M, n) the head's
    n-dim output, similarity (M, M) pairwise similarities (the diagonal is ignored).

    dead_fraction: share of the n projection units that are 0 (|x| <= 1e-8) on every image;
    similarity_std: standard deviation of the off-diagonal similarities;
    effective_rank: of the encoder features (out of d)."""
    m = similarity.shape[0]
    off = similarity.double()[~torch.eye(m, dtype=torch.bool, device=similarity.device)]
    dead = float((projection.abs() <= 1e-8).all(0).double().mean())
    stats = {"images": int(m), "feature_dim": int(features.shape[1]), "projection_dim": int(projection.shape[1]),
             "dead_fraction": round(dead, 4),
             "similarity_mean": round(float(off.mean()), 6) if off.numel() else None,
             "similarity_std": round(float(off.std()), 6) if off.numel() > 1 else 0.0,
             "effective_rank": round(effective_rank(features), 3)}
    r = COLLAPSE_RULE
    stats["collapsed"] = bool(dead > r["dead_fraction_above"] or stats["similarity_std"] < r["similarity_std_below"]
                              or stats["effective_rank"] < r["effective_rank_below"])
    stats["rule"] = dict(r)
    return stats
