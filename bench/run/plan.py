"""What a submission will ask of the cluster and what it will cost, before anything is submitted.

``bench run/sweep --dry-run`` prints, for the Slurm executor, the exact submitit parameters of the
array (bench.spec.cluster.slurm_parameters: partition, time, nodes, tasks, CPUs, memory, GPUs),
and for a suite that needs CUDA, per job an ESTIMATE of GPU-hours and of peak GPU memory, then the
suite's total. Both are estimates, said so where printed:

* GPU-hours = training FLOPs / (``cluster.gpu_tflops`` x 1e12) / 3600, with training FLOPs =
  6 x forward MACs per sample (all its views; fvcore, counted on the row's own model: 2 FLOPs per
  MAC, backward = 2 x forward) x training images x epochs, per stage, plus the validation passes
  (plain and EMA) and the test pass (2 FLOPs per MAC);
* peak memory per GPU = tensors saved for backward per sample (measured on the CPU in fp32 by
  ``torch.autograd.graph.saved_tensors_hooks`` at batch 2, halved under bf16/fp16 autocast) x the
  per-GPU micro-batch, + fp32 weights, grads, Adam moments and the EMA copy, + 1 GB assumed for the
  CUDA context and cuDNN workspaces (fragmentation not counted).

MACs and saved bytes are counted at 64 and 128 px and extrapolated to the job's resolution
linearly in pixels (:data:`MEASURE_SIDES`). The counts are made once per (model, resolution,
classes) and cached under
``<BENCH_CACHE_DIR>/plan/`` (keyed by those inputs and the torch/timm versions). A job whose
estimated peak exceeds ``cluster.gpu_mem_gb`` is refused at load with the fixes. Checked against a
real GPU: not yet (no GPU was available; benchmarks/bench_gpu_step.py measures the step on one).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

from bench.errors import BenchError
from bench.run.devices import needs_cuda, visible_gpus
from bench.spec.cluster import parse_cluster, slurm_parameters
from bench.spec.weights import missing_weights

#: Images per split of the paper datasets (bench/data/coco.py, voc.py: images with a label).
DATASET_IMAGES = {"coco2014": (82081, 40137), "voc2007": (5011, 4952)}
CONTEXT_GB = 1.0  # CUDA context + cuDNN workspaces: an allowance, not a measurement
MEASURE_BATCH = 2


def _split_sizes(job: Any) -> tuple[int, int, int]:
    """(train, val, test) images of a paper dataset job, without reading the data."""
    name, options = job.dataset["name"], dict(job.dataset.get("options") or {})
    train, test = DATASET_IMAGES.get(name, (0, 0))
    if options.get("train_subset"):
        train = min(train, int(options["train_subset"]))
    val = int(round(train * float(options.get("val_fraction", 0.1))))
    train -= val
    if job.budget.get("train_images"):
        train = min(train, int(job.budget["train_images"]))
    return train, val, test


def _cache_file(key: Mapping[str, Any]) -> Path:
    import importlib.metadata as md  # the installed versions, read without importing torch or timm

    text = json.dumps({**key, "torch": md.version("torch"), "timm": md.version("timm"), "key": 2}, sort_keys=True)
    root = Path(os.environ.get("BENCH_CACHE_DIR", ".cache/data")) / "plan"
    return root / f"{hashlib.sha256(text.encode()).hexdigest()[:16]}.json"


def _saved_bytes(module: Any, inputs: tuple[Any, ...]) -> int:
    """Bytes of the distinct tensors autograd saves for backward in one forward (parameters not
    counted: they are weights, counted apart)."""
    import torch

    params = {p.data_ptr() for p in module.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params:
            seen[ptr] = max(seen.get(ptr, 0), t.untyped_storage().nbytes())
        return t

    module.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        module(*inputs)
    return sum(seen.values())


#: The two resolutions counted; every figure is extrapolated to the job's resolution linearly in
#: pixels (exact for layers whose cost is proportional to their map's area, plus constant parts
#: such as a GCN on node features), 10x cheaper on a login node than counting at 448 px.
MEASURE_SIDES = (64, 128)


def _extrapolate(low: float, high: float, side: int) -> float:
    a, b = (s * s for s in MEASURE_SIDES)
    return low + (high - low) * (side * side - a) / (b - a)


def measure(job: Any) -> dict[str, Any]:
    """Per stage at the job's resolution: forward MACs and saved-for-backward bytes per sample;
    params (cached per model, resolution and class count)."""
    from bench.spec.method_facts import backbone_weights_names

    WEIGHT_OPTIONS = backbone_weights_names()[1]  # noqa: N806 (methods.backbones', read from source)
    options = {k: v for k, v in dict(job.backbone.get("options") or {}).items() if k not in WEIGHT_OPTIONS}
    num_classes = 80 if job.dataset["name"] == "coco2014" else 20
    side = int(job.budget["resolution"])
    key = {"method": job.method, "hparams": dict(job.hparams), "backbone": job.backbone["name"],
           "options": options, "resolution": side, "classes": num_classes}
    path = _cache_file(key)
    if path.is_file():
        return json.loads(path.read_text())
    low, high = (_measure_at(job, options, num_classes, s) for s in MEASURE_SIDES)
    stages = {name: {"views": st["views"], "trainable_params": st["trainable_params"],
                     **{k: _extrapolate(st[k], high["stages"][name][k], side)
                        for k in ("macs_per_sample", "saved_bytes_per_sample")}}
              for name, st in low["stages"].items()}
    out = {**low, "stages": stages, "inference_macs": _extrapolate(low["inference_macs"], high["inference_macs"], side),
           "counted_at": list(MEASURE_SIDES)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out))
    return out


def _measure_at(job: Any, options: Mapping[str, Any], num_classes: int, side: int) -> dict[str, Any]:
    import torch

    from bench.cost.count import CostConfig, _StageLoss, build_model, count, stage_context, synthetic_images, \
        synthetic_targets

    cfg = CostConfig(job.method, job.backbone["name"], side, num_classes, dict(job.hparams), 3,
                     backbone_options=options)
    torch.manual_seed(0)
    model = build_model(cfg)
    targets = torch.as_tensor(synthetic_targets(num_classes)[:MEASURE_BATCH], dtype=torch.float32)
    stages = {}
    for index, stage in enumerate(model.stages):
        model.prepare_stage(stage, stage_context(cfg, stage, index))
        views = tuple(synthetic_images(cfg, MEASURE_BATCH, 10 + v) for v in range(model.views(stage)))
        wrapper = _StageLoss(model, stage)
        macs, _, _ = count(wrapper, (*views, targets))
        trainable = sum(p.numel() for p in {id(p): p for p in model.trainable_parameters(stage)}.values())
        stages[stage] = {"views": len(views), "macs_per_sample": macs / MEASURE_BATCH,
                         "saved_bytes_per_sample": _saved_bytes(wrapper, (*views, targets)) / MEASURE_BATCH,
                         "trainable_params": int(trainable)}
    inf_macs, _, _ = count(model, (synthetic_images(cfg, 1, 2),))
    return {"stages": stages, "inference_macs": inf_macs, "params": sum(p.numel() for p in model.parameters()),
            "selection_stage": model.selection_stage()}


def estimate(job: Any, cluster: Mapping[str, Any], gpus: int) -> dict[str, Any]:
    """GPU-hours and peak GPU memory (GB) of one job, and the figures behind them."""
    m = measure(job)
    train, val, test = _split_sizes(job)
    epochs = _epochs_per_stage(job, list(m["stages"]))
    flops = 0.0
    for stage, e in zip(m["stages"], epochs):
        flops += 6.0 * m["stages"][stage]["macs_per_sample"] * train * e
    ema = 2 if job.budget.get("ema") else 1
    flops += 2.0 * m["inference_macs"] * (val * ema * epochs[list(m["stages"]).index(m["selection_stage"])] + test)
    gpu_hours = flops / (float(cluster["gpu_tflops"]) * 1e12) / 3600
    half = 0.5 if job.budget.get("precision") in ("bf16", "fp16") else 1.0
    micro = int(job.budget["batch_size"]) / max(int(job.budget.get("accumulate") or 1), 1) / max(gpus, 1)
    peak = 0.0
    for stage, s in m["stages"].items():
        states = 4 * (m["params"] * ema + s["trainable_params"] * 3)  # weights (+EMA), grads, 2 Adam moments
        peak = max(peak, s["saved_bytes_per_sample"] * half * micro + states)
    return {"gpu_hours": gpu_hours, "peak_gb": peak / 1e9 + CONTEXT_GB, "micro_batch": micro,
            "train_images": train, "epochs": epochs}


def _epochs_per_stage(job: Any, stages: list[str]) -> list[int]:
    total = int(job.budget["epochs"])
    split = job.budget.get("stage_split")
    if split:
        return list(split)
    if len(stages) == 1:
        return [total]
    return _model_split(job, total)


def _model_split(job: Any, total: int) -> list[int]:
    """A two-stage method's own split (its model's stage_epochs), read without data."""
    from bench.cost.count import CostConfig, build_model

    cfg = CostConfig(job.method, "smallcnn", 16, 4, dict(job.hparams), 3)
    return list(build_model(cfg).stage_epochs(total))


def print_plan(jobs: list[Any], executor: str, cluster: Mapping[str, Any], device: str | None) -> int:
    """Print the plan lines of a dry run; return its exit status: 2 when a real run would be
    refused (weights missing, estimated memory over the GPU's, no CUDA for a local GPU run)."""
    problems: list[str] = []
    for tag in missing_weights(jobs):
        problems.append(f"weights {tag} are not in the local cache: run `bench weights fetch {tag}` (login node)")
    if not jobs:
        return 0
    resources = jobs[0].resources
    c = parse_cluster(cluster)
    gpus = 0
    if executor == "slurm":
        params = slurm_parameters(c, resources, len(jobs))
        gpus = int(params.get("gpus_per_node", 0))
        shown = {k: v for k, v in params.items() if k not in ("setup", "srun_args")}
        print(f"sbatch ({len(jobs)} job(s), one array): " + ", ".join(f"{k}={v}" for k, v in shown.items()))
        if not gpus and needs_cuda(resources):
            problems.append("the suite needs CUDA but the request has no GPU: drop gpus_per_node=0")
    elif needs_cuda(resources):
        gpus = int(resources.get("gpus", 1))
        if device is None and visible_gpus()[0] == 0:
            problems.append("this suite needs CUDA and none is visible here: a local run would stop (exit 2); "
                            "submit with --executor slurm or run on the CPU on purpose with --device cpu")
    if needs_cuda(resources) and (device is None or str(device).startswith("cuda")):
        problems += _estimates(jobs, c, max(gpus, 1))
    for line in problems:
        print(f"REFUSED: {line}")
    return 2 if problems else 0


def _estimates(jobs: list[Any], c: Mapping[str, Any], gpus: int) -> list[str]:
    print(f"estimates (not measured on a GPU): GPU-hours at {c['gpu_tflops']} effective TFLOP/s per GPU "
          f"(cluster.gpu_tflops), peak memory per GPU vs {c['gpu_mem_gb']} GB (cluster.gpu_mem_gb); "
          "how: bench/run/plan.py")
    print(f"{'label':<18} {'seed':>4} {'GPU-h':>7} {'peak GB':>8}  micro-batch x views, images x epochs")
    total, problems, done = 0.0, [], {}
    for job in jobs:
        key = (job.method, json.dumps(dict(job.hparams), sort_keys=True))
        est = done.get(key) or estimate(job, c, gpus)
        done[key] = est
        total += est["gpu_hours"]
        print(f"{job.display_name:<18} {job.seed:>4} {est['gpu_hours']:>7.1f} {est['peak_gb']:>8.1f}  "
              f"{est['micro_batch']:g}/GPU on {gpus} GPU(s), {est['train_images']} x {est['epochs']}")
        if est["peak_gb"] > float(c["gpu_mem_gb"]):
            problems.append(_over_memory(job, est, c))
    print(f"total: {total:.1f} GPU-hours (estimated) for {len(jobs)} job(s)")
    return problems


def check_before_submit(jobs: list[Any], cluster: Mapping[str, Any]) -> None:
    """The memory refusal of a real (not dry) Slurm submission: BenchError before sbatch."""
    if not jobs or not needs_cuda(jobs[0].resources):
        return
    c = parse_cluster(cluster)
    gpus = max(int(slurm_parameters(c, jobs[0].resources, len(jobs)).get("gpus_per_node", 1)), 1)
    for job in jobs:
        est = estimate(job, c, gpus)
        if est["peak_gb"] > float(c["gpu_mem_gb"]):
            raise BenchError(_over_memory(job, est, c) + " (bench run --dry-run shows the estimate)")


def _over_memory(job: Any, est: Mapping[str, Any], c: Mapping[str, Any]) -> str:
    return (f"{job.display_name}: estimated peak {est['peak_gb']:.0f} GB per GPU exceeds gpu_mem_gb={c['gpu_mem_gb']}: "
            "set budget.accumulate (a smaller micro-batch, same step), ask for more GPUs (resources.gpus), or say "
            "your GPU's memory (--cluster gpu_mem_gb=N)")


def submitted_line(summary: Mapping[str, Any], what: str, results: str, sets: Iterable[str] | None,
                   world_size: int = 1) -> str:
    """After a Slurm submission: the array id(s), the log folder and a status command that keeps
    every flag it needs."""
    flags = f" --results {results}" if results not in ("results", None) else ""
    flags += "".join(f" --set {s}" for s in sets or ())
    flags += f" --world-size {world_size}" if world_size > 1 else ""
    arrays = ", ".join(summary.get("arrays") or []) or "none"
    return (f"submitted {summary.get('submitted', 0)} job(s) as Slurm array(s) {arrays}; logs in "
            f"{summary.get('logs', '-')}; follow with: bench status {what}{flags}")
