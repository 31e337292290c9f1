"""`bench cost`: parameters and GMACs of every method row, beside the papers' printed values.

No data, no GPU, no network. For each row (method, backbone, resolution, num_classes,
hparams) the model is built with a :func:`synthetic_targets` label matrix, every stage is
prepared with one synthetic batch, then counted with fvcore under ``torch.no_grad()`` and
``model.eval()``:

* inference: ``model(images)`` on one image;
* training, per stage: ``model.loss(views, targets, stage)`` on a batch of
  :data:`TRAIN_BATCH` samples (all their views), divided by the batch: per-sample MACs.
  A training row is emitted only where it differs from inference (parameters used,
  MACs, or trainable parameters): e.g. ProbMCL's MDN (stage 1), its frozen encoder (stage 2).

``params_m`` counts the parameters a mode actually USES (seen as arguments of torch
calls during that forward), so modules built but unused in a mode are not counted.
fvcore counts one multiply-add as one flop: its total is MACs, reported as ``gmacs``.
Operators fvcore cannot count are listed per row in ``unsupported_ops``.
"""
from __future__ import annotations

import importlib.metadata as md
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves

import methods
from bench.cost.paper_costs import explain_gap, paper_cost
from methods.base import BuildContext, MultiLabelModel, StageContext

MACS_NOTE = ("gmacs = fvcore FlopCountAnalysis total / 1e9; fvcore counts one multiply-add as one "
             "flop, so the total is MACs (GMAC), per image (training: per sample, all its views)")
TRAIN_BATCH = 2  # the smallest batch a contrastive loss accepts
#: Class count and channels of the known datasets, so no data has to be read.
DATASET_SHAPES: dict[str, tuple[int, int]] = {"mnist-mosaic": (10, 1), "coco2014": (80, 3),
                                              "voc2007": (20, 3)}
_SHAPE_QUERIES = {"__get__", "size", "dim", "numel", "stride", "is_floating_point", "data_ptr",
                  "element_size", "get_device"}


@dataclass(frozen=True)
class CostConfig:
    """One row to count: a method at a configuration, and the paper figure to compare with."""

    method: str
    backbone: str
    resolution: int
    num_classes: int
    hparams: Mapping[str, Any] = field(default_factory=dict)
    in_chans: int = 3
    label: str = ""
    paper_key: str | None = None
    note: str = ""  # recorded explanation of a known difference to the paper
    backbone_options: Mapping[str, Any] = field(default_factory=dict)
    class_names: tuple[str, ...] | None = None  # None: class_0, class_1, ...


_GCN_NOTE = ("inference counted at batch 1: the GCN on constant node features is counted once per "
             "image (cacheable at deployment)")
_R101, _TM, _TL = ("resnet101", 448), ("tresnet_m", 224), ("tresnet_l", 448)
_PROBMCL_NOTE = ("Table 3 does not say which encoder/resolution ProbMCL's column uses (Table 1: "
                 "'ResNet-101 at 448' in the caption, TResNet-M 224 / TResNet-L 448 in the text); "
                 "the figure is listed beside each ProbMCL configuration")


def _coco(method: str, bb: tuple[str, int], label: str, paper: str | None, note: str = "",
          **hparams: Any) -> CostConfig:
    return CostConfig(method, bb[0], bb[1], 80, hparams, 3, label, paper, note)


