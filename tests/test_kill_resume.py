"""Crash safety proven, not assumed: a job killed with SIGKILL at many moments (mid-epoch, and
in the middle of every kind of write: checkpoint, per-epoch log, predictions, record, DONE)
and then resumed ends with exactly the metrics of an uninterrupted run. SIGTERM is handled
like Ctrl-C. Runs in CI (about two minutes on 2 cores). The suite uses the GPU-grade path's
state -- EMA weights (ema 0.99), bf16 autocast and DataLoader workers -- so their resume is proven
too (the checkpoint carries the EMA weights and the scaler).

The killed and resumed runs are `bench` processes forked from a server that imported bench once
(tests/bench_forks.py: real processes, killed by real signals, without 5 s of imports each); the
reference is a fresh ``python -m bench.cli`` interpreter, and a forked run must equal it too."""
from __future__ import annotations

import fcntl
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import data as datasets
from bench.spec.suites import expand_jobs, load_suite
from helpers import REPO, tiny_suite

METHODS = ["baseline", "probmcl", "imlgcn"]  # one-stage, two-stage + collapse check, stage-2 node features


def _env(tmp_path: Path, **extra: str) -> dict:
    return {**os.environ, "BENCH_THREADS": "1", "HF_HUB_OFFLINE": "1",
            "BENCH_CACHE_DIR": str(tmp_path / "cache"), **extra}


def _args(suite: Path, results: Path) -> list[str]:
    return ["run", "--suite", str(suite), "--results", str(results), "--no-report"]


