"""The Slurm executor against a REAL single-node cluster (tests/slurm_cluster.py).

Run alone with ``pytest -m slurm``. Jobs are tiny (embedded mnist-mosaic,
smallcnn, 32 px, 1-6 epochs); every wait is bounded.

The scenarios that mostly WAIT on the cluster (preemption, requeues, arrays, two tasks) start
together, in threads, when the module starts (:func:`background`): the cluster runs their jobs
side by side as a real one would, and each test then checks its own scenario's outcome with the
same assertions as when they ran one after another (most of them inside the scenario, where the
moment matters). What must run in the main thread (an in-process reference run: it installs
signal handlers) runs in the test.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from bench.cli import main as cli_main
from bench.errors import BenchError
from bench.run.executors import get_executor
from bench.run.runner import load_job_data, run_job
from bench.run.slurm import PREEMPTED_FILE, SUBMISSION_FILE, read_submission
from bench.run.status import job_statuses, summarize
from bench.run.store import Store
from bench.spec.sweeps import expand_sweep, load_sweep
from helpers import REPO, child_processes

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(600)]

CLUSTER = {"time_min": 10, "cpus_per_task": 1, "max_requeues": 5, "signal_delay_s": 30}


def _write_sweep(tmp_path: Path, name: str, seeds: list[int], epochs: int = 1, n_train: int = 128,
                 cluster: dict | None = None, budget: dict | None = None) -> Path:
    base = {"name": "tiny", "dataset": {"name": "mnist-mosaic",
                                        "options": {"n_train": n_train, "n_val": 32, "n_test": 64, "seed": 0}},
            "backbone": "smallcnn",
            "budget": {"epochs": epochs, "batch_size": 32, "resolution": 32, "eval_batch_size": 64,
                       **(budget or {})},
            "evaluation": {"trick_lambdas": [0.1]}, "seeds": [0], "methods": ["baseline"]}
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(base))
    sweep = {"name": name, "suite": "tiny.yaml", "seeds": seeds, "cluster": {**CLUSTER, **(cluster or {})},
             "search": [{"method": "baseline"}]}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(sweep))
    return path


def _wait_final(jobs, store: Store, timeout: float = 240.0) -> dict[str, str]:
    """Poll ``bench status``'s logic until no job is pending/running; bounded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        statuses, _ = job_statuses(jobs, store)
        if not any(s.active for s in statuses):
            return {s.job.job_id: s.state for s in statuses}
        time.sleep(2)
    raise AssertionError(f"jobs still active after {timeout:.0f} s: {summarize(statuses)}")


def _sacct_state(slurm_id: str, env: dict) -> str:
    out = subprocess.run(["sacct", "-n", "-P", "-X", "-o", "JobID,State", "-j", slurm_id.split("_")[0]],
                         capture_output=True, text=True, env=env, timeout=15).stdout
    for line in out.splitlines():
        jid, _, state = line.partition("|")
        if jid == slurm_id:
            return state.split()[0]
    return ""


@pytest.fixture(scope="module", autouse=True)
def background(slurm_cluster, tmp_path_factory):
    """The waiting scenarios, started together when the module starts: {name: Future}. A test
    takes its scenario's ``result()``, which re-raises the scenario's failure with its traceback."""
    for n_train in (128, 768):  # the data caches, built once here (threads would build them at once)
        sweep = load_sweep(str(_write_sweep(tmp_path_factory.mktemp("warm"), "warm", seeds=[0], n_train=n_train)))
        load_job_data(expand_sweep(sweep)[0])
    env = slurm_cluster.env
    scenarios = {  # the longest first: their jobs queue first
        "preemptw": lambda tmp: _preempted_job_with_workers(tmp, env),
        "preempt": lambda tmp: _preempted_job_resumes(tmp, env),
        "exhaust": lambda tmp: _requeues_exhausted(tmp, env),
        "array": _array_with_a_failing_job, "twice": _two_concurrent_cli_sweeps, "ddp": _two_task_job}
    pool = ThreadPoolExecutor(len(scenarios), thread_name_prefix="slurm-scenario")
    futures: dict[str, Future] = {name: pool.submit(run, tmp_path_factory.mktemp(name))
                                  for name, run in scenarios.items()}
    yield futures
    pool.shutdown(wait=True)  # every wait in a scenario is bounded