def _coco_tables() -> list[CostConfig]:
    return [
        _coco("baseline", _R101, "baseline R101", "imlgcn-t1-resnet101",
              "the paper's 44.5 M is ResNet-101 with its 1000-class ImageNet fc"),
        _coco("csra", _R101, "csra H=6 R101", "probmcl-t3-csra",
              "CSRA paper's COCO ResNet-101 setting: H=6, lambda=0.5; each head here has its own "
              "1x1-conv classifier (6 x 0.164 M); no head count gives 42.52 M, which is the backbone "
              "alone + 0.02 M, less than ONE 80-class classifier; 31.39 GMAC is printed for ML-GCN too",
              num_heads=6, lam=0.5),
        _coco("csra", _R101, "csra H=8 R101", "csra-s44-8heads",
              "the paper's only cost figure is wall-clock time (see --timing)", num_heads=8, lam=0.5),
        _coco("mlgcn", _R101, "mlgcn R101", "probmcl-t3-mlgcn",
              "IML-GCN Table 1 prints 44.9 M for ML-GCN too; node inputs 300-d like the paper's GloVe "
              "(embeddings=random: same shapes, needs no file); " + _GCN_NOTE + "; the GCN adds 0.21 "
              "GMAC at batch 1, the paper's 31.39 is ResNet-101 at 448 (31.33 here) + 0.06",
              embeddings="random"),
        _coco("probmcl", _R101, "probmcl R101", "probmcl-t3-probmcl", _PROBMCL_NOTE),
        _coco("kmcl", _R101, "kmcl R101", None),
        _coco("baseline", _TM, "baseline TResNet-M", None),
        _coco("asl", _TM, "asl TResNet-M", "imlgcn-t1-asl-m"),
        _coco("imlgcn", _TM, "imlgcn F_I TResNet-M", "imlgcn-t1-fi", _GCN_NOTE, node_features="image"),
        _coco("imlgcn", _TM, "imlgcn F_PCA TResNet-M", "imlgcn-t1-fpca", _GCN_NOTE, node_features="pca"),
        _coco("probmcl", _TM, "probmcl TResNet-M", "probmcl-t3-probmcl", _PROBMCL_NOTE),
        _coco("kmcl", _TM, "kmcl TResNet-M", None),
        _coco("baseline", _TL, "baseline TResNet-L", None),
        _coco("asl", _TL, "asl TResNet-L", "imlgcn-t1-asl-l"),
        _coco("probmcl", _TL, "probmcl TResNet-L", "probmcl-t3-probmcl", _PROBMCL_NOTE),
    ]


#: Cost configurations by suite name; a name listed here does not need a suite file (every
#: other name, "default" included, is read from its suite file: its backbone, resolution, classes).
COST_CONFIGS: dict[str, Callable[[], list[CostConfig]]] = {
    "coco-tables": _coco_tables,
}


def configs_for(suite: str) -> list[CostConfig]:
    """COST_CONFIGS[suite], else the rows of a suite file (name in sweeps/ or a YAML path)."""
    if suite in COST_CONFIGS:
        return COST_CONFIGS[suite]()
    from bench.spec.suites import load_suite

    spec = load_suite(suite)
    num_classes, in_chans = dataset_shape(spec.dataset)
    bb = spec.backbone
    names = None
    if spec.dataset["name"] == "mnist-mosaic":
        from bench.data.embedded import VARIANT_CLASSES, MosaicOptions

        names = VARIANT_CLASSES[MosaicOptions.parse(spec.dataset.get("options") or {}).variant]
        num_classes = len(names)
    in_chans = 3 if spec.budget.get("normalize") == "imagenet" else in_chans  # grey fed as RGB
    from methods.backbones import WEIGHT_OPTIONS

    # weights change no count: build without them (in-domain weights exist only after pretraining)
    counted_options = {k: v for k, v in (bb.get("options") or {}).items() if k not in WEIGHT_OPTIONS}
    return [CostConfig(r.method, bb["name"], int(spec.budget["resolution"]), num_classes,
                       dict(r.hparams), in_chans, r.label or r.method,
                       backbone_options=counted_options, class_names=names)
            for r in spec.rows]


def dataset_shape(dataset: Mapping[str, Any]) -> tuple[int, int]:
    """(num_classes, in_chans): explicit dataset options first, else :data:`DATASET_SHAPES`."""
    from bench.spec.suites import SpecError

    opts = dict(dataset.get("options") or {})
    known = DATASET_SHAPES.get(dataset["name"])
    if "num_classes" not in opts and known is None:
        raise SpecError(f"bench cost: dataset {dataset['name']!r} has no known class count; give "
                         f"dataset.options.num_classes (known: {', '.join(sorted(DATASET_SHAPES))})")
    return int(opts.get("num_classes", known[0] if known else 0)), int(
        opts.get("in_chans", known[1] if known else 3))


