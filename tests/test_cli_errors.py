"""Bad input: one clear line naming the thing, exit 2, no traceback, nothing marked DONE."""
from __future__ import annotations

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
