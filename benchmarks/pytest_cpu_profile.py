"""A pytest plugin: per test, its wall seconds and the CPU seconds of the test process and of the
children it waited for (issue 28's profile, docs/test-profile.md).

    PYTHONPATH=benchmarks .venv/bin/python -m pytest -n auto --dist loadgroup -p pytest_cpu_profile -q
    .venv/bin/python benchmarks/pytest_cpu_profile.py          # the table, per module

Each xdist worker appends ``test id, start, wall s, own CPU s, children's CPU s`` to
``$BENCH_TEST_PROFILE_DIR/<worker>.tsv`` (default ``.cache/test-profile/``; delete it before a
run). Children are counted when they are reaped: a long-lived helper (the tests' fork server) is
counted, whole, at the test after which it ends.
"""
from __future__ import annotations

import os
import resource
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

FOLDER = Path(os.environ.get("BENCH_TEST_PROFILE_DIR", Path(__file__).resolve().parent.parent / ".cache" /
                             "test-profile"))


def _cpu() -> tuple[float, float]:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, kids.ru_utime + kids.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    own0, kids0 = _cpu()
    t0 = time.time()
    yield
    own1, kids1 = _cpu()
    FOLDER.mkdir(parents=True, exist_ok=True)
    with open(FOLDER / f"{os.environ.get('PYTEST_XDIST_WORKER', 'main')}.tsv", "a") as fh:
        fh.write(f"{item.nodeid}\t{t0:.2f}\t{time.time() - t0:.2f}\t{own1 - own0:.2f}\t{kids1 - kids0:.2f}\n")


def table() -> str:
    """Wall seconds per module (sum over its tests), largest last, and each worker's total."""
    per_module: dict[str, float] = defaultdict(float)
    lines = []
    for tsv in sorted(FOLDER.glob("*.tsv")):
        rows = [line.split("\t") for line in tsv.read_text().splitlines()]
        lines.append(f"{tsv.stem}: {sum(float(r[2]) for r in rows):.1f} s of tests")
        for r in rows:
            per_module[r[0].split("::")[0]] += float(r[2])
    body = [f"{s:8.1f}  {m}" for m, s in sorted(per_module.items(), key=lambda kv: kv[1])]
    return "\n".join(body + [f"{sum(per_module.values()):8.1f}  total", *lines])


if __name__ == "__main__":
    print(table())
    sys.exit(0)
