"""Every paper table value the report uses, transcribed once, each with paper / table / row.

Sources (the texts in /work/shared/papers/):
    probmcl  ProbMCL, Sajedi et al., ICASSP 2024 (probmcl-2024.txt)
    imlgcn   IML-GCN, Singh et al., AAAI 2022 workshop (iml-gcn-2022.md)
    csra     CSRA / residual attention, Zhu & Wu, ICCV 2021 (csra-2021.txt)

A table is written as whitespace-separated text (``|`` separates the row name, ``-`` is a
cell the paper leaves empty) and parsed at import into :class:`PaperValue` rows, so the
transcription can be proof-read against the paper side by side.
"""
from __future__ import annotations

from dataclasses import dataclass

PAPERS = {
    "probmcl": "ProbMCL (Sajedi et al., ICASSP 2024)",
    "imlgcn": "IML-GCN (Singh et al., AAAI 2022 workshop)",
    "csra": "CSRA (Zhu & Wu, ICCV 2021)",
}


@dataclass(frozen=True)
class PaperTable:
    paper: str  # key of PAPERS
    table: str  # "Table 1"
    caption: str
    setting: str  # dataset, backbone, resolution as the paper states them
    dataset: str  # key of DATA_COMMANDS: what data would settle its cells
    columns: tuple[str, ...]
    rows: tuple[tuple[str, tuple[float | None, ...]], ...]

    def value(self, row: str, column: str) -> float | None:
        for name, values in self.rows:
            if name == row:
                return values[self.columns.index(column)]
        raise KeyError(f"{self.paper} {self.table}: no row {row!r}")


@dataclass(frozen=True)
class PaperValue:
    paper: str
    table: str
    row: str
    column: str
    value: float
    setting: str
    dataset: str


def _parse(text: str, width: int) -> tuple[tuple[str, tuple[float | None, ...]], ...]:
    rows = []
    for line in text.strip().splitlines():
        name, cells = line.split("|")
        values = tuple(None if c == "-" else float(c) for c in cells.split())
        if len(values) != width:
            raise ValueError(f"paper_values: row {name.strip()!r} has {len(values)} cells, not {width}")
        rows.append((name.strip(), values))
    return tuple(rows)


def _table(paper: str, table: str, caption: str, setting: str, dataset: str,
           columns: tuple[str, ...], text: str) -> PaperTable:
    return PaperTable(paper, table, caption, setting, dataset, columns, _parse(text, len(columns)))


METRICS = ("mAP", "CP", "CR", "CF1", "OP", "OR", "OF1")

