"""Bad input: one clear line naming the thing, exit 2, no traceback, nothing marked DONE."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.helpers import run_bench, tiny_suite


def _fails_cleanly(out, *needles: str) -> None:
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    lines = [l for l in out.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, out.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_unknown_suite():
    _fails_cleanly(run_bench("run", "--suite", "no-such-suite", "--dry-run"), "no-such-suite", "known:")


def test_unknown_method(tmp_path):
    path = tiny_suite(tmp_path, methods=["resnext-magic"])
    _fails_cleanly(run_bench("run", "--suite", str(path), "--dry-run"), "resnext-magic", "known:")


def test_misspelt_yaml_key(tmp_path):
    path = tiny_suite(tmp_path, budget={"epochz": 2})
    _fails_cleanly(run_bench("run", "--suite", str(path), "--dry-run"), "epochz", str(path))


def test_misspelt_top_level_key(tmp_path):
    path = tiny_suite(tmp_path)
    raw = yaml.safe_load(path.read_text())
    raw["seed"] = [0]
    path.write_text(yaml.safe_dump(raw))
    _fails_cleanly(run_bench("run", "--suite", str(path), "--dry-run"), "'seed'")


def test_hparam_out_of_domain(tmp_path):
    path = tiny_suite(tmp_path, methods=[{"method": "asl", "hparams": {"clip": 3}}])
    _fails_cleanly(run_bench("run", "--suite", str(path), "--dry-run"), "clip")


def test_unknown_dataset_marks_nothing(tmp_path):
    path = tiny_suite(tmp_path, dataset={"name": "imagenet-21k"})
    out = run_bench("run", "--suite", str(path), "--results", str(tmp_path / "r"), "--no-report")
    _fails_cleanly(out, "imagenet-21k", "known:")
    assert not list((tmp_path / "r").rglob("DONE"))


def test_unknown_dataset_option(tmp_path):
    path = tiny_suite(tmp_path, dataset={"name": "mnist-mosaic", "options": {"n_trian": 5}})
    out = run_bench("run", "--suite", str(path), "--results", str(tmp_path / "r"), "--no-report")
    _fails_cleanly(out, "n_trian")
    assert not list((tmp_path / "r").rglob("DONE"))


def test_invalid_yaml(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: [unclosed\n")
    _fails_cleanly(run_bench("run", "--suite", str(path), "--dry-run"), "broken.yaml")


@pytest.mark.parametrize("suite", ["smoke", "default"])
def test_shipped_suites_parse(suite):
    out = run_bench("run", "--suite", suite, "--dry-run", "--results", "/nonexistent-results-root")
    assert out.returncode == 0, out.stderr
    assert "jobs:" in out.stdout


# ----------------------------------------------------------------------------- issue 19: flags at load
@pytest.mark.parametrize("seeds", ["a", "0,0", ""])
def test_bad_seeds_flag(tmp_path, seeds):
    path = tiny_suite(tmp_path)
    _fails_cleanly(run_bench("run", "--suite", str(path), "--dry-run", "--seeds", seeds), "--seeds")


@pytest.mark.parametrize("threads", ["0", "-3"])
def test_bad_threads_flag(tmp_path, threads):
    path = tiny_suite(tmp_path)
    _fails_cleanly(run_bench("run", "--suite", str(path), "--dry-run", "--threads", threads), "--threads")


def test_unknown_device(tmp_path):
    path = tiny_suite(tmp_path)
    _fails_cleanly(run_bench("run", "--suite", str(path), "--dry-run", "--device", "tpu"), "--device", "tpu")


def test_cuda_without_gpu_is_refused_at_load(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    path = tiny_suite(tmp_path)
    out = run_bench("run", "--suite", str(path), "--device", "cuda", "--results", str(tmp_path / "r"), "--no-report")
    _fails_cleanly(out, "--device cuda", "no CUDA GPU")
    assert not (tmp_path / "r").exists()


def test_cluster_without_equals(tmp_path):
    path = tiny_suite(tmp_path)
    _fails_cleanly(run_bench("run", "--suite", str(path), "--dry-run", "--executor", "slurm",
                             "--cluster", "partition"), "--cluster", "partition")


def test_cluster_under_local_executor(tmp_path):
    path = tiny_suite(tmp_path)
    _fails_cleanly(run_bench("run", "--suite", str(path), "--dry-run", "--cluster", "partition=gpu"),
                   "--cluster", "slurm")


def test_unknown_executor_before_data(tmp_path):
    path = tiny_suite(tmp_path, dataset={"name": "voc2007"})  # its data is missing: the preflight would fail
    _fails_cleanly(run_bench("run", "--suite", str(path), "--dry-run", "--executor", "foo"), "--executor", "foo")
    out = run_bench("run", "--suite", str(path), "--executor", "foo", "--data-root", str(tmp_path / "none"),
                    "--results", str(tmp_path / "r"), "--no-report")
    _fails_cleanly(out, "--executor", "foo")
    assert not (tmp_path / "r").exists()


def test_results_root_is_a_file(tmp_path):
    path = tiny_suite(tmp_path)
    root = tmp_path / "results-file"
    root.write_text("not a folder")
    out = run_bench("run", "--suite", str(path), "--results", str(root), "--no-report")
    _fails_cleanly(out, "--results", "not a folder")
    assert root.read_text() == "not a folder"


@pytest.mark.parametrize("how", ["chmod", "proc"])
def test_results_root_not_writable(tmp_path, how):
    import os

    path = tiny_suite(tmp_path)
    if how == "chmod":
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only folders")
        root = tmp_path / "ro"
        root.mkdir()
        root.chmod(0o555)
    else:  # writable by nobody, root included
        root = Path("/proc/self/bench-results")
    out = run_bench("run", "--suite", str(path), "--results", str(root), "--no-report")
    _fails_cleanly(out, "--results", "cannot write")


def test_report_output_not_writable(tmp_path):
    (tmp_path / "r").mkdir()
    out = run_bench("report", "--results", str(tmp_path / "r"), "--output", "/proc/self/bench/REPORT.md")
    _fails_cleanly(out, "--output", "cannot write")


def test_closed_pipe_is_no_traceback():
    import os
    import subprocess
    import sys

    from tests.helpers import REPO

    read, write = os.pipe()
    os.close(read)  # the reader is gone before anything is written: `bench results | head`
    try:
        out = subprocess.run([sys.executable, "-m", "bench.cli", "results", "--suite", "default",
                              "--results", str(REPO / "results")], cwd=REPO, stdout=write,
                             stderr=subprocess.PIPE, text=True, timeout=300)
    finally:
        os.close(write)
    assert "Traceback" not in out.stderr and "BrokenPipe" not in out.stderr, out.stderr
    assert out.returncode == 0


# ----------------------------------------------------------------------------- issue 19: suite files
def test_duplicate_budget_key(tmp_path):
    path = tiny_suite(tmp_path)
    path.write_text(path.read_text() + "budget: {epochs: 3}\n")
    _fails_cleanly(run_bench("run", "--suite", str(path), "--dry-run"), str(path), "'budget' given twice", "line")


def test_yaml_error_names_line_and_column(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: broken\nmethods: [unclosed\n")
    _fails_cleanly(run_bench("run", "--suite", str(path), "--dry-run"), "broken.yaml", "line 3", "column")


def test_unknown_method_names_file_and_row(tmp_path):
    path = tiny_suite(tmp_path, methods=["baseline", "aslx"])
    _fails_cleanly(run_bench("run", "--suite", str(path), "--dry-run"), str(path), "methods[1]", "'aslx'",
                   "did you mean 'asl'")


@pytest.mark.parametrize("args, needle", [
    (("run", "--suite", "defualt", "--dry-run"), "did you mean 'default'"),
    (("status", "--sweep", "ablation-csra-heads-cpux"), "did you mean 'ablation-csra-heads-cpu'"),
])
def test_did_you_mean_names(args, needle):
    _fails_cleanly(run_bench(*args), needle)


def test_did_you_mean_key(tmp_path):
    path = tiny_suite(tmp_path, budget={"epochz": 2})
    _fails_cleanly(run_bench("run", "--suite", str(path), "--dry-run"), "'epochz'", "did you mean 'epochs'")


# ----------------------------------------------------------------------------- issue 19: the store
def test_corrupt_record_is_named_by_status_report_and_run(tmp_path):
    from bench.spec.suites import expand_jobs, load_suite

    path = tiny_suite(tmp_path)
    root = tmp_path / "r"
    job = expand_jobs(load_suite(str(path)))[0]
    folder = root / job.suite / job.job_id
    folder.mkdir(parents=True)
    (folder / "record.json").write_text('{"job": {"label": "baseli')  # truncated
    (folder / "DONE").write_text("")
    status = run_bench("status", "--suite", str(path), "--results", str(root))
    assert "unreadable" in status.stdout and "Traceback" not in status.stderr, status.stdout + status.stderr
    dry = run_bench("run", "--suite", str(path), "--results", str(root), "--dry-run")
    assert "unreadable" in dry.stdout and "retrains" in dry.stdout, dry.stdout
    report = run_bench("report", "--results", str(root), "--output", str(tmp_path / "REPORT.md"))
    lines = [l for l in report.stderr.splitlines() if "unreadable" in l]
    assert len(lines) == 1 and "Traceback" not in report.stderr, report.stderr
