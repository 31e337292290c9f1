"""`bench` command line: argument parsing only; each command lives in its own module.

User mistakes (unknown suite/method/dataset, bad YAML key, missing data...) end
in one line on stderr and exit code 2, never a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Results must not depend on what ran before in the same process: without this, MKL picks
# alignment-dependent code paths, and a job's numbers moved by up to ~0.01 mAP with the jobs run
# before it in one process (so a resumed job could differ from an uninterrupted one). AUTO keeps
# the fastest path for the CPU but makes it run-to-run reproducible (same CPU, same threads).
# Set before torch loads MKL; Slurm jobs inherit it from the submitting `bench` process.
os.environ.setdefault("MKL_CBWR", "AUTO")


def _cmd(target: str):
    """Lazy dispatcher: 'module:function' imported only when the command runs."""
    def run(args: argparse.Namespace) -> int:
        module, func = target.split(":")
        return getattr(importlib.import_module(module), func)(args) or 0
    return run


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench", description="Reproducibility benchmark suite for "
                                "multi-label image classification")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run every job of a suite not already done")
    r.add_argument("--suite", required=True, help="suite name (sweeps/NAME.yaml) or a YAML path")
    r.add_argument("--results", default=None, help="results root (default: results/ for a suite with committed records "
                   "there, else results-local/, git-ignored; --set runs: results-local/<suite>+<hash>/)")
    r.add_argument("--data-root", default=None, help="dataset folder (or $BENCH_DATA_ROOT)")
    r.add_argument("--seeds", default=None, help="comma-separated seeds overriding the suite's")
    r.add_argument("--methods", default=None, help="comma-separated row labels or methods to run")
    r.add_argument("--dry-run", action="store_true", help="list the jobs and their state; run nothing")
    r.add_argument("--executor", default=None, help="local (default) or slurm")
    r.add_argument("--cluster", action="append", metavar="KEY=VALUE",
                   help="override a cluster option of the suite (repeatable), e.g. partition=gpu")
    r.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    r.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    r.add_argument("--no-report", action="store_true", help="do not regenerate REPORT.md afterwards")
    r.add_argument("--wait", action="store_true", help="wait for jobs another process is running "
                   "(default: skip them with a line and exit 0)")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="sets",
                   help="override a value of the suite (repeatable), validated like the YAML and part "
                        "of the job's identity: budget.epochs=3, optimizer.lr=1e-3, "
                        "dataset.options.n_train=500, methods.asl.hparams.clip=0")
    r.add_argument("--rerun-stale", action="store_true", help="rerun stale records (done by other code); "
                   "each old record is kept in <job>/stale-<fingerprint>/ until the new one is done")
    r.add_argument("--log", action="append", default=[], choices=("tensorboard", "wandb"),
                   help="also log every epoch (loss, val mAP, lr, images/s) and the test metrics to "
                        "<job>/tb/ or an offline <job>/wandb/ run (repeatable; not part of the job id)")
    r.set_defaults(func=_cmd("bench.run.run_suite:main"))

    sw = sub.add_parser("sweep", help="submit a sweep's jobs not done/queued (one Slurm array)")
    sw.add_argument("spec", help="sweep name (sweeps/NAME.yaml with a search: key) or a YAML path")
    sw.add_argument("--executor", default=None, help="slurm or local (default: the sweep's, else local)")
    sw.add_argument("--dry-run", action="store_true", help="list jobs, hparams, seeds and states; submit nothing")
    sw.add_argument("--seeds", default=None, help="comma-separated seeds overriding the sweep's")
    sw.add_argument("--results", default=None, help="results root (default: results/ for a sweep with committed records "
                   "there, else results-local/, git-ignored; --set runs: results-local/<sweep>+<hash>/)")
    sw.add_argument("--data-root", default=None, help="dataset folder (or $BENCH_DATA_ROOT)")
    sw.add_argument("--cluster", action="append", default=[], metavar="KEY=VALUE",
                    help="override a cluster option, e.g. --cluster partition=gpu (repeatable)")
    sw.add_argument("--device", default=None, help="device inside each job (default: cuda if available)")
    sw.add_argument("--threads", type=int, default=None, help="torch threads per job (default: cpus_per_task)")
    sw.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="sets",
                    help="override a value of the sweep file (repeatable), validated like the YAML: "
                         "budget.epochs=3, optimizer.lr=1e-3, seeds=[0,1]")
    sw.add_argument("--rerun-stale", action="store_true", help="resubmit stale records (done by other code)")
    sw.add_argument("--log", action="append", default=[], choices=("tensorboard", "wandb"),
                    help="as bench run --log: per-epoch TensorBoard / offline wandb logs in each job's folder")
    sw.set_defaults(func=_cmd("bench.run.sweep_cmd:main"))

    st = sub.add_parser("status", help="pending/running/done/failed/preempted counts of a suite or sweep")
    st.add_argument("--suite", default=None, help="suite name or YAML path")
    st.add_argument("--sweep", default=None, help="sweep name or YAML path")
    st.add_argument("--results", default=None, help="results root (default: as bench run)")
    st.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="sets",
                    help="the overrides of a --set run: its variant folder <suite>+<hash>")
    st.add_argument("-v", "--verbose", action="store_true", help="one line per job")
    st.add_argument("--world-size", type=int, default=1, metavar="W",
                    help="the data-parallel processes the jobs were launched with (W > 1: their own job ids)")
    st.set_defaults(func=_cmd("bench.run.status:main"))

    res = sub.add_parser("results", help="one row per finished job of a suite")
    res.add_argument("--suite", required=True)
    res.add_argument("--results", default=None, help="results root (default: as bench run)")
    res.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="sets",
                     help="the overrides of a --set run: its variant folder <suite>+<hash>")
    res.add_argument("--format", choices=("md", "csv", "json"), default="md")
    res.add_argument("--by", default=None, metavar="COLS",
                     help="group by comma-separated columns, e.g. threads,machine (mean test mAP per row and group)")
    res.set_defaults(func=_cmd("bench.report.collect.results:main"))

    cmp_ = sub.add_parser("compare", help="new records vs committed ones, row by row (test mAP, "
                          "difference, inside the committed seed spread?)")
    cmp_.add_argument("--suite", required=True, help="suite name (the folder under both results roots)")
    cmp_.add_argument("--new", required=True, help="results root of the new records, e.g. results-rerun")
    cmp_.add_argument("--committed", default="results", help="results root of the committed records")
    cmp_.add_argument("--format", choices=("md", "csv"), default="md")
    cmp_.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="sets",
                      help="compare the variant folder <suite>+<hash> of a --set run in both roots")
    cmp_.set_defaults(func=_cmd("bench.report.collect.compare:main"))

    dat = sub.add_parser("data", help="dataset tools").add_subparsers(dest="data_command", required=True)
    ins = dat.add_parser("inspect", help="classes, split sizes and per-class counts (no pixel cache)")
    ins.add_argument("--dataset", required=True, help="coco2014, voc2007, generic, mnist-mosaic")
    ins.add_argument("--data-root", default=None, help="dataset folder (or $BENCH_DATA_ROOT)")
    ins.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                     help="dataset option (repeatable), e.g. class_order=alphabetical")
    ins.add_argument("--resolution", type=int, default=None, help="only for datasets without a labels-only path")
    ins.add_argument("--format", choices=("text", "json"), default="text")
    ins.set_defaults(func=_cmd("bench.data.inspect:main"))

    fe = dat.add_parser("fetch", help="download the official archives, verify, extract, then inspect")
    fe.add_argument("dataset", choices=("coco2014", "voc2007"))
    fe.add_argument("--data-root", default=None, help="dataset folder (or $BENCH_DATA_ROOT)")
    fe.add_argument("--mirror", default=None, metavar="URL", help="fetch URL/<archive file> instead of the official host")
    fe.add_argument("--keep-archives", action="store_true", help="keep the downloaded archives after extraction")
    fe.set_defaults(func=_cmd("bench.data.fetch:main"))

    rep = sub.add_parser("report", help="regenerate REPORT.md from results/")
    rep.add_argument("--results", default="results")
    rep.add_argument("--output", default="REPORT.md")
    rep.add_argument("--check", action="store_true", help="exit 1 if REPORT.md is not current")
    rep.set_defaults(func=_report)

    ls = sub.add_parser("list", help="suites, sweeps, methods (hyperparameters, defaults), datasets, suite keys")
    ls.add_argument("what", nargs="?", default="all",
                    choices=("all", "suites", "sweeps", "methods", "datasets", "keys"))
    ls.add_argument("--format", choices=("text", "md"), default="text", help="md: keys as docs/suite-keys.md")
    ls.set_defaults(func=_cmd("bench.spec.listing:main"))

    # (room for the `weights` subparser block)

    cost = sub.add_parser("cost", help="parameters and GMACs (fvcore) of every method row, beside "
                          "the papers' values; no data, no GPU")
    cost.add_argument("--suite", required=True, help="coco-tables, default, a suite name or a YAML path")
    cost.add_argument("--format", choices=("table", "md", "csv", "json"), default="table")
    cost.add_argument("--results", default="results", help="writes <results>/cost/<suite>.json")
    cost.add_argument("--no-save", action="store_true", help="print only; write no record")
    cost.add_argument("--timing", action="store_true", help="also time training steps and inference "
                      "relative to the baseline on the same backbone (trains; slow)")
    cost.add_argument("--timing-batch", type=int, default=8)
    cost.add_argument("--timing-reps", type=int, default=5)
    cost.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    cost.set_defaults(func=_cmd("bench.cost.command:main"))

    wt = sub.add_parser("weights", help="pretrained weights the suites need: list (present/missing, "
                        "sha256), fetch (the only command that uses the network), verify")
    wt.add_argument("action", choices=("list", "fetch", "verify"))
    wt.add_argument("names", nargs="*", help="timm tags or backbone names (default: every tag the suites need)")
    wt.add_argument("--suite", action="append", default=[], help="only this suite's or sweep's (repeatable)")
    wt.add_argument("--force", action="store_true", help="fetch: download again even if cached")
    wt.set_defaults(func=_cmd("bench.spec.weights_cmd:main"))

    return p


def _report(args: argparse.Namespace) -> int:
    """`bench report`: the output file's folder and the figures folder must be writable first."""
    if not args.check:
        from pathlib import Path

        from bench.errors import BenchError

        folder = Path(args.output).parent
        if not folder.is_dir():  # before any work: the report takes a minute to build
            raise BenchError(f"--output {args.output}: cannot write there: folder {folder} does not exist; "
                             f"create it (mkdir -p {folder}) or give a path in an existing folder")
        from bench.run.roots import check_writable

        check_writable(Path(args.output).parent, "--output")
        from bench.report.build import figures_folder

        figures = figures_folder(args.results, args.output)  # beside the results, or beside the output
        check_writable(figures, "--results" if figures == Path(args.results) / "figures" else "--output")
    return _cmd("bench.report.build:main")(args)


