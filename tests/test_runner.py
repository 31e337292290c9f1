"""Runner and store: determinism, idempotence, resume after a kill, failures recorded."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from bench.spec.jobs import JobSpec
from bench.run.runner import run_job
from bench.run.store import Store
from bench.spec.suites import expand_jobs, load_suite
from tests.helpers import REPO, run_bench, tiny_suite


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_THREADS", "1")


def _job(tmp_path, **kw) -> JobSpec:
    return expand_jobs(load_suite(str(tiny_suite(tmp_path, **kw))))[0]


def test_same_seed_same_metrics_and_record_fields(tmp_path):
    job = _job(tmp_path, epochs=4)  # the convergence window needs 3 epochs and the one before
    a = run_job(job, Store(tmp_path / "a"), progress=False)
    b = run_job(job, Store(tmp_path / "b"), progress=False)
    assert a["metrics"] == b["metrics"]
    assert a["job_id"] == job.job_id and a["data"]["fingerprint"]
    assert set(a["metrics"]["selected"]) == {"val", "test", "test_tuned"} and a["selected_epoch"] >= 1
    assert set(a["metrics"]["selected"]["test_tuned"]) >= {"global", "per_class"}
    assert a["convergence"]["window"] and a["data"]["chance_mAP"] > 0 and a["collapse"] is None
    assert (Store(tmp_path / "a").job_dir(job).path / "summary.csv").read_text().startswith("stage,epoch")
    assert a["evaluation"]["name"] == "paper" and a["provenance"]["git_commit"]
    assert a["training_free"]["lambdas"] and a["history"][-1]["val_mAP"] is not None
    folder = Store(tmp_path / "a").job_dir(job).path
    assert (folder / "DONE").exists() and not (folder / "checkpoint.pt").exists()


def test_job_id_ignores_paths_and_suite_name(tmp_path):
    job = _job(tmp_path)
    moved = JobSpec(**{**job.__dict__, "data_root": "/elsewhere", "suite": "other", "label": "x"})
    assert moved.job_id == job.job_id
    changed = JobSpec(**{**job.__dict__, "seed": job.seed + 1})
    assert changed.job_id != job.job_id


def test_second_run_does_nothing(tmp_path):
    suite = tiny_suite(tmp_path, epochs=1)
    first = run_bench("run", "--suite", str(suite), "--results", str(tmp_path / "r"), "--no-report")
    assert first.returncode == 0, first.stderr
    record = next((tmp_path / "r" / "tiny").glob("*/record.json"))
    stamp = record.stat().st_mtime_ns
    second = run_bench("run", "--suite", str(suite), "--results", str(tmp_path / "r"), "--no-report")
    assert second.returncode == 0, second.stderr
    assert "1 already done, 0 to run" in second.stdout
    assert record.stat().st_mtime_ns == stamp


def test_killed_mid_epoch_resumes_to_identical_metrics(tmp_path):
    suite = tiny_suite(tmp_path, epochs=3, n_train=768)
    job = expand_jobs(load_suite(str(suite)))[0]
    reference = run_job(job, Store(tmp_path / "ref"), progress=False)

    results = tmp_path / "killed"
    ckpt = Store(results).job_dir(job).checkpoint_file
    env = {**os.environ, "BENCH_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "bench.cli", "run", "--suite", str(suite),
                             "--results", str(results), "--no-report"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert ckpt.exists(), "no checkpoint appeared"
    time.sleep(0.3)  # well inside epoch 2
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not Store(results).job_dir(job).is_done
    resumed = run_job(job, Store(results), progress=False)
    assert resumed["timing"]["resumed"] is True
    assert resumed["metrics"] == reference["metrics"]
    assert [h["train_loss"] for h in resumed["history"]] == [h["train_loss"] for h in reference["history"]]


def test_failing_job_is_recorded_not_done_and_others_finish(tmp_path):
    from bench.run.executors import LocalExecutor

    good = _job(tmp_path, epochs=1)
    bad = JobSpec(**{**good.__dict__, "method": "asl", "hparams": {"gamma_neg": -1.0}})
    store = Store(tmp_path / "r")
    summary = LocalExecutor(progress=False).submit([bad, good], store)
    assert summary["failed"] == [bad.job_id] and summary["done"] == [good.job_id]
    bad_dir = store.job_dir(bad)
    assert bad_dir.state == "failed" and not bad_dir.is_done
    assert "gamma_neg" in bad_dir.error_file.read_text()
    assert store.job_dir(good).is_done


def test_cli_reports_failed_jobs_with_exit_1(tmp_path):
    suite = tiny_suite(tmp_path, epochs=1, optimizer={"lr": 1.0e30})
    out = run_bench("run", "--suite", str(suite), "--results", str(tmp_path / "r"), "--no-report")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "FAILED" in out.stdout and "non-finite" in out.stdout
    assert "Traceback" not in out.stderr + out.stdout
    (folder,) = (tmp_path / "r" / "tiny").iterdir()
    assert (folder / "error.txt").exists() and not (folder / "DONE").exists()


def test_a_terminal_gets_one_bar_per_job_with_every_step_and_a_log_gets_epoch_lines(tmp_path, monkeypatch, capsys):
    # issue #27: a tqdm bar with ETA per job on a terminal, one line per epoch otherwise
    import tqdm

    from bench.run import progress

    job = _job(tmp_path, epochs=2, n_train=128)  # batch 32: 4 steps per epoch, 8 in the job
    bars: list = []
    real = tqdm.tqdm

    def spy(*args, **kw):
        bars.append(real(*args, **kw))
        return bars[-1]

    monkeypatch.setattr(tqdm, "tqdm", spy)
    monkeypatch.setattr(progress.sys.stdout, "isatty", lambda: True, raising=False)
    run_job(job, Store(tmp_path / "tty"), progress=True)
    assert len(bars) == 1 and bars[0].total == 8 and bars[0].n == 8  # every step of both epochs
    assert bars[0].desc.startswith("baseline seed 0")
    monkeypatch.setattr(progress.sys.stdout, "isatty", lambda: False, raising=False)
    capsys.readouterr()
    run_job(job, Store(tmp_path / "log"), progress=True)
    out = capsys.readouterr().out
    assert len(bars) == 1  # no bar off a terminal
    assert "train epoch 1/2" in out and "train epoch 2/2" in out