def synthetic_targets(num_classes: int) -> np.ndarray:
    """(3C, C) int8 label matrix with a documented co-occurrence: for each class c, one row
    {c} and two rows {c, c+1 mod C}. So every class has 5 positives and P(c+1|c) = P(c-1|c)
    = 0.4 (ML-GCN's adjacency is non-empty at t = 0.4); parameter counts do not depend on it."""
    c = num_classes
    y = np.zeros((3 * c, c), dtype=np.int8)
    for k in range(c):
        y[3 * k, k] = 1
        y[3 * k + 1, [k, (k + 1) % c]] = 1
        y[3 * k + 2, [k, (k + 1) % c]] = 1
    return y


class _ParamRecorder(TorchFunctionMode):
    """Records every nn.Parameter passed to a torch call (shape queries excepted)."""

    def __init__(self) -> None:
        super().__init__()
        self.used: dict[int, int] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        if getattr(func, "__name__", "") not in _SHAPE_QUERIES:
            for leaf in tree_leaves((args, kwargs)):
                if isinstance(leaf, nn.Parameter):
                    self.used[id(leaf)] = int(leaf.numel())
        return func(*args, **kwargs)


class _StageLoss(nn.Module):
    """forward(*views, targets) = model.loss(views, targets, stage): what fvcore traces."""

    def __init__(self, model: MultiLabelModel, stage: str) -> None:
        super().__init__()
        self.model, self.stage = model, stage

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return self.model.loss(list(tensors[:-1]), tensors[-1], self.stage)


