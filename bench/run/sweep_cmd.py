"""`bench sweep SPEC`: submit every job of a sweep that is not done, queued or running.

With the slurm executor everything missing or failed goes out as ONE array
(chunked at MaxArraySize) and the command returns at once with the array id.
Re-running it resubmits only what is missing or failed: a job whose Slurm job is
still pending or running is left alone. Two concurrent invocations on one sweep
serialise on ``<results>/<sweep>/.submit.lock``; the runner's per-job lock and
DONE marker keep any job from running twice to completion anyway.

States are ``bench.run.status``'s (new, pending, preempted, running, incomplete, failed, done,
stale). A stale record (done by other code) is not resubmitted unless ``--rerun-stale``: then
it is set aside into ``<job>/stale-<fingerprint>/`` until the new record is DONE.
"""
from __future__ import annotations

import argparse
import fcntl
import os
from pathlib import Path

import methods

from bench.run.executors import get_executor
from bench.run.roots import check_writable, resolve_root, unreadable_line, write_variant
from bench.run.run_suite import check_run_flags, parse_seeds
from bench.run.status import job_statuses, print_stale, summarize
from bench.run.store import Store
from bench.spec.sweeps import expand_sweep, load_sweep

_seeds = parse_seeds  # (kept for callers of the old name)


def _rerun_command(args: argparse.Namespace) -> str:
    extra = f" --results {args.results}" if args.results != "results" else ""
    extra += "".join(f" --set {s}" for s in getattr(args, "sets", None) or ())
    return f"bench sweep {args.spec}{extra} --rerun-stale"


def main(args: argparse.Namespace) -> int:
    sweep = load_sweep(args.spec, getattr(args, "sets", None) or ())
    jobs = expand_sweep(sweep, parse_seeds(args.seeds), args.data_root or os.environ.get("BENCH_DATA_ROOT"),
                        missing_weights_ok=bool(args.dry_run))
    executor_name = args.executor or sweep.executor.get("name", "local")
    # every flag (and the cluster block) checked before anything runs
    cluster = {**sweep.cluster, **check_run_flags(args, executor_name, sweep.cluster, sweep.source)}
    from bench.run.devices import with_world_size

    jobs = with_world_size(jobs, executor_name, cluster)  # W > 1: its own job ids
    args.results = resolve_root(args.results, sweep.name)
    store = Store(args.results)
    if executor_name != "slurm":
        from bench.run.devices import check_local_precision, require_local

        if not args.dry_run:
            require_local(jobs, args.device, sweep.name)  # a GPU suite never falls back to the CPU
        check_local_precision(jobs, args.device)
    if args.dry_run:  # reads the store and the scheduler; writes nothing
        statuses, _ = job_statuses(jobs, store)
        from bench.run.plan import print_plan
        from bench.spec.weights import dry_run_lines

        print("\n".join(dry_run_lines(sweep.name, jobs)))
        plan_problem = print_plan(jobs, executor_name, cluster, args.device)
        print(f"{'job_id':<22} {'label':<28} {'seed':>4}  {'state':<10} hparams")
        for st in statuses:
            defaults = methods.get(st.job.method).defaults
            varied = {k: v for k, v in st.job.hparams.items() if defaults.get(k) != v}
            print(f"{st.job.job_id:<22} {st.job.display_name:<28} {st.job.seed:>4}  {st.state:<10} {varied}")
        counts = summarize(statuses)
        print(f"{len(jobs)} jobs: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n))
        if not getattr(args, "rerun_stale", False):
            print_stale(statuses, _rerun_command(args))
        return plan_problem
    if executor_name == "slurm":
        from bench.run.plan import check_before_submit

        check_before_submit(jobs, cluster)  # memory refused before sbatch
    check_writable(Path(args.results) / sweep.name)
    if sweep.overrides:
        write_variant(args.results, sweep.name, sweep.overrides, args.spec)
    lock_path = Path(args.results) / sweep.name / ".submit.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)  # concurrent `bench sweep`s take turns
        statuses, source = job_statuses(jobs, store)
        corrupt = unreadable_line(statuses, store)
        if corrupt:
            print(corrupt)
        rerun = bool(getattr(args, "rerun_stale", False))
        stale = [st.job for st in statuses if st.state == "stale"]
        mixed = [st.job for st in statuses if st.state == "incomplete" and not st.active
                 and store.job_dir(st.job).started_by_other_code()]
        todo = [st.job for st in statuses if st.state not in ("done", "stale") and not st.active]
        reused = store.reuse_done(todo, {st.job.job_id: st.state for st in statuses})
        if reused:
            print(f"{len(reused)} job(s) already done by the current code under another suite (same job id): "
                  f"record copied from {', '.join(sorted(set(reused.values())))}")
            todo = [j for j in todo if j.job_id not in reused]
        todo += stale if rerun else []
        skipped = len(jobs) - len(todo)
        print(f"sweep {sweep.name}: {len(jobs)} jobs, {skipped} done, stale or queued, {len(todo)} to submit"
              + ("" if source in ("squeue+sacct", "store") else f" (scheduler: {source})"))
        if stale and not rerun:
            print_stale(statuses, _rerun_command(args))
        if not todo:
            return 0
        from bench.run.executors import prepare_inputs

        if executor_name != "slurm":  # (on a cluster each job builds what it lacks, on its node)
            prepare_inputs(todo)  # caches built in a child, never by a training process
        for job in stale + mixed if rerun else []:
            store.job_dir(job).set_aside()
        options = {**cluster, "device": args.device, "threads": args.threads} if executor_name == "slurm" \
            else {"device": args.device, "threads": args.threads}
        summary = get_executor(executor_name, options).submit(todo, store)
        if rerun and executor_name != "slurm":
            for job in stale:
                store.job_dir(job).restore_aside()  # a failed rerun keeps the old record
    if executor_name == "slurm":
        from bench.run.plan import submitted_line

        print(submitted_line(summary, f"--sweep {args.spec}", args.results, getattr(args, "sets", None),
                             jobs[0].world_size if jobs else 1))
        return 0
    if summary.get("skipped"):
        print(f"{len(summary['skipped'])} job(s) skipped: another process is running them (not failures)")
    return 1 if summary.get("failed") else 0
