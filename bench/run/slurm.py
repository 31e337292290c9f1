"""The Slurm executor: jobs go to the cluster as submitit job arrays.

* :class:`SlurmJobRunner` is the callable each array task runs. Its ``checkpoint()``
  returns a resubmission of itself (DINO style): on preemption or time limit
  submitit requeues the task, and the runner resumes from the job's per-epoch
  checkpoint file. ``max_requeues`` bounds the requeues; past it the job fails
  with the reason in its error.txt. Slurm signals every process of the step:
  the job runs under :func:`bench.run.signals.main_process_only`, so DataLoader
  workers and helpers ignore USR2/SIGTERM/SIGCONT and only the task's main
  process checkpoints and requeues, once per signal.
* :class:`SlurmExecutor` submits every given job as ONE array (chunked at the
  cluster's MaxArraySize), returns at once, and writes ``slurm.json`` into each
  job's folder so ``bench status`` and the next ``bench sweep`` can ask the
  scheduler later; nothing needs the submitting process to stay alive.
* :func:`scheduler_states` asks the scheduler about many jobs in ONE ``sacct``
  call (``squeue`` when there is no accounting), with a bounded timeout.

submitit logs go to ``<results>/<suite>/.submitit/``.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Mapping

from bench.errors import BenchError
from bench.spec.cluster import CLUSTER_DEFAULTS, RUN_OPTIONS, parse_cluster, parse_cluster_overrides  # noqa: F401
from bench.spec.cluster import slurm_parameters
from bench.spec.jobs import JobSpec
from bench.run.store import JobDir, Store, atomic_write_json

SUBMISSION_FILE = "slurm.json"
PREEMPTED_FILE = "preempted.json"
QUERY_TIMEOUT_S = 15.0
#: Scheduler states meaning "still queued or running: do not resubmit".
ACTIVE_STATES = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD",
                 "REQUEUE_FED", "RESIZING", "SUSPENDED", "STAGE_OUT", "SIGNALING", "PREEMPTED"}


class SlurmJobRunner:
    """What one array task runs: ``run_job`` on the job, then a short summary.

    Picklable (no open handles); lives in the package so the node can unpickle it.
    """

    def __init__(self, results_root: str, device: str | None = None, threads: int | None = None) -> None:
        self.results_root, self.device, self.threads = str(results_root), device, threads

    def __call__(self, job_dict: dict[str, Any]) -> dict[str, Any]:
        from bench.run.runner import run_job
        from bench.run.signals import main_process_only, slurm_signals

        job = JobSpec.from_dict(job_dict)
        threads = self.threads or int(os.environ.get("SLURM_CPUS_PER_TASK", 0)) or None
        try:
            # Slurm signals every process of the step: only this one checkpoints and requeues
            with main_process_only(slurm_signals()):
                _start_checks(job, Store(self.results_root), self.device)  # no GPU: exit 2 here, in seconds
                record = run_job(job, Store(self.results_root), device=self.device, threads=threads,
                                 progress=False)
        except BenchError as err:
            if "running elsewhere" in str(err):  # a concurrent launcher has it: not a failure
                return {"job_id": job.job_id, "status": "running elsewhere"}
            raise
        return {"job_id": job.job_id, "status": "done",
                "test_mAP": record["metrics"]["selected"]["test"]["mAP"]}

    def checkpoint(self, job_dict: dict[str, Any]) -> Any:
        """Called by submitit on preemption / timeout: note it, resubmit ourselves.

        The runner already checkpoints every epoch, so nothing else must be saved.
        """
        import submitit

        job = JobSpec.from_dict(job_dict)
        jd = Store(self.results_root).job_dir(job)
        try:
            previous = json.loads((jd.path / PREEMPTED_FILE).read_text())
        except (OSError, ValueError):
            previous = {"count": 0}
        atomic_write_json(jd.path / PREEMPTED_FILE, {"count": int(previous.get("count", 0)) + 1,
                                                      "at": time.time()})
        return submitit.helpers.DelayedSubmission(SlurmJobRunner(self.results_root, self.device,
                                                                 self.threads), job_dict)


def _start_checks(job: JobSpec, store: Store, device: str | None) -> None:
    """First thing on the node: a GPU suite's job without CUDA stops with one line (stderr and the
    job's error.txt; exit 2, no record, no cache built); then the job's input caches are built
    once per cluster, under a lock in the cache folder: the first array task builds them, the
    others wait and reuse them (the submitting machine builds nothing)."""
    import sys

    from bench.run.devices import require_device, require_world_size

    try:
        where = f"job {job.job_id} ({job.display_name}, suite {job.suite})"
        require_device(job.resources, device, where)
        require_world_size(job, where)
    except BenchError as err:
        print(f"bench: error: {err}", file=sys.stderr, flush=True)
        store.job_dir(job).mark_failed(f"{err}\n")
        raise SystemExit(2) from None
    from bench.run.inputs import build_lock, prepare_inputs
    from bench.run.runner import CACHE_DIR

    with build_lock(CACHE_DIR):  # one builder per cache folder; the other tasks reuse its caches
        prepare_inputs([job])


def read_submission(jd: JobDir) -> dict[str, Any] | None:
    try:
        return json.loads((jd.path / SUBMISSION_FILE).read_text())
    except (OSError, ValueError):
        return None


def max_array_size(default: int = 1001) -> int:
    """The cluster's MaxArraySize (``scontrol show config``), ``default`` if unknown."""
    try:
        out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True,
                             timeout=QUERY_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):
        return default
    found = re.search(r"^MaxArraySize\s*=\s*(\d+)", out.stdout, re.M)
    return int(found.group(1)) if found else default


