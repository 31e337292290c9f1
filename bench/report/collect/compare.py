"""`bench compare --suite NAME --new ROOT [--committed results]`: new records vs committed ones.

What `make run` prints after retraining the default suite into a fresh folder. One line per
job id present in either root (the job id is a hash of the job's semantic fields, so the same
job has the same id in both): row, seed, test mAP (selected epoch) new and committed, their
difference, and whether |difference| is inside the committed seed spread of that row
(max - min of the committed row's test mAP over seeds; a one-seed row has no spread). Then
one line per row (mean over seeds) and a summary with the expected agreement:

* same code fingerprint, CPU model and thread count: identical numbers (the runner is
  deterministic per (threads, CPU));
* another CPU model or thread count: float reduction order changes, typically up to about
  1.5 mAP per job on the embedded data; each record carries provenance.machine and .threads.

Reads records only; writes nothing. Exit 0 when both roots have records of the suite.
"""
from __future__ import annotations

import argparse
import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Mapping

from bench.errors import BenchError
from bench.run.store import Store, record_fingerprint

#: Differences below this (mAP points) print as identical (fp32 equality up to JSON rounding).
IDENTICAL = 1e-9


@dataclass(frozen=True)
class JobRow:
    label: str
    seed: int
    job_id: str
    new: float | None
    committed: float | None
    spread: float | None  # committed row's max - min over seeds (None with < 2 seeds)
    same_setup: bool | None  # same fingerprint, machine and threads (None: one side missing)

    @property
    def diff(self) -> float | None:
        if self.new is None or self.committed is None:
            return None
        return self.new - self.committed

    @property
    def verdict(self) -> str:
        d = self.diff
        if d is None:
            return "not rerun" if self.new is None else "no committed record"
        if abs(d) <= IDENTICAL:
            return "identical"
        if self.spread is None:
            return "differs (committed row has 1 seed: no spread)"
        return "inside seed spread" if abs(d) <= self.spread else "OUTSIDE seed spread"


def _map(record: Mapping[str, Any]) -> float:
    value = record["metrics"]["selected"]["test"]["mAP"]
    return math.nan if value is None else float(value)


def _setup(record: Mapping[str, Any]) -> tuple[Any, ...]:
    prov = record.get("provenance") or {}
    return (record_fingerprint(record), prov.get("machine"), prov.get("threads"))


def compare_records(new: list[dict[str, Any]], committed: list[dict[str, Any]]) -> list[JobRow]:
    by_new = {r["job_id"]: r for r in new}
    by_old = {r["job_id"]: r for r in committed}
    from bench.report.collect.configurations import config_of, shared_labels

    shared = shared_labels(new + committed)  # a label two configurations use: rows apart

    row_maps: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r in committed:  # the spread of one row's one configuration, over its seeds
        row_maps[(r["job"]["label"], config_of(r))].append(_map(r))
    spread = {key: (max(v) - min(v)) if len(v) >= 2 else None for key, v in row_maps.items()}
    out = []
    for job_id in sorted(set(by_new) | set(by_old)):
        a, b = by_new.get(job_id), by_old.get(job_id)
        ref = a or b
        label = ref["job"]["label"]
        label_shown = f"{label} [config {config_of(ref)}]" if label in shared else label
        out.append(JobRow(label_shown, int(ref["job"]["seed"]), job_id, None if a is None else _map(a),
                          None if b is None else _map(b), spread.get((label, config_of(ref))),
                          None if a is None or b is None else _setup(a) == _setup(b)))
    return sorted(out, key=lambda r: (r.label, r.seed, r.job_id))


def _f(value: float | None, signed: bool = False) -> str:
    if value is None or math.isnan(value):
        return "—"
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def _setups(records: list[dict[str, Any]]) -> str:
    seen = sorted({(str((r.get("provenance") or {}).get("machine", "?")), str((r.get("provenance") or {}).get("threads", "?")),
                    str(record_fingerprint(r))) for r in records})
    return "; ".join(f"{m}, {t} threads, code {fp}" for m, t, fp in seen)


