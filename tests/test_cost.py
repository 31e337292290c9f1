"""bench cost: parameter and MAC counts against hand arithmetic, rows for every method, errors."""
from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch
from torch import nn

import methods
from bench.cost import command as cost_command
from bench.cost import count as cost
from bench.cost.count import CostConfig, configs_for, cost_rows, count, synthetic_targets

SMALL = dict(backbone="smallcnn", resolution=32, num_classes=10, in_chans=1)


def _smallcnn_params(in_chans: int, widths=(24, 48, 96, 192)) -> int:
    """SmallCNN by hand: 3x3 convs without bias + BatchNorm (weight, bias) after each."""
    total, c_in = 0, in_chans
    for i, c in enumerate(widths):
        total += c_in * c * 9 + 2 * c
        if i > 0:
            total += c * c * 9 + 2 * c
        c_in = c
    return total


def test_used_params_of_a_small_model_by_hand():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))
    unused = nn.Linear(100, 100)  # built but never called: must not be counted
    model = nn.ModuleDict({"net": net, "unused": unused})
    expected = (3 * 4 * 9 + 4) + (4 * 36 * 5 + 5)
    macs, used, _ = count(_Call(model), (torch.zeros(1, 3, 8, 8),))
    assert used == expected and macs == 4 * 6 * 6 * 3 * 9 + 4 * 36 * 5


class _Call(nn.Module):
    def __init__(self, inner: nn.ModuleDict) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner["net"](x)


def test_baseline_row_params_by_hand():
    [row] = cost_rows([CostConfig("baseline", **SMALL)])
    # SmallCNN (1 channel) + fc 192 -> 10 with bias
    assert row["params"] == _smallcnn_params(1) + 192 * 10 + 10
    assert row["params_m"] == round(row["params"] / 1e6, 4)
    assert row["mode"] == "inference" and row["error"] is None


def test_macs_of_a_conv_and_a_linear_layer_by_hand():
    conv_macs, params, unsupported = count(nn.Conv2d(3, 8, 3, padding=1, bias=False), (torch.zeros(1, 3, 10, 10),))
    assert conv_macs == 8 * 10 * 10 * 3 * 9 and params == 8 * 3 * 9 and unsupported == {}
    lin_macs, _, _ = count(nn.Linear(20, 5), (torch.zeros(2, 20),))
    assert lin_macs == 2 * 20 * 5  # per batch of 2


def test_synthetic_targets_cooccurrence():
    y = synthetic_targets(4).astype(int)
    assert y.shape == (12, 4) and (y.sum(0) == 5).all()
    m = y.T @ y
    assert m[0, 1] == 2 and m[0, 3] == 2 and m[0, 2] == 0


def test_gcn_branch_is_counted():
    if "mlgcn" not in methods.names():
        pytest.skip("method 'mlgcn' is not registered yet")
    hidden, emb_dim, d, c = 16, 10, 192, SMALL["num_classes"]  # onehot embeddings: C-dim inputs
    base = cost.build_model(CostConfig("baseline", **SMALL))
    ml = cost.build_model(CostConfig("mlgcn", **SMALL, hparams={"gcn_hidden": hidden, "embeddings": "onehot"}))
    image = (torch.zeros(1, 1, 32, 32),)
    gcn_params = emb_dim * hidden + hidden * d  # two bias-free GCN layers
    # ML-GCN = backbone + GCN; the baseline = backbone + fc (d -> C, bias)
    macs_ml, params_ml, _ = count(ml, image)
    macs_base, params_base, _ = count(base, image)
    assert params_ml - params_base == gcn_params - (d * c + c)
    # GCN per image: X W1 (C x e x h) + W2 (C x h x d) + feature @ classifiers^T (d x C),
    # plus the two adjacency products (C x C x h, C x C x d); baseline fc: d x C
    gcn = c * emb_dim * hidden + c * hidden * d + c * c * (hidden + d)
    assert macs_ml - macs_base == gcn


