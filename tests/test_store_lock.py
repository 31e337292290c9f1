"""A job's lock dies with its trainer, even when a forked child (a DataLoader worker) outlives it."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

from bench.spec.jobs import JobSpec
from bench.run.store import Store
from helpers import REPO

SCRIPT = textwrap.dedent("""
    import multiprocessing as mp, os, sys, time
    from bench.spec.jobs import JobSpec
    from bench.run.store import Store
    job = JobSpec.from_dict({"method": "baseline", "hparams": {}, "dataset": {"name": "x"}, "backbone": {},
                             "budget": {}, "optimizer": {}, "protocol": "equal-budget", "evaluation": {}, "seed": 0})
    with Store(sys.argv[1]).job_dir(job).lock() as got:
        assert got
        child = mp.get_context("fork").Process(target=time.sleep, args=(60,))  # outlives this process
        child.start()
        print(child.pid, flush=True)
        time.sleep(60)
""")


def test_the_lock_is_released_when_the_trainer_is_killed_though_its_forked_child_lives(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    child = int(proc.stdout.readline())
    job = JobSpec.from_dict({"method": "baseline", "hparams": {}, "dataset": {"name": "x"}, "backbone": {},
                             "budget": {}, "optimizer": {}, "protocol": "equal-budget", "evaluation": {}, "seed": 0})
    jd = Store(tmp_path).job_dir(job)
    try:
        assert jd.is_running()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        os.kill(child, 0)  # the forked child is still alive ...
        deadline = time.time() + 5
        while jd.is_running() and time.time() < deadline:
            time.sleep(0.05)
        assert not jd.is_running()  # ... but it does not hold the job's lock
        with jd.lock() as got:
            assert got
    finally:
        try:
            os.kill(child, signal.SIGKILL)
        except ProcessLookupError:
            pass
