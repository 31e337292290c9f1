"""How fast the reading commands answer: this checkout against an older commit, in one run.

    .venv/bin/python benchmarks/bench_cli.py [--base 295070e] [--reps 3]

The base commit's tree is exported (``git archive``, no worktree) into a temporary folder; each
command runs as ``python -m bench.cli ...`` in a fresh process with PYTHONPATH and the working
folder set to that tree, then to this checkout, alternately, ``--reps`` times; the table gives
the median wall seconds of each and their ratio. ``weights fetch`` runs without network (an
unresolvable HF_ENDPOINT): once each, since the old code retries for about half a minute.

Measured (issue 27, `--reps 3`, one run, 2-core Intel Xeon shared with four other sessions,
load average ~6, so absolute seconds are inflated; the ratios compare like with like):

    command                              295070e s    now s   ratio
    bench --help                              0.12     0.13    1.0x
    bench list                                7.99     0.75   10.7x
    bench list methods                        5.62     0.89    6.3x
    bench status --suite default             10.88    10.81    1.0x   (still imports torch: suite validation)
    bench results --suite default             8.51     2.39    3.6x   (pandas)
    bench weights list                       32.97     1.58   20.9x
    bench weights fetch resnet101.tv_in1k --force   15.05     0.19   78.4x   (no network: one line)

Measured again (#27, suite loading without torch: `--base df8fc8f --reps 3`, one run, the same
Intel machine, load average 6.8-7.2; "now cold" is the first start with an empty method-answer
cache, once, "now s" the median of the next three):

    command                              df8fc8f s  now cold s    now s   ratio
    bench status --suite default             18.11        6.32     1.73   10.5x
    bench run --suite default --dry-run      10.29        6.48     1.17    8.8x
    (--help, list, list methods, results, weights list/fetch: unchanged, 0.7-1.1x)
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMMANDS = [["--help"], ["list"], ["list", "methods"], ["status", "--suite", "default"],
            ["run", "--suite", "default", "--dry-run"], ["results", "--suite", "default"], ["weights", "list"]]
FETCH = ["weights", "fetch", "resnet101.tv_in1k", "--force"]


def wall(tree: Path, argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "bench.cli", *argv], cwd=tree, env={**env, "PYTHONPATH": str(tree)},
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
    return time.perf_counter() - start


def export(commit: str, into: Path) -> Path:
    archive = subprocess.run(["git", "archive", "--format=tar", commit], cwd=REPO, check=True,
                             capture_output=True).stdout
    import io

    with tarfile.open(fileobj=io.BytesIO(archive)) as t:
        t.extractall(into, filter="data")
    return into


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="295070e", help="the commit to compare with")
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        old = export(args.base, Path(tmp))
        # "now" runs with its own method-answer cache (bench/spec/method_facts.py), empty at the
        # start: the first start of a command fills it ("now cold", once), the others read it.
        env["BENCH_SPEC_CACHE_DIR"] = str(Path(tmp) / "spec-cache")
        print(f"{'command':<34} {args.base + ' s':>11} {'now cold s':>11} {'now s':>8} {'ratio':>7}")
        for argv in [*COMMANDS, FETCH]:
            reps = 1 if argv is FETCH else args.reps
            run_env = {**env, "HF_ENDPOINT": "https://nonexistent.invalid"} if argv is FETCH else env
            shutil.rmtree(env["BENCH_SPEC_CACHE_DIR"], ignore_errors=True)
            cold = wall(REPO, argv, run_env)
            times: dict[str, list[float]] = {"old": [], "now": []}
            for _ in range(reps):  # alternate, so load on the machine hits both alike
                times["old"].append(wall(old, argv, run_env))
                times["now"].append(wall(REPO, argv, run_env))
            o, n = statistics.median(times["old"]), statistics.median(times["now"])
            print(f"{'bench ' + ' '.join(argv):<34} {o:>11.2f} {cold:>11.2f} {n:>8.2f} {o / n:>6.1f}x", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
