"""Every `bench run` ends with a summary: rows, seeds, test mAP, flags (COLLAPSED explained in
one line), where the records are and the next commands with the same --results/--set flags."""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from bench.run.store import Store
from bench.run.summary import print_summary
from bench.spec.jobs import JobSpec

REPO = Path(__file__).resolve().parents[1]


def _copy_jobs(root: Path, method: str, n: int) -> list[JobSpec]:
    jobs = []
    for src in sorted((REPO / "results" / "default").glob(f"{method}-*"))[:n]:
        shutil.copytree(src, root / "default" / src.name, ignore=shutil.ignore_patterns("predictions.npz"))
        jobs.append(JobSpec.from_dict(json.loads((src / "job.json").read_text())))
    return jobs


def test_summary_rows_flags_records_and_next_commands(tmp_path, capsys):
    root = tmp_path / "rerun"
    jobs = _copy_jobs(root, "asl", 3) + _copy_jobs(root, "probmcl", 1)
    probmcl = root / "default" / jobs[-1].job_id / "record.json"
    record = json.loads(probmcl.read_text())
    record["collapse"].update(collapsed=True, similarity_std=0.00002)
    probmcl.write_text(json.dumps(record))
    args = argparse.Namespace(suite="default", results=str(root), sets=[])
    print_summary(args, jobs, Store(root))
    out = capsys.readouterr().out
    asl = next(line for line in out.splitlines() if line.strip().startswith("asl "))
    maps = [json.loads((root / "default" / j.job_id / "record.json").read_text())["metrics"]["selected"]["test"]["mAP"]
            for j in jobs[:3]]
    assert f"{sum(maps) / 3:.2f} +- " in asl and " 3 " in asl
    assert "COLLAPSED" in next(line for line in out.splitlines() if line.strip().startswith("probmcl "))
    collapsed = [line for line in out.splitlines() if line.strip().startswith("COLLAPSED =")]
    assert len(collapsed) == 1 and "similarity sd 0.0000" in collapsed[0] and "< 0.001" in collapsed[0]
    assert f"{root}/default/<job_id>/record.json" in out
    assert f"bench results --suite default --results {root}\n" in out
    assert f"bench report --results {root} --output {root}/REPORT.md" in out
    assert f"bench compare --suite default --new {root}\n" in out  # results/default/ is committed


def test_summary_of_a_set_variant_names_its_flags(tmp_path, capsys):
    root = tmp_path / "r"
    (job,) = _copy_jobs(root, "asl", 1)
    variant = JobSpec.from_dict({**job.to_dict(), "suite": "default+0123abcd"})
    shutil.move(str(root / "default"), str(root / "default+0123abcd"))
    args = argparse.Namespace(suite="default", results=str(root), sets=["budget.epochs=3", "optimizer.lr=1e-3"])
    print_summary(args, [variant], Store(root))
    out = capsys.readouterr().out
    assert f"{root}/default+0123abcd/<job_id>/record.json" in out
    assert f"bench results --suite default --results {root} --set budget.epochs=3 --set optimizer.lr=1e-3" in out
    assert "bench report" not in out and "bench compare" not in out  # no committed variant to compare with


def test_summary_into_the_default_root_needs_no_flags(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    jobs = _copy_jobs(tmp_path / "results-local", "baseline", 1)
    args = argparse.Namespace(suite="default", results="results-local", sets=[])
    monkeypatch.setattr("bench.run.roots.resolve_root", lambda given, suite: "results-local")
    print_summary(args, jobs, Store("results-local"))
    out = capsys.readouterr().out
    assert "  bench results --suite default\n" in out and "not converged" not in out
