"""The full paper configuration of `coco-tables` on CPU: every method row with ResNet-101 at 448 px,
bf16 autocast, EMA, channels_last and DataLoader workers runs one optimiser step (per stage) and
evaluates, on the COCO fixture, with `weights: imagenet` resolved from a local Hugging Face cache.
The cached file is a RANDOMLY INITIALISED resnet101 state dict (no ImageNet file exists offline):
what is checked is shapes, dtypes, the recipe and the loading route at the papers' size, not mAP.

Slow (minutes on 2 cores), so out of the default run: BENCH_PAPER_CONFIG=1 pytest -m paper_config
tests/test_paper_config.py (README, cluster section, gives the time measured)."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fixtures_data import make_coco_fixture
from helpers import REPO, fake_hub_cache

pytestmark = [pytest.mark.paper_config, pytest.mark.slow, pytest.mark.skipif(
    os.environ.get("BENCH_PAPER_CONFIG") != "1", reason="paper-size CPU check: set BENCH_PAPER_CONFIG=1")]

ONE_STAGE = ["--methods", "baseline,asl,csra H=6,mlgcn,kmcl", "--set", "budget.epochs=1"]
# stage_split is checked against every row of the suite, so the two-stage rows run as the suite's
# only rows (same method, hparams and label as coco-tables'), one epoch per stage
TWO_STAGE = ["--set", "methods=[{method: imlgcn, label: imlgcn F_PCA}, probmcl]", "--set", "budget.epochs=2",
             "--set", "budget.stage_split=[1, 1]"]


def test_every_coco_tables_row_steps_and_evaluates_at_paper_size(tmp_path):
    import timm
    import torch

    from bench.spec.weights import REGISTRY, hub_location

    repo, filename = hub_location(REGISTRY["resnet101"]["tag"])
    buf = io.BytesIO()
    torch.save(timm.create_model("resnet101", pretrained=False).state_dict(), buf)  # random init
    hub = fake_hub_cache(tmp_path / "hub", {repo: {filename: buf.getvalue()}})
    data_root, results = make_coco_fixture(tmp_path / "data"), tmp_path / "results"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(hub), "BENCH_THREADS": "2",
           "BENCH_CACHE_DIR": str(tmp_path / "cache")}
    common = ["--suite", "coco-tables", "--data-root", str(data_root), "--results", str(results),
              "--device", "cpu", "--no-report", "--set", "budget.batch_size=2", "--set", "budget.train_images=2",
              "--set", "budget.eval_batch_size=2", "--set", "budget.workers=2"]
    for rows in (ONE_STAGE, TWO_STAGE):
        out = subprocess.run([sys.executable, "-m", "bench.cli", "run", *common, *rows],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=3000)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    records = [json.loads(p.read_text()) for p in Path(results).rglob("record.json")]
    assert len(records) == 7
    for rec in records:
        job = rec["job"]
        assert job["budget"]["resolution"] == 448 and job["budget"]["precision"] == "bf16"
        assert job["budget"]["ema"] == 0.9997 and job["budget"]["channels_last"] is True
        assert job["backbone"]["weights"]["tag"] == "resnet101.tv_in1k"
        assert rec["backbone_weights"]["sha256"] == job["backbone"]["options"]["weights_sha256"]
        assert rec["backbone_weights"]["dropped"] == ["fc.weight", "fc.bias"]
        assert rec["metrics"], rec["job_id"]
