"""`bench status --suite NAME | --sweep SPEC`: where every job of a suite or sweep stands.

State comes from the store (DONE, error.txt, slurm.json, preempted.json) plus
ONE scheduler query (sacct; squeue without accounting; nothing if neither
answers, then the store alone). The submitting process need not be alive.

States: the store's (``bench.run.store.STATES``: new, running, incomplete, failed,
done, stale -- the same names as ``bench run --dry-run``) plus two the scheduler
alone knows: pending (submitted, queued) and preempted (requeued after
preemption or time limit, waiting to resume). running = the scheduler says so or
a live process holds the job's lock; failed = exception, cancelled, killed, out
of memory, timed out too often (resubmitted by the next ``bench sweep``); stale =
done by other code (see ``bench.run.provenance``), not rerun unless asked.
"""
from __future__ import annotations

import argparse
from collections import Counter
from dataclasses import dataclass

from bench.spec.jobs import JobSpec
from bench.run.slurm import PREEMPTED_FILE, read_submission, scheduler_states
from bench.run.store import Store, last_error_line

STATES = ("new", "pending", "preempted", "running", "incomplete", "failed", "done", "stale")
PENDING_STATES = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING",
                  "SUSPENDED", "RESIZING", "PREEMPTED"}
RUNNING_STATES = {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING"}


@dataclass(frozen=True)
class JobStatus:
    job: JobSpec
    state: str  # one of STATES
    reason: str = ""  # failed: the error's last line or the scheduler's final state; stale: why
    slurm_job_id: str = ""
    scheduler_state: str = ""

    @property
    def active(self) -> bool:
        """Queued or running on the scheduler: must not be resubmitted."""
        return self.state in ("running", "pending", "preempted")


_last_error_line = last_error_line


def job_statuses(jobs: list[JobSpec], store: Store) -> tuple[list[JobStatus], str]:
    """Status of every job and the scheduler source used ("sacct", "squeue", "none" when it did not
    answer, "store" when nothing was submitted)."""
    subs = {j.job_id: read_submission(store.job_dir(j)) for j in jobs}
    ids = [s["slurm_job_id"] for s in subs.values() if s]
    sched, source = scheduler_states(ids) if ids else ({}, "store")  # "store": nothing was submitted
    out = []
    for job in jobs:
        jd = store.job_dir(job)
        sub = subs[job.job_id]
        sid = sub["slurm_job_id"] if sub else ""
        state = sched.get(sid, "") if sid else ""
        local_state, local_reason = jd.describe()
        if local_state in ("done", "stale"):
            out.append(JobStatus(job, local_state, local_reason, slurm_job_id=sid, scheduler_state=state))
            continue
        if local_state == "running" and state not in RUNNING_STATES:  # lock held: running here
            out.append(JobStatus(job, "running", "", sid, state))
            continue
        error = jd.error_file.read_text(errors="replace") if jd.error_file.exists() else ""
        preempted = (jd.path / PREEMPTED_FILE).exists()
        if state in PENDING_STATES:
            out.append(JobStatus(job, "preempted" if preempted else "pending", "", sid, state))
        elif state in RUNNING_STATES:
            out.append(JobStatus(job, "running", "", sid, state))
        elif state:  # a final state without DONE: failed, cancelled, timeout, OOM, node failure
            reason = _last_error_line(error) if error else f"slurm job {sid} ended {state} without a record"
            out.append(JobStatus(job, "failed", reason, sid, state))
        elif error:
            out.append(JobStatus(job, "failed", _last_error_line(error), sid))
        elif sub and "squeue" not in source:  # the controller did not answer: assume queued
            out.append(JobStatus(job, "pending", "", sid))
        elif sub:  # not queued, not running, no final record: cancelled while pending, lost
            out.append(JobStatus(job, "failed", f"slurm job {sid} is no longer queued and left no record", sid))
        else:
            out.append(JobStatus(job, local_state, local_reason))
    return out, source


def summarize(statuses: list[JobStatus]) -> dict[str, int]:
    counts = Counter(s.state for s in statuses)
    return {state: counts.get(state, 0) for state in STATES}


def _jobs_for(args: argparse.Namespace) -> list[JobSpec]:
    from bench.errors import BenchError

    if bool(args.suite) == bool(args.sweep):
        raise BenchError("bench status: give exactly one of --suite NAME or --sweep SPEC")
    sets = getattr(args, "sets", None) or ()
    if args.sweep:
        from bench.spec.sweeps import expand_sweep, load_sweep

        return expand_sweep(load_sweep(args.sweep, sets))
    from bench.spec.suites import expand_jobs, load_suite

    return expand_jobs(load_suite(args.suite, sets))


def main(args: argparse.Namespace) -> int:
    from bench.run.roots import resolve_root, unreadable_line

    jobs = _jobs_for(args)
    if getattr(args, "world_size", 1) > 1:  # a W-process launch has its own job ids (JobSpec.world_size)
        from dataclasses import replace

        jobs = [replace(j, world_size=args.world_size) for j in jobs]
    name = jobs[0].suite if jobs else "?"
    args.results = resolve_root(args.results, name)
    store = Store(args.results)
    statuses, source = job_statuses(jobs, store)
    counts = summarize(statuses)
    print(f"{name}: {len(jobs)} jobs: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
          + ("" if source in ("squeue+sacct", "store") else f"  (scheduler: {source}; states partly from the store)"))
    corrupt = unreadable_line(statuses, store)
    if corrupt:
        print(corrupt)
    others = sorted(p.name for p in store.root.glob(f"{name.split('+')[0]}+*") if p.is_dir() and p.name != name)
    if "+" not in name and others:
        print(f"also under {store.root}/: {len(others)} --set variant(s) of {name} ({', '.join(others)}), "
              "counted apart; see them with the same --set")
    if args.verbose:
        for st in statuses:
            print(f"  {st.job.job_id:<22} {st.job.display_name:<24} seed {st.job.seed:<3} {st.state:<10} "
                  f"{st.slurm_job_id} {st.scheduler_state}")
    extra = f" --results {args.results}" if args.results != "results" else ""
    extra += "".join(f" --set {s}" for s in getattr(args, "sets", None) or ())
    print_stale(statuses, f"bench sweep {args.sweep}{extra} --rerun-stale" if args.sweep
                else f"bench run --suite {args.suite}{extra} --rerun-stale",
                limit=len(statuses) if args.verbose else 5)
    failed = [s for s in statuses if s.state == "failed"]
    for st in failed:
        print(f"  FAILED {st.job.display_name} seed {st.job.seed} ({st.job.job_id}, slurm {st.slurm_job_id or '-'}):"
              f" {st.reason}")
    return 1 if failed else 0


def print_stale(statuses: list[JobStatus], command: str, limit: int = 5) -> int:
    """Say how many records are stale, why (first few), and how to rerun them; return the count."""
    stale = [s for s in statuses if s.state == "stale"]
    if not stale:
        return 0
    print(f"{len(stale)} stale record(s): done by other code than the current one (see README "
          f"'When is a record stale?'); they count as done-but-stale and are not rerun; "
          f"rerun them with `{command}` (old records are kept aside until the new ones are done)")
    for st in stale[:limit]:
        print(f"  stale {st.job.display_name} seed {st.job.seed} ({st.job.job_id}): {st.reason}")
    if len(stale) > limit:
        print(f"  ... and {len(stale) - limit} more")
    return len(stale)
