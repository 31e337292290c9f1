"""`make test`'s parallel scheduling (tests/conftest.py): every test of a shared-resource file
(the real-Slurm tests: one cluster, fixed ports) lands in ONE xdist work unit; other tests are
scheduled one by one. pytest-xdist 3.8's own ``xdist_group`` marker groups nothing under pytest 9."""
from __future__ import annotations

import pytest

import conftest


class _Config:
    """The two options the scheduler reads."""

    def __init__(self, dist: str) -> None:
        self.values = {"dist": dist, "tx": ["2*popen"]}

    def getvalue(self, name: str):
        return self.values[name]


def test_the_slurm_file_is_one_work_unit_and_other_tests_are_single():
    pytest.importorskip("xdist")
    import test_slurm

    sched = conftest.pytest_xdist_make_scheduler(_Config("loadgroup"), None)
    slurm = [f"tests/test_slurm.py::{name}" for name in dir(test_slurm) if name.startswith("test_")]
    assert len(slurm) >= 8
    assert {sched._split_scope(nodeid) for nodeid in slurm} == {"slurm"}
    others = ["tests/test_kill_resume.py::test_sigkill_during_a_write_then_resume_is_identical[DONE:1]",
              "tests/test_kill_resume.py::test_sigkill_during_a_write_then_resume_is_identical[DONE:3]"]
    assert [sched._split_scope(n) for n in others] == others  # spread over the workers
    assert conftest.pytest_xdist_make_scheduler(_Config("loadfile"), None) is None  # other modes: xdist's own
