"""Label graph (both adjacency variants), the real ML-GCN graph files, ML-GCN and IML-GCN."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import methods
from methods.base import BuildContext, HparamError, StageContext
from methods.embeddings import load_numpy_pickle
from methods.graph import adjacency, binarised_conditional, cooccurrence

C = 10
REF = Path(__file__).resolve().parents[2] / "shared" / "reference-data" / "ml-gcn"

# 4 images, 3 classes; the -1 (ignored) entry must not count as positive.
TARGETS = np.array([[1, 1, 0], [1, 0, -1], [1, 1, 1], [0, 1, 1]], dtype=np.float32)


def test_cooccurrence_counts():
    m, n = cooccurrence(TARGETS)
    np.testing.assert_array_equal(n, [3, 3, 2])
    np.testing.assert_array_equal(m, [[0, 2, 1], [2, 0, 2], [1, 2, 0]])


def test_adjacency_paper_variant_by_hand():
    # P(j|i): row0 [0, 2/3, 1/3], row1 [2/3, 0, 2/3], row2 [1/2, 1, 0]; t = 0.5 ->
    # A = [[0,1,0],[1,0,1],[1,1,0]]; p = 0.2: off-diagonal 0.2 / row count, diagonal 0.8.
    m, n = cooccurrence(TARGETS)
    expected = [[0.8, 0.2, 0.0], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]]
    torch.testing.assert_close(adjacency(m, n, 0.5, None, "paper"), torch.tensor(expected))
    torch.testing.assert_close(adjacency(m, n, 0.5, 0.4, "paper")[1], torch.tensor([0.2, 0.6, 0.2]))


def test_adjacency_reference_variant_by_hand():
    # column sums of A = [2, 2, 1]; A' = A * 0.25 / colsum + I =
    # [[1, .125, 0], [.125, 1, .25], [.125, .125, 1]]; row sums r = [1.125, 1.375, 1.25];
    # out_ij = A'_ji / sqrt(r_i r_j)  (D^-1/2 A'^T D^-1/2)
    m, n = cooccurrence(TARGETS)
    r = [1.125, 1.375, 1.25]
    a_t = [[1, 0.125, 0.125], [0.125, 1, 0.125], [0, 0.25, 1]]
    expected = [[a_t[i][j] / math.sqrt(r[i] * r[j]) for j in range(3)] for i in range(3)]
    torch.testing.assert_close(adjacency(m, n, 0.5, None, "reference"), torch.tensor(expected),
                               rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError):
        adjacency(m, n, 0.5, None, "symmetric")


@pytest.mark.skipif(not REF.is_dir(), reason=f"ML-GCN reference files not found at {REF}")
@pytest.mark.parametrize("name, edges, person, classes", [("coco", 111, 49, 80), ("voc", 6, 14, 20)])
def test_real_mlgcn_graph_files(name, edges, person, classes):
    data = load_numpy_pickle(str(REF / f"{name}_adj.pkl"))
    m, n = data["adj"], data["nums"]
    assert m.shape == (classes, classes) and int(np.argmax(n)) == person  # alphabetical order
    assert int(binarised_conditional(m, n, 0.4).sum()) == edges
    for variant in ("paper", "reference"):
        adj = adjacency(m, n, 0.4, None, variant)
        assert adj.shape == (classes, classes) and torch.isfinite(adj).all()
    paper = adjacency(m, n, 0.4, None, "paper")
    has_edge = binarised_conditional(m, n, 0.4).sum(1) > 0
    torch.testing.assert_close(paper.sum(1)[torch.from_numpy(has_edge)],
                               torch.ones(int(has_edge.sum())))


def _ctx(backbone_options=None) -> BuildContext:
    rng = np.random.default_rng(0)
    return BuildContext(num_classes=C, class_names=tuple(f"c{i}" for i in range(C)),
                        train_targets=(rng.random((40, C)) < 0.3).astype(np.float32),
                        backbone="smallcnn", backbone_options=backbone_options or {},
                        resolution=32, in_chans=1)


def _batches():
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(4, 1, 32, 32, generator=g), (torch.rand(4, C, generator=g) < 0.4).float())
            for _ in range(2)]


def _train_stages(model, steps=5):
    batches = _batches()
    history = {}
    for i, (stage, epochs) in enumerate(zip(model.stages, model.stage_epochs(6))):
        model.prepare_stage(stage, StageContext(stage, i, epochs, "cpu", lambda: iter(batches),
                                                np.zeros((8, C))))
        model.train()
        opt = torch.optim.Adam(list(model.trainable_parameters(stage)), lr=3e-4)
        x, y = batches[0]
        losses = []
        for _ in range(steps):
            loss = model.loss([x], y, stage)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        history[stage] = losses
    return history


@pytest.mark.parametrize("method, hp", [
    ("mlgcn", {"embeddings": "onehot"}),
    ("mlgcn", {"embeddings": "random", "adjacency_variant": "reference", "pooling": "avg"}),
    ("imlgcn", {}), ("imlgcn", {"node_features": "image", "freeze_backbone": True}),
    ("imlgcn", {"node_features": "word", "embeddings": "onehot"}),
])
def test_methods_train_every_stage(method, hp):
    torch.manual_seed(0)
    spec = methods.get(method)
    model = spec.build(_ctx(), spec.resolve(hp))
    history = _train_stages(model)
    assert set(history) == set(model.stages)
    for losses in history.values():
        assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0], losses
    model.eval()
    assert model(_batches()[0][0]).shape == (4, C)


def test_mlgcn_network_loss_and_graph_from_training_labels():
    ctx = _ctx()
    spec = methods.get("mlgcn")
    hp = spec.resolve({"embeddings": "random", "threshold": 0.3})
    assert spec.resolve()["threshold"] == 0.4 and spec.resolve()["pooling"] == "max"
    model = spec.build(ctx, hp).eval()
    m, n = cooccurrence(ctx.train_targets)
    torch.testing.assert_close(model.gcn.adjacency, adjacency(m, n, 0.3, None, "paper"))
    x, y = _batches()[0]
    a, w1, w2 = model.gcn.adjacency, model.gcn.weight1, model.gcn.weight2
    classifiers = a @ nn.functional.leaky_relu(a @ model.node_features @ w1, 0.2) @ w2
    pooled = model.features(x).amax(dim=(2, 3))
    torch.testing.assert_close(model(x), pooled @ classifiers.t(), rtol=1e-4, atol=1e-5)
    assert classifiers.shape == (C, model.backbone.num_features)
    logits = model(x)
    torch.testing.assert_close(model.loss([x], y, "train"),
                               nn.MultiLabelSoftMarginLoss()(logits, y), rtol=1e-5, atol=1e-6)


def test_imlgcn_node_features_by_hand_and_resume():
    torch.manual_seed(0)
    spec = methods.get("imlgcn")
    ctx = _ctx()
    model = spec.build(ctx, spec.resolve({"node_features": "image"}))
    assert model.stage_epochs(6) == [3, 3] and model.stage_epochs(1) == [0, 1]
    batches = _batches()
    model.prepare_stage("graph", StageContext("graph", 1, 3, "cpu", lambda: iter(batches), ctx.train_targets))
    model.eval()
    with torch.no_grad():
        feats = torch.cat([model.features(x).mean(dim=(2, 3)) for x, _ in batches])
    ys = torch.cat([y for _, y in batches])
    expected = torch.stack([feats[ys[:, c] == 1].mean(0) if (ys[:, c] == 1).any() else feats.mean(0)
                            for c in range(C)])
    torch.testing.assert_close(model.node_features, expected, rtol=1e-4, atol=1e-5)
    # a resumed run keeps the stored node features and never recomputes them
    again = spec.build(ctx, spec.resolve({"node_features": "image"}))
    again.load_state_dict(model.state_dict())

    def no_pass():
        raise AssertionError("node features recomputed on resume")
    again.prepare_stage("graph", StageContext("graph", 1, 3, "cpu", no_pass, ctx.train_targets))
    torch.testing.assert_close(again.node_features, model.node_features)

    pca_model = spec.build(ctx, spec.resolve({"node_features": "pca"}))
    pca_model.load_state_dict({k: v for k, v in model.state_dict().items()
                               if not k.startswith(("node_features", "gcn.weight1"))}, strict=False)
    pca_model.prepare_stage("graph", StageContext("graph", 1, 3, "cpu", lambda: iter(batches), ctx.train_targets))
    f_pca = pca_model.node_features
    assert f_pca.shape == (C, C)
    centred = expected - expected.mean(0, keepdim=True)  # PCA keeps the centred Gram matrix
    torch.testing.assert_close(f_pca @ f_pca.t(), centred @ centred.t(), rtol=1e-3, atol=1e-4)


def test_imlgcn_freeze_backbone_in_graph_stage():
    spec = methods.get("imlgcn")
    model = spec.build(_ctx(), spec.resolve({"freeze_backbone": True}))
    batches = _batches()
    model.prepare_stage("graph", StageContext("graph", 1, 3, "cpu", lambda: iter(batches), np.zeros((8, C))))
    params = list(model.trainable_parameters("graph"))
    assert all(not any(p is q for q in model.backbone.parameters()) for p in params)
    model.train()
    assert not model.backbone.training and model.gcn.training


@pytest.mark.parametrize("method, bad", [
    ("mlgcn", {"threshold": 0.0}), ("mlgcn", {"adjacency_variant": "sym"}), ("mlgcn", {"pooling": "sum"}),
    ("mlgcn", {"embeddings": "word2vec"}), ("mlgcn", {"embeddings": "file:/x.pkl"}),
    ("mlgcn", {"adj_p": 1.5}), ("mlgcn", {"gcn_hidden": 0}), ("imlgcn", {"node_features": "text"}),
    ("imlgcn", {"stage1_fraction": 1.0}), ("imlgcn", {"stage1_fraction": 0.0}),
])
def test_bad_hparams(method, bad):
    with pytest.raises(HparamError):
        methods.get(method).resolve(bad)
