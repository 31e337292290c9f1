"""Issue 29: a W-process step is the 1-process step of the same global batch (2 CPU processes, gloo).

One training step (bench.train.loop.train_epoch, SGD lr 1, so the weights after it carry the
gradient) of ProbMCL (both stages) and KMCL on a tiny smallcnn, run by one process on the global
batch of 8 images and by 2 processes through torch's DistributedDataParallel
(bench.run.distributed.data_parallel), SyncBatchNorm (bench.run.syncbn) and the contrastive terms'
all_gather with gradient (methods/global_batch.py): the epoch loss, its parts, the weights after the
step (= the DDP-averaged gradients) and the BatchNorm running statistics agree to float rounding,
also with 2 micro-batches a step (DDP's no_sync). Without the gather (each rank's contrastive
terms on its own 4 images) or without SyncBatchNorm they do not (checked below).
"""
from __future__ import annotations

import socket

import numpy as np
import pytest
import torch

import methods
from bench.data.base import Split
from bench.run import distributed, syncbn
from bench.train.data import Feed
from bench.train.loop import Step, train_epoch
from bench.train.precision import grad_scaler
from bench.train.settings import Runtime
from helpers import spawn_ranks
from methods.base import BuildContext

pytestmark = pytest.mark.timeout(120)

#: (method, stage, accumulate, hyperparameters)
CASES = [("probmcl", "contrastive", 2, {"n_dims": 6, "mdn_hidden": 12, "alpha": 0.3}),
         ("probmcl", "classification", 1, {"n_dims": 6, "mdn_hidden": 12, "stage2": "fine-tune"}),
         ("kmcl", "train", 1, {"n_dims": 6}),
         ("kmcl", "train", 2, {"n_dims": 6, "covariance": "isotropic"})]


def _data() -> Split:
    g = np.random.default_rng(3)
    targets = (g.random((8, 5)) < 0.5).astype(np.int8)
    targets[:, 0] = 1  # every image shares class 0: every anchor has positives
    targets[2, 4] = -1
    return Split(g.integers(0, 256, (8, 16, 16, 3), dtype=np.uint8), targets, tuple(map(str, range(8))))


def _step(method: str, stage: str, accumulate: int, hp: dict, sync: bool = True) -> dict:
    """One SGD step on the global batch; in a 2-process group each rank takes its half."""
    spec = methods.get(method)
    torch.manual_seed(0)
    ctx = BuildContext(num_classes=5, class_names=tuple("abcde"), train_targets=np.ones((1, 5)),
                       backbone="smallcnn", backbone_options={"widths": (4, 6, 8)}, resolution=16)
    model = spec.build(ctx, spec.resolve(hp))
    model = syncbn.convert(model) if sync else model
    model.prepare_stage(stage, None)  # type: ignore[arg-type]  (neither method reads the context)
    params = [p for p in model.trainable_parameters(stage) if p.requires_grad]
    opt = torch.optim.SGD(params, lr=1.0)
    step = Step(opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 1.0), grad_scaler("cpu", "fp32"), None,
                params, None, Runtime(accumulate=accumulate), 0, distributed.data_parallel(model))
    result = train_epoch(model, stage, _data(), [np.arange(8)], feed=Feed("cpu"), step=step, aug="shift",
                         n_views=model.views(stage), generator=torch.Generator().manual_seed(1))
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return {"loss": result.loss, "parts": result.parts, "state": state}


def _worker(rank: int, port: int, out: str, gather: bool) -> None:
    env = {"RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank), "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(port)}
    distributed.init_from_env("cpu", env)
    torch.set_num_threads(1)
    if gather:
        torch.save([_step(*case) for case in CASES], f"{out}/rank{rank}.pt")
    else:  # as before issue 29: per-rank BatchNorm; contrastive terms and sums on the rank's own samples
        unsynced = _step(*CASES[1], sync=False)
        import methods.global_batch as gb
        import methods.loss_utils as lu
        gb.world_size = lu.world_size = lambda: 1
        torch.save([unsynced] + [_step(*case) for case in CASES], f"{out}/rank{rank}.pt")
    torch.distributed.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_process(tmp_path, gather: bool = True) -> list[list[dict]]:
    spawn_ranks(_worker, (_free_port(), str(tmp_path), gather))
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1)]


def test_two_process_step_equals_one_process_step_on_the_global_batch(tmp_path):
    ranks = _two_process(tmp_path)
    for case, *got in zip(CASES, *ranks):
        want = _step(*case)  # this process has no process group: one process, plain BatchNorm
        for rank, g in enumerate(got):
            assert g["loss"] == pytest.approx(want["loss"], rel=1e-5, abs=1e-6), (case, rank)
            assert g["parts"] == pytest.approx(want["parts"], rel=1e-5, abs=1e-6), (case, rank)
            assert set(g["state"]) == set(want["state"])
            for name, value in want["state"].items():  # weights after SGD lr 1, BatchNorm statistics
                torch.testing.assert_close(g["state"][name], value, rtol=1e-4, atol=1e-5,
                                           msg=lambda m: f"{case} rank {rank} {name}: {m}")
    bn = [k for k in want["state"] if k.endswith("running_var")]
    assert bn and all(not torch.equal(want["state"][k], torch.ones_like(want["state"][k])) for k in bn)


def test_without_the_gather_or_syncbn_the_step_differs(tmp_path):
    """The check above can fail: as before issue 29 (rank-local contrastive terms and sums, per-rank
    BatchNorm statistics) the numbers differ."""
    unsynced, *no_gather = _two_process(tmp_path, gather=False)[0]
    for case, got in zip(CASES, no_gather):
        want = _step(*case)
        assert abs(got["loss"] - want["loss"]) > 1e-3 * max(1.0, abs(want["loss"])), case
    want = _step(*CASES[1])["state"]
    means = [k for k in want if k.endswith("running_mean")]
    assert all(not torch.allclose(unsynced["state"][k], want[k], rtol=1e-3, atol=1e-4) for k in means)
