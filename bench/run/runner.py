"""run_job: data -> model -> train (per stage) -> select on validation -> evaluate -> record.

One job = one JobSpec. The runner is the only place that trains, and it trains
every method the same way: the suite's budget and optimiser, batches drawn from
a generator seeded by (seed, stage, epoch), a checkpoint after every epoch. A
job restarted after a crash, a kill or a Slurm preemption resumes from its last
checkpoint and ends with the same numbers as an uninterrupted run. Model
selection uses the validation split only; the record keeps the selected and the
last epoch.
"""
from __future__ import annotations

import functools
import json
import math
import os
import time
import traceback
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

import methods
from bench import data as datasets
from bench.run import distributed, syncbn
from bench.train.augment import model_in_chans
from bench.evaluate.convergence import chance_map, convergence
from bench.run.epochlog import write_epoch_log
from bench.run.progress import JobBar
from bench.errors import BenchError
from bench.spec.jobs import JobSpec, canonical_json
from bench.evaluate.metrics import convention_record
from bench.run.provenance import now, provenance
from bench.run.store import JobDir, Store
from bench.train.checkpoint import load_checkpoint, save_checkpoint
from bench.train.data import Feed, epoch_batches
from bench.train.ema import ema_state, load_ema_state, make_ema
from bench.train.loop import Step, train_epoch
from bench.train.optim import build_optimizer, build_schedule, derived_seed, optimizer_groups
from bench.train.precision import grad_scaler, unsupported
from bench.train.settings import Runtime
from bench.evaluate.job import final_evaluation, validate
from methods.base import BuildContext, MultiLabelModel, StageContext

CACHE_DIR = os.environ.get("BENCH_CACHE_DIR", ".cache/data")


@functools.lru_cache(maxsize=4)
def _load_data(dataset_json: str, resolution: int, data_root: str | None,
               image_cache: bool = True) -> datasets.MultiLabelData:
    spec = json.loads(dataset_json)
    return datasets.load(spec["name"], spec.get("options"), resolution=resolution,
                         data_root=data_root, cache_dir=CACHE_DIR, image_cache=image_cache)


def load_job_data(job: JobSpec) -> datasets.MultiLabelData:
    """The job's dataset, loaded once per process (every method and seed share it)."""
    root = job.data_root or os.environ.get("BENCH_DATA_ROOT")
    data = _load_data(canonical_json(job.dataset), int(job.budget["resolution"]), root,
                      bool(job.budget.get("image_cache", True)))
    n = job.budget.get("train_images")
    if n and n < len(data.train):
        keep = np.sort(np.random.default_rng(0).permutation(len(data.train))[:n])
        train = datasets.Split(data.train.images[keep], data.train.targets[keep],
                               tuple(data.train.ids[i] for i in keep))
        data = datasets.MultiLabelData(data.name, data.classes, train, data.val, data.test,
                                       {**data.conventions, "train_images": int(n)}, data.fingerprint)
    return data


def resolve_device(device: str | None) -> str:
    if device:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def backbone_weights(job: JobSpec, in_chans: int, progress: bool) -> tuple[dict[str, Any], dict | None]:
    """The backbone options with ``weights: in-domain`` resolved to the cached pretrained file
    (bench.run.pretrain, made once), and that pretraining's info for the record (else None)."""
    options = dict(job.backbone.get("options", {}))
    if options.get("weights") != "in-domain":
        return options, None
    from bench.run.pretrain import in_domain_weights

    info = in_domain_weights(job.dataset, job.backbone["name"], options, in_chans, job.budget["normalize"],
                             CACHE_DIR, progress)
    return {**options, "pretrained_path": info["path"], "weights_sha256": info["sha256"]}, info


def stage_epochs(model: MultiLabelModel, job: JobSpec) -> list[int]:
    total = int(job.budget["epochs"])
    split = job.budget.get("stage_split")
    epochs = list(split) if split else model.stage_epochs(total)
    if len(epochs) != len(model.stages) or sum(epochs) != total or min(epochs) < 0:
        raise BenchError(f"budget stage_split={epochs} must give {len(model.stages)} stage(s) "
                         f"{list(model.stages)} whose epochs sum to epochs={total}")
    return epochs


