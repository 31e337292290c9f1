"""How fast sweeps go out and `bench status` answers, against a REAL single-node Slurm.

    .venv/bin/python benchmarks/bench_sweep.py [--jobs 64] [--status-jobs 1000] [--reps 3]

Needs root (it brings up the test cluster of tests/slurm_cluster.py; do not run it
while `pytest -m slurm` runs: same ports). Measures:

1. `bench sweep` submitting a JOBS-job sweep (one array, jobs held so nothing trains),
   then the same command again (nothing to submit: every job is queued).
2. `bench status` on a STATUS_JOBS-job sweep whose store is faked: 30 % DONE, 10 %
   error.txt (both with slurm.json of an array the scheduler no longer knows), 50 %
   slurm.json pointing at tasks of a real held array (pending in squeue), 10 % never
   submitted. Counts the scheduler calls (one squeue, one sacct).

Times are wall seconds in this process (imports excluded), fastest of ``--reps`` where
repeated; the CLI subprocess time and its import time alone are printed too.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from bench.run import slurm as bench_slurm  # noqa: E402
from bench.cli import main as cli_main  # noqa: E402
from bench.run.store import Store, atomic_write_json  # noqa: E402
from bench.spec.sweeps import expand_sweep, load_sweep  # noqa: E402
from slurm_cluster import SlurmCluster  # noqa: E402


def write_sweep(folder: Path, name: str, n_seeds: int) -> Path:
    suite = {"name": "tiny", "dataset": {"name": "mnist-mosaic", "options": {"n_train": 128, "n_val": 32,
                                                                            "n_test": 64}},
             "backbone": "smallcnn", "budget": {"epochs": 1, "batch_size": 32, "resolution": 24},
             "seeds": [0], "methods": ["baseline"]}
    (folder / "tiny.yaml").write_text(yaml.safe_dump(suite))
    sweep = {"name": name, "suite": "tiny.yaml", "seeds": list(range(n_seeds)),
             "cluster": {"time_min": 10, "cpus_per_task": 1, "sbatch": {"hold": True}},
             "search": [{"method": "baseline"}]}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(sweep))
    return path


def timed_cli(argv: list[str]) -> tuple[float, str]:
    out = io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(out):
        code = cli_main(argv)
    seconds = time.perf_counter() - t0
    if code not in (0, 1):
        raise SystemExit(f"bench {' '.join(argv)} exited {code}: {out.getvalue()}")
    return seconds, out.getvalue()


class CountingRun:
    """Wraps subprocess.run in bench.run.slurm to count scheduler calls by command."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self._run = subprocess.run

    def __call__(self, cmd, *args, **kwargs):
        self.calls.append(cmd[0])
        return self._run(cmd, *args, **kwargs)


def bench_submit(folder: Path, n_jobs: int) -> dict[str, float]:
    spec = str(write_sweep(folder, "submit64", n_jobs))
    results = str(folder / "results")
    first, out = timed_cli(["sweep", spec, "--executor", "slurm", "--results", results])
    assert f"{n_jobs} to submit" in out, out
    again, out = timed_cli(["sweep", spec, "--executor", "slurm", "--results", results])
    assert "0 to submit" in out, out
    status, out = timed_cli(["status", "--sweep", spec, "--results", results])
    assert f"{n_jobs} pending" in out, out
    return {"submit_s": first, "resubmit_noop_s": again, "status_s": status}