PROBMCL_T1_224 = _table(
    "probmcl", "Table 1 (upper block)", "Comparisons with prior methods on MS-COCO",
    "MS-COCO 2014, ResNet-50-class encoders (ProbMCL: TResNet-M), 224x224", "coco", METRICS, """
SRN      | 77.1 81.6 65.4 71.2 82.7 69.9 75.8
PLA      | -    80.4 68.9 74.2 81.5 73.3 77.2
KMCL     | 82.1 84.1 72.0 77.6 85.0 76.1 80.1
ProbMCL  | 82.8 85.0 72.5 78.2 85.3 76.9 80.9
""")
PROBMCL_T1_448 = _table(
    "probmcl", "Table 1 (lower block)", "Comparisons with prior methods on MS-COCO",
    "MS-COCO 2014, ResNet-101-class encoders (ProbMCL: TResNet-L), 448x448", "coco", METRICS, """
ML-GCN   | 83.0 85.1 72.0 78.0 85.8 75.4 80.3
KSSNet   | 83.7 84.6 73.2 77.2 87.8 76.2 81.5
TDRG     | 84.6 86.0 73.1 79.0 86.6 76.4 81.2
CSRA     | 83.5 84.1 72.5 77.9 85.6 75.7 80.3
KMCL     | 88.6 87.7 81.6 84.5 86.3 83.6 84.9
ASL      | 88.4 85.0 81.9 83.4 85.2 84.2 84.7
ProbMCL  | 89.1 88.5 81.9 85.1 86.7 84.3 85.5
""")
PROBMCL_T2 = _table(
    "probmcl", "Table 2", "Comparisons on the ADP dataset (medical imaging)",
    "ADP (Atlas of Digital Pathology)", "adp", METRICS, """
ML-GCN   | 94.9 91.8 87.0 89.3 92.0 86.9 89.7
TDRG     | 95.5 94.6 84.8 89.4 94.3 86.2 90.5
CSRA     | 96.1 93.1 88.6 90.8 93.0 89.7 91.7
KMCL     | 96.5 92.6 92.0 92.3 92.7 92.9 92.8
ASL      | 96.1 93.1 88.6 90.8 92.1 90.7 91.4
ProbMCL  | 96.9 93.0 92.7 92.8 92.9 93.3 93.1
""")
PROBMCL_T3 = _table(
    "probmcl", "Table 3", "Computational training cost on MS-COCO",
    "MS-COCO models (ResNet-101 at 448 for ML-GCN/CSRA)", "cost", ("params_m", "gmacs"), """
ML-GCN   | 44.90 31.39
TDRG     | 75.20 64.40
CSRA     | 42.52 31.39
ProbMCL  | 42.23 29.65
""")
PROBMCL_OVERLAP = _table(
    "probmcl", "Sec. 3.2 (overlap ablation)", "Overlapping index function",
    "MS-COCO, TResNet-L 448 (the Table 1 setting)", "coco", ("mAP",), """
Jaccard  | 89.1
cosine   | 88.9
""")
IMLGCN_T1 = _table(
    "imlgcn", "Table 1", "Comparisons on MS-COCO (n_components = 80 for F_PCA)",
    "MS-COCO 2014 (IML-GCN: TResNet-M, resolution not stated)", "coco", ("params_m",) + METRICS, """
CNN-RNN            | 66.2 61.2 -    -    -    -    -    -
SRN                | 48   77.1 81.6 65.4 71.2 82.7 69.9 75.8
ResNet101          | 44.5 77.3 80.2 66.7 72.8 83.9 70.8 76.8
Multi-Evidence     | 47   -    80.4 70.2 74.9 85.2 72.5 78.4
ML-GCN             | 44.9 83   85.1 72   78   85.8 75.4 80.3
SSGRL              | 92.2 83.8 89.9 68.5 76.8 91.3 70.8 79.7
KGGR               | 45   84.3 85.6 72.7 78.6 87.1 75.6 80.9
C-Tran             | 120  85.1 86.3 74.3 79.9 87.7 76.5 81.7
ASL (TResNetM)     | 29.5 81.8 82.1 72.6 76.4 83.1 76.1 79.4
ASL (TResNetL)     | 53.8 86.6 87.4 76.4 81.4 88.1 79.2 81.8
IML-GCN F_I        | 33.5 85.9 82.7 78.9 80.5 84.6 82.1 83.3
IML-GCN F_PCA      | 31.5 86.6 78.8 82.6 80.2 79.0 85.1 81.9
""")
IMLGCN_T2 = _table(
    "imlgcn", "Table 2", "Comparisons on VG-500 (n_components = 500 for F_PCA)",
    "Visual Genome VG-500", "vg500", ("params_m", "mAP"), """
ResNet-101         | 44.5 30.9
ML-GCN             | 44.9 32.6
ASL (TResNetM)     | 29.5 33.6
C-Tran             | 120  38.4
IML-GCN F_I        | 33.5 34.0
IML-GCN F_PCA      | 32.1 34.5
""")
IMLGCN_T3 = _table(
    "imlgcn", "Table 3", "Impact of GCN input features (mAP)",
    "MS-COCO and VG-500, IML-GCN network", "coco", ("COCO", "VG-500"), """
Word embeddings F_W  | 81.6  32.6
Image features F_I   | 85.9  33.39
Image features F_PCA | 86.62 34.47
""")
_CSRA_T1_COLUMNS = ("baseline", "varying_lambda", "varying_mAP", "fixed_lambda", "fixed_mAP")
CSRA_T1 = _table(
    "csra", "Table 1", "Training-free max-pooling trick on trained models (mAP / top-1 acc)",
    "pretrained models; MS-COCO and VOC2007 at 448, WIDER at 224, ImageNet", "coco",
    _CSRA_T1_COLUMNS, """
MS-COCO MobileNet      | 71.8 0.2  73.0 0.2  73.0
MS-COCO EfficientNet   | 75.6 0.1  76.1 0.2  76.1
MS-COCO VIT-B16-224    | 79.0 0.8  79.7 0.2  79.3
MS-COCO VIT-L16-224    | 80.4 0.4  80.6 0.2  80.6
MS-COCO ResNet-cut     | 82.4 0.05 82.6 0.02 82.5
MS-COCO GCN            | 83.0 0.2  83.2 0.2  83.2
VOC2007 MobileNet      | 89.6 0.2  90.3 0.2  90.3
VOC2007 ResNet-cut     | 93.9 0.05 94.0 0.02 94.0
VOC2007 GCN            | 94.0 0.2  94.1 0.2  94.1
WIDER MobileNet        | 72.1 0.1  72.3 0.2  72.2
WIDER VIT-B16-224      | 86.3 0.3  86.4 0.2  86.4
WIDER VIT-L16-224      | 87.7 0.2  87.8 0.2  87.8
ImageNet ResNet-50     | 75.6 0.03 75.7 0.02 75.7
ImageNet ResNet-101    | 77.1 0.02 77.2 0.02 77.2
ImageNet VIT-B16-224   | 80.5 0.2  80.7 0.2  80.7
ImageNet VIT-B16-384   | 83.5 0.3  83.6 0.2  83.6
""")
CSRA_T2 = _table(
    "csra", "Table 2", "VOC2007 mAP", "VOC2007, 448x448, H=1 lambda=0.1", "voc2007",
    ("mAP", "mAP_extra_data"), """
RCP               | 92.5 -
SSGRL+            | 93.4 95.0
GCN               | 94.0 -
ASL               | 94.6 95.8
ResNet-101        | 92.9 -
ResNet-cut        | 93.9 -
ResNet-101 + CSRA | 94.7 96.0
ResNet-cut + CSRA | 95.2 96.8
""")
CSRA_T3 = _table(
    "csra", "Table 3", "VOC2012 mAP", "VOC2012 (evaluation server), 448x448", "voc2012",
    ("mAP", "mAP_extra_data"), """
HCP               | 90.5 -
RCP               | 92.2 -
Fev+Lv            | 89.4 -
SSGRL+            | 93.9 94.8
ResNet-101 + CSRA | 94.1 95.2
ResNet-cut + CSRA | 94.6 96.1
""")
CSRA_T4 = _table(
    "csra", "Table 4", "MS-COCO, all and top-3 metrics", "MS-COCO 2014, 448x448", "coco",
    METRICS + ("CP_top3", "CR_top3", "CF1_top3", "OP_top3", "OR_top3", "OF1_top3"), """
ResNet-101           | 79.4 83.4 66.6 74.0 86.8 71.1 78.2 86.2 59.7 70.6 90.5 63.7 74.8
ResNet-cut           | 82.1 86.2 68.7 76.4 88.9 73.1 80.3 88.7 61.3 72.5 92.1 65.2 76.3
ML-GCN               | 83.0 85.1 72.0 78.0 85.8 75.4 80.3 89.2 64.1 74.6 90.5 66.5 76.7
MS-CMA               | 83.8 82.9 74.4 78.4 84.4 77.9 81.0 88.2 65.0 74.9 90.2 67.4 77.1
KSSNet               | 83.7 84.6 73.2 77.2 87.8 76.2 81.5 -    -    -    -    -    -
MCAR                 | 83.8 85.0 72.1 78.0 88.0 73.9 80.3 88.1 65.5 75.1 91.0 66.3 76.7
ResNet-101 + CSRA    | 83.5 84.1 72.5 77.9 85.6 75.7 80.3 88.5 64.2 74.4 90.4 66.4 76.5
ResNet-cut + CSRA    | 85.6 86.2 74.9 80.1 86.6 78.0 82.1 90.1 65.7 76.0 91.4 67.9 77.9
ASL                  | 86.5 87.2 76.4 81.4 88.2 79.2 81.8 91.8 63.4 75.1 92.9 66.4 77.4
VIT-L16              | 80.4 83.8 67.0 74.5 86.6 72.0 78.6 86.8 60.0 70.1 90.3 64.7 75.4
VIT-L16 + CSRA       | 86.5 88.2 74.4 80.8 88.5 77.4 82.6 91.9 65.8 76.7 92.6 68.2 78.5
VIT-L16 + CSRA (RA)  | 86.9 89.1 74.2 81.0 89.6 77.1 82.9 92.5 65.8 76.9 93.4 68.1 78.8
""")
CSRA_T5 = _table(
    "csra", "Table 5", "WIDER-Attribute", "WIDER-Attribute, 224x224, H=1 lambda=0.3", "wider",
    ("mAP", "CF1", "OF1"), """
DHC              | 81.3 -    -
VA               | 82.9 -    -
SRN              | 86.2 75.9 81.3
VAA              | 86.4 -    -
VAC              | 87.5 77.6 82.4
VIT-B16          | 86.3 75.9 81.5
VIT-L16          | 87.7 78.1 82.8
VIT-B16 + CSRA   | 89.0 79.4 84.3
VIT-L16 + CSRA   | 90.1 81.0 85.2
""")
CSRA_T6 = _table(
    "csra", "Table 6", "Average vs spatial pooling (mAP)", "MS-COCO, ResNet-cut, H=1 T=1 lambda=0.4",
    "coco", ("mAP",), """
average only      | 82.1
spatial only      | 84.2
average + spatial | 85.3
""")
CSRA_T7 = _table(
    "csra", "Table 7", "Number of attention heads H (mAP)", "MS-COCO", "coco",
    ("H=1", "H=2", "H=4", "H=6", "H=8"), """
VIT-L16    | 85.8 86.1 86.4 86.4 86.5
ResNet-cut | 85.3 85.4 85.5 85.6 85.5
""")
CSRA_T8 = _table(
    "csra", "Table 8", "Classifier normalisation (mAP)", "MS-COCO, ResNet-101", "coco",
    ("H=2", "H=4"), """
with normalisation    | 83.2 83.3
without normalisation | 83.1 83.4
""")
CSRA_TIMING = _table(
    "csra", "Sec. 4.3 (heads cost)", "Training / test time on MS-COCO (seconds)", "MS-COCO",
    "coco", ("train_s", "test_s"), """
baseline     | 3705.6 142.3
CSRA H=8     | 3735.7 153.8
""")