def run_job(job: JobSpec, store: Store, *, device: str | None = None, threads: int | None = None,
            progress: bool = True) -> dict[str, Any]:
    """Run (or resume) ``job``; return its record. Done jobs return their stored record.

    Under torchrun or a multi-task Slurm step the job runs data-parallel (bench.run.distributed):
    rank 0 does everything below, the other ranks only train (_follow).
    """
    jd = store.job_dir(job)
    dist = distributed.init_from_env(resolve_device(device))  # DDP: no-op for one process
    if not dist.is_main:  # DDP
        return _follow(job, jd, dist.device, threads)
    if jd.is_done:
        distributed.tell_followers("done")  # DDP
        return json.loads(jd.record_file.read_text())
    with jd.lock() as got:
        if not got:
            distributed.tell_followers("busy")  # DDP
            raise BenchError(f"job {job.job_id} is running elsewhere (lock held on {jd.path}/lock)")
        if jd.is_done:  # finished by another process while we waited
            distributed.tell_followers("done")  # DDP
            return json.loads(jd.record_file.read_text())
        jd.write_job(job)
        distributed.tell_followers("go")  # DDP
        try:
            record, predictions = _run(job, jd, dist.device, threads, progress)
        except Exception:
            jd.mark_failed(traceback.format_exc())
            distributed.abort_process(job.job_id)  # DDP: ends the process when W > 1
            raise
        jd.finish(record, predictions)
    distributed.barrier()  # DDP: the other ranks return once the record is written
    return record


def _follow(job: JobSpec, jd: JobDir, device: str, threads: int | None) -> dict[str, Any]:
    """DDP, ranks > 0: train in step with rank 0, write nothing, return rank 0's record."""
    decision = distributed.leader_decision()
    if decision == "busy":
        raise BenchError(f"job {job.job_id} is running elsewhere (lock held on {jd.path}/lock)")
    if decision == "go":
        try:
            _run(job, jd, device, threads, progress=False)
            distributed.barrier()  # until rank 0 has written the record
        except Exception:
            distributed.abort_process(job.job_id)
    return json.loads(jd.record_file.read_text())


@dataclass
class Job:
    """What one run holds while it trains: the built pieces and the state a checkpoint saves."""

    spec: JobSpec
    jd: JobDir
    data: datasets.MultiLabelData
    model: MultiLabelModel
    feed: Feed
    rt: Runtime
    epochs: list[int]
    progress: bool
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=lambda: {"val_mAP": -math.inf, "epoch": 0, "state": None,
                                                          "weights": "plain"})
    train_s: float = 0.0
    collapse: dict | None = None
    bar: JobBar | None = None  # the terminal's per-job progress bar (bench.run.progress)


