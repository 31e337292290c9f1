"""Executors: where jobs run. One interface, ``submit(jobs, store) -> summary``.

``local`` runs the jobs one after another in this process (the default); the
runner's per-job lock and DONE marker make it safe to start several launchers
on one suite. ``slurm`` (bench.run.slurm) submits them as one submitit job array.
"""
from __future__ import annotations

import time
from typing import Any, Mapping, Protocol

from bench.spec.jobs import JobSpec
from bench.run.inputs import prepare_inputs  # noqa: F401  (re-exported: callers import it from here)
from bench.run.store import Store


class Executor(Protocol):
    name: str

    def submit(self, jobs: list[JobSpec], store: Store) -> dict[str, Any]:
        """Run or enqueue ``jobs`` (none of them done); return a summary for the user."""


class LocalExecutor:
    """Runs jobs sequentially in-process; a failing job is recorded and the others go on."""

    name = "local"

    def __init__(self, device: str | None = None, threads: int | None = None, progress: bool = True,
                 wait: bool = False) -> None:
        self.device, self.threads, self.progress, self.wait = device, threads, progress, wait

    def _threads(self) -> int:
        """--threads, else BENCH_THREADS, else the CPUs this process may use (affinity, per rank)."""
        import os

        from bench.run.inputs import usable_cpus

        return self.threads or int(os.environ.get("BENCH_THREADS") or 0) or usable_cpus()

    def submit(self, jobs: list[JobSpec], store: Store) -> dict[str, Any]:
        from bench.errors import BenchError
        from bench.run.runner import run_job
        from bench.run.signals import local_signals, main_process_only

        done, failed, skipped, t_start = [], [], [], time.perf_counter()
        for i, job in enumerate(jobs):
            elapsed = time.perf_counter() - t_start
            eta = f", ETA {elapsed / i * (len(jobs) - i) / 60:.1f} min" if i else ""
            print(f"[{i + 1}/{len(jobs)}] {job.display_name} seed {job.seed} ({job.job_id}{eta})", flush=True)
            if store.job_dir(job).is_running():  # another launcher took it since the states were read
                _skip_line(job, store)
                skipped.append(job)
                continue
            try:
                with main_process_only(local_signals()):  # the job's workers survive USR2/SIGTERM
                    record = run_job(job, store, device=self.device, threads=self._threads(),
                                     progress=self.progress)
            except BenchError as err:
                if RUNNING_ELSEWHERE not in str(err):
                    raise  # a user mistake: one line, exit 2
                _skip_line(job, store)  # the lock was taken between the probe and the runner
                skipped.append(job)
                continue
            except Exception as err:  # recorded in error.txt by the runner; the others go on
                where = store.job_dir(job).error_file
                print(f"  FAILED: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''} "
                      f"(traceback: {where})", flush=True)
                failed.append(job.job_id)
                continue
            m = record["metrics"]["selected"]["test"]
            print(f"  done: test mAP {m['mAP']:.2f} (selected epoch {record['selected_epoch']}), "
                  f"{record['timing']['wall_s']:.0f} s", flush=True)
            done.append(job.job_id)
        if self.wait:
            for job in skipped:
                while store.job_dir(job).is_running():
                    time.sleep(2)
                state = store.job_dir(job).state
                print(f"  {job.display_name} seed {job.seed} ({job.job_id}): the other process ended it {state}")
                (done if state in ("done", "stale") else failed).append(job.job_id)
        return {"executor": self.name, "done": done, "failed": failed,
                "skipped": [j.job_id for j in skipped] if not self.wait else [],
                "seconds": round(time.perf_counter() - t_start, 1)}


#: The runner's (bench/run/runner.py) message for a job whose lock another process holds.
RUNNING_ELSEWHERE = "is running elsewhere"


def _skip_line(job: JobSpec, store: Store) -> None:
    print(f"  skipped: another process is running it (lock held on {store.job_dir(job).path}/lock); "
          "`bench status` follows it, `--wait` waits for it", flush=True)


def get_executor(name: str, options: Mapping[str, Any] | None = None) -> Executor:
    """Executor ``name`` configured with ``options`` (device/threads/progress, or cluster keys)."""
    options = dict(options or {})
    if name == "local":
        return LocalExecutor(options.get("device"), options.get("threads"), options.get("progress", True),
                             bool(options.get("wait", False)))
    if name == "slurm":
        from bench.run.slurm import SlurmExecutor

        return SlurmExecutor(options)
    from bench.errors import BenchError

    raise BenchError(f"unknown executor {name!r}; known: local, slurm")
