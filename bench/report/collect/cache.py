"""A disk cache for the report's paired image bootstraps (issue 28): most of `bench report`'s
time is spent resampling test images, and the result depends only on its inputs. The key is
the sha256 of every input: the bytes of each predictions file on both sides (in seed order),
the resample count, the RNG seed, the confidence level and the source of
:mod:`bench.evaluate.stats` (so a change to the bootstrap's code invalidates every entry).
A hit returns exactly what the computation returned (JSON floats round-trip exactly).

Where: ``$BENCH_REPORT_CACHE`` (a folder), else ``~/.cache/mlbench/report``; set
``BENCH_REPORT_CACHE=off`` to disable it. Outside the repository: never committed, never read
as records, and safe to delete at any time.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Callable, Sequence

from bench.evaluate import stats

_STATS_SOURCE = Path(stats.__file__).read_bytes()


def folder() -> Path | None:
    where = os.environ.get("BENCH_REPORT_CACHE", "")
    if where.lower() in ("off", "0", "no", "false"):
        return None
    return Path(where) if where else Path.home() / ".cache" / "mlbench" / "report"


def key(paths_a: Sequence[Path], paths_b: Sequence[Path], resamples: int) -> str:
    h = hashlib.sha256(_STATS_SOURCE)
    h.update(f"{resamples}:{stats.BOOTSTRAP_SEED}:{stats.CONFIDENCE}:{len(paths_a)}".encode())
    for path in [*paths_a, *paths_b]:
        h.update(hashlib.sha256(Path(path).read_bytes()).digest())
    return h.hexdigest()


def bootstrap(paths_a: Sequence[Path], paths_b: Sequence[Path], resamples: int,
              compute: Callable[[], stats.BootstrapResult]) -> stats.BootstrapResult:
    """``compute()``'s result, from the cache when its inputs were seen before."""
    where = folder()
    if where is None:
        return compute()
    path = where / f"bootstrap-{key(paths_a, paths_b, resamples)}.json"
    try:
        return stats.BootstrapResult(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        pass
    result = compute()
    try:
        where.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(dataclasses.asdict(result)))
        os.replace(tmp, path)
    except OSError:  # a read-only home: no cache, same result
        pass
    return result