def _array_with_a_failing_job(tmp_path: Path) -> None:
    sweep = load_sweep(str(_write_sweep(tmp_path, "arr", seeds=[0, 1, 2])))
    jobs = expand_sweep(sweep)
    load_job_data(jobs[0])  # warm the dataset cache once
    bad = replace(jobs[0], hparams={**jobs[0].hparams, "no_such_hparam": 1})  # fails inside the job
    store = Store(tmp_path / "results")
    summary = get_executor("slurm", dict(sweep.cluster)).submit(jobs + [bad], store)
    assert summary["submitted"] == 4 and len(summary["arrays"]) == 1  # ONE array
    subs = [read_submission(store.job_dir(j)) for j in jobs + [bad]]
    assert {s["array_id"] for s in subs} == set(summary["arrays"])
    assert sorted(s["slurm_job_id"] for s in subs) == [f"{summary['arrays'][0]}_{i}" for i in range(4)]
    states = _wait_final(jobs + [bad], store)
    assert [states[j.job_id] for j in jobs] == ["done"] * 3
    assert states[bad.job_id] == "failed"
    error = store.job_dir(bad).error_file.read_text()
    assert "Traceback" in error and "no_such_hparam" in error
    records = store.records("arr")
    assert len(records) == 3 and {r["job"]["seed"] for r in records} == {0, 1, 2}
    assert (tmp_path / "results" / "arr" / ".submitit").is_dir()
    statuses, source = job_statuses(jobs + [bad], store)
    assert source == "squeue+sacct"
    assert [s.reason for s in statuses if s.state == "failed"][0].startswith("methods.base.HparamError") \
        or "no_such_hparam" in [s.reason for s in statuses if s.state == "failed"][0]


def test_cli_sweep_resubmits_only_cancelled(slurm_cluster, tmp_path, capsys):
    spec = str(_write_sweep(tmp_path, "cancel", seeds=[0, 1]))
    results = str(tmp_path / "results")
    jobs = expand_sweep(load_sweep(spec))
    load_job_data(jobs[0])
    held = ["--cluster", "sbatch={hold: true}"]  # jobs stay queued until released
    assert cli_main(["sweep", spec, "--executor", "slurm", "--results", results, *held]) == 0
    assert "as Slurm array(s)" in capsys.readouterr().out
    store = Store(results)
    victim = read_submission(store.job_dir(jobs[1]))["slurm_job_id"]
    subprocess.run(["scancel", victim], check=True, env=slurm_cluster.env, timeout=15)
    t0, deadline = time.monotonic(), time.monotonic() + 30
    while time.monotonic() < deadline:
        statuses = {s.job.job_id: s for s in job_statuses(jobs, store)[0]}
        if statuses[jobs[1].job_id].state == "failed":
            break
        time.sleep(0.5)
    assert statuses[jobs[1].job_id].state == "failed", statuses[jobs[1].job_id]
    assert time.monotonic() - t0 < 30  # detected without hanging
    assert statuses[jobs[0].job_id].state == "pending"  # job 0 is still queued
    # the second `bench sweep` resubmits the cancelled job only, not the pending one
    first = read_submission(store.job_dir(jobs[0]))["slurm_job_id"]
    assert cli_main(["sweep", spec, "--executor", "slurm", "--results", results, *held]) == 0
    assert "1 to submit" in capsys.readouterr().out
    assert read_submission(store.job_dir(jobs[0]))["slurm_job_id"] == first
    assert read_submission(store.job_dir(jobs[1]))["slurm_job_id"] != victim
    subprocess.run(["scontrol", "release", first.split("_")[0]], capture_output=True, env=slurm_cluster.env)
    subprocess.run(["scontrol", "release", read_submission(store.job_dir(jobs[1]))["slurm_job_id"].split("_")[0]],
                   capture_output=True, env=slurm_cluster.env)
    assert set(_wait_final(jobs, store).values()) == {"done"}
    assert cli_main(["status", "--sweep", spec, "--results", results]) == 0
    assert "2 done" in capsys.readouterr().out