class Terminated(KeyboardInterrupt):
    """SIGTERM (Slurm sends it before a kill; `kill PID`): handled exactly like Ctrl-C."""


#: How long SIGTERM may wait for the main thread to leave multiprocessing's code (seconds).
DEFER_LIMIT_S = 5.0
_deferred_since: list[float] = []


def _on_sigterm(signum: int, frame: Any) -> None:
    """Raise :class:`Terminated` in the main thread -- but not inside multiprocessing's code: raised
    there (e.g. in the handshake that fetches a batch's shared memory from a DataLoader worker) it
    breaks the worker's resource-sharer connection and the worker prints a traceback (seen once in
    a clean-clone CI run). There the signal is sent again 10 ms later, for at most DEFER_LIMIT_S."""
    import time

    inside = frame
    while inside is not None and f"{os.sep}multiprocessing{os.sep}" not in inside.f_code.co_filename:
        inside = inside.f_back
    if inside is not None and time.monotonic() - (_deferred_since or [time.monotonic()])[0] < DEFER_LIMIT_S:
        import threading

        _deferred_since[:] = _deferred_since or [time.monotonic()]
        threading.Timer(0.01, os.kill, (os.getpid(), signum)).start()  # process-directed: any thread
        return
    _deferred_since.clear()
    raise Terminated()


