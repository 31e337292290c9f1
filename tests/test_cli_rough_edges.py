"""A newcomer's mistakes get one line that says what to do, before any work (issue 27)."""
from __future__ import annotations

import pytest

from bench.cli import main


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_report_into_a_missing_folder_stops_before_work(capsys, monkeypatch):
    import bench.report.build as build

    monkeypatch.setattr(build, "main", lambda args: pytest.fail("the report was built"))
    assert main(["report", "--output", "/nonexistent/dir/R.md"]) == 2
    assert "/nonexistent/dir" in _one_line(capsys)



def test_sweep_given_a_suite_message(capsys):
    assert main(["sweep", "smoke", "--dry-run"]) == 2
    assert _one_line(capsys) == "bench: error: smoke is a suite, not a sweep: use bench run --suite smoke"


def test_run_given_a_sweep_names_bench_sweep(capsys):
    assert main(["run", "--suite", "ablation-csra-heads-cpu", "--dry-run"]) == 2
    assert "use bench sweep ablation-csra-heads-cpu" in _one_line(capsys)


def test_set_without_equals_names_the_key_value_form(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--suite", "smoke", "--set", "optimizer.lr", "1e-3", "--dry-run"])
    assert exit_.value.code == 2
    assert "--set optimizer.lr=1e-3" in _one_line(capsys)


def test_other_unknown_arguments_still_argparse(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--suite", "smoke", "--bogus"])
    assert exit_.value.code == 2 and "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_data_inspect_unknown_dataset_did_you_mean(capsys):
    assert main(["data", "inspect", "--dataset", "coco"]) == 2
    assert "did you mean 'coco2014'" in _one_line(capsys)
