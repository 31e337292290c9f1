"""Issue 29: every full-data pass of a data-parallel job is sharded over the ranks and gives the
1-process result (2 CPU processes, gloo).

Each rank scores a contiguous run of WHOLE evaluation batches (bench.run.distributed.shard_split),
so every image is scored in the same batch as with one process: the scores gathered on rank 0 are
bit-identical to the 1-process ones, in the split's order, and so are the metrics (validation mAP,
CSRA's training-free trick). IML-GCN's node features (a pass over the training split) are the
all-reduced class sums of the shards: equal to float rounding.
"""
from __future__ import annotations

import socket

import numpy as np
import pytest
import torch

import methods
from bench.data.base import Split
from bench.evaluate import job as evaluation
from bench.evaluate.metrics import evaluate
from bench.run import distributed
from bench.train.data import Feed
from helpers import spawn_ranks
from methods.base import BuildContext
from methods.imlgcn import class_mean_features

pytestmark = pytest.mark.timeout(120)

N, EBS, LAMBDAS = 37, 8, [0.1, 0.5]  # 5 batches (the last one short) over 2 ranks: 3 + 2


def _split() -> Split:
    g = np.random.default_rng(5)
    targets = (g.random((N, 4)) < 0.4).astype(np.int8)
    targets[0] = 1
    return Split(g.integers(0, 256, (N, 16, 16, 3), dtype=np.uint8), targets, tuple(map(str, range(N))))


def _model(method: str) -> torch.nn.Module:
    spec = methods.get(method)
    torch.manual_seed(0)
    ctx = BuildContext(num_classes=4, class_names=tuple("abcd"), train_targets=np.ones((1, 4)),
                       backbone="smallcnn", backbone_options={"widths": (4, 6, 8)}, resolution=16)
    model = spec.build(ctx, spec.resolve({}))
    with torch.no_grad():  # non-trivial BatchNorm running statistics
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def _passes() -> dict:
    """Scores, trick scores and IML-GCN node features; None on ranks > 0 where rank 0 gathers."""
    split, feed = _split(), Feed("cpu")
    model = _model("baseline")
    scores = evaluation._scores(model, split, EBS, feed)
    trick = evaluation._trick_scores(model, split, LAMBDAS, EBS, feed)
    imlgcn = _model("imlgcn")
    nodes = class_mean_features(lambda: feed.plain(distributed.shard_split(split, EBS), EBS), imlgcn, 4)
    # one batch (eval_batch_size > the split): rank 1's shard is empty
    one = evaluation._scores(model, split, 64, feed)
    nodes_one = class_mean_features(lambda: feed.plain(distributed.shard_split(split, 64), 64), imlgcn, 4)
    return {"scores": scores, "trick": trick, "nodes": nodes, "one": one, "nodes_one": nodes_one}


def _worker(rank: int, port: int, out: str) -> None:
    env = {"RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank), "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(port)}
    distributed.init_from_env("cpu", env)
    torch.set_num_threads(1)
    torch.save({"passes": _passes(), "shard": len(distributed.shard_split(_split(), EBS))}, f"{out}/rank{rank}.pt")
    torch.distributed.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sharded_passes_equal_the_one_process_passes(tmp_path):
    spawn_ranks(_worker, (_free_port(), str(tmp_path)))
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    assert (r0["shard"], r1["shard"]) == (24, 13)  # whole batches of 8: 3 and 2 (the short one)
    want = _passes()  # this process: no process group, the unsharded passes
    assert r1["passes"]["scores"] is None and r1["passes"]["trick"] is None  # rank 0 alone gathers
    got = r0["passes"]
    assert got["scores"].shape == (N, 4) and np.array_equal(got["scores"], want["scores"])
    conv = "paper"
    assert evaluate(got["scores"], _split().targets, conv) == evaluate(want["scores"], _split().targets, conv)
    assert sorted(got["trick"]) == LAMBDAS
    for lam in LAMBDAS:
        assert np.array_equal(got["trick"][lam], want["trick"][lam])
    assert np.array_equal(got["one"], want["one"]) and r1["passes"]["one"] is None
    for rank in (r0, r1):  # every rank has the node features of the whole split
        torch.testing.assert_close(rank["passes"]["nodes"], want["nodes"], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(rank["passes"]["nodes_one"], want["nodes_one"], rtol=1e-5, atol=1e-6)
    # the checks can fail: the first rank's shard alone is not the whole split
    assert not torch.allclose(class_mean_features(
        lambda: Feed("cpu").plain(Split(_split().images[:24], _split().targets[:24], tuple(map(str, range(24)))),
                                  EBS), _model("imlgcn"), 4), want["nodes"], rtol=1e-5, atol=1e-6)


def test_shard_split_is_contiguous_whole_batches(monkeypatch):
    split = _split()
    seen = []
    for rank in range(3):
        monkeypatch.setattr(distributed, "_current", distributed.DistInfo(rank=rank, world_size=3, backend="gloo"))
        shard = distributed.shard_split(split, EBS)
        seen += list(shard.ids)
        assert len(shard) % EBS == 0 or rank == 2
        if len(shard):
            assert np.array_equal(shard.images[np.arange(len(shard))], split.images[int(shard.ids[0]):][:len(shard)])
            assert np.array_equal(shard.images[1:3], split.images[int(shard.ids[0]) + 1:int(shard.ids[0]) + 3])
    assert seen == list(split.ids)
