"""Training-step and inference time of every method relative to the plain baseline.

Same backbone, batch and synthetic data, one process; repetitions interleaved (rotating
order) and each ratio taken against the baseline's step of the same repetition, so slow
drift of a shared machine cancels. Multi-stage methods get one ratio per stage.

    .venv/bin/python benchmarks/bench_step_time.py                 # default suite's config
    .venv/bin/python benchmarks/bench_step_time.py --suite coco-tables --batch 2 --reps 3

Prints one line per (row, stage): ratio > 1 means slower than the baseline. The same
numbers come with ``bench cost --suite NAME --timing`` (stored in results/cost/NAME.json).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cost.count import configs_for  # noqa: E402
from bench.cost.timing import time_ratios  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--suite", default="default")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    ratios = time_ratios(configs_for(args.suite), args.batch, args.reps, log=lambda s: print(s, file=sys.stderr))
    print(f"# suite {args.suite}, batch {args.batch}, {args.reps} interleaved repetitions, "
          f"median ratio to the baseline's step ({time.perf_counter() - t0:.0f} s)")
    for (label, stage), ratio in ratios.items():
        kind = "inference" if stage == "inference" else f"train step ({stage})"
        print(f"{label:28s} {kind:32s} x{ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
