"""Issue 19: a run with --set is its own variant (results/<suite>+<hash>/), never mixed with the
suite's evidence; readers count seeds, not records, and never average two configurations under
one label; a job another process runs is skipped, not failed; `bench list`; the suite-keys page."""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pytest

from bench.report.collect.results import config_of, shared_labels
from bench.run.executors import LocalExecutor
from bench.run.roots import LOCAL_ROOT, resolve_root
from bench.run.store import JobDir, Store
from bench.spec.suites import expand_jobs, load_suite
from tests.helpers import REPO, run_bench, tiny_suite

SETS = ["budget.epochs=1"]


def _args(path: Path, **kw) -> argparse.Namespace:
    base = dict(suite=str(path), sets=[], seeds=None, methods=None, data_root=None)
    return argparse.Namespace(**{**base, **kw})


def test_set_is_a_variant_with_its_own_folder_and_seeds_methods_are_not(tmp_path):
    from bench.run.run_suite import select_jobs

    path = tiny_suite(tmp_path, methods=["baseline", "asl"], seeds=[0, 1])
    base, _ = select_jobs(_args(path))
    variant, suite = select_jobs(_args(path, sets=SETS))
    assert suite.name.startswith("tiny+") and {j.suite for j in variant} == {suite.name}
    assert not {j.job_id for j in base} & {j.job_id for j in variant}
    subset, s2 = select_jobs(_args(path, seeds="1", methods="asl"))  # a subset: the suite's own jobs
    assert s2.name == "tiny" and {j.job_id for j in subset} <= {j.job_id for j in base} and len(subset) == 1
    assert load_suite(str(path), ["optimizer.lr=1e-3", "budget.epochs=1"]).name == \
        load_suite(str(path), ["budget.epochs=1", "optimizer.lr=1e-3"]).name  # order does not matter


def test_default_results_root_keeps_first_tries_out_of_git(monkeypatch):
    monkeypatch.chdir(REPO)
    assert resolve_root(None, "default") == "results"  # committed evidence
    assert resolve_root(None, "smoke") == LOCAL_ROOT  # the README's first try
    assert resolve_root(None, "default+1234abcd") == LOCAL_ROOT  # a --set variant
    assert resolve_root("elsewhere", "smoke") == "elsewhere"
    assert LOCAL_ROOT + "/" in (REPO / ".gitignore").read_text().split()


def _committed_record() -> Path:
    return sorted((REPO / "results" / "default").glob("*/record.json"))[0].parent


def _copy_record(src: Path, root: Path, suite: str, epochs: int | None = None) -> None:
    record = json.loads((src / "record.json").read_text())
    if epochs is not None:
        record["job"]["budget"]["epochs"] = epochs
        record["job_id"] = record["job_id"] + f"-e{epochs}"
    dst = root / suite / record["job_id"]
    dst.mkdir(parents=True)
    (dst / "record.json").write_text(json.dumps(record))
    shutil.copy(src / "predictions.npz", dst / "predictions.npz")
    (dst / "DONE").write_text("")


def test_results_counts_seeds_and_keeps_configurations_apart(tmp_path):
    src = _committed_record()
    _copy_record(src, tmp_path, "default")
    _copy_record(src, tmp_path, "default", epochs=2)  # same label and seed, other configuration
    records = Store(tmp_path).records("default")
    assert len(shared_labels(records)) == 1 and len({config_of(r) for r in records}) == 2
    out = run_bench("results", "--suite", "default", "--results", str(tmp_path), "--by", "machine",
                    "--format", "csv")
    assert out.returncode == 0, out.stderr
    assert "2 configurations" in out.stderr
    rows = out.stdout.strip().splitlines()[1:]
    assert len(rows) == 2 and all(",1," in r for r in rows), out.stdout  # 1 seed each, never "seeds 2"


def test_report_reads_neither_variant_folders_nor_a_second_configuration(tmp_path):
    from bench.report.collect.records import ReportData

    src = _committed_record()
    _copy_record(src, tmp_path, "default")
    _copy_record(src, tmp_path, "default", epochs=2)
    _copy_record(src, tmp_path, "default+1234abcd")
    data = ReportData(tmp_path)
    assert "default+1234abcd" not in data.suites and data.variants == ["default+1234abcd"]
    # the committed suite's own configuration keeps the row; the other is set aside and listed
    labels = data.labels("default")
    assert len(labels) == 1 and len(data.runs("default", labels[0])) == 1
    assert data.runs("default", labels[0])[0]["job_id"] == src.name
    assert len(data.other_configurations["default"]) == 1