def test_every_registered_method_has_a_default_row():
    rows = cost_rows(configs_for("default"))
    inference = {r["method"]: r for r in rows if r["mode"] == "inference"}
    assert sorted(inference) == sorted(methods.names())
    for r in inference.values():
        assert r["error"] is None and r["params_m"] > 0.5 and r["gmacs"] > 0.01
        # read from sweeps/default.yaml: its resolution and the 20 digits+fashion classes
        assert r["resolution"] == 32 and r["num_classes"] == 20 and r["in_chans"] == 1


def test_unknown_backbone_is_an_error_row_and_the_others_still_come(monkeypatch, tmp_path, capsys):
    table = [CostConfig("baseline", "no_such_net", 32, 10, in_chans=1, label="bad"),
             CostConfig("nosuchmethod", **SMALL), CostConfig("asl", **SMALL)]
    monkeypatch.setitem(cost.COST_CONFIGS, "test-table", lambda: table)
    args = argparse.Namespace(suite="test-table", format="json", results=str(tmp_path), no_save=False,
                              timing=False, timing_batch=2, timing_reps=1, quiet=True)
    assert cost_command.main(args) == 1
    out, err = capsys.readouterr()
    rows = json.loads(out)
    assert [r["mode"] for r in rows] == ["error", "error", "inference"]
    assert "no_such_net" in rows[0]["error"] and "nosuchmethod" in rows[1]["error"]
    assert rows[2]["params_m"] > 0
    assert len([line for line in err.splitlines() if "error" in line]) == 2
    stored = json.loads((tmp_path / "cost" / "test-table.json").read_text())
    assert stored["rows"] == rows and "fvcore" in stored["provenance"]["packages"]
    # deterministic: a second run gives the same rows
    assert cost_command.main(args) == 1
    assert json.loads(capsys.readouterr().out) == rows


def test_paper_values_beside_computed():
    cfg = CostConfig("baseline", **SMALL, paper_key="imlgcn-t1-asl-m")
    [row] = cost_rows([cfg])
    assert row["paper_params_m"] == 29.5 and row["paper_gmacs"] is None
    assert row["params_rel_diff"] == pytest.approx(row["params_m"] / 29.5 - 1, abs=1e-4)
    assert "IML-GCN" in row["paper_source"] and "Table 1" in row["paper_source"]
    assert "backbone alone" in row["note"]  # the gap is explained


def test_dataset_shape_from_options_or_table():
    assert cost.dataset_shape({"name": "coco2014", "options": {}}) == (80, 3)
    assert cost.dataset_shape({"name": "csv", "options": {"num_classes": 7}}) == (7, 3)
    with pytest.raises(ValueError, match="num_classes"):
        cost.dataset_shape({"name": "csv", "options": {}})
    assert np.isfinite(cost.TRAIN_BATCH)


def test_any_suite_file_is_accepted(tmp_path):
    suite = tmp_path / "mini.yaml"
    suite.write_text("name: mini\ndataset: mnist-mosaic\nbackbone: smallcnn\nbudget: {resolution: 32}\n"
                     "methods:\n  - baseline\n  - {method: asl, label: asl-g2, hparams: {gamma_neg: 2.0}}\n")
    configs = configs_for(str(suite))
    assert [(c.method, c.label, c.resolution, c.num_classes, c.in_chans) for c in configs] == [
        ("baseline", "baseline", 32, 10, 1), ("asl", "asl-g2", 32, 10, 1)]
    assert configs[1].hparams["gamma_neg"] == 2.0


def test_coco_tables_work_without_a_suite_file():
    rows = {(c.method, c.backbone, c.resolution) for c in configs_for("coco-tables")}
    assert {("mlgcn", "resnet101", 448), ("asl", "tresnet_m", 224), ("asl", "tresnet_l", 448)} <= rows
    assert all(c.num_classes == 80 for c in configs_for("coco-tables"))
