"""`bench cost`'s count cache (bench/cost/cache.py, issue #28): the rows of a suite counted with an
empty cache, then again with the cache that run filled, in one process; the ratio and whether the
rows are identical.

Where the cold time goes (cProfile of `bench cost --suite coco-tables`, docs/test-profile.md):
fvcore's jit trace runs every 448-px ResNet-101 / TResNet forward (about 80 %), building the
models and preparing their stages most of the rest; the cache skips both.

    .venv/bin/python benchmarks/bench_cost_cache.py                       # coco-tables (minutes cold)
    .venv/bin/python benchmarks/bench_cost_cache.py --suite default       # seconds
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--suite", default="coco-tables")
    args = p.parse_args()
    os.environ["BENCH_COST_CACHE_DIR"] = tempfile.mkdtemp(prefix="bench-cost-cache-")
    os.environ.pop("BENCH_COST_CACHE", None)
    from bench.cost.count import configs_for, cost_rows

    configs = configs_for(args.suite)
    t0 = time.perf_counter()
    cold = cost_rows(configs)
    t1 = time.perf_counter()
    warm = cost_rows(configs)
    t2 = time.perf_counter()
    print(f"# bench cost --suite {args.suite}: {len(configs)} configurations, {len(cold)} rows")
    print(f"cold (empty cache)  {t1 - t0:8.2f} s")
    print(f"warm (cache filled) {t2 - t1:8.2f} s")
    print(f"speed-up            x{(t1 - t0) / max(t2 - t1, 1e-9):.0f}; rows identical: {cold == warm}")
    return 0 if cold == warm else 1


if __name__ == "__main__":
    sys.exit(main())
