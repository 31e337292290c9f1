"""`bench run --suite NAME`: expand the suite into jobs, skip done ones, execute, report."""
from __future__ import annotations

import argparse
import os

from bench.errors import BenchError
from bench.executors import get_executor
from bench.jobs import JobSpec
from bench.store import Store
from bench.suites import SuiteSpec, expand_jobs, load_suite


def select_jobs(args: argparse.Namespace) -> tuple[list[JobSpec], SuiteSpec]:
    suite = load_suite(args.suite)
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
    store = Store(args.results)
    states = {j.job_id: store.job_dir(j).state for j in jobs}
    if args.dry_run:
        print(f"{'job_id':<22} {'label':<18} {'seed':>4}  state")
        for j in jobs:
            print(f"{j.job_id:<22} {j.display_name:<18} {j.seed:>4}  {states[j.job_id]}")
        counts = {s: list(states.values()).count(s) for s in sorted(set(states.values()))}
        print(f"{len(jobs)} jobs: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
        return 0
    todo = [j for j in jobs if states[j.job_id] != "done"]
    print(f"suite {jobs[0].suite}: {len(jobs)} jobs, {len(jobs) - len(todo)} already done, {len(todo)} to run")
    if todo:
        _preflight(todo[0])
    name = args.executor or suite.executor.get("name", "local")
    options = {"device": args.device, "threads": args.threads}
    if name == "slurm":
        from bench.slurm import parse_cluster_overrides

        options = {**suite.cluster, **parse_cluster_overrides(args.cluster), **options}
    summary = get_executor(name, options).submit(todo, store) if todo else {"failed": []}
    if name == "slurm":
        print(f"submitted; follow with `bench status --suite {args.suite}`")
        return 0
    rank0 = os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0")) == "0"  # torchrun: once
    if not args.no_report and args.results == "results" and rank0:
        from bench.cli import main as cli_main

        cli_main(["report", "--results", args.results])
    if summary.get("failed"):
        print(f"{len(summary['failed'])} job(s) failed; re-run the same command to retry them")
        return 1
    return 0


def _preflight(job: JobSpec) -> None:
    """Load the data once before any job starts: a data error stops everything, marks nothing."""
    from bench.runner import load_job_data

    load_job_data(job)