def user_errors() -> tuple[type[BaseException], ...]:
    """Every exception class reported as a user mistake: one line, exit 2, no traceback."""
    from bench.data.base import DataError
    from bench.errors import BenchError, SpecError
    from bench.evaluate.metrics import MetricsInputError
    from methods.base import HparamError

    return (BenchError, DataError, SpecError, HparamError, MetricsInputError)


_USER_ERRORS = (("bench.errors", "BenchError"), ("bench.data.base", "DataError"), ("bench.errors", "SpecError"),
                ("methods.base", "HparamError"), ("bench.evaluate.metrics", "MetricsInputError"))


def loaded_user_errors() -> tuple[type[BaseException], ...]:
    """The classes of :func:`user_errors` whose modules are loaded: an exception can only be one
    of those, and catching it must not import torch (methods.base) into a command that never
    needed it (`bench weights fetch` without network)."""
    return tuple(getattr(sys.modules[m], n) for m, n in _USER_ERRORS if m in sys.modules)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse ``argv``; a `--set KEY VALUE` written without `=` gets the KEY=VALUE form named
    instead of argparse's bare "unrecognized arguments"."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        bare = [s for s in getattr(args, "sets", []) if "=" not in s]
        if bare:
            value = f"={extra[0]}" if not extra[0].startswith("-") else "=VALUE"
            parser.exit(2, f"bench: error: --set {bare[0]}: expected KEY=VALUE in one word, e.g. "
                           f"--set {bare[0]}{value}\n")
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def check_kind(args: argparse.Namespace) -> None:
    """`bench sweep SUITE` / `bench run --suite SWEEP`: say which command the file is for (read
    from the YAML, before the loader's "unknown key")."""
    from bench.errors import BenchError

    name = args.spec if args.command == "sweep" else getattr(args, "suite", None)
    if args.command not in ("sweep", "run") or not name or name.endswith((".yaml", ".yml")):
        return
    from bench.spec.listing import suite_and_sweep_names

    suites, sweeps = suite_and_sweep_names()
    if args.command == "sweep" and name in suites and name not in sweeps:
        raise BenchError(f"{name} is a suite, not a sweep: use bench run --suite {name}")
    if args.command == "run" and name in sweeps and name not in suites:
        raise BenchError(f"{name} is a sweep, not a suite: use bench sweep {name}")


