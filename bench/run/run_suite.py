"""`bench run --suite NAME`: expand the suite into jobs, skip done ones, execute, report.

Job states are the store's (``bench.run.store.STATES``) plus the scheduler's pending/preempted
(``bench.run.status``). Stale records (done by other code, ``bench.run.provenance``) count as done
and are not rerun, with a line saying how many and how to rerun them; ``--rerun-stale``
sets each aside into ``<job>/stale-<fingerprint>/`` and reruns it: the new record replaces
it when DONE, and with the local executor a failed rerun puts the old record back.
"""
from __future__ import annotations

import argparse
import os

from bench.errors import BenchError
from bench.run.executors import get_executor
from bench.spec.jobs import JobSpec
from bench.run.status import job_statuses, print_stale, summarize
from bench.run.store import Store
from bench.spec.suites import SuiteSpec, expand_jobs, load_suite


def select_jobs(args: argparse.Namespace) -> tuple[list[JobSpec], SuiteSpec]:
    suite = load_suite(args.suite, getattr(args, "sets", None) or ())
    seeds = tuple(int(s) for s in args.seeds.split(",")) if args.seeds else None
    data_root = args.data_root or os.environ.get("BENCH_DATA_ROOT")
    jobs = expand_jobs(suite, seeds, data_root)
    if args.methods:
        wanted = {w.strip() for w in args.methods.split(",")}
        unknown = wanted - {j.label for j in jobs} - {j.method for j in jobs}
        if unknown:
            raise BenchError(f"--methods: {sorted(unknown)[0]!r} is not a row of suite {suite.name!r}; "
                             f"rows: {', '.join(dict.fromkeys(j.label for j in jobs))}")
        jobs = [j for j in jobs if j.label in wanted or j.method in wanted]
    return jobs, suite


def main(args: argparse.Namespace) -> int:
    jobs, suite = select_jobs(args)
    if (args.executor or suite.executor.get("name", "local")) != "slurm":
        from bench.train.precision import check_local_device

        check_local_device([j.budget for j in jobs], args.device)
    store = Store(args.results)
    statuses, _ = job_statuses(jobs, store)
    rerun_stale = bool(getattr(args, "rerun_stale", False))
    command = _rerun_command(args)
    if args.dry_run:  # reads the store (and the scheduler if jobs were submitted); writes nothing
        from bench.spec.weights import dry_run_lines, scratch_mark

        print("\n".join(dry_run_lines(suite.name, jobs)))
        print(f"{'job_id':<22} {'label':<18} {'seed':>4}  state")
        for st in statuses:
            print(f"{st.job.job_id:<22} {st.job.display_name:<18} {st.job.seed:>4}  {st.state}{scratch_mark(st.job.backbone)}")
        counts = summarize(statuses)
        print(f"{len(jobs)} jobs: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n))
        if rerun_stale:
            n = counts.get("stale", 0)
            print(f"--rerun-stale: {n} stale record(s) would be set aside and rerun" if n else
                  "--rerun-stale: no stale record")
        else:
            print_stale(statuses, command)
        return 0
    from bench.run.distributed import layout_from_env

    layout = layout_from_env()  # DDP: every rank must get the same job list, in suite order
    rank0 = layout is None or layout.rank == 0

    def left_alone(st) -> bool:  # queued/running on the scheduler, or (one process) locked here
        return st.active and (bool(st.slurm_job_id) or layout is None)

    stale = [st.job for st in statuses if st.state == "stale"]
    mixed = [st.job for st in statuses if st.state == "incomplete" and store.job_dir(st.job).started_by_other_code()]
    busy = [st.job for st in statuses if left_alone(st)]
    todo = [st.job for st in statuses if not left_alone(st)
            and (st.state not in ("done", "stale") or (rerun_stale and st.state == "stale"))]
    reused = store.reuse_done(todo, {st.job.job_id: st.state for st in statuses}) if layout is None else {}
    if reused:
        print(f"{len(reused)} job(s) already done by the current code under another suite (same job id): "
              f"record copied from {', '.join(sorted(set(reused.values())))}")
        todo = [j for j in todo if j.job_id not in reused]
    done = sum(st.state == "done" for st in statuses)
    print(f"suite {jobs[0].suite}: {len(jobs)} jobs, {done} already done"
          + (f", {len(stale)} stale" if stale else "")
          + (f", {len(busy)} running or queued elsewhere (left alone)" if busy else "")
          + f", {len(todo)} to run")
    if stale and not rerun_stale:
        print_stale(statuses, command)
    elif stale:
        print(f"--rerun-stale: rerunning {len(stale)} stale record(s); each old record is kept in "
              f"<job>/stale-<fingerprint>/ until its new one is done")
    if mixed and not rerun_stale:
        print(f"{len(mixed)} interrupted job(s) were started by other code: resuming them mixes code and gives "
              f"stale records; `{command}` restarts them from scratch")
    elif mixed:
        print(f"--rerun-stale: restarting {len(mixed)} interrupted job(s) started by other code from scratch")
    if todo:
        _preflight(todo)
    for job in stale + mixed if rerun_stale and rank0 else []:
        store.job_dir(job).set_aside()
    name = args.executor or suite.executor.get("name", "local")
    options = {"device": args.device, "threads": args.threads}
    if name == "slurm":
        from bench.spec.cluster import parse_cluster_overrides

        options = {**suite.cluster, **parse_cluster_overrides(args.cluster), **options}
    summary = get_executor(name, options).submit(todo, store) if todo else {"failed": []}
    if rerun_stale and name != "slurm" and rank0:
        restored = [j for j in stale if store.job_dir(j).restore_aside()]
        if restored:
            print(f"{len(restored)} stale rerun(s) did not finish: their old (stale) records are back in place")
    if name == "slurm":
        print(f"submitted; follow with `bench status --suite {args.suite}`")
        return 0
    if not args.no_report and args.results == "results" and rank0:
        from bench.cli import main as cli_main

        cli_main(["report", "--results", args.results])
    if summary.get("failed"):
        print(f"{len(summary['failed'])} job(s) failed; re-run the same command to retry them")
        return 1
    return 0


def _rerun_command(args: argparse.Namespace) -> str:
    extra = "".join(f" --{k.replace('_', '-')} {v}" for k, v in (("results", args.results),)
                    if v != "results")
    return f"bench run --suite {args.suite}{extra} --rerun-stale"


def _preflight(jobs: list[JobSpec]) -> None:
    """Build every input cache in a child process (bench.run.executors.prepare_inputs), then load the
    data once before any job starts: a data error stops everything, marks nothing."""
    from bench.run.executors import prepare_inputs
    from bench.run.runner import load_job_data

    prepare_inputs(jobs)
    load_job_data(jobs[0])
