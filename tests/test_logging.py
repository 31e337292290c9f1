"""`bench run --log tensorboard`: per-epoch scalars (loss, val mAP plain and EMA, lr, images/s)
and the final test metrics land in <job>/tb/, read back with tensorboard's EventAccumulator; the
job id does not change; a resumed job appends only its new epochs; a missing package is one line."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.helpers import run_bench, tiny_suite

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def _scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    acc = event_accumulator.EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_run_with_tensorboard_logs_every_epoch_and_the_test_metrics(tmp_path):
    suite = tiny_suite(tmp_path, epochs=2, budget={"epochs": 2, "batch_size": 32, "resolution": 24, "ema": 0.9})
    plain = run_bench("run", "--suite", str(suite), "--results", str(tmp_path / "plain"), "--no-report",
                      "--device", "cpu", cwd=tmp_path)
    logged = run_bench("run", "--suite", str(suite), "--results", str(tmp_path / "r"), "--no-report",
                       "--device", "cpu", "--log", "tensorboard", cwd=tmp_path)
    assert plain.returncode == 0 and logged.returncode == 0, logged.stderr[-2000:]
    (job,) = [p for p in (tmp_path / "r" / "tiny").iterdir() if p.is_dir()]
    assert [p.name for p in (tmp_path / "plain" / "tiny").iterdir() if p.is_dir()] == [job.name]  # same job id
    record = json.loads((job / "record.json").read_text())
    scalars = _scalars(job / "tb")
    history = record["history"]
    assert [v for _, v in scalars["train/loss"]] == pytest.approx([h["train_loss"] for h in history])
    assert [s for s, _ in scalars["val/mAP"]] == [1, 2]
    assert [v for _, v in scalars["val/mAP"]] == pytest.approx([h["val_mAP"] for h in history])
    assert [v for _, v in scalars["val/mAP_ema"]] == pytest.approx([h["val_mAP_ema"] for h in history])
    assert {"train/lr", "train/images_per_s"} <= set(scalars)
    test = record["metrics"]["selected"]["test"]
    assert scalars["test/mAP"] == [(2, pytest.approx(test["mAP"]))]
    assert scalars["test/CF1"][0][1] == pytest.approx(test["CF1"])
    assert not (tmp_path / "plain" / "tiny" / job.name / "tb").exists()


def test_resumed_history_logs_only_new_epochs(tmp_path, monkeypatch):
    from bench.run import epochlog

    monkeypatch.setenv(epochlog.LOG_ENV, "tensorboard")
    history = [{"stage": "train", "epoch": 1, "train_loss": 1.0, "val_mAP": 10.0, "lr": 0.1}]
    epochlog.write_epoch_log(tmp_path / "summary.csv", history)
    epochlog._close(tmp_path, "tensorboard")  # a new process: the writer is gone
    history.append({"stage": "train", "epoch": 2, "train_loss": 0.5, "val_mAP": 12.0, "lr": 0.05})
    epochlog.write_epoch_log(tmp_path / "summary.csv", history)
    epochlog._close(tmp_path, "tensorboard")
    assert _scalars(tmp_path / "tb")["train/loss"] == [(1, 1.0), (2, 0.5)]  # no epoch twice


def test_missing_logger_package_is_one_line(tmp_path, monkeypatch, capsys):
    import importlib.util

    from bench.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    assert main(["run", "--suite", "smoke", "--log", "wandb", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install" in err and "wandb" in err


def test_wandb_offline_run_holds_the_scalars(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    from bench.run import epochlog

    monkeypatch.setenv(epochlog.LOG_ENV, "wandb")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    job = tmp_path / "baseline-0123456789ab"
    history = [{"stage": "train", "epoch": 1, "train_loss": 1.25, "val_mAP": 10.5, "lr": 0.1}]
    epochlog.write_epoch_log(job / "summary.csv", history)
    epochlog.log_final(job, {"history": history, "metrics": {"selected": {"test": {"mAP": 33.125}}}})
    (run_file,) = (job / "wandb").glob("offline-run-*/run-baseline-0123456789ab.wandb")  # offline by default
    needles = (b"train/loss", b"1.25", b"val/mAP", b"10.5", b"test/mAP", b"33.125")
    # wandb's service process writes the file: after finish() it can still hold the records in
    # its buffer for a moment (seen twice on a loaded 2-core machine: the file held its header
    # only), so the test waits for them, bounded
    deadline = time.monotonic() + 30
    while not all(n in run_file.read_bytes() for n in needles) and time.monotonic() < deadline:
        time.sleep(0.2)
    data = run_file.read_bytes()  # the run's records keep keys and JSON values as plain strings
    for needle in needles:
        assert needle in data
