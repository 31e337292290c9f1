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

import copy
import functools
import io
import json
import math
import os
import time
import traceback
from typing import Any

import numpy as np
import torch

import methods
from bench import data as datasets
from bench import distributed
from bench.augment import model_in_chans
from bench.convergence import chance_map, convergence, write_epoch_log
from bench.errors import BenchError
from bench.jobs import JobSpec, canonical_json
from bench.metrics import convention_record, evaluate
from bench.provenance import now, provenance
from bench.store import JobDir, Store, atomic_write_bytes
from bench.thresholds import tuned_metrics
from bench.training import (batch_views, build_optimizer, build_schedule, derived_seed, epoch_batches,
                            iterate_plain, optimizer_groups, predict_scores, predict_training_free)
from methods.base import BuildContext, MultiLabelModel, StageContext

CACHE_DIR = os.environ.get("BENCH_CACHE_DIR", ".cache/data")


@functools.lru_cache(maxsize=4)
def _load_data(dataset_json: str, resolution: int, data_root: str | None) -> datasets.MultiLabelData:
    spec = json.loads(dataset_json)
    return datasets.load(spec["name"], spec.get("options"), resolution=resolution,
                         data_root=data_root, cache_dir=CACHE_DIR)


def load_job_data(job: JobSpec) -> datasets.MultiLabelData:
    """The job's dataset, loaded once per process (every method and seed share it)."""
    root = job.data_root or os.environ.get("BENCH_DATA_ROOT")
    data = _load_data(canonical_json(job.dataset), int(job.budget["resolution"]), root)
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
    (bench.pretrain, made once), and that pretraining's info for the record (else None)."""
    options = dict(job.backbone.get("options", {}))
    if options.get("weights") != "in-domain":
        return options, None
    from bench.pretrain import in_domain_weights

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

    Under torchrun or a multi-task Slurm step the job runs data-parallel (bench.distributed):
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


