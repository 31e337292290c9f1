"""A `bench` process for the tests: fresh interpreter vs forked from the tests' server (issue 28).

    .venv/bin/python benchmarks/bench_test_forks.py [--reps 3]

tests/bench_forks.py forks `bench` runs from a server that imported bench, torch, torch._dynamo
and timm once. This times, alternating in one run, the two ways of starting the same command:

* ``dry run``: ``bench run --suite default --dry-run`` (torch-free: the CLI tests' kind);
* ``train``: ``bench run`` of the kill/resume matrix's suite (3 jobs: baseline, ProbMCL,
  IML-GCN; 3 epochs, bf16, EMA, 2 DataLoader workers; data cache built first, as there).

It prints the median wall seconds of each and the ratio, and checks that the two ways wrote the
same records (metrics, curves, selected epoch) for the training run.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]


def _outcome(results: Path) -> dict:
    out = {}
    for rec in sorted(results.glob("*/*/record.json")):
        r = json.loads(rec.read_text())
        out[r["job_id"]] = (r["metrics"], r["selected_epoch"], [(h["epoch"], h["train_loss"]) for h in r["history"]])
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=3)
    args = p.parse_args()
    from bench import data as datasets
    from bench.spec.suites import expand_jobs, load_suite
    from bench_forks import BenchForks
    from helpers import tiny_suite

    tmp = Path(tempfile.mkdtemp(prefix="bench-forks-"))
    suite = tiny_suite(tmp, name="kill", methods=["baseline", "probmcl", "imlgcn"], n_train=96,
                       budget={"epochs": 3, "batch_size": 32, "resolution": 24, "ema": 0.99, "workers": 2,
                               "precision": "bf16"})
    job = expand_jobs(load_suite(str(suite)))[0]
    datasets.load("mnist-mosaic", job.dataset["options"], resolution=24, cache_dir=tmp / "cache")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "BENCH_THREADS": "1", "BENCH_CACHE_DIR": str(tmp / "cache")}
    server = BenchForks(tmp / "logs", env)
    commands = {"dry run": lambda out: ["run", "--suite", "default", "--dry-run", "--results", str(out)],
                "train": lambda out: ["run", "--suite", str(suite), "--results", str(out), "--no-report"]}
    times: dict[tuple[str, str], list[float]] = {}
    same = True
    for rep in range(args.reps):
        for name, command in commands.items():
            outs = {}
            for way in ("fresh", "forked"):
                out = tmp / f"{name.replace(' ', '-')}-{way}-{rep}"
                t0 = time.perf_counter()
                if way == "fresh":
                    done = subprocess.run([sys.executable, "-m", "bench.cli", *command(out)], cwd=REPO, env=env,
                                          capture_output=True, text=True)
                else:
                    done = server.run(command(out), env)
                times.setdefault((name, way), []).append(time.perf_counter() - t0)
                if done.returncode:
                    raise SystemExit(f"{name} ({way}) failed: {done.stderr[-1000:]}")
                outs[way] = _outcome(out)
            same &= outs["fresh"] == outs["forked"]
    server.close()
    print(f"# {args.reps} reps each, alternating; median wall seconds")
    for name in commands:
        fresh, forked = (statistics.median(times[(name, w)]) for w in ("fresh", "forked"))
        print(f"{name:8s} fresh {fresh:6.2f}   forked {forked:6.2f}   x{fresh / forked:.2f}")
    print(f"records identical (fresh vs forked): {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
