"""`bench` processes forked from a server that has imported bench once (issue 28).

A `bench run` that trains starts by importing torch, torch._dynamo (every torch optimiser
imports it), timm and bench: about 5 s of CPU on a 2-core machine, a third of a tiny run, and
most of what the kill/resume matrix spends (24 runs). :class:`BenchForks` starts one server
process per test session (``python tests/bench_forks.py``) that imports those modules and then,
for every run a test asks for, ``fork()``s: the child takes the run's working directory,
environment, argv and stdout/stderr files and calls ``bench.cli.main`` -- the function
``python -m bench.cli`` calls -- and exits as the interpreter does (non-daemon threads joined,
atexit handlers, streams flushed, the exit code read from SystemExit), less the teardown of the
imported modules. It is a real process with its own pid: tests SIGKILL/SIGTERM it and its
DataLoader workers as they would a subprocess. Measured (a torch-free `bench run --dry-run`):
fresh interpreter 0.55-0.70 s, fork 2.1 s as first written, 0.78 s with ``gc.freeze()`` in the
server (a fork's collections no longer touch, hence copy, every imported object), 0.4 s with
the module teardown skipped.

What a fork shares with the server is what was imported. Variables read when a module is
IMPORTED therefore come from the server's environment: :meth:`BenchForks.start` refuses a run
whose environment differs from the server's in any variable that is not read at run time
(:data:`RUN_TIME_VARIABLES`), so a test can never silently run with the wrong setting.
Tests that check the entry point itself (imports, ``__main__``, the SIGTERM handler of a fresh
interpreter) keep using ``python -m bench.cli`` subprocesses; the kill/resume reference is one,
so every forked run there is also compared with a fresh interpreter's records.
"""
from __future__ import annotations

import atexit
import gc
import json
import os
import tempfile
import threading
import traceback
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

#: Environment variables bench reads when it runs (not when a module is imported): a forked run
#: may set them to its own values.
RUN_TIME_VARIABLES = frozenset({
    "BENCH_THREADS", "BENCH_CACHE_DIR", "BENCH_FAULT_KILL", "BENCH_DATA_ROOT", "BENCH_LOG",
    "BENCH_REPORT_CACHE", "BENCH_SPEC_CACHE", "BENCH_SPEC_CACHE_DIR", "BENCH_COST_CACHE",
    "BENCH_COST_CACHE_DIR", "BENCH_CACHE_WORKERS", "BENCH_DIST_TIMEOUT_MIN",
    "PYTEST_CURRENT_TEST", "SLURM_CONF", "COLUMNS", "LINES", "TERM",
    "TRANSFORMERS_OFFLINE"})  # set by methods/embeddings.py; transformers is not imported by the server
#: ... and the prefixes of such variables: wandb's settings, read by ``wandb.init``.
RUN_TIME_PREFIXES = ("WANDB_",)
#: The modules a training `bench run` imports (what the fork saves).
PRELOAD = ("torch", "torch._dynamo", "torch.optim", "timm.utils", "bench.cli", "bench.run.run_suite",
           "bench.run.runner", "bench.run.executors", "bench.report.build")


def _serve() -> None:
    """Server loop: one JSON request per line on stdin, one JSON answer per line on stdout."""
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    gc.freeze()  # the forks' collections skip the imported objects: no copy-on-write of them
    requests, answers = sys.stdin, sys.stdout
    answers.write(json.dumps({"ready": os.getpid()}) + "\n")
    answers.flush()
    for line in requests:
        req = json.loads(line)
        if req["op"] == "start":
            answers.flush()
            pid = os.fork()
            if pid == 0:
                _child(req)  # never returns: the child ends in os._exit
            answers.write(json.dumps({"pid": pid}) + "\n")
        elif req["op"] == "wait":
            answers.write(json.dumps({"returncode": _wait(req["pid"], req["timeout"])}) + "\n")
        answers.flush()


def _wait(pid: int, timeout: float) -> int | None:
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)  # -N for a signal, as subprocess says
        if time.monotonic() > deadline:
            return None
        time.sleep(0.02)