def _run(job: JobSpec, jd: JobDir, device: str, threads: int | None,
         progress: bool) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The table of contents of a job: set up, build, resume, train each stage, evaluate, record."""
    started, t0 = now(), time.perf_counter()
    threads = threads or int(os.environ.get("BENCH_THREADS", 0)) or os.cpu_count() or 1
    torch.set_num_threads(threads)
    rt = _runtime(job, device)
    run, hp, pretraining = _build(job, jd, device, rt, progress)
    state = _resume(run)
    steps = len(run.data.train) // int(job.budget["batch_size"])
    run.bar = JobBar(f"{job.display_name} seed {job.seed}", sum(run.epochs) * steps, len(run.history) * steps,
                     progress and distributed.is_main())
    prior_s = run.train_s  # time spent before a resume (training only; earlier overheads are not kept)
    for si, stage in enumerate(run.model.stages):
        _train_stage(run, si, stage, state)
    run.bar.close()
    e0 = time.perf_counter()
    metrics, predictions, trick = final_evaluation(run.model, job, run.data, run.best, run.feed)
    if not distributed.is_main():  # DDP: ranks > 0 scored their shards; rank 0 records
        return {}, {}
    timing = {"wall_s": round(time.perf_counter() - t0 + prior_s, 2), "eval_s": round(time.perf_counter() - e0, 2),
              "resumed": state is not None}
    record = _record(run, hp, metrics, trick, pretraining, timing, device, threads, started)
    return record, predictions


def _runtime(job: JobSpec, device: str) -> Runtime:
    rt = Runtime.from_budget(job.budget)
    problem = unsupported(rt.precision, device)
    if problem:
        raise BenchError(f"budget.precision={rt.precision}: {problem}")
    if device.startswith("cuda"):
        torch.backends.cudnn.benchmark = rt.cudnn_benchmark
    return rt


def _build(job: JobSpec, jd: JobDir, device: str, rt: Runtime, progress: bool) -> tuple[Job, dict, dict | None]:
    """Data, feed and model (seeded init, pretrained weights, memory format, compile)."""
    spec = methods.get(job.method)
    hp = spec.resolve(job.hparams)
    data = load_job_data(job)
    feed = Feed(device, job.budget["normalize"], rt.workers, rt.channels_last, rt.precision)
    in_chans = model_in_chans(data.in_chans, feed.normalize)
    backbone_options, pretraining = backbone_weights(job, in_chans, progress)
    torch.manual_seed(derived_seed(job.seed, "init"))
    ctx = BuildContext(num_classes=data.num_classes, class_names=data.classes,
                       train_targets=data.train.targets, backbone=job.backbone["name"],
                       backbone_options=backbone_options,
                       resolution=int(job.budget["resolution"]), in_chans=in_chans, device=device)
    model = spec.build(ctx, hp).to(device)
    if rt.sync_batchnorm:  # DDP: global-batch BatchNorm statistics (a no-op with one process)
        model = syncbn.convert(model)
    if rt.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return Job(job, jd, data, model, feed, rt, stage_epochs(model, job), progress), hp, pretraining


def _resume(run: Job) -> dict[str, Any] | None:
    """Restore the last checkpoint (weights, history, best, timing) if there is one."""
    state = load_checkpoint(run.jd, run.model)
    job = run.spec
    if state is not None:
        if run.progress:
            print(f"resuming {job.display_name} seed {job.seed} ({job.job_id}) from epoch "
                  f"{len(state['history'])} of {sum(run.epochs)}", flush=True)
        run.history, run.best, run.train_s = state["history"], state["best"], state["train_s"]
        run.collapse = state.get("collapse")
    if run.rt.compile:  # in place, after loading: the state_dict keys (checkpoints, EMA) stay the same
        getattr(run.model, "backbone", run.model).compile()
    distributed.broadcast_state(run.model)  # DDP: every rank starts from rank 0's weights
    return state


def _train_stage(run: Job, si: int, stage: str, state: dict[str, Any] | None) -> None:
    """Train stage ``si`` for its epochs (from where a checkpoint left it)."""
    job, model, data, n_epochs = run.spec, run.model, run.data, run.epochs[si]
    first_stage = state["stage_index"] if state else 0
    done = state["epochs_done"] if state and si == first_stage else 0
    if si < first_stage or n_epochs == 0 or done >= n_epochs:
        return
    bs, ebs = int(job.budget["batch_size"]), int(job.budget["eval_batch_size"])
    recipe = stage_recipe(job, stage)
    model.prepare_stage(stage, StageContext(
        stage=stage, stage_index=si, epochs=n_epochs, device=run.feed.device,
        iterate_train=lambda: run.feed.plain(distributed.shard_split(data.train, ebs), ebs),  # DDP: a shard
        train_targets=data.train.targets, resuming=done > 0))
    params = [p for p in model.trainable_parameters(stage) if p.requires_grad]
    opt = build_optimizer(optimizer_groups(model, stage, params, job.protocol, recipe["optimizer"]),
                          recipe["optimizer"])
    steps = len(data.train) // bs
    sched = build_schedule(opt, recipe["optimizer"], n_epochs, steps)
    scaler = grad_scaler(run.feed.device, run.rt.precision)
    ema = make_ema(model, recipe["ema"])
    if done > 0:
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state.get("scaler") or {})
        load_ema_state(ema, state.get("ema"))
    step = Step(opt, sched, scaler, ema, params, job.optimizer.get("grad_clip"), run.rt,
                sum(h.get("nonfinite_steps", 0) for h in run.history),
                distributed.data_parallel(model))  # DDP: None with one process
    for epoch in range(done, n_epochs):
        e0 = time.perf_counter()
        seed = derived_seed(job.seed, si, epoch)
        torch.manual_seed(seed)  # dropout and any in-model randomness replay identically on resume
        gen = torch.Generator().manual_seed(seed)
        result = train_epoch(model, stage, data.train, epoch_batches(len(data.train), bs, gen), feed=run.feed,
                             step=step, aug=recipe["augmentation"], n_views=model.views(stage), generator=gen,
                             progress=run.bar.wrap if run.bar else None)
        step.nonfinite_before += result.nonfinite_steps
        seconds = time.perf_counter() - e0
        run.train_s += seconds
        entry: dict[str, Any] = {"stage": stage, "epoch": epoch + 1, "train_loss": result.loss,
                                 "val_mAP": None, "lr": float(f"{opt.param_groups[-1]['lr']:.6g}"),
                                 "seconds": round(seconds, 3), "images_per_s": round(steps * bs / seconds, 1),
                                 **result.parts, **({"nonfinite_steps": result.nonfinite_steps}
                                                    if result.nonfinite_steps else {})}
        _end_epoch(run, si, stage, epoch + 1, n_epochs, entry, opt, sched, scaler, ema)


def _end_epoch(run: Job, si: int, stage: str, epoch: int, n_epochs: int, entry: dict[str, Any],
               opt: Any, sched: Any, scaler: Any, ema: Any) -> None:
    """Validate (selection stage), check collapse (after the checked stage), checkpoint, log.
    Under DDP every rank scores its shard of validation with rank 0's BatchNorm statistics, rank 0
    selects and writes; every rank meets at the barrier."""
    job, model, main = run.spec, run.model, distributed.is_main()
    if stage == model.selection_stage():
        for net in (model, getattr(ema, "module", None)):
            distributed.broadcast_state(net)  # DDP: no-op with one process
        run.best = validate(model, ema, run.data, job, run.feed, epoch, entry, run.best)
    run.history.append(entry)
    if epoch == n_epochs and stage == getattr(model, "checked_stage", None):
        batches = run.feed.plain(run.data.val, int(job.budget["eval_batch_size"]))
        run.collapse = _collapse_check(model, job, batches, stage, run.progress)
    if main:
        save_checkpoint(run.jd, model=model, opt=opt, sched=sched, scaler=scaler, ema_state=ema_state(ema),
                        stage_index=si, epochs_done=epoch, best=run.best, history=run.history,
                        train_s=run.train_s, collapse=run.collapse)
        write_epoch_log(run.jd.path / "summary.csv", run.history)
    distributed.barrier()
    if run.progress:
        ema_txt = "" if entry.get("val_mAP_ema") is None else f" (EMA {entry['val_mAP_ema']:.2f})"
        val = "-" if entry["val_mAP"] is None else format(entry["val_mAP"], ".2f")
        (run.bar or JobBar("", 0, 0, False)).say(
            f"  {job.display_name} seed {job.seed} {stage} epoch {epoch}/{n_epochs}: loss {entry['train_loss']:.4f} "
            f"val mAP {val}{ema_txt} ({entry['images_per_s']} img/s)")


def _record(run: Job, hp: dict, metrics: dict, trick: dict | None, pretraining: dict | None,
            timing: dict[str, Any], device: str, threads: int, started: str) -> dict[str, Any]:
    job, model, data, bs = run.spec, run.model, run.data, int(run.spec.budget["batch_size"])
    weights = getattr(getattr(model, "backbone", None), "weights_info", None)
    images = sum(run.epochs) * (len(data.train) // bs) * bs
    return {
        "job_id": job.job_id, "job": job.to_dict(), "status": "done",
        "metrics": metrics, "selected_epoch": run.best["epoch"], "epochs": int(job.budget["epochs"]),
        "selected_weights": run.best.get("weights", "plain"),
        "stages": [{"name": s, "epochs": e, "recipe": stage_recipe(job, s)} for s, e in zip(model.stages, run.epochs)],
        "history": run.history, "training_free": trick,
        "convergence": convergence(run.history), "collapse": run.collapse,
        "nonfinite_steps": sum(h.get("nonfinite_steps", 0) for h in run.history),
        "runtime": asdict(run.rt),
        "backbone_weights": None if weights is None else {**weights, "pretraining": pretraining},
        "timing": {"wall_s": timing["wall_s"], "train_s": round(run.train_s, 2), "eval_s": timing["eval_s"],
                   "train_images_per_s": round(images / max(run.train_s, 1e-9), 1), "resumed": timing["resumed"]},
        "distributed": distributed.record_fields(),  # DDP: world_size, backend
        "model": {"params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 4)},
        "hparams_resolved": hp,
        "data": {"name": data.name, "fingerprint": data.fingerprint, "classes": list(data.classes),
                 "n_train": len(data.train), "n_val": len(data.val), "n_test": len(data.test),
                 "chance_mAP": chance_map(data.test.targets),
                 "conventions": dict(data.conventions)},
        "evaluation": convention_record(job.evaluation["convention"]),
        "provenance": {**provenance(device, threads), "started_at": started, "finished_at": now()},
    }


def stage_recipe(job: JobSpec, stage: str) -> dict[str, Any]:
    """The optimiser, augmentation and EMA decay of ``stage``: the job's, with a paper recipe's
    per-stage overrides (``budget.stage_recipe``, e.g. IML-GCN's stage 1 = ASL's recipe)."""
    over = (job.budget.get("stage_recipe") or {}).get(stage, {})
    return {"optimizer": {**job.optimizer, **over.get("optimizer", {})},
            "augmentation": over.get("augmentation", job.budget["augmentation"]),
            "ema": over.get("ema", job.budget.get("ema"))}


def _collapse_check(model: MultiLabelModel, job: JobSpec, batches, stage: str, progress: bool) -> dict:
    collapse = model.representation_check(batches)
    if progress:
        print(f"  {job.display_name} seed {job.seed} after {stage}: "
              f"{'COLLAPSED' if collapse['collapsed'] else 'not collapsed'} "
              f"(dead {collapse['dead_fraction']:.2f}, similarity sd {collapse['similarity_std']:.4f}, "
              f"effective rank {collapse['effective_rank']:.1f})", flush=True)
    return collapse
