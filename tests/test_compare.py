"""bench compare: new records vs committed ones per job id, inside/outside the seed spread."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from bench.report.collect import compare
from bench.errors import BenchError


def _write(root: Path, job_id: str, label: str, seed: int, mAP: float, machine: str = "cpu A x2") -> None:
    d = root / "default" / job_id
    d.mkdir(parents=True)
    rec = {"job_id": job_id, "job": {"label": label, "seed": seed},
           "metrics": {"selected": {"test": {"mAP": mAP}}},
           "provenance": {"code_fingerprint": "f" * 16, "machine": machine, "threads": 2}}
    (d / "record.json").write_text(json.dumps(rec))
    (d / "DONE").write_text("")


def test_compare_rows_spread_and_verdicts(tmp_path, capsys):
    old, new = tmp_path / "results", tmp_path / "results-rerun"
    for i, (seed, m) in enumerate([(0, 60.0), (1, 61.0), (2, 62.0)]):
        _write(old, f"asl-{i}", "asl", seed, m)
    _write(old, "kmcl-0", "kmcl", 0, 50.0)
    _write(new, "asl-0", "asl", 0, 60.0)  # identical
    _write(new, "asl-1", "asl", 1, 62.5, machine="cpu B x8")  # +1.5 <= spread 2.0
    _write(new, "asl-2", "asl", 2, 59.5)  # -2.5 > spread
    _write(new, "kmcl-0", "kmcl", 0, 50.3)  # one committed seed: no spread
    rows = {r.job_id: r for r in compare.compare_records(
        compare.Store(new).records("default"), compare.Store(old).records("default"))}
    assert rows["asl-0"].verdict == "identical" and rows["asl-0"].same_setup
    assert rows["asl-1"].verdict == "inside seed spread" and rows["asl-1"].spread == pytest.approx(2.0)
    assert rows["asl-1"].same_setup is False
    assert rows["asl-2"].verdict == "OUTSIDE seed spread"
    assert rows["kmcl-0"].verdict.startswith("differs (committed row has 1 seed")
    args = argparse.Namespace(suite="default", new=str(new), committed=str(old), format="md")
    assert compare.main(args) == 0
    out = capsys.readouterr().out
    assert "| asl | 1 | asl-1 | 62.50 | 61.00 | +1.50 | 2.00 | inside seed spread |" in out
    assert "4 job(s) on both sides" in out and "Expected agreement" in out and "cpu B x8" in out


def test_compare_says_what_is_missing(tmp_path):
    args = argparse.Namespace(suite="default", new=str(tmp_path / "n"), committed=str(tmp_path / "o"), format="md")
    with pytest.raises(BenchError, match="bench run --suite default --results"):
        compare.main(args)