def _child(req: dict) -> None:
    os.chdir(req["cwd"])
    os.environ.clear()
    os.environ.update(req["env"])
    for fd, path, flags in ((0, os.devnull, os.O_RDONLY), (1, req["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                            (2, req["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)):
        opened = os.open(path, flags, 0o644)
        os.dup2(opened, fd)
        os.close(opened)
    sys.stdin = open(0, closefd=False)
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    sys.argv = [str(REPO / "bench" / "cli.py"), *req["argv"]]
    from bench.cli import main

    try:
        code = main(req["argv"])
    except SystemExit as err:  # as the interpreter reads it: None 0, an int itself, else printed and 1
        code = err.code
    except BaseException:  # what escapes main: the interpreter prints it and exits 1
        traceback.print_exc()
        code = 1
    if not isinstance(code, int):
        if code is not None:
            print(code, file=sys.stderr)
        code = 0 if code is None else 1
    # The interpreter's exit, less the teardown of every module (~0.4 s of a forked run):
    # non-daemon threads joined, atexit handlers run (DataLoader workers, loggers), streams flushed.
    threading._shutdown()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


class ForkedRun:
    """A forked `bench` process, used like :class:`subprocess.Popen`."""

    def __init__(self, server: "BenchForks", pid: int, stdout: Path, stderr: Path):
        self._server, self.pid, self.stdout_path, self.stderr_path = server, pid, stdout, stderr
        self.returncode: int | None = None

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, sig)

    def wait(self, timeout: float = 600) -> int:
        if self.returncode is None:
            self.returncode = self._server._ask({"op": "wait", "pid": self.pid, "timeout": timeout})["returncode"]
            if self.returncode is None:
                os.kill(self.pid, signal.SIGKILL)
                self._server._ask({"op": "wait", "pid": self.pid, "timeout": 60})
                raise subprocess.TimeoutExpired(["bench (forked)"], timeout)
        return self.returncode

    def completed(self, args: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
        code = self.wait(timeout)
        return subprocess.CompletedProcess(args, code, self.stdout_path.read_text(errors="replace"),
                                           self.stderr_path.read_text(errors="replace"))


class BenchForks:
    """The server process and the client side (one per test session and xdist worker)."""

    def __init__(self, logs: Path, env: dict | None = None):
        self._logs, self._count = Path(logs), 0
        self._logs.mkdir(parents=True, exist_ok=True)
        self.env = {**(os.environ if env is None else env), "HF_HUB_OFFLINE": "1"}  # no test reaches a hub
        self._proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve())], cwd=REPO, env=self.env,
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        ready = self._proc.stdout.readline()
        if not ready:
            raise RuntimeError("the bench fork server did not start")

    def _ask(self, request: dict) -> dict:
        self._proc.stdin.write(json.dumps(request) + "\n")
        self._proc.stdin.flush()
        return json.loads(self._proc.stdout.readline())

    def start(self, args: list[str], env: dict, cwd: Path = REPO) -> ForkedRun:
        differ = sorted(k for k in set(env) | set(self.env) if env.get(k) != self.env.get(k)
                        and k not in RUN_TIME_VARIABLES and not k.startswith(RUN_TIME_PREFIXES))
        if differ:
            raise ValueError(f"a forked bench run cannot change {differ}: they are read at import time; "
                             "use a `python -m bench.cli` subprocess")
        self._count += 1
        out, err = (self._logs / f"{self._count}.{ext}" for ext in ("out", "err"))
        pid = self._ask({"op": "start", "argv": [str(a) for a in args], "env": env, "cwd": str(cwd),
                         "stdout": str(out), "stderr": str(err)})["pid"]
        return ForkedRun(self, pid, out, err)

    def run(self, args: list[str], env: dict, cwd: Path = REPO, timeout: float = 600) -> subprocess.CompletedProcess:
        """Like ``subprocess.run([python, -m, bench.cli, *args], capture_output=True, text=True)``."""
        return self.start(args, env, cwd).completed(list(args), timeout)

    def close(self) -> None:
        self._proc.stdin.close()
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()


_SHARED: list[BenchForks] = []


def shared() -> BenchForks:
    """This process's server, started on first use and closed when the process exits."""
    if not _SHARED:
        _SHARED.append(BenchForks(Path(tempfile.mkdtemp(prefix="bench-forks-"))))
        atexit.register(_SHARED[0].close)
    return _SHARED[0]


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    _serve()