class SlurmExecutor:
    """Submits jobs as submitit arrays; returns at once with the array id(s)."""

    name = "slurm"

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        options = dict(options or {})
        self.cluster = parse_cluster(options)
        self.device = options.get("device")
        self.threads = options.get("threads")

    def _submitit_executor(self, folder: Path, count: int, resources: Mapping[str, Any] | None = None):
        import submitit

        if not shutil.which("sbatch"):
            raise BenchError("slurm executor: sbatch is not on PATH; run on a Slurm login node "
                             "or use --executor local")
        ex = submitit.SlurmExecutor(folder=folder, max_num_timeout=int(self.cluster["max_requeues"]))
        params = slurm_parameters(self.cluster, resources, count)  # what --dry-run printed
        try:
            ex.update_parameters(**params)
        except ValueError as err:
            raise BenchError(f"cluster options rejected by submitit: {str(err).splitlines()[0]}") from None
        return ex

    def submit(self, jobs: list[JobSpec], store: Store) -> dict[str, Any]:
        """Submit ``jobs`` as array(s); write slurm.json per job. Nothing is recorded on failure."""
        if not jobs:
            return {"executor": self.name, "submitted": 0, "arrays": [], "failed": []}
        suite = jobs[0].suite
        folder = Path(store.root) / suite / ".submitit"
        chunk = max(1, max_array_size())
        runner = SlurmJobRunner(str(Path(store.root).resolve()), self.device, self.threads)
        arrays: list[str] = []
        for start in range(0, len(jobs), chunk):
            part = jobs[start:start + chunk]
            ex = self._submitit_executor(folder, len(part), part[0].resources)
            sub_jobs = _map_array(ex, runner, [j.to_dict() for j in part])
            array_id = str(sub_jobs[0].job_id).split("_")[0]
            arrays.append(array_id)
            now = time.time()
            for job, sj in zip(part, sub_jobs):
                atomic_write_json(store.job_dir(job).path / SUBMISSION_FILE, {
                    "slurm_job_id": str(sj.job_id), "array_id": array_id, "submitted_at": now,
                    "suite": suite, "label": job.display_name, "seed": job.seed,
                    "submitit_folder": str(folder)})
        return {"executor": self.name, "submitted": len(jobs), "arrays": arrays, "failed": [],
                "logs": str(folder)}


def _map_array(ex: Any, runner: SlurmJobRunner, args: list[dict[str, Any]]) -> list[Any]:
    from submitit.core.utils import FailedJobError, FailedSubmissionError

    try:
        if len(args) == 1:  # submitit submits a single job without --array
            return [ex.submit(runner, args[0])]
        return ex.map_array(runner, args)
    except (FailedJobError, FailedSubmissionError, OSError) as err:
        raise BenchError(f"sbatch refused the submission: {_one_line(str(err))}") from None


def _one_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower()]
    return (errors or lines or ["(no message)"])[-1]


_ARRAY_RANGE = re.compile(r"^(\d+)_\[([^\]]+)\]$")


def _expand_job_ids(job_id: str) -> list[str]:
    """'12_[0-3,7%2]' -> ['12_0', ..., '12_3', '12_7']; plain ids unchanged."""
    found = _ARRAY_RANGE.match(job_id)
    if not found:
        return [job_id]
    base, spec = found.group(1), found.group(2).split("%")[0]
    out = []
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        out.extend(f"{base}_{i}" for i in range(int(lo), int(hi or lo) + 1))
    return out


def _query(cmd: list[str], timeout: float) -> dict[str, str] | None:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    states: dict[str, str] = {}
    for line in out.stdout.splitlines():  # later lines (newer records) win
        jid, _, state = line.strip().partition("|")
        if jid and state:
            for one in _expand_job_ids(jid):
                states[one] = state.split()[0].rstrip("+")
    return states


def scheduler_states(job_ids: list[str], timeout: float = QUERY_TIMEOUT_S) -> tuple[dict[str, str], str]:
    """({slurm job id: STATE}, source): ONE squeue call (queued and running jobs, known to
    the controller at once) and ONE sacct call (final states; accounting may lag by seconds).

    source names who answered: "squeue+sacct", "squeue", "sacct" or "none" (the caller
    then relies on the store alone).
    """
    bases = sorted({j.split("_")[0] for j in job_ids})
    if not bases:
        return {}, "none"
    import getpass

    queued = _query(["squeue", "-h", "-r", "-o", "%i|%T", "-u", getpass.getuser()], timeout)
    final = _query(["sacct", "-n", "-P", "-X", "--format=JobID,State", "-j", ",".join(bases)], timeout)
    sources = [name for name, got in (("squeue", queued), ("sacct", final)) if got is not None]
    return {**(final or {}), **(queued or {})}, "+".join(sources) or "none"