def _end_children() -> None:
    """SIGKILL this process's multiprocessing children (DataLoader workers) before an interrupted
    run exits. Inside a job they ignore SIGTERM (bench.run.signals), and the exception that ends
    the run still holds the DataLoader, so its shutdown never ran: left alone, two workers can
    block each other's exit on a full result pipe and keep the caller's stdout open (seen once
    under load: `bench run` printed its line and its pipes stayed open past 120 s)."""
    import multiprocessing
    import signal

    for child in multiprocessing.active_children():
        try:
            os.kill(child.pid, signal.SIGKILL)
        except (OSError, TypeError):
            pass


def main(argv: list[str] | None = None) -> int:
    import signal

    args = parse(argv)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        check_kind(args)
        if getattr(args, "log", None):  # read by bench.run.epochlog, here and in Slurm jobs
            from bench.run.epochlog import LOG_ENV, check_backends

            check_backends(args.log)
            os.environ[LOG_ENV] = ",".join(dict.fromkeys(args.log))
        code = int(args.func(args))
        sys.stdout.flush()  # a closed pipe (`bench results | head`) shows here, not at exit
        return code
    except BrokenPipeError:
        # the reader went away (`| head`): what it wanted is out; no traceback at exit either
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except loaded_user_errors() as err:
        print(f"bench: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        what = "terminated (SIGTERM)" if isinstance(err, Terminated) else "interrupted"
        print(f"bench: {what}; finished jobs are kept, unfinished ones resume from their last epoch "
              "checkpoint on the next run", file=sys.stderr)
        # Every finally block of the run has executed (locks released, checkpoints atomic). Skip
        # the interpreter's shutdown: with DataLoader workers, multiprocessing's resource-sharer
        # thread can die there with a traceback after this one line (seen under SIGTERM).
        sys.stdout.flush()
        sys.stderr.flush()
        _end_children()
        os._exit(143 if isinstance(err, Terminated) else 130)
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