def _submit_one(tmp_path: Path, name: str, **sweep_keys):
    """Write a one-seed sweep, warm its data cache, submit it: (job, store, job dir, Slurm id)."""
    sweep = load_sweep(str(_write_sweep(tmp_path, name, seeds=[0], **sweep_keys)))
    job = expand_sweep(sweep)[0]
    load_job_data(job)
    store = Store(tmp_path / "results")
    get_executor("slurm", dict(sweep.cluster)).submit([job], store)
    jd = store.job_dir(job)
    return job, store, jd, read_submission(jd)["slurm_job_id"]


def _preempted_job_resumes(tmp_path: Path, env: dict):
    job, store, jd, slurm_id = _submit_one(tmp_path, "preempt", epochs=3, n_train=768)
    deadline = time.monotonic() + 300  # bounded; a loaded 2-core machine took over 120 s to the first checkpoint
    while not jd.checkpoint_file.exists() and not jd.is_done and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not jd.is_done, "the job finished before it could be preempted"
    assert jd.checkpoint_file.exists(), f"no checkpoint within 300 s ({_sacct_state(slurm_id, env)})"
    subprocess.run(["scancel", "--signal=USR2", slurm_id], check=True, env=env, timeout=15)
    assert _wait_final([job], store, timeout=240)[job.job_id] == "done"
    assert json.loads((jd.path / PREEMPTED_FILE).read_text())["count"] >= 1
    record = json.loads(jd.record_file.read_text())
    assert record["timing"]["resumed"] is True
    return job, record