TABLES: tuple[PaperTable, ...] = (
    PROBMCL_T1_224, PROBMCL_T1_448, PROBMCL_T2, PROBMCL_T3, PROBMCL_OVERLAP,
    IMLGCN_T1, IMLGCN_T2, IMLGCN_T3,
    CSRA_T1, CSRA_T2, CSRA_T3, CSRA_T4, CSRA_T5, CSRA_T6, CSRA_T7, CSRA_T8, CSRA_TIMING,
)

#: Hyperparameter values the papers chose (and mark in their ablation figures).
CHOSEN_HPARAMS = {
    ("probmcl", "tau"): 0.2, ("probmcl", "alpha"): 0.6, ("probmcl", "lambda"): 0.3,
    ("csra", "lambda"): 0.1,  # Fig. 5(b): ResNet-cut peaks at 0.1 (VIT-L16 at 1.0)
}

#: The command that would produce the records a paper cell needs (data or hardware not here).
DATA_COMMANDS = {
    "coco": "bench run --suite coco-tables --data-root /data/coco  (MS-COCO 2014; GPU-scale)",
    "voc2007": "bench run --suite voc-tables --data-root /data/voc2007  (PASCAL VOC 2007; GPU-scale)",
    "adp": "no loader or suite yet: needs the ADP dataset, a loader and sweeps/adp-tables.yaml",
    "vg500": "no loader or suite yet: needs Visual Genome VG-500, a loader and sweeps/vg500-tables.yaml",
    "voc2012": "no suite yet: needs VOC2012 and the VOC evaluation server (test labels are private)",
    "wider": "no loader or suite yet: needs WIDER-Attribute, a loader and sweeps/wider-tables.yaml",
    "imagenet": "no suite yet: needs ImageNet val and ImageNet-pretrained ResNet/ViT weights",
    "cost": "bench cost --suite coco-tables  (writes results/cost/coco-tables.json; no data needed)",
}


_ROW_DATASETS = {"MS-COCO": "coco", "VOC2007": "voc2007", "WIDER": "wider", "ImageNet": "imagenet"}
_COLUMN_DATASETS = {"COCO": "coco", "VG-500": "vg500"}


def cell_dataset(table: PaperTable, row: str, column: str) -> str:
    """The data a cell was measured on (CSRA Table 1 and IML-GCN Table 3 mix datasets)."""
    if column in _COLUMN_DATASETS:
        return _COLUMN_DATASETS[column]
    return _ROW_DATASETS.get(row.split()[0], table.dataset)


def all_values() -> list[PaperValue]:
    """Every non-empty cell of every table, in table order."""
    out = []
    for table in TABLES:
        for row, values in table.rows:
            for column, value in zip(table.columns, values):
                if value is not None:
                    out.append(PaperValue(table.paper, table.table, row, column, value,
                                          table.setting, cell_dataset(table, row, column)))
    return out
