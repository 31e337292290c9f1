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
from bench.run.roots import check_writable, resolve_root, unreadable_line, write_variant
from bench.run.store import Store
from bench.spec.schema import did_you_mean
from bench.spec.suites import SuiteSpec, expand_jobs, load_suite

EXECUTORS = ("local", "slurm")


def parse_seeds(text: str | None) -> tuple[int, ...] | None:
    """``--seeds 0,1,2``: distinct integers; None when the flag is absent."""
    if text is None:
        return None
    items = [t.strip() for t in text.split(",")]
    try:
        seeds = tuple(int(t) for t in items)
    except ValueError:
        raise BenchError(f"--seeds {text!r}: expected comma-separated integers, e.g. --seeds 0,1,2") from None
    if len(set(seeds)) != len(seeds):
        raise BenchError(f"--seeds {text!r} repeats a seed (the same job twice); give each seed once")
    return seeds


def check_run_flags(args: argparse.Namespace, executor: str, cluster: dict | None = None,
                    where: str = "") -> dict:
    """Every command-line value of `bench run` / `bench sweep` at load, before data is touched:
    --threads, --executor, --device (and, locally, that the device exists), --cluster. Returns
    the --cluster overrides (parsed and checked against the cluster schema)."""
    from bench.spec.cluster import parse_cluster, parse_cluster_overrides

    threads = getattr(args, "threads", None)
    if threads is not None and threads < 1:
        raise BenchError(f"--threads {threads}: must be a positive integer (torch CPU threads per job); "
                         "leave it out to use all cores")
    if executor not in EXECUTORS:
        raise BenchError(f"--executor {executor!r}: unknown executor{did_you_mean(executor, EXECUTORS)}; "
                         f"known: {', '.join(EXECUTORS)}")
    check_device(getattr(args, "device", None), local=executor == "local")
    overrides = parse_cluster_overrides(getattr(args, "cluster", None))
    if overrides and executor != "slurm":
        raise BenchError(f"--cluster {args.cluster[0]}: cluster options apply to the slurm executor only; "
                         "add --executor slurm or drop --cluster")
    if executor == "slurm":
        parse_cluster({**(cluster or {}), **overrides}, f"{where}: cluster" if where else "--cluster")
    return overrides


def check_device(device: str | None, local: bool = True) -> None:
    """--device cpu | cuda | cuda:N (| mps); locally the device must exist on this machine."""
    if device is None:
        return
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda", "mps"):
        raise BenchError(f"--device {device!r}: not a device here; use cpu, cuda or cuda:N")
    if not local:
        return  # checked on the node
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BenchError(f"--device {device}: no CUDA GPU is visible on this machine; use --device cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise BenchError(f"--device {device}: this machine has {torch.cuda.device_count()} GPU(s) "
                         f"(cuda:0..cuda:{torch.cuda.device_count() - 1})")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise BenchError(f"--device {device}: MPS is not available on this machine; use --device cpu")


def select_jobs(args: argparse.Namespace) -> tuple[list[JobSpec], SuiteSpec]:
    suite = load_suite(args.suite, getattr(args, "sets", None) or ())
    seeds = parse_seeds(args.seeds)
    data_root = args.data_root or os.environ.get("BENCH_DATA_ROOT")
    jobs = expand_jobs(suite, seeds, data_root, missing_weights_ok=bool(getattr(args, "dry_run", False)))
    if args.methods:
        wanted = {w.strip() for w in args.methods.split(",")}
        unknown = wanted - {j.label for j in jobs} - {j.method for j in jobs}
        if unknown:
            rows = list(dict.fromkeys(j.label for j in jobs))
            bad = sorted(unknown)[0]
            raise BenchError(f"--methods: {bad!r} is not a row of suite {suite.name!r}"
                             f"{did_you_mean(bad, rows + [j.method for j in jobs])}; rows: {', '.join(rows)}")
        jobs = [j for j in jobs if j.label in wanted or j.method in wanted]
    return jobs, suite


