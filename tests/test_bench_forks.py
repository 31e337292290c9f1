"""The fork server of the tests (tests/bench_forks.py) gives what a fresh ``python -m bench.cli``
gives: the same stdout, stderr and exit code; and it refuses an environment it cannot honour."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from helpers import REPO


@pytest.mark.parametrize("args", [["list"], ["run", "--suite", "no-such-suite", "--dry-run"],
                                  ["run", "--suite", "default", "--dry-run", "--threads", "0"]])
def test_a_forked_run_says_what_a_fresh_interpreter_says(bench_forks, tmp_path, args):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "BENCH_THREADS": "1"}
    fresh = subprocess.run([sys.executable, "-m", "bench.cli", *args], cwd=REPO, env=env, capture_output=True,
                           text=True, timeout=300)
    forked = bench_forks.run(args, env)
    assert (forked.returncode, forked.stdout, forked.stderr) == (fresh.returncode, fresh.stdout, fresh.stderr)


def test_an_import_time_variable_is_refused(bench_forks):
    with pytest.raises(ValueError, match="OMP_NUM_THREADS"):
        bench_forks.run(["list"], {**bench_forks.env, "OMP_NUM_THREADS": "7"})