def fake_store(folder: Path, spec: str, env: dict) -> int:
    """Fill the store of a STATUS_JOBS-job sweep; return how many jobs point at the held array."""
    jobs = expand_sweep(load_sweep(spec))
    n = len(jobs)
    n_done, n_error, n_queued = int(0.3 * n), int(0.1 * n), int(0.5 * n)
    submitted = n_done + n_error + n_queued
    array = subprocess.run(["sbatch", "--parsable", "--hold", f"--array=0-{n_queued - 1}", "-o", "/dev/null",
                            "--wrap", "true"], env=env, capture_output=True, text=True, check=True,
                           timeout=60).stdout.strip().split(";")[0]
    store = Store(folder / "results")
    for i, job in enumerate(jobs):
        jd = store.job_dir(job)
        jd.path.mkdir(parents=True, exist_ok=True)
        if i < submitted:  # done / failed jobs point at an array the scheduler has forgotten
            sid = f"{array}_{i - n_done - n_error}" if i >= n_done + n_error else f"999999_{i}"
            atomic_write_json(jd.path / bench_slurm.SUBMISSION_FILE, {
                "slurm_job_id": sid, "array_id": sid.split("_")[0], "submitted_at": time.time(),
                "suite": job.suite, "label": job.display_name, "seed": job.seed, "submitit_folder": ""})
            jd.write_job(job)
        if i < n_done:
            atomic_write_json(jd.record_file, {"job_id": job.job_id, "status": "done"})
            jd.done_file.write_bytes(b"")
        elif i < n_done + n_error:
            jd.mark_failed("Traceback (most recent call last):\nValueError: fake failure\n")
    return n_queued


def bench_status(folder: Path, n_jobs: int, reps: int, env: dict) -> dict[str, float]:
    spec = str(write_sweep(folder, "status1000", n_jobs))
    n_queued = fake_store(folder, spec, env)
    counter = CountingRun()
    bench_slurm.subprocess.run = counter
    try:
        times = []
        for _ in range(reps):
            counter.calls.clear()
            seconds, out = timed_cli(["status", "--sweep", spec, "--results", str(folder / "results")])
            times.append(seconds)
    finally:
        bench_slurm.subprocess.run = counter._run
    assert f"{n_queued} pending" in out, out
    assert sorted(counter.calls) == ["sacct", "squeue"], counter.calls
    t0 = time.perf_counter()
    jobs = expand_sweep(load_sweep(spec))
    expand_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    bench_slurm.scheduler_states(["1_0"])
    query_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    cli = subprocess.run([sys.executable, "-m", "bench.cli", "status", "--sweep", spec, "--results",
                          str(folder / "results")], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=120)
    cli_s = time.perf_counter() - t0
    t0 = time.perf_counter()  # the CLI's start-up alone: Python + torch (methods) imports
    subprocess.run([sys.executable, "-c", "import bench.run.status, bench.spec.sweeps"], cwd=REPO, env=env, check=True,
                   timeout=120)
    imports_s = time.perf_counter() - t0
    return {"jobs": len(jobs), "status_s": min(times), "expand_s": expand_s, "one_query_pair_s": query_s,
            "cli_subprocess_s": cli_s, "imports_s": imports_s, "scheduler_calls": len(counter.calls),
            "summary": out.strip().splitlines()[0], "cli_exit": cli.returncode}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=64)
    p.add_argument("--status-jobs", type=int, default=1000)
    p.add_argument("--reps", type=int, default=3)
    args = p.parse_args()
    cluster = SlurmCluster()
    t0 = time.perf_counter()
    cluster.start()
    print(f"cluster up in {time.perf_counter() - t0:.1f} s", flush=True)
    import os

    os.environ["SLURM_CONF"] = str(cluster.conf)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
            sub = Path(tmp) / "submit"
            sub.mkdir()
            s = bench_submit(sub, args.jobs)
            print(f"bench sweep, {args.jobs} jobs (one held array): {s['submit_s']:.2f} s; "
                  f"again (nothing to submit): {s['resubmit_noop_s']:.2f} s; "
                  f"bench status on them: {s['status_s']:.2f} s", flush=True)
            subprocess.run(["scancel", "--user=root"], env=cluster.env, capture_output=True, timeout=30)
            st = Path(tmp) / "status"
            st.mkdir()
            r = bench_status(st, args.status_jobs, args.reps, cluster.env)
            print(f"bench status, {r['jobs']} jobs (fake store, {r['scheduler_calls']} scheduler calls): "
                  f"{r['status_s']:.2f} s in-process (fastest of {args.reps}), of which expanding the sweep "
                  f"{r['expand_s']:.2f} s, one squeue+sacct pair {r['one_query_pair_s']:.2f} s; "
                  f"as a CLI subprocess {r['cli_subprocess_s']:.2f} s (exit {r['cli_exit']}; its imports alone "
                  f"{r['imports_s']:.2f} s); "
                  f"output: {r['summary']}", flush=True)
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