def main(args: argparse.Namespace) -> int:
    jobs, suite = select_jobs(args)
    name = args.executor or suite.executor.get("name", "local")
    cluster_overrides = check_run_flags(args, name, suite.cluster, suite.source)
    from bench.run.devices import with_world_size

    jobs = with_world_size(jobs, name, {**suite.cluster, **cluster_overrides})  # W > 1: its own job ids
    if name != "slurm":
        from bench.run.devices import check_local_precision, require_local

        if not args.dry_run:
            require_local(jobs, args.device, suite.name)  # a GPU suite never falls back to the CPU
        check_local_precision(jobs, args.device)
    args.results = resolve_root(args.results, suite.name)
    store = Store(args.results)
    statuses, _ = job_statuses(jobs, store)
    corrupt = unreadable_line(statuses, store)
    if corrupt:
        print(corrupt)
    rerun_stale = bool(getattr(args, "rerun_stale", False))
    command = _rerun_command(args)
    if args.dry_run:  # reads the store (and the scheduler if jobs were submitted); writes nothing
        from bench.run.plan import print_plan
        from bench.spec.weights import dry_run_lines, scratch_mark

        print("\n".join(dry_run_lines(suite.name, jobs)))
        plan_problem = print_plan(jobs, name, {**suite.cluster, **cluster_overrides}, args.device)
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
        return plan_problem
    if name == "slurm":
        from bench.run.plan import check_before_submit

        check_before_submit(jobs, {**suite.cluster, **cluster_overrides})  # memory refused before sbatch
    check_writable(store.root / suite.name)
    if suite.overrides:
        write_variant(store.root, suite.name, suite.overrides, args.suite)
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
    if todo and name != "slurm":  # on a cluster the first job builds the caches on its node (bench.run.slurm)
        _preflight(todo)
    for job in stale + mixed if rerun_stale and rank0 else []:
        store.job_dir(job).set_aside()
    options = {"device": args.device, "threads": args.threads, "wait": getattr(args, "wait", False)}
    if name == "slurm":
        options = {**suite.cluster, **cluster_overrides, "device": args.device, "threads": args.threads}
    summary = get_executor(name, options).submit(todo, store) if todo else {"failed": []}
    if rerun_stale and name != "slurm" and rank0:
        restored = [j for j in stale if store.job_dir(j).restore_aside()]
        if restored:
            print(f"{len(restored)} stale rerun(s) did not finish: their old (stale) records are back in place")
    if name == "slurm":
        from bench.run.plan import submitted_line

        print(submitted_line(summary, f"--suite {args.suite}", args.results, getattr(args, "sets", None),
                             jobs[0].world_size if jobs else 1))
        return 0
    if not args.no_report and args.results == "results" and not suite.overrides and rank0:
        from bench.cli import main as cli_main

        cli_main(["report", "--results", args.results])
    if rank0:
        from bench.run.summary import print_summary

        print_summary(args, jobs, store, summary.get("failed") or ())  # rows, mAP, flags, next commands
    if summary.get("skipped"):
        print(f"{len(summary['skipped'])} job(s) skipped: another process is running them (not failures; "
              "`bench status` follows them)")
    if summary.get("failed"):
        print(f"{len(summary['failed'])} job(s) failed; re-run the same command to retry them")
        return 1
    return 0


def _rerun_command(args: argparse.Namespace) -> str:
    extra = "".join(f" --{k.replace('_', '-')} {v}" for k, v in (("results", args.results),)
                    if v not in ("results", None))
    extra += "".join(f" --set {s}" for s in getattr(args, "sets", None) or ())
    return f"bench run --suite {args.suite}{extra} --rerun-stale"


def _preflight(jobs: list[JobSpec]) -> None:
    """Build every input cache in a child process (bench.run.executors.prepare_inputs), then load the
    data once before any job starts: a data error stops everything, marks nothing."""
    from bench.run.inputs import build_lock, prepare_inputs
    from bench.run.runner import CACHE_DIR, load_job_data

    with build_lock(CACHE_DIR):  # under torchrun the first rank builds, the others wait and reuse
        prepare_inputs(jobs)
    load_job_data(jobs[0])
