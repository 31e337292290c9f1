"""Cost figures the papers print, each with where it is printed (paper, table, row).

Read from the papers in /work/shared/papers/ (ProbMCL ICASSP 2024 Table 3,
IML-GCN AAAI-W 2022 Tables 1-2, CSRA ICCV 2021 Sec. 4.4 "Number of attention
heads"). ``bench cost`` prints each beside the value it computes; a missing
figure is None (the paper gives none), never a guess.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping


@dataclass(frozen=True)
class PaperCost:
    """One printed cost figure. Params in millions, GMAC per image (one multiply-add = 1 MAC)."""

    paper: str
    table: str
    row: str
    params_m: float | None = None
    gmacs: float | None = None
    #: wall-clock ratios to the paper's own baseline (CSRA's only cost figure)
    train_time_ratio: float | None = None
    infer_time_ratio: float | None = None

    @property
    def source(self) -> str:
        return f"{self.paper}, {self.table}, row '{self.row}'"


PROBMCL = "Sajedi et al. 2024 (ProbMCL)"
IMLGCN = "Singh et al. 2022 (IML-GCN)"
CSRA = "Zhu & Wu 2021 (CSRA)"

PAPER_COSTS: dict[str, PaperCost] = {
    # ProbMCL Table 3, "Computational training cost comparison ... on MS-COCO".
    # The paper does not say which encoder/resolution its own column uses.
    "probmcl-t3-mlgcn": PaperCost(PROBMCL, "Table 3", "ML-GCN [9]", 44.90, 31.39),
    "probmcl-t3-tdrg": PaperCost(PROBMCL, "Table 3", "TDRG [15]", 75.20, 64.40),
    "probmcl-t3-csra": PaperCost(PROBMCL, "Table 3", "CSRA [10]", 42.52, 31.39),
    "probmcl-t3-probmcl": PaperCost(PROBMCL, "Table 3", "ProbMCL", 42.23, 29.65),
    # IML-GCN Table 1 (MS-COCO, #Parameters column; no MACs are printed).
    "imlgcn-t1-resnet101": PaperCost(IMLGCN, "Table 1", "ResNet101 (He et al. 2016)", 44.5),
    "imlgcn-t1-mlgcn": PaperCost(IMLGCN, "Table 1", "ML-GCN (Chen et al. 2019b)", 44.9),
    "imlgcn-t1-asl-m": PaperCost(IMLGCN, "Table 1", "ASL (TResNetM)", 29.5),
    "imlgcn-t1-asl-l": PaperCost(IMLGCN, "Table 1", "ASL (TResNetL)", 53.8),
    "imlgcn-t1-fi": PaperCost(IMLGCN, "Table 1", "Ours (IML-GCN with F_I)", 33.5),
    "imlgcn-t1-fpca": PaperCost(IMLGCN, "Table 1", "Ours (IML-GCN with F_PCA)", 31.5),
    # IML-GCN Table 2 (VG-500, 500 classes): listed for completeness, not a COCO configuration.
    "imlgcn-t2-fpca": PaperCost(IMLGCN, "Table 2 (VG-500)", "Ours (IML-GCN with F_PCA)", 32.1),
    # CSRA: "in the training stage the baseline method took 3705.6 seconds, while CSRA with
    # 8 heads took 3735.7 seconds ... total test time increased from 142.3 to 153.8 seconds".
    "csra-s44-8heads": PaperCost(CSRA, "Sec. 4.4 text (Number of attention heads)", "H=8 vs baseline",
                                 train_time_ratio=round(3735.7 / 3705.6, 4),
                                 infer_time_ratio=round(153.8 / 142.3, 4)),
}


def paper_cost(key: str | None) -> PaperCost | None:
    """The figure registered under ``key`` (None for None); KeyError names the known keys."""
    if key is None:
        return None
    try:
        return PAPER_COSTS[key]
    except KeyError:
        raise KeyError(f"no paper cost {key!r}; known: {', '.join(sorted(PAPER_COSTS))}") from None


def explain_gap(row: Mapping[str, Any], backbone_params: int, num_features: int) -> str:
    """Computed diagnosis of a >0.5 % gap to the paper: what the printed value would take."""
    parts = []
    if row["params_rel_diff"] is not None and abs(row["params_rel_diff"]) > 0.005:
        extra = row["params_m"] - backbone_params / 1e6
        fc1000 = (backbone_params + 1000 * (num_features + 1)) / 1e6
        parts.append(f"backbone alone {backbone_params / 1e6:.2f} M + head/branches {extra:.2f} M; "
                     f"with a 1000-class fc instead {fc1000:.2f} M; the paper's "
                     f"{row['paper_params_m']} M is {row['paper_params_m'] - backbone_params / 1e6:+.2f} M "
                     f"from the backbone alone")
    if row["gmacs_rel_diff"] is not None and abs(row["gmacs_rel_diff"]) > 0.005:
        px = row["resolution"] * math.sqrt(row["paper_gmacs"] / row["gmacs"])
        parts.append(f"{row['paper_gmacs']} GMAC would need ~{px:.0f} px on this model (MACs ~ px^2)")
    return "; ".join(parts)
