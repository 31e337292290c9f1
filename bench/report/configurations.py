"""One configuration per row: records of different configurations never share a label's numbers.

A suite's folder can hold records of a configuration its committed file no longer produces (a
default changed, so the job id changed, and the old records stayed). Under one label they would
be averaged as extra "seeds". :func:`one_configuration_per_label` keeps, for each label with more
than one configuration, the records whose job id the committed suite or sweep file produces
today, and sets the others aside (the report lists them).
"""
from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

#: Job fields that do not make a configuration (the seed varies within one).
NOT_CONFIGURATION = ("seed", "label", "suite", "data_root")


def configuration(record: Mapping[str, Any]) -> str:
    """The record's job without its seed and bookkeeping, as canonical JSON."""
    job = {k: v for k, v in record["job"].items() if k not in NOT_CONFIGURATION}
    return json.dumps(job, sort_keys=True, default=str)


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
    configs: dict[str, set[str]] = {}
    for r in records:
        configs.setdefault(r["job"]["label"], set()).add(configuration(r))
    mixed = {label for label, found in configs.items() if len(found) > 1}
    if not mixed:
        return list(records), []
    wanted = current_job_ids(suite) or set()
    keep = [r for r in records if r["job"]["label"] not in mixed or r["job_id"] in wanted]
    kept = {r["job_id"] for r in keep}
    return keep, [r["job_id"] for r in records if r["job_id"] not in kept]