def render(rows: list[JobRow], new_root: str, committed_root: str, suite: str,
           new: list[dict[str, Any]], committed: list[dict[str, Any]], fmt: str = "md") -> str:
    if fmt == "csv":
        lines = ["label,seed,job_id,new_mAP,committed_mAP,diff,committed_seed_spread,verdict"]
        lines += [f"{r.label},{r.seed},{r.job_id},{_f(r.new)},{_f(r.committed)},{_f(r.diff, True)},"
                  f"{_f(r.spread)},{r.verdict}" for r in rows]
        return "\n".join(lines) + "\n"
    out = [f"Test mAP (selected epoch) of `{suite}`: new `{new_root}/{suite}/` vs committed "
           f"`{committed_root}/{suite}/`, per job id (same id = same job).", "",
           "| row | seed | job id | new | committed | new - committed | committed seed spread | verdict |",
           "|---|---|---|---|---|---|---|---|"]
    out += [f"| {r.label} | {r.seed} | {r.job_id} | {_f(r.new)} | {_f(r.committed)} | {_f(r.diff, True)} | "
            f"{_f(r.spread)} | {r.verdict} |" for r in rows]
    out += ["", "Per row (mean over the seeds present on both sides):", "",
            "| row | seeds | new mean | committed mean | difference | max abs job difference | committed seed spread |",
            "|---|---|---|---|---|---|---|"]
    by_label: dict[str, list[JobRow]] = defaultdict(list)
    for r in rows:
        if r.diff is not None:
            by_label[r.label].append(r)
    for label in sorted(by_label):
        rs = by_label[label]
        mn, mc = sum(r.new for r in rs) / len(rs), sum(r.committed for r in rs) / len(rs)
        out.append(f"| {label} | {len(rs)} | {_f(mn)} | {_f(mc)} | {_f(mn - mc, True)} | "
                   f"{_f(max(abs(r.diff) for r in rs))} | {_f(rs[0].spread)} |")
    paired = [r for r in rows if r.diff is not None]
    counts = defaultdict(int)
    for r in paired:
        counts[r.verdict.split(" (")[0]] += 1
    same = [r for r in paired if r.same_setup]
    out += ["", f"{len(paired)} job(s) on both sides: " + ", ".join(f"{n} {v}" for v, n in sorted(counts.items()))
            + (f"; {len(rows) - len(paired)} on one side only" if len(rows) > len(paired) else "") + ".",
            f"New: {_setups(new)}.", f"Committed: {_setups(committed)}.",
            "Expected agreement: identical with the same code fingerprint, CPU model and thread count "
            f"({len(same)} job(s) here have all three equal); with another CPU model or thread count the "
            "float reduction order changes and jobs differ by up to about 1.5 mAP on the embedded data; "
            "a different code fingerprint means the code changed too (the committed records are then stale)."]
    return "\n".join(out) + "\n"


def main(args: argparse.Namespace) -> int:
    import sys

    from bench.report.collect.results import shared_labels
    from bench.spec.yaml_io import variant_name

    args.suite = variant_name(args.suite, getattr(args, "sets", None) or ())
    new = Store(args.new).records(args.suite)
    committed = Store(args.committed).records(args.suite)
    for side, recs in (("new", new), ("committed", committed)):
        for label, configs in shared_labels(recs).items():
            print(f"bench compare: {side} row {label!r} holds {len(configs)} configurations "
                  f"({', '.join(configs)}): rows shown apart as '<label> [config <hash>]'", file=sys.stderr)
    if not new:
        raise BenchError(f"no finished records of suite {args.suite!r} under {args.new}/; "
                         f"run `bench run --suite {args.suite} --results {args.new}` first")
    if not committed:
        raise BenchError(f"no committed records of suite {args.suite!r} under {args.committed}/ to compare with")
    rows = compare_records(new, committed)
    print(render(rows, args.new, args.committed, args.suite, new, committed, args.format), end="")
    return 0