def test_base_and_set_runs_show_as_two_configurations(tmp_path):
    path = tiny_suite(tmp_path, epochs=1)
    root = tmp_path / "r"
    for extra in ([], ["--set", "budget.epochs=2"]):
        out = run_bench("run", "--suite", str(path), "--results", str(root), *extra)
        assert out.returncode == 0, out.stdout + out.stderr
    variant = load_suite(str(path), ["budget.epochs=2"]).name
    assert json.loads((root / variant / "variant.json").read_text())["overrides"] == ["budget.epochs=2"]
    assert not (tmp_path / "REPORT.md").exists()
    base = run_bench("status", "--suite", str(path), "--results", str(root))
    assert "1 done" in base.stdout and variant in base.stdout, base.stdout
    other = run_bench("status", "--suite", str(path), "--results", str(root), "--set", "budget.epochs=2")
    assert f"{variant}: 1 jobs: 1 done" in other.stdout, other.stdout
    res = run_bench("results", "--suite", "tiny", "--results", str(root), "--set", "budget.epochs=2",
                    "--format", "json")
    assert res.returncode == 0 and json.loads(res.stdout)[0]["epochs"] == 2, res.stdout + res.stderr
    rep = run_bench("report", "--results", str(root), "--output", str(tmp_path / "REPORT.md"))
    assert variant in rep.stderr and "not in the report" in rep.stderr, rep.stderr


def _job(tmp_path):
    return expand_jobs(load_suite(str(tiny_suite(tmp_path))))[0]


def test_job_running_elsewhere_is_skipped_not_failed(tmp_path, capsys):
    job, store = _job(tmp_path), Store(tmp_path / "r")
    with JobDir(store.root, job.suite, job.job_id).lock() as got:  # "another process" runs it
        assert got
        summary = LocalExecutor(progress=False).submit([job], store)
    assert summary["failed"] == [] and summary["skipped"] == [job.job_id]
    out = capsys.readouterr().out
    assert "skipped: another process is running it" in out and "FAILED" not in out
    assert not store.job_dir(job).error_file.exists()


def test_lock_taken_after_the_probe_is_a_skip_too(tmp_path, capsys, monkeypatch):
    job, store = _job(tmp_path), Store(tmp_path / "r")
    monkeypatch.setattr(JobDir, "is_running", lambda self: False)  # the probe ran before the other took it
    with JobDir(store.root, job.suite, job.job_id).lock():
        summary = LocalExecutor(progress=False).submit([job], store)
    assert summary["failed"] == [] and summary["skipped"] == [job.job_id]
    assert "FAILED" not in capsys.readouterr().out


def test_bench_list():
    out = run_bench("list")
    assert out.returncode == 0, out.stderr
    for needle in ("suites", "default", "sweeps", "ablation-csra-heads-cpu", "methods", "gamma_neg = 4.0",
                   "datasets", "mnist-mosaic", "n_train=5000", "budget:", "epochs"):
        assert needle in out.stdout, needle


def test_suite_keys_page_is_current():
    from bench.spec import schema

    assert (REPO / "docs" / "suite-keys.md").read_text() == schema.keys_markdown() + "\n", \
        "regenerate: bench list keys --format md > docs/suite-keys.md"


@pytest.mark.parametrize("section", ["budget", "optimizer", "evaluation"])
def test_defaults_come_from_the_schema(section):
    from bench.spec import schema, suites
    from bench.train.settings import RUNTIME_DEFAULTS

    table = {"budget": schema.BUDGET, "optimizer": schema.OPTIMIZER, "evaluation": schema.EVALUATION}[section]
    declared = getattr(suites, f"{section.upper()}_DEFAULTS")
    assert declared == schema.defaults(table)
    if section == "budget":
        assert {k: declared[k] for k in RUNTIME_DEFAULTS} == RUNTIME_DEFAULTS
