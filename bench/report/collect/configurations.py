"""One configuration per row: records of different configurations never share a label's numbers.

A suite's folder can hold records of a configuration its committed file no longer produces (a
default changed, so the job id changed, and the old records stayed). Under one label they would
be averaged as extra "seeds". :func:`one_configuration_per_label` keeps, for each label with more
than one configuration, the records whose job id the committed suite or sweep file produces
today, and sets the others aside (the report lists them).
"""
from __future__ import annotations

import hashlib
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from bench.spec.jobs import SEMANTIC_FIELDS, canonical_json, identity_fields

if TYPE_CHECKING:
    from bench.run.store import Store


def config_of(record: dict) -> str:
    """8 hex digits naming a record's configuration: its job's semantic fields without the seed
    (as the job id hashes them), so records of one row that differ only by seed share it."""
    job = record.get("job") or {}
    fields = {k: job.get(k) for k in SEMANTIC_FIELDS if k != "seed"}
    return hashlib.sha256(canonical_json(identity_fields(fields)).encode()).hexdigest()[:8]


def shared_labels(records: Sequence[dict]) -> dict[str, list[str]]:
    """{label: its configurations} for every label that more than one configuration uses."""
    seen: dict[str, set[str]] = {}
    for r in records:
        seen.setdefault(r["job"]["label"], set()).add(config_of(r))
    return {label: sorted(c) for label, c in seen.items() if len(c) > 1}


def current_job_ids(suite: str) -> set[str] | None:
    """The job ids the committed ``sweeps/<suite>.yaml`` produces today (all seeds); None when
    there is no such file or it cannot be expanded here."""
    from bench.errors import BenchError, SpecError
    from bench.spec.suites import SUITES_DIR, expand_jobs, load_suite
    from bench.spec.sweeps import expand_sweep, load_sweep

    if not (SUITES_DIR / f"{suite}.yaml").is_file():
        return None
    try:
        try:
            return {j.job_id for j in expand_jobs(load_suite(suite))}
        except SpecError:
            return {j.job_id for j in expand_sweep(load_sweep(suite))}
    except (SpecError, BenchError, ValueError):
        return None


def one_configuration_per_label(suite: str, records: Sequence[dict[str, Any]]
                                ) -> tuple[list[dict[str, Any]], list[str]]:
    """(records kept, job ids set aside). A label whose records share one configuration keeps
    them all; otherwise the committed file decides (none kept when it cannot tell)."""
    mixed = set(shared_labels(records))
    if not mixed:
        return list(records), []
    wanted = current_job_ids(suite) or set()
    keep = [r for r in records if r["job"]["label"] not in mixed or r["job_id"] in wanted]
    kept = {r["job_id"] for r in keep}
    return keep, [r["job_id"] for r in records if r["job_id"] not in kept]


def say_unread(root: Path, store: "Store", suites: list[str], variants: list[str]) -> None:
    """One stderr line each for corrupt records (skipped) and variant folders (not in the report)."""
    bad = [p for s in suites for p in store.unreadable(s)]
    if bad:
        print(f"bench report: {len(bad)} record(s) unreadable (corrupt record.json, e.g. {bad[0]}): left out "
              "of the report; `bench run` retrains them", file=sys.stderr)
    if variants:
        from bench.run.roots import variant_text

        print(f"bench report: {len(variants)} --set variant folder(s) not in the report (their own "
              f"configurations): {'; '.join(variant_text(root, v) for v in variants)}", file=sys.stderr)


def machine(record: Mapping[str, Any]) -> str:
    """The CPU/GPU a record was made on (its provenance)."""
    return str((record.get("provenance") or {}).get("machine") or "unknown machine")


def suite_machine(data: Any, suite: str) -> str:
    """The machine most of the suite's records (``data``: a ReportData) were made on: the only one
    its cost column shows."""
    return Counter(machine(r) for r in data.suites.get(suite, [])).most_common(1)[0][0]