def _run(suite: Path, results: Path, env: dict) -> subprocess.CompletedProcess:
    """`bench run` in a fresh interpreter (``python -m bench.cli``)."""
    return subprocess.run([sys.executable, "-m", "bench.cli", *_args(suite, results)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)


def _outcome(results: Path) -> dict:
    """Everything a record computes (not timings), per job id."""
    out = {}
    for rec_file in sorted(results.glob("*/*/record.json")):
        assert (rec_file.parent / "DONE").exists(), rec_file
        r = json.loads(rec_file.read_text())
        out[r["job_id"]] = {"metrics": r["metrics"], "selected": r["selected_epoch"],
                            "trick": r["training_free"], "collapse": r["collapse"],
                            "selected_weights": r["selected_weights"],
                            "curve": [(h["stage"], h["epoch"], h["train_loss"], h["val_mAP"], h.get("val_mAP_ema"))
                                      for h in r["history"]]}
    return out


@pytest.fixture(scope="session")
def reference(tmp_path_factory, bench_forks):
    """(folder, suite, the uninterrupted run's outcome, a forked run's seconds): made ONCE per
    session -- under xdist the first worker makes it under a lock and the others read it."""
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # this session's folder, above every worker's own
    with open(shared / "kill-reference.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        made = shared / "kill-reference.pkl"
        if not made.exists():
            made.write_bytes(pickle.dumps(_make_reference(shared / "kill", bench_forks)))
        return pickle.loads(made.read_bytes())


def _make_reference(tmp: Path, bench_forks) -> tuple[Path, Path, dict, float]:
    tmp.mkdir()
    suite = tiny_suite(tmp, name="kill", methods=METHODS, n_train=96,
                       budget={"epochs": 3, "batch_size": 32, "resolution": 24, "ema": 0.99, "workers": 2,
                               "precision": "bf16"})
    # The data cache first (in this process: the runs only load it), so that the timed reference
    # run, like every killed run after it, starts no cache-building child: a fraction of its time
    # is the same moment of theirs.
    job = expand_jobs(load_suite(str(suite)))[0]
    datasets.load("mnist-mosaic", job.dataset["options"], resolution=job.budget["resolution"],
                  cache_dir=tmp / "cache")
    done = _run(suite, tmp / "ref", _env(tmp))
    assert done.returncode == 0, done.stderr[-2000:]
    expected = _outcome(tmp / "ref")
    # the killed runs are forked (no imports): their moments are fractions of a forked run's time
    t0 = time.perf_counter()
    forked = bench_forks.run(_args(suite, tmp / "ref-forked"), _env(tmp))
    seconds = time.perf_counter() - t0
    assert forked.returncode == 0, forked.stderr[-2000:]
    assert _outcome(tmp / "ref-forked") == expected  # a forked run computes what a fresh interpreter does
    return tmp, suite, expected, seconds


@pytest.mark.parametrize("fault", ["checkpoint.pt:2", "checkpoint.pt:4", "summary.csv:3", "predictions.npz:1",
                                   "record.json:2", "DONE:1", "DONE:3"])
def test_sigkill_during_a_write_then_resume_is_identical(reference, bench_forks, fault):
    tmp, suite, expected, _ = reference
    results = tmp / f"r-{fault.replace(':', '-')}"
    killed = bench_forks.run(_args(suite, results), _env(tmp, BENCH_FAULT_KILL=fault))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-1000:]
    resumed = bench_forks.run(_args(suite, results), _env(tmp))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert _outcome(results) == expected


@pytest.mark.parametrize("fraction", [0.2, 0.45, 0.7, 0.9])
def test_sigkill_at_any_moment_then_resume_is_identical(reference, bench_forks, fraction):
    tmp, suite, expected, seconds = reference
    results = tmp / f"t-{fraction}"
    proc = bench_forks.start(_args(suite, results), _env(tmp))
    time.sleep(fraction * seconds)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    resumed = bench_forks.run(_args(suite, results), _env(tmp))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert _outcome(results) == expected


def test_sigterm_is_handled_like_ctrl_c_and_resumes(reference, bench_forks):
    tmp, suite, expected, _ = reference
    results = tmp / "term"
    # a fresh interpreter: the SIGTERM handler of `python -m bench.cli` itself
    proc = subprocess.Popen([sys.executable, "-m", "bench.cli", "run", "--suite", str(suite), "--results",
                             str(results), "--no-report"], cwd=REPO, env=_env(tmp),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Mid-run by construction, not by a fraction of the reference's time (on a clean clone the
    # reference also builds the caches, so a fraction of it could land after the run had ended):
    # the first epoch line of the first job, with two more jobs to go.
    deadline = time.monotonic() + 300
    for line in proc.stdout:
        if " epoch 1/" in line or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:  # it finished before the signal arrived: nothing to check
        pytest.skip("the run ended before SIGTERM")
    assert proc.returncode == 143 and "terminated (SIGTERM)" in err, err[-1000:]
    assert "Traceback" not in err
    had_checkpoint = bool(list(results.glob("*/*/checkpoint.pt")))
    resumed = bench_forks.run(_args(suite, results), _env(tmp))
    assert resumed.returncode == 0
    assert ("resuming" in resumed.stdout) == had_checkpoint
    assert _outcome(results) == expected


def test_sigterm_inside_multiprocessing_code_waits_until_the_main_thread_leaves_it(monkeypatch):
    # a clean-clone CI run: SIGTERM raised inside the handshake that fetches a batch from a
    # DataLoader worker broke the worker's resource-sharer connection; the worker printed a traceback
    import multiprocessing.connection as mpc
    import types

    from bench import cli

    sent: list = []
    monkeypatch.setattr(cli.os, "kill", lambda pid, sig: sent.append((pid, sig)))
    code = compile("pass", mpc.__file__, "exec")  # a frame whose code is multiprocessing's
    inner = types.SimpleNamespace(f_code=code, f_back=None)
    outer = types.SimpleNamespace(f_code=compile("pass", "/x/bench/train/loop.py", "exec"), f_back=inner)
    cli._deferred_since.clear()
    cli._on_sigterm(signal.SIGTERM, outer)  # deferred: no raise, the signal comes again
    time.sleep(0.1)
    assert sent == [(os.getpid(), signal.SIGTERM)]
    with pytest.raises(cli.Terminated):  # outside multiprocessing: at once
        cli._on_sigterm(signal.SIGTERM, types.SimpleNamespace(f_code=outer.f_code, f_back=None))
    cli._deferred_since[:] = [time.monotonic() - cli.DEFER_LIMIT_S - 1]
    with pytest.raises(cli.Terminated):  # never deferred past the limit
        cli._on_sigterm(signal.SIGTERM, outer)