def _run(job: JobSpec, jd: JobDir, device: str, threads: int | None,
         progress: bool) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    started, t0 = now(), time.perf_counter()
    threads = threads or int(os.environ.get("BENCH_THREADS", 0)) or os.cpu_count() or 1
    torch.set_num_threads(threads)
    spec = methods.get(job.method)
    hp = spec.resolve(job.hparams)
    data = load_job_data(job)
    budget, norm = job.budget, job.budget["normalize"]
    in_chans = model_in_chans(data.in_chans, norm)
    backbone_options, pretraining = backbone_weights(job, in_chans, progress)
    torch.manual_seed(derived_seed(job.seed, "init"))
    ctx = BuildContext(num_classes=data.num_classes, class_names=data.classes,
                       train_targets=data.train.targets, backbone=job.backbone["name"],
                       backbone_options=backbone_options,
                       resolution=int(budget["resolution"]), in_chans=in_chans, device=device)
    model = spec.build(ctx, hp).to(device)
    epochs = stage_epochs(model, job)
    state = _load_checkpoint(jd, model)
    if state is not None and progress:
        print(f"resuming {job.display_name} seed {job.seed} ({job.job_id}) from epoch "
              f"{len(state['history'])} of {sum(epochs)}", flush=True)
    collapse = state.get("collapse") if state else None
    distributed.broadcast_state(model)  # DDP: every rank starts from rank 0's weights
    history: list[dict[str, Any]] = state["history"] if state else []
    best = state["best"] if state else {"val_mAP": -math.inf, "epoch": 0, "state": None}
    train_s = state["train_s"] if state else 0.0
    prior_s = train_s  # time spent before a resume (training only; earlier overheads are not kept)
    first_stage = state["stage_index"] if state else 0
    bs = int(budget["batch_size"])
    for si, (stage, n_epochs) in enumerate(zip(model.stages, epochs)):
        if si < first_stage:
            continue
        done_in_stage = state["epochs_done"] if state and si == first_stage else 0
        if n_epochs == 0 or done_in_stage >= n_epochs:
            continue
        model.prepare_stage(stage, StageContext(
            stage=stage, stage_index=si, epochs=n_epochs, device=device,
            iterate_train=lambda: iterate_plain(data.train, int(budget["eval_batch_size"]), norm, device),
            train_targets=data.train.targets, resuming=done_in_stage > 0))
        params = [p for p in model.trainable_parameters(stage) if p.requires_grad]
        groups = optimizer_groups(model, stage, params, job.protocol, job.optimizer)
        opt = build_optimizer(groups, job.optimizer)
        steps = len(data.train) // bs
        sched = build_schedule(opt, job.optimizer, n_epochs, steps)
        if state and si == first_stage and done_in_stage > 0:
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
        for epoch in range(done_in_stage, n_epochs):
            e0 = time.perf_counter()
            loss, parts = _train_epoch(model, job, data.train, stage, si, epoch, opt, sched, params, device,
                                       progress)
            seconds = time.perf_counter() - e0
            train_s += seconds
            entry: dict[str, Any] = {"stage": stage, "epoch": epoch + 1, "train_loss": loss,
                                     "val_mAP": None, "lr": float(f"{opt.param_groups[-1]['lr']:.6g}"),
                                     "seconds": round(seconds, 3),
                                     "images_per_s": round(steps * bs / seconds, 1), **parts}
            if stage == model.selection_stage() and distributed.is_main():  # DDP: rank 0 evaluates
                val = evaluate(predict_scores(model, data.val, int(budget["eval_batch_size"]), norm, device),
                               data.val.targets, job.evaluation["convention"])
                entry["val_mAP"] = val["mAP"]
                score = -math.inf if math.isnan(val["mAP"]) else val["mAP"]  # NaN: no positives
                if best["state"] is None or score > best["val_mAP"]:
                    best = {"val_mAP": score, "epoch": epoch + 1,
                            "state": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}
            history.append(entry)
            if epoch + 1 == n_epochs and stage == getattr(model, "checked_stage", None):
                collapse = model.representation_check(
                    iterate_plain(data.val, int(budget["eval_batch_size"]), norm, device))
                if progress:
                    print(f"  {job.display_name} seed {job.seed} after {stage}: "
                          f"{'COLLAPSED' if collapse['collapsed'] else 'not collapsed'} "
                          f"(dead {collapse['dead_fraction']:.2f}, similarity sd {collapse['similarity_std']:.4f}, "
                          f"effective rank {collapse['effective_rank']:.1f})", flush=True)
            if distributed.is_main():  # DDP: rank 0 writes; the others wait at the barrier
                _save_checkpoint(jd, model, opt, sched, si, epoch + 1, best, history, train_s, collapse)
                write_epoch_log(jd.path / "summary.csv", history)
            distributed.barrier()  # DDP
            if progress:
                print(f"  {job.display_name} seed {job.seed} {stage} epoch {epoch + 1}/{n_epochs}: "
                      f"loss {loss:.4f} val mAP {'-' if entry['val_mAP'] is None else format(entry['val_mAP'], '.2f')} "
                      f"({entry['images_per_s']} img/s)", flush=True)
    if not distributed.is_main():  # DDP: ranks > 0 only train
        return {}, {}
    e0 = time.perf_counter()
    record_metrics, predictions, trick = _final_evaluation(model, job, data, best, device)
    eval_s = time.perf_counter() - e0
    weights = getattr(getattr(model, "backbone", None), "weights_info", None)
    record = {
        "job_id": job.job_id, "job": job.to_dict(), "status": "done",
        "metrics": record_metrics, "selected_epoch": best["epoch"], "epochs": int(budget["epochs"]),
        "stages": [{"name": s, "epochs": e} for s, e in zip(model.stages, epochs)],
        "history": history, "training_free": trick,
        "convergence": convergence(history), "collapse": collapse,
        "backbone_weights": None if weights is None else {**weights, "pretraining": pretraining},
        "timing": {"wall_s": round(time.perf_counter() - t0 + prior_s, 2),
                   "train_s": round(train_s, 2), "eval_s": round(eval_s, 2),
                   "train_images_per_s": round(sum(epochs) * (len(data.train) // bs) * bs / max(train_s, 1e-9), 1),
                   "resumed": state is not None},
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
    return record, predictions


def _train_epoch(model: MultiLabelModel, job: JobSpec, train: datasets.Split, stage: str, si: int,
                 epoch: int, opt: torch.optim.Optimizer, sched: Any, params: list, device: str,
                 progress: bool) -> float:
    seed = derived_seed(job.seed, si, epoch)
    torch.manual_seed(seed)  # dropout and any in-model randomness replay identically on resume
    gen = torch.Generator().manual_seed(seed)
    batches = epoch_batches(len(train), int(job.budget["batch_size"]), gen)
    n_views, clip = model.views(stage), job.optimizer.get("grad_clip")
    model.train()
    total = torch.zeros(())
    parts: dict[str, torch.Tensor] = {}
    bar = _progress(batches, f"{job.display_name}/{stage} e{epoch + 1}", progress)
    for step, idx in enumerate(bar):
        views, targets = batch_views(train, idx, n_views, job.budget["augmentation"],
                                     job.budget["normalize"], gen, "cpu")
        views, targets = distributed.shard_batch(views, targets, device)  # DDP: this rank's slice
        loss = model.loss(views, targets, stage)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss {loss.item()} in {job.method} stage {stage} "
                                     f"epoch {epoch + 1} step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        distributed.average_gradients(params)  # DDP: mean over ranks, before clipping
        if clip:
            torch.nn.utils.clip_grad_norm_(params, float(clip))
        opt.step()
        sched.step()
        total += loss.detach().cpu()  # summed on the host once per epoch: no per-step float()
        for name, value in (getattr(model, "loss_parts", None) or {}).items():
            parts[name] = parts.get(name, 0.0) + value.cpu()
        model.loss_parts = None  # a model sets its parts per step (ProbMCL's NLL and lambda x PCL)
    mean = {f"loss_{k}": round(float(v) / len(batches), 6) for k, v in parts.items()}
    return round(distributed.average_scalar(float(total)) / len(batches), 6), mean  # DDP: mean over ranks


def _progress(items: list, desc: str, enabled: bool):
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, leave=False, mininterval=2.0, dynamic_ncols=True,
                disable=None)  # None: only on a terminal


def _final_evaluation(model: MultiLabelModel, job: JobSpec, data: datasets.MultiLabelData,
                      best: dict[str, Any], device: str):
    """Test (and val) metrics at the last and the selected epoch; the training-free trick."""
    ebs, norm, conv = int(job.budget["eval_batch_size"]), job.budget["normalize"], job.evaluation["convention"]

    def both() -> tuple[dict, dict, np.ndarray, np.ndarray]:
        val = predict_scores(model, data.val, ebs, norm, device)
        test = predict_scores(model, data.test, ebs, norm, device)
        return evaluate(val, data.val.targets, conv), evaluate(test, data.test.targets, conv), test, val

    last_val, last_test, _, _ = both()
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    sel_val, sel_test, test_scores, val_scores = both()
    metrics = {"selected": {"val": sel_val, "test": sel_test,
                            "test_tuned": tuned_metrics(val_scores, data.val.targets, test_scores,
                                                        data.test.targets)},
               "last": {"val": last_val, "test": last_test}}
    predictions = {"test_scores": test_scores, "test_targets": data.test.targets.astype(np.int8)}
    trick = None
    if model.linear_classifier() is not None:
        trick = _training_free(model, job, data, sel_test["mAP"], ebs, norm, device)
    return metrics, predictions, trick


def _training_free(model: MultiLabelModel, job: JobSpec, data: datasets.MultiLabelData,
                   baseline_map: float, ebs: int, norm: str, device: str) -> dict[str, Any]:
    from methods.csra import fixed_lambda

    fixed = fixed_lambda(job.backbone["name"])
    lambdas = sorted(set(float(x) for x in job.evaluation["trick_lambdas"]) | {fixed})
    conv = job.evaluation["convention"]
    val = {lam: evaluate(s, data.val.targets, conv)
           for lam, s in predict_training_free(model, data.val, lambdas, ebs, norm, device).items()}
    test = {lam: evaluate(s, data.test.targets, conv)
            for lam, s in predict_training_free(model, data.test, lambdas, ebs, norm, device).items()}
    chosen = max(lambdas, key=lambda lam: (val[lam]["mAP"], -lam))
    return {"applied_to": "selected", "lambdas": lambdas, "fixed_lambda": fixed,
            "val_selected_lambda": chosen, "baseline_test_mAP": baseline_map,
            "val_mAP": {str(k): v["mAP"] for k, v in val.items()},
            "test_mAP": {str(k): v["mAP"] for k, v in test.items()},
            "test": {str(k): v for k, v in test.items()}}


def _save_checkpoint(jd: JobDir, model, opt, sched, stage_index: int, epochs_done: int,
                     best: dict, history: list, train_s: float, collapse: dict | None) -> None:
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(), "stage_index": stage_index,
                "epochs_done": epochs_done, "best": best, "history": copy.deepcopy(history),
                "train_s": train_s, "collapse": collapse}, buf)
    atomic_write_bytes(jd.checkpoint_file, buf.getvalue())


def _load_checkpoint(jd: JobDir, model: MultiLabelModel) -> dict[str, Any] | None:
    if not jd.checkpoint_file.exists():
        return None
    state = torch.load(jd.checkpoint_file, map_location="cpu", weights_only=False)
    model.load_state_dict(state["model"])
    return state