def _task_process(folder: Path) -> int | None:
    """The pid of the submitit task process (``python -m submitit.core._submit FOLDER/...``)."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if (Path(args[0].decode(errors="replace")).name.startswith("python")  # not srun: same arguments
                and b"submitit.core._submit" in args and any(str(folder).encode() in a for a in args)):
            return int(cmdline.parent.name)
    return None


def _forked_children(pid: int) -> list[int]:
    """Children of ``pid`` running its own command line: forked DataLoader workers (not the
    resource tracker, a fresh interpreter)."""
    def cmdline(p: int) -> bytes:
        try:
            return Path(f"/proc/{p}/cmdline").read_bytes()
        except OSError:
            return b""
    return [c for c in child_processes(pid, recursive=False) if cmdline(c) == cmdline(pid) != b""]


def _preempted_job_with_workers(tmp_path: Path, env: dict) -> None:
    """Slurm signals every process of the step, DataLoader workers included: the job is
    checkpointed and requeued ONCE (by its main process) and ends with the metrics of an
    uninterrupted run (tests/test_child_signals.py has the mechanism and the local run)."""
    job, store, jd, slurm_id = _submit_one(tmp_path, "preemptw", epochs=4, n_train=768, budget={"workers": 2})
    folder = tmp_path / "results" / "preemptw" / ".submitit"
    _wait_for(jd.checkpoint_file.exists, 180, "the first checkpoint")
    task = _task_process(folder)
    assert task is not None, "the submitit task process was not found"
    _wait_for(lambda: len(_forked_children(task)) >= 2 or jd.is_done, 60, "the DataLoader workers")
    assert not jd.is_done, "the job finished before it could be preempted"
    workers = len(_forked_children(task))
    subprocess.run(["scancel", "--signal=USR2", slurm_id], check=True, env=env, timeout=15)
    assert _wait_final([job], store, timeout=240)[job.job_id] == "done"
    assert workers >= 2
    assert json.loads((jd.path / PREEMPTED_FILE).read_text())["count"] == 1  # one checkpoint() call
    # submitit logs WARNING lines to both files, INFO lines to stdout only; children share them
    stdout, stderr = ("".join(p.read_text(errors="replace") for p in folder.glob(f"*_log.{ext}"))
                      for ext in ("out", "err"))
    assert stderr.count("Caught signal SIGUSR2") == 1, stderr[-3000:]  # only the main process acted
    assert stdout.count("Calling checkpoint method") == 1, stdout[-3000:]
    assert stdout.count("Requeued job") == 1 and "exited unexpectedly" not in stderr
    _wait_for(lambda: _sacct_state(slurm_id, env) not in ("", "RUNNING", "COMPLETING"), 60,
              "the task process to exit")
    assert _sacct_state(slurm_id, env) == "COMPLETED"
    record = json.loads(jd.record_file.read_text())
    assert record["timing"]["resumed"] is True
    # the same job uninterrupted, locally, in a fresh process that (like the Slurm task) only
    # loads the data cache: the same metrics and curves, exactly
    local = subprocess.run([sys.executable, "-m", "bench.cli", "sweep", str(tmp_path / "preemptw.yaml"),
                            "--executor", "local", "--results", str(tmp_path / "reference")], cwd=REPO,
                           env={**os.environ, "BENCH_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    assert local.returncode == 0, local.stderr[-2000:]
    reference = json.loads(Store(tmp_path / "reference").job_dir(job).record_file.read_text())
    assert reference["timing"]["resumed"] is False
    for key in ("metrics", "selected_epoch", "training_free"):
        assert record[key] == reference[key], key
    assert [(h["epoch"], h["train_loss"], h["val_mAP"]) for h in record["history"]] == \
        [(h["epoch"], h["train_loss"], h["val_mAP"]) for h in reference["history"]]


def test_unknown_partition_is_one_line_and_records_nothing(slurm_cluster, tmp_path):
    sweep = load_sweep(str(_write_sweep(tmp_path, "badpart", seeds=[0, 1])))
    jobs = expand_sweep(sweep)
    store = Store(tmp_path / "results")
    with pytest.raises(BenchError) as err:
        get_executor("slurm", {**sweep.cluster, "partition": "nosuchpartition"}).submit(jobs, store)
    message = str(err.value)
    assert "\n" not in message and "partition" in message.lower()
    assert not list((tmp_path / "results").rglob(SUBMISSION_FILE))
    # through the CLI: exit code 2, one line on stderr
    code = cli_main(["sweep", str(tmp_path / "badpart.yaml"), "--executor", "slurm",
                     "--results", str(tmp_path / "results"), "--cluster", "partition=nosuchpartition"])
    assert code == 2 and not list((tmp_path / "results").rglob(SUBMISSION_FILE))


def test_unknown_cluster_option_rejected_before_submission(slurm_cluster, tmp_path):
    spec = str(_write_sweep(tmp_path, "badopt", seeds=[0]))
    assert cli_main(["sweep", spec, "--executor", "slurm", "--results", str(tmp_path / "r"),
                     "--cluster", "partitoin=debug"]) == 2
    assert not (tmp_path / "r").exists() or not list((tmp_path / "r").rglob(SUBMISSION_FILE))


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _requeues_exhausted(tmp_path: Path, env: dict) -> None:
    job, store, jd, slurm_id = _submit_one(tmp_path, "exhaust", epochs=6, n_train=768, cluster={"max_requeues": 1})
    _wait_for(jd.checkpoint_file.exists, 300, "the first checkpoint")  # bounded; slow when loaded
    subprocess.run(["scancel", "--signal=USR2", slurm_id], check=True, env=env, timeout=15)
    # requeued once (max_requeues 1): it resumes and writes a LATER checkpoint
    first = jd.checkpoint_file.stat().st_mtime_ns
    _wait_for(lambda: (jd.path / PREEMPTED_FILE).exists(), 60, "preempted.json")
    _wait_for(lambda: jd.checkpoint_file.exists() and jd.checkpoint_file.stat().st_mtime_ns != first,
              120, "a checkpoint written after the requeue")
    assert not jd.is_done, "the job finished before the second signal"
    subprocess.run(["scancel", "--signal=USR2", slurm_id], check=True, env=env, timeout=15)
    assert _wait_final([job], store, timeout=120)[job.job_id] == "failed"
    (status,), _ = job_statuses([job], store)
    assert "timed-out too many times" in status.reason, status.reason
    assert json.loads((jd.path / PREEMPTED_FILE).read_text())["count"] == 2
    assert not jd.is_done and "UncompletedJobError" in jd.error_file.read_text()


def _two_concurrent_cli_sweeps(tmp_path: Path) -> None:
    spec = str(_write_sweep(tmp_path, "twice", seeds=[0, 1, 2]))
    results = tmp_path / "results"
    jobs = expand_sweep(load_sweep(spec))
    load_job_data(jobs[0])
    cmd = [sys.executable, "-m", "bench.cli", "sweep", spec, "--executor", "slurm", "--results", str(results)]
    procs = [subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    counts = sorted(int(re.search(r"(\d+) to submit", out).group(1)) for out, _ in outs)
    assert counts == [0, 3], outs  # the second waited on .submit.lock, then saw 3 queued jobs
    assert set(_wait_final(jobs, Store(results)).values()) == {"done"}
    store = Store(results)
    slurm_ids = {read_submission(store.job_dir(j))["slurm_job_id"] for j in jobs}
    assert len(slurm_ids) == 3 and len({s.split("_")[0] for s in slurm_ids}) == 1  # one array
    records = store.records("twice")  # every record parses
    assert sorted(r["job"]["seed"] for r in records) == [0, 1, 2]
    # each job ran to completion exactly once: one result file per array task, one array
    results_pickles = list((results / "twice" / ".submitit").glob("*_result.pkl"))
    assert len(results_pickles) == 3, results_pickles


def _two_task_job(tmp_path: Path) -> None:
    from bench.run.devices import with_world_size

    sweep = load_sweep(str(_write_sweep(tmp_path, "ddp", seeds=[0], cluster={"tasks_per_node": 2})))
    job = with_world_size([expand_sweep(sweep)[0]], "slurm", sweep.cluster)[0]
    assert job.world_size == 2 and job.job_id != expand_sweep(sweep)[0].job_id  # W=2: its own id (#29)
    load_job_data(job)
    store = Store(tmp_path / "results")
    get_executor("slurm", dict(sweep.cluster)).submit([job], store)
    assert _wait_final([job], store, timeout=180)[job.job_id] == "done"
    record = json.loads(store.job_dir(job).record_file.read_text())
    assert record["distributed"] == {"world_size": 2, "backend": "gloo"}
    logs = sorted(p.name for p in (tmp_path / "results" / "ddp" / ".submitit").glob("*_log.out"))
    assert len(logs) == 2, logs  # two Slurm tasks ran the job


def _gpu_suite(tmp_path: Path) -> Path:
    """A tiny suite that needs one CUDA GPU (issue 25): the test node has a schedulable fake GPU
    (tests/slurm_cluster.py) and no CUDA."""
    path = tmp_path / "gpu.yaml"
    path.write_text(yaml.safe_dump({
        "name": "gpu", "dataset": {"name": "mnist-mosaic", "options": {"n_train": 64, "n_val": 16, "n_test": 16}},
        "budget": {"epochs": 1, "batch_size": 16, "resolution": 32}, "methods": ["baseline"],
        "resources": {"device": "cuda", "gpus": 1},
        "cluster": {"time_min": 5, "cpus_per_task": 1, "mem_gb": 1, "max_requeues": 0}}))
    return path


def test_on_a_node_without_cuda_a_gpu_job_stops_in_seconds_and_records_nothing(slurm_cluster, tmp_path, capsys,
                                                                               monkeypatch):
    from bench.spec.suites import expand_jobs, load_suite

    cache = tmp_path / "cache"
    monkeypatch.setenv("BENCH_CACHE_DIR", str(cache))  # sbatch exports it to the job
    results = tmp_path / "results"
    suite = _gpu_suite(tmp_path)
    t0 = time.monotonic()
    assert cli_main(["run", "--suite", str(suite), "--executor", "slurm", "--results", str(results)]) == 0
    out = capsys.readouterr().out
    # submitting built no input cache (only the dry run's model counts, bench/run/plan.py)
    assert not cache.exists() or {p.name for p in cache.iterdir()} <= {"plan"}
    said = next(line for line in out.splitlines() if line.startswith("submitted"))
    assert "Slurm array(s)" in said and "logs in" in said and f"--results {results}" in said
    scripts = list((results / "gpu" / ".submitit").rglob("*_submission.sh"))
    script = scripts[0].read_text()
    assert "#SBATCH --gpus-per-node=1" in script and "#SBATCH --mem=1GB" in script  # what sbatch received
    jobs = expand_jobs(load_suite(str(suite)))
    store = Store(results)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and not store.job_dir(jobs[0]).error_file.exists():
        time.sleep(1)
    error = store.job_dir(jobs[0]).error_file.read_text()
    assert "needs CUDA" in error and "torch.cuda.is_available() is False" in error
    assert time.monotonic() - t0 < 120
    statuses, _ = job_statuses(jobs, store)
    assert statuses[0].state != "done" and not store.job_dir(jobs[0]).record_file.exists()
    assert {p.name for p in cache.iterdir()} <= {"plan"}  # the node stopped before any cache was built
    slurm_id = next(iter(results.rglob("slurm.json"))).read_text()
    sid = yaml.safe_load(slurm_id)["slurm_job_id"]
    for _ in range(30):  # accounting lags a few seconds
        state = subprocess.run(["sacct", "-n", "-P", "-X", "-o", "State,ExitCode", "-j", sid],
                               capture_output=True, text=True, timeout=15).stdout.strip()
        if state.startswith("FAILED"):
            break
        time.sleep(1)
    assert state.startswith("FAILED") and state.split("|")[1] == "2:0", state  # exit 2, no signal


# The waiting scenarios' outcomes: last in the file, so that the tests above run while they wait.
def test_preempted_job_resumes_from_checkpoint(background, tmp_path):
    # the same job uninterrupted, in this process (the main thread, while the scenarios run):
    # identical metrics
    sweep = load_sweep(str(_write_sweep(tmp_path, "preempt", seeds=[0], epochs=3, n_train=768)))
    same = expand_sweep(sweep)[0]
    reference = run_job(same, Store(tmp_path / "reference"), device="cpu", threads=1, progress=False)
    job, record = background["preempt"].result()
    assert same.job_id == job.job_id
    assert record["metrics"]["selected"]["test"]["mAP"] == pytest.approx(
        reference["metrics"]["selected"]["test"]["mAP"], abs=1e-6)
    assert record["selected_epoch"] == reference["selected_epoch"]


def test_sweep_array_with_a_failing_job(background):
    background["array"].result()


def test_preempted_job_with_workers_requeues_once(background):
    background["preemptw"].result()


def test_requeues_exhausted_fail_with_the_reason(background):
    background["exhaust"].result()


def test_two_concurrent_cli_sweeps_run_each_job_once(background):
    background["twice"].result()


def test_two_task_job_runs_data_parallel(background):
    background["ddp"].result()
