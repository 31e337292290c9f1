"""Verified code equivalence (bench/run/equivalence.py): the table's fingerprints are the ones git
gives, a record linked by the table is current and an unlinked one stale, the comparison sees
a changed number, and -- the contract -- the current code computes bit for bit what the code
of the table's last base computed, on a small job of every method."""
from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from bench.run import equivalence, provenance
from bench.run.store import staleness

REPO = Path(__file__).resolve().parent.parent
ENTRIES = equivalence.load_table()
needs_git = pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(),
                               reason="needs the git history")


@needs_git
@pytest.mark.parametrize("entry", ENTRIES, ids=[e["from_commit"][:10] for e in ENTRIES])
def test_table_from_fingerprints_are_gits(entry):
    assert equivalence.fingerprints_at(entry["from_commit"]) == entry["from"]


def test_every_committed_record_is_current_by_code_or_by_a_table_entry():
    # the table is not a blanket pass: every record's own fingerprint leads to today's code
    for record_file in sorted((REPO / "results").glob("*/*/record.json")):
        record = json.loads(record_file.read_text())
        assert staleness(record) == "", record_file


def test_a_record_is_current_only_through_an_entry_for_its_method(tmp_path, monkeypatch):
    table = tmp_path / "code-equivalence.json"
    entry = {"from_commit": "x", "from": {"*": "a0", "asl": "a1"}, "to": {"*": "b0", "asl": "b1"}}
    later = {"from_commit": "y", "from": {"*": "b0", "asl": "b1"}, "to": {"*": "c0", "asl": "c2"}}
    table.write_text(json.dumps({"entries": [entry, later]}))
    monkeypatch.setattr(equivalence, "TABLE", table)
    record = {"job": {"method": "asl"}, "provenance": {"code_fingerprint": "a1"}}
    assert staleness(record, current="c2") == ""  # a1 -> b1 -> c2: chained
    assert staleness(record, current="b1") == ""
    assert "made by code a1" in staleness(record, current="c9")  # no entry reaches c9
    other = {"job": {"method": "kmcl"}, "provenance": {"code_fingerprint": "a1"}}
    assert staleness(other, current="c0") != ""  # asl's link is not kmcl's
    shared = {"job": {"method": "kmcl"}, "provenance": {"code_fingerprint": "a0"}}
    assert staleness(shared, current="c0") == ""  # kmcl has no own entry: the shared code's


def test_differences_name_every_output_that_moved():
    base = {"j1": {"metrics": "1", "predictions.scores": "2"}, "j2": {"metrics": "3"}}
    assert equivalence.differences(base, json.loads(json.dumps(base))) == []
    moved = {"j1": {"metrics": "1", "predictions.scores": "9"}, "j3": {"metrics": "3"}}
    assert equivalence.differences(base, moved) == [
        "j2: only under base code", "j3: only under new code", "j1: predictions.scores differs"]


def test_shrink_keeps_the_configuration_and_a_skipped_stage():
    jobs = equivalence.committed_jobs()
    assert len({j["method"] for j in jobs}) == 7
    probe_only = next(j for j in jobs if (j["budget"].get("stage_split") or [1])[0] == 0)
    small = equivalence.shrink(probe_only)
    assert small["budget"]["stage_split"] == [0, 1] and small["budget"]["epochs"] == 1
    assert small["hparams"] == probe_only["hparams"] and small["method"] == probe_only["method"]
    assert small["dataset"]["options"]["n_train"] == equivalence.SHRINK["n_train"]


def _small_jobs() -> list[dict]:
    """One committed configuration per method (the CPU backbone), on 64/32/32 images and 2
    epochs, from random init (the full check also compares the in-domain pretraining)."""
    out, seen = [], set()
    for job in equivalence.committed_jobs():
        if job["method"] in seen or job["backbone"]["name"] != "smallcnn" or job["budget"].get("stage_split"):
            continue
        seen.add(job["method"])
        small = equivalence.shrink(job)
        small["dataset"]["options"].update(n_train=64, n_val=32, n_test=32)
        small["backbone"]["options"] = {**small["backbone"]["options"], "weights": None}
        out.append(small)
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The small jobs under today's code (plus one with the lr moved by 1e-6) and, when the table
    has an entry, under the code of its last base: one process per code."""
    tmp = tmp_path_factory.mktemp("equivalence")
    specs = _small_jobs()
    moved = json.loads(json.dumps(specs[0]))
    moved["optimizer"]["lr"] = moved["optimizer"]["lr"] * (1 + 1e-6)
    with ThreadPoolExecutor(2) as pool:  # the two processes side by side: each waits on its own
        new = pool.submit(equivalence.run_code, REPO, specs + [moved], tmp / "new", tmp / "new.log")
        base = None
        if ENTRIES and shutil.which("git") and (REPO / ".git").exists():
            root = equivalence.extract(ENTRIES[-1]["from_commit"], tmp / "base-code")
            base = pool.submit(equivalence.run_code, root, specs, tmp / "base", tmp / "base.log")
        return specs, moved, new.result(), base and base.result(), tmp


def _row(outputs: dict, spec: dict) -> dict:
    from bench.spec.jobs import JobSpec

    return outputs[JobSpec(**spec).job_id]


@needs_git
@pytest.mark.skipif(not ENTRIES, reason="no equivalence entry: the records' own code is the current code")
def test_current_code_computes_what_the_records_code_computed(runs):
    specs, _, new, base, tmp = runs
    assert len(specs) == 7
    # each process ran its own code (not an installed copy ahead of PYTHONPATH)
    assert equivalence.made_by(tmp / "base" / "results") <= set(ENTRIES[-1]["from"].values())
    assert equivalence.made_by(tmp / "new" / "results") <= set(provenance.code_fingerprints().values())
    ours = {k: v for k, v in new.items() if k in base}
    assert len(ours) == 7 and all(len(row) > len(equivalence.COMPARED) for row in ours.values())
    assert equivalence.differences(base, ours) == []


def test_the_comparison_sees_a_changed_number(runs):
    # the same code, one hyperparameter moved by a hair: the check must not pass it
    specs, moved, new, _, _ = runs
    row_a, row_b = _row(new, specs[0]), _row(new, moved)
    moved_outputs = [k for k in row_a if k.startswith("predictions.") and row_a[k] != row_b[k]]
    assert moved_outputs, "a 1e-6 relative change of the lr left every score bit-identical"