def count(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> tuple[int, int, dict[str, int]]:
    """(MACs, parameter elements used, {unsupported aten op: count}) of module(*inputs), by
    fvcore under no_grad and eval(); the parameters are recorded during fvcore's own trace."""
    import warnings

    module.eval()
    recorder = _ParamRecorder()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fvcore.nn import FlopCountAnalysis

        fca = FlopCountAnalysis(module, inputs)
        fca.unsupported_ops_warnings(False)
        fca.uncalled_modules_warnings(False)
        fca.tracer_warnings("none")
        with recorder:
            total = int(fca.total())
        return total, sum(recorder.used.values()), dict(sorted(fca.unsupported_ops().items()))


def build_model(cfg: CostConfig) -> MultiLabelModel:
    """The row's model on CPU, built from a synthetic training label matrix."""
    spec = methods.get(cfg.method)
    hp = spec.resolve(cfg.hparams)
    if not isinstance(cfg.resolution, int) or cfg.resolution < 8:
        raise ValueError(f"resolution {cfg.resolution!r} must be an integer >= 8")
    ctx = BuildContext(num_classes=cfg.num_classes,
                       class_names=cfg.class_names or tuple(f"class_{i}" for i in range(cfg.num_classes)),
                       train_targets=synthetic_targets(cfg.num_classes), backbone=cfg.backbone,
                       backbone_options=dict(cfg.backbone_options), resolution=cfg.resolution,
                       in_chans=cfg.in_chans, device="cpu")
    return spec.build(ctx, hp)


def synthetic_images(cfg: CostConfig, n: int, seed: int) -> torch.Tensor:
    """(n, in_chans, r, r) uniform [0, 1) images from a fixed seed."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, cfg.in_chans, cfg.resolution, cfg.resolution, generator=g)


def stage_context(cfg: CostConfig, stage: str, index: int) -> StageContext:
    """A StageContext whose training split is one synthetic batch of TRAIN_BATCH images."""
    targets = synthetic_targets(cfg.num_classes)
    batch = (synthetic_images(cfg, TRAIN_BATCH, 1), torch.as_tensor(targets[:TRAIN_BATCH], dtype=torch.float32))
    return StageContext(stage=stage, stage_index=index, epochs=1, device="cpu",
                        iterate_train=lambda: iter([batch]), train_targets=targets)


def _trainable(model: MultiLabelModel, stage: str) -> int:
    return sum(int(p.numel()) for p in {id(p): p for p in model.trainable_parameters(stage)}.values())


def measure(cfg: CostConfig, all_stages: bool = False) -> list[dict[str, Any]]:
    """Inference row, then one training row per stage that differs from inference (every
    stage with ``all_stages``)."""
    torch.manual_seed(0)
    model = build_model(cfg)
    training = []
    targets = torch.as_tensor(synthetic_targets(cfg.num_classes)[:TRAIN_BATCH], dtype=torch.float32)
    for index, stage in enumerate(model.stages):
        model.prepare_stage(stage, stage_context(cfg, stage, index))
        views = tuple(synthetic_images(cfg, TRAIN_BATCH, 10 + v) for v in range(model.views(stage)))
        wrapper = _StageLoss(model, stage)
        macs, used, unsupported = count(wrapper, (*views, targets))
        training.append({"stage": stage, "views": len(views), "params": used,
                         "macs": macs / TRAIN_BATCH, "unsupported": unsupported,
                         "trainable": _trainable(model, stage)})
    image = (synthetic_images(cfg, 1, 2),)
    macs, params, unsupported = count(model, image)
    rows = [_row(cfg, "inference", "", params, macs, unsupported, params)]
    for t in training:
        same = (t["params"] == params and t["trainable"] == params
                and abs(t["macs"] - macs) <= 1e-3 * max(macs, 1))
        if all_stages or not same:
            rows.append(_row(cfg, "training", t["stage"], t["params"], t["macs"], t["unsupported"],
                             t["trainable"], views=t["views"]))
    return rows


def _row(cfg: CostConfig, mode: str, stage: str, params: int, macs: float,
         unsupported: Mapping[str, int], trainable: int, views: int = 1) -> dict[str, Any]:
    paper = paper_cost(cfg.paper_key)
    row: dict[str, Any] = {
        "label": cfg.label or cfg.method, "method": cfg.method, "backbone": cfg.backbone,
        "resolution": cfg.resolution, "num_classes": cfg.num_classes, "in_chans": cfg.in_chans,
        "hparams": dict(sorted(cfg.hparams.items())), "mode": mode, "stage": stage, "views": views,
        "params": int(params), "params_m": round(params / 1e6, 4),
        "trainable_params_m": round(trainable / 1e6, 4), "macs": int(round(macs)),
        "gmacs": round(macs / 1e9, 4), "unsupported_ops": dict(unsupported),
        "paper_params_m": None, "paper_gmacs": None, "params_rel_diff": None, "gmacs_rel_diff": None,
        "paper_source": None, "note": cfg.note, "error": None,
    }
    if paper is not None and mode == "inference":
        row.update(paper_params_m=paper.params_m, paper_gmacs=paper.gmacs, paper_source=paper.source)
        if paper.train_time_ratio is not None:
            row.update(paper_train_time_ratio=paper.train_time_ratio,
                       paper_infer_time_ratio=paper.infer_time_ratio)
        if paper.params_m is not None:
            row["params_rel_diff"] = round(row["params_m"] / paper.params_m - 1, 4)
        if paper.gmacs is not None:
            row["gmacs_rel_diff"] = round(row["gmacs"] / paper.gmacs - 1, 4)
    return row


def annotate(row: Mapping[str, Any], cfg: CostConfig, backbone_params: int, num_features: int) -> str:
    """The row's note: the recorded explanation and the computed gap diagnosis (inference),
    or how a training row was counted."""
    if row["mode"] == "training":
        return (f"stage {row['stage']!r}: {row['views']} view(s) per sample, counted at batch "
                f"{TRAIN_BATCH} (per-batch work, e.g. a GCN on constant nodes, is shared); "
                "trainable = what this stage's optimiser updates")
    return "; ".join(s for s in (cfg.note, explain_gap(row, backbone_params, num_features)) if s)


def _backbone_size(cfg: CostConfig, cache: dict) -> tuple[int, int]:
    from methods.backbones import build_backbone

    key = (cfg.backbone, cfg.in_chans, repr(sorted(cfg.backbone_options.items())))
    if key not in cache:
        net = build_backbone(cfg.backbone, cfg.in_chans, cfg.backbone_options)
        cache[key] = (sum(p.numel() for p in net.parameters()), int(net.num_features))
    return cache[key]


def error_row(cfg: CostConfig, err: BaseException) -> dict[str, Any]:
    msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return {"label": cfg.label or cfg.method, "method": cfg.method, "backbone": cfg.backbone,
            "resolution": cfg.resolution, "num_classes": cfg.num_classes, "mode": "error",
            "params_m": None, "gmacs": None, "paper_params_m": None, "paper_gmacs": None,
            "unsupported_ops": {}, "paper_source": None, "note": cfg.note,
            "error": f"{type(err).__name__}: {msg}"}


def cost_rows(configs: Sequence[CostConfig], log: Callable[[str], None] = lambda s: None,
              all_stages: bool = False) -> list[dict]:
    """Every config's rows in order; a failing config becomes one error row (others go on)."""
    from bench.cost.cache import cache_key, cached, code_digest

    rows: list[dict] = []
    cache: dict = {}
    code = code_digest()
    for cfg in configs:
        log(f"counting {cfg.label or cfg.method} ({cfg.backbone} @ {cfg.resolution} px)")
        try:
            found, hit = cached(cache_key(cfg, all_stages, code),
                                lambda: {"rows": measure(cfg, all_stages), "backbone": list(_backbone_size(cfg, cache))})
            if hit:
                log("  (cached: same configuration, code and library versions)")
            rows.extend({**r, "note": annotate(r, cfg, *found["backbone"])} for r in found["rows"])
        except Exception as err:  # noqa: BLE001 -- any failure is reported as this row's error
            rows.append(error_row(cfg, err))
    return rows


# ---------------------------------------------------------------- command

def provenance() -> dict[str, Any]:
    def version(name: str) -> str:
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            return "absent"
    return {"packages": {n: version(n) for n in ("torch", "timm", "fvcore", "numpy")},
            "python": sys.version.split()[0]}


_COLUMNS = ("label", "mode", "params_m", "trainable_params_m", "paper_params_m", "params_rel_diff",
            "gmacs", "paper_gmacs",
            "gmacs_rel_diff", "unsupported_ops", "train_step_ratio", "infer_ratio", "note")


def _cell(row: Mapping[str, Any], col: str, limit: int = 1000) -> str:
    v = row.get(col)
    if col == "mode":
        return row["mode"] + (f":{row['stage']}" if row.get("stage") else "")
    if col == "label" and row.get("error"):
        return f"{v} [{row['backbone']}@{row['resolution']}]"
    if col == "unsupported_ops":
        ops = [f"{k.replace('aten::', '')}x{n}" for k, n in (v or {}).items()]
        return ",".join(ops) if len(ops) <= limit else ",".join(ops[:limit]) + f",+{len(ops) - limit} more"
    if col.endswith("rel_diff") and v is not None:
        return f"{100 * v:+.1f}%"
    if col == "note" and row.get("error"):
        return "ERROR " + row["error"]
    return "" if v is None else str(v)


def render(rows: Sequence[Mapping[str, Any]], fmt: str) -> str:
    """rows as 'table' (terminal), 'md', 'csv' or 'json' (a list of rows)."""
    import json

    if fmt == "json":
        return json.dumps(list(rows), indent=1, sort_keys=True)
    cols = [c for c in _COLUMNS if c not in ("train_step_ratio", "infer_ratio")
            or any(c in r for r in rows)]
    cells = [[_cell(r, c, 1000 if fmt != "table" else 3) for c in cols] for r in rows]
    if fmt == "csv":
        import csv
        import io

        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows([cols, *cells])
        return buf.getvalue().rstrip("\n")
    if fmt == "md":
        lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        return "\n".join(lines + ["| " + " | ".join(c.replace("|", "/") for c in r) + " |" for r in cells])
    short = cols[:-1]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(short)]
    fmt_line = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt_line.format(*short)] + [fmt_line.format(*r[:-1]) for r in cells]
    notes = [f"[{i}] {r['label']} ({_cell(r, 'mode')}): {_cell(r, 'note')}"
             for i, r in enumerate(rows) if _cell(r, "note")]
    return "\n".join(lines + ["", MACS_NOTE, "(full unsupported_ops lists: --format json/md)", *notes])
