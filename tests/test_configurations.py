"""Records of two configurations under one label are never averaged (bench.report.collect.configurations)."""
from __future__ import annotations

from bench.report.collect.configurations import one_configuration_per_label
from bench.spec.suites import expand_jobs, load_suite


def _record(job) -> dict:
    return {"job_id": job.job_id, "job": job.to_dict()}


def test_the_committed_configuration_wins_and_the_other_is_set_aside():
    jobs = [j for j in expand_jobs(load_suite("default")) if j.method == "probmcl"]
    old = [j for j in expand_jobs(load_suite("default", ["budget.contrastive_recipe=shared"]))
           if j.method == "probmcl"]
    assert {j.label for j in jobs + old} == {"probmcl"} and len(jobs) == len(old) == 3
    kept, aside = one_configuration_per_label("default", [_record(j) for j in jobs + old])
    assert [r["job_id"] for r in kept] == [j.job_id for j in jobs]
    assert aside == [j.job_id for j in old]


def test_one_configuration_keeps_everything_even_without_a_suite_file():
    jobs = [j for j in expand_jobs(load_suite("default")) if j.method == "asl"]
    records = [_record(j) for j in jobs]
    assert one_configuration_per_label("no-such-suite", records) == (records, [])
    # mixed configurations and no file to decide: nothing is kept for that label
    other = [_record(j) for j in expand_jobs(load_suite("default", ["budget.epochs=3"])) if j.method == "asl"]
    kept, aside = one_configuration_per_label("no-such-suite", records + other)
    assert kept == [] and len(aside) == len(records) + len(other)
