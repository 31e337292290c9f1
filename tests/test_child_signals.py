"""Signals reach a job's main process only (bench.run.signals): the processes a job starts --
DataLoader workers, helpers -- survive USR2 and SIGTERM, and the main process acts once.

Slurm signals every process of a job step; a DataLoader worker that dies of it (or that runs
submitit's checkpoint-and-requeue) kills the job. The Slurm case is in tests/test_slurm.py
(test_preempted_job_with_workers_requeues_once); here the local run and the mechanism under
every multiprocessing start method."""
from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bench.run.signals import main_process_only
from helpers import REPO, child_processes, tiny_suite

pytestmark = pytest.mark.timeout(600)


def _signal_self_then_report(queue) -> None:
    """A child: sends itself USR2, SIGTERM and SIGCONT, then says it is alive."""
    for sig in (signal.SIGUSR2, signal.SIGTERM, signal.SIGCONT):
        os.kill(os.getpid(), sig)
    time.sleep(0.2)  # a pending deliverable signal would have acted by now
    queue.put(os.getpid())


def _child_outcome(method: str) -> tuple[int | None, bool]:
    """(the child's exit code, whether it reported being alive after its signals)."""
    ctx = multiprocessing.get_context(method)
    queue = ctx.Queue()
    child = ctx.Process(target=_signal_self_then_report, args=(queue,))
    child.start()
    child.join(timeout=60)
    alive = not queue.empty()
    return child.exitcode, alive


@pytest.fixture
def counting_handlers():
    """Python handlers for USR2 and SIGTERM in this process that count their calls (as
    submitit's or the CLI's would act), restored afterwards."""
    calls: list[tuple[int, int]] = []
    previous = {s: signal.getsignal(s) for s in (signal.SIGUSR2, signal.SIGTERM)}
    for s in previous:
        signal.signal(s, lambda sig, frame: calls.append((sig, os.getpid())))
    yield calls
    for s, h in previous.items():
        signal.signal(s, h)


def test_a_forked_child_dies_or_acts_without_the_block(counting_handlers):
    """The defect the block fixes: a forked child runs the parent's handler in itself (here it
    survives because the counting handler returns; submitit's checkpoints, requeues and exits)."""
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_signal_self_then_report, args=(queue,))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0  # the handler ran in the child: it did not die, it acted
    signal.signal(signal.SIGUSR2, signal.SIG_DFL)
    assert _child_outcome("fork") == (-signal.SIGUSR2, False)  # default action: the child dies
    assert _child_outcome("spawn") == (-signal.SIGUSR2, False)  # exec resets a handler to default


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_children_ignore_the_signals_and_the_main_process_acts_once(counting_handlers, method):
    with main_process_only((signal.SIGUSR2, signal.SIGTERM, signal.SIGCONT)):
        assert _child_outcome(method) == (0, True)
        assert counting_handlers == []  # no child ran the main process's handler
        os.kill(os.getpid(), signal.SIGUSR2)
        deadline = time.monotonic() + 10
        while not counting_handlers and time.monotonic() < deadline:
            time.sleep(0.01)
        assert counting_handlers == [(signal.SIGUSR2, os.getpid())]
    # restored: the handlers, and an empty signal mask in this thread
    assert signal.getsignal(signal.SIGUSR2) is not signal.SIG_DFL
    assert not {signal.SIGUSR2, signal.SIGTERM} & signal.pthread_sigmask(signal.SIG_BLOCK, [])


def test_outside_the_main_thread_it_changes_nothing():
    seen = []

    def run() -> None:
        with main_process_only((signal.SIGUSR2,)):
            seen.append(signal.getsignal(signal.SIGUSR2))

    before = signal.getsignal(signal.SIGUSR2)
    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=10)
    assert seen == [before]


def test_the_default_action_still_ends_the_main_process():
    """With no handler installed, USR2 to the main process terminates it as before."""
    code = ("import os, signal, time\n"
            "from bench.run.signals import main_process_only\n"
            "with main_process_only((signal.SIGUSR2,)):\n"
            "    os.kill(os.getpid(), signal.SIGUSR2)\n"
            "    time.sleep(1)\n"
            "print('survived')\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == -signal.SIGUSR2 and "survived" not in out.stdout


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _run_cli(bench_forks, suite: Path, results: Path, env: dict,
             signal_children: bool) -> tuple[int, str, set[int]]:
    proc = bench_forks.start(["run", "--suite", str(suite), "--results", str(results), "--no-report"], env)
    signalled: set[int] = set()

    def pester() -> None:  # USR2 and SIGTERM to every child, again and again, until the run ends
        while _alive(proc.pid):
            for child in child_processes(proc.pid):
                for sig in (signal.SIGUSR2, signal.SIGTERM):
                    try:
                        os.kill(child, sig)
                        signalled.add(child)
                    except ProcessLookupError:
                        pass
            time.sleep(0.1)

    thread = threading.Thread(target=pester, daemon=True)
    if signal_children:
        thread.start()
    done = proc.completed([], timeout=500)
    if signal_children:
        thread.join(timeout=10)
    return done.returncode, done.stdout + done.stderr, signalled


def _metrics(results: Path) -> dict:
    out = {}
    for rec_file in sorted(results.glob("*/*/record.json")):
        assert (rec_file.parent / "DONE").exists(), rec_file
        r = json.loads(rec_file.read_text())
        out[r["job_id"]] = {"metrics": r["metrics"], "selected": r["selected_epoch"],
                            "curve": [(h["epoch"], h["train_loss"], h["val_mAP"]) for h in r["history"]]}
    return out


def test_local_job_survives_usr2_and_sigterm_to_every_child(tmp_path, bench_forks):
    """A local `bench run` with 2 DataLoader workers whose children get USR2 and SIGTERM every
    0.1 s finishes (exit 0) with the record of an undisturbed run. (Both runs are `bench`
    processes forked from the tests' server, tests/bench_forks.py.)"""
    suite = tiny_suite(tmp_path, name="childsig", n_train=512, epochs=2,
                       budget={"epochs": 2, "batch_size": 32, "resolution": 24, "workers": 2})
    env = {**os.environ, "BENCH_THREADS": "1", "HF_HUB_OFFLINE": "1", "BENCH_CACHE_DIR": str(tmp_path / "cache")}
    code, log, _ = _run_cli(bench_forks, suite, tmp_path / "reference", env, signal_children=False)
    assert code == 0, log[-2000:]
    # its own cache folder: the input-building child (bench.run.inputs, started only when a cache
    # is missing) is among the pestered children too
    env["BENCH_CACHE_DIR"] = str(tmp_path / "cache-pestered")
    code, log, signalled = _run_cli(bench_forks, suite, tmp_path / "pestered", env, signal_children=True)
    assert code == 0, log[-3000:]
    assert len(signalled) >= 4, signalled  # the workers of several epochs and evaluations got them
    assert _metrics(tmp_path / "pestered") == _metrics(tmp_path / "reference") != {}
