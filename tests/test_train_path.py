"""The GPU-grade training path (bench/train/), checked on the CPU: precision, EMA, workers,
gradient accumulation, the non-finite guard, per-stage recipes, and bad runtime keys."""
from __future__ import annotations

import json

import pytest
import torch

from bench.spec.jobs import JobSpec
from bench.run.runner import run_job, stage_recipe
from bench.run.store import Store
from bench.spec.suites import expand_jobs, load_suite, parse_suite
from bench.train.ema import make_ema
from bench.train.settings import Runtime
from helpers import REPO, run_bench, tiny_suite
from methods.losses import asymmetric_loss, bce_loss, fp32_loss


@pytest.fixture(autouse=True)
def _threads(monkeypatch):
    monkeypatch.setenv("BENCH_THREADS", "1")


def _jobs(tmp_path, methods=("baseline",), **budget) -> list[JobSpec]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    b = {"epochs": 2, "batch_size": 32, "resolution": 24, **budget}
    return expand_jobs(load_suite(str(tiny_suite(tmp_path, methods=list(methods), budget=b))))


def test_smoke_gpu_path_suite_records_plain_and_ema_curves(tmp_path):
    """The CPU check of the issue: bf16 + ema 0.99 + workers 2 runs to the end, both curves kept."""
    out = run_bench("run", "--suite", "smoke-gpu-path", "--results", str(tmp_path / "r"), "--no-report",
                    "--methods", "baseline,probmcl", timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    records = [json.loads(p.read_text()) for p in (tmp_path / "r" / "smoke-gpu-path").glob("*/record.json")]
    assert {r["job"]["method"] for r in records} == {"baseline", "probmcl"}
    for r in records:
        assert r["runtime"]["precision"] == "bf16" and r["runtime"]["ema"] == 0.99 and r["runtime"]["workers"] == 2
        selection = [h for h in r["history"] if h["val_mAP"] is not None]
        assert selection and all(isinstance(h["val_mAP_ema"], float) for h in selection)
        assert r["selected_weights"] in ("plain", "ema")
        best = max(max(h["val_mAP"], h["val_mAP_ema"]) for h in selection)
        assert r["metrics"]["selected"]["val"]["mAP"] == pytest.approx(best, abs=1e-9)
        assert r["nonfinite_steps"] == 0


def test_workers_change_speed_not_numbers_nor_the_job_id(tmp_path):
    (a,), (b,) = _jobs(tmp_path / "a", workers=0), _jobs(tmp_path / "b", workers=2)
    assert a.job_id == b.job_id
    ra = run_job(a, Store(tmp_path / "ra"), progress=False)
    rb = run_job(b, Store(tmp_path / "rb"), progress=False)
    assert ra["metrics"] == rb["metrics"] and ra["history"][-1]["train_loss"] == rb["history"][-1]["train_loss"]


def test_semantic_runtime_keys_enter_the_job_id_only_off_their_neutral_value(tmp_path):
    (plain,) = _jobs(tmp_path / "p")
    assert plain.job_id == _jobs(tmp_path / "q", precision="fp32", ema=None, accumulate=1)[0].job_id
    assert plain.job_id != _jobs(tmp_path / "r", ema=0.999)[0].job_id
    assert plain.job_id != _jobs(tmp_path / "s", precision="bf16")[0].job_id


def test_accumulation_splits_the_step_and_keeps_its_batch(tmp_path):
    """accumulate=2: two micro-batches of 16 per step of 32; the same number of steps and images."""
    (one,), (two,) = _jobs(tmp_path / "a", epochs=1), _jobs(tmp_path / "b", epochs=1, accumulate=2)
    r1 = run_job(one, Store(tmp_path / "r1"), progress=False)
    r2 = run_job(two, Store(tmp_path / "r2"), progress=False)
    assert r2["runtime"]["accumulate"] == 2
    assert r1["timing"]["train_images_per_s"] > 0 and r2["history"][0]["train_loss"] > 0
    # BatchNorm sees 16 images per forward instead of 32: close, not equal
    assert r2["history"][0]["train_loss"] == pytest.approx(r1["history"][0]["train_loss"], rel=0.05)


def test_ema_weights_follow_the_formula():
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    ema = make_ema(net, 0.9)
    start = {k: v.clone() for k, v in net.state_dict().items()}
    for _ in range(3):
        with torch.no_grad():
            net.weight.add_(1.0)
        ema.update(net)
    expected = start["weight"]
    for step in range(1, 4):
        expected = 0.9 * expected + 0.1 * (start["weight"] + step)
    assert torch.allclose(ema.module.weight, expected, atol=1e-6)


def test_losses_run_in_fp32_under_autocast_and_keep_float64():
    logits = torch.randn(4, 5)
    targets = (torch.rand(4, 5) > 0.5).float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        half = torch.nn.functional.linear(logits, torch.eye(5))  # bf16 under autocast
        assert half.dtype == torch.bfloat16
        assert asymmetric_loss(half, targets).dtype == torch.float32
        assert bce_loss(half, targets).dtype == torch.float32

    @fp32_loss
    def matmul_loss(x: torch.Tensor) -> torch.Tensor:
        return (x @ x.t()).sum()

    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert matmul_loss(logits).dtype == torch.float32  # autocast would have made it bf16
    assert bce_loss(logits.double(), targets.double()).dtype == torch.float64


def test_imlgcn_stage1_uses_asls_recipe_under_paper_recipe():
    raw = {"name": "x", "dataset": {"name": "mnist-mosaic"}, "protocol": "paper-recipe",
           "methods": ["imlgcn", "asl", "kmcl", "probmcl", "csra", "mlgcn", "baseline"]}
    jobs = expand_jobs(parse_suite(raw, "x"))
    assert all(j.budget["recipe_not_applied"] == [] for j in jobs)
    iml = next(j for j in jobs if j.method == "imlgcn")
    asl = next(j for j in jobs if j.method == "asl")
    s1, s2 = stage_recipe(iml, "backbone"), stage_recipe(iml, "graph")
    assert s1["optimizer"]["lr"] == asl.optimizer["lr"] == 1e-4 and s1["optimizer"]["schedule"] == "onecycle"
    assert s1["ema"] == asl.budget["ema"] == 0.9997 and s1["augmentation"] == "cutout+randaugment"
    assert s2["optimizer"]["lr"] == 1e-3 and s2["optimizer"]["schedule"] == "step" and s2["ema"] is None


def test_runtime_defaults_are_read_from_old_budgets():
    assert Runtime.from_budget({"epochs": 2}) == Runtime()


@pytest.mark.parametrize("key,value,needle", [
    ("precision", "fp16", "budget.precision=fp16: fp16 needs a CUDA device"),
    ("precision", "fp8", "budget.precision='fp8' must be one of fp32, bf16, fp16"),
    ("workers", -1, "budget.workers=-1 must be an integer >= 0"),
    ("ema", 1.5, "budget.ema=1.5 must be null or a decay strictly between 0 and 1"),
    ("ema", 0, "budget.ema=0 must be null or a decay strictly between 0 and 1"),
    ("accumulate", 3, "budget.accumulate=3 must be a divisor of budget.batch_size=32"),
])
def test_bad_runtime_key_is_one_line_exit_2_and_records_nothing(tmp_path, key, value, needle):
    suite = tiny_suite(tmp_path, budget={"epochs": 1, "batch_size": 32, "resolution": 24, key: value})
    out = run_bench("run", "--suite", str(suite), "--results", str(tmp_path / "r"), "--no-report",
                    "--device", "cpu")
    assert out.returncode == 2, out.stdout + out.stderr
    assert needle in out.stderr and "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists() or not list((tmp_path / "r").rglob("record.json"))


def test_the_loop_lives_in_the_train_package():
    """bench/run/runner.py orchestrates; no optimiser step or backward pass of its own."""
    text = (REPO / "bench" / "run" / "runner.py").read_text()
    assert ".backward(" not in text and "opt.step(" not in text and "zero_grad" not in text


def test_bf16_on_a_cpu_without_bf16_instructions_is_said_at_load(monkeypatch, capsys):
    import torch

    from bench.cli import main
    from bench.run.devices import emulated_bf16_note

    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)  # an AVX2-only CPU
    bf16, fp32 = [{"precision": "bf16"}], [{"precision": "fp32"}, {}]
    assert "several times slower" in emulated_bf16_note(bf16, "cpu")
    assert emulated_bf16_note(fp32, "cpu") is None and emulated_bf16_note(bf16, "cuda") is None
    assert main(["run", "--suite", "smoke-gpu-path", "--dry-run", "--device", "cpu"]) == 0
    assert capsys.readouterr().out.count("budget.precision=bf16 on a CPU without bf16 instructions") == 1
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)  # this Intel (AMX)
    assert emulated_bf16_note(bf16, "cpu") is None
