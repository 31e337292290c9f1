"""A job's signals act in the job's main process only; every process it starts survives them.

Slurm signals EVERY process of a job step (slurmstepd signals the whole container): the
pre-timeout signal (``--signal=USR2@90``, or ``scancel --signal=USR2``), and SIGCONT + SIGTERM at
the time limit, on ``scancel`` and on preemption (SIGKILL follows after KillWait / GraceTime).
submitit's handlers (``JobEnvironment._handle_signals``) run ``checkpoint_and_try_requeue`` on
USR2 and only log SIGTERM/SIGCONT ("bypass"). A DataLoader worker forked from the job inherits
those Python handlers and sees ``SLURM_PROCID=0``: without this module each worker checkpoints,
rewrites ``submitted.pkl``, may ``scontrol requeue`` and exits, and the main process then dies
with "DataLoader worker ... exited unexpectedly". Outside submitit the default action of USR2
(terminate) kills a worker the same way.

:func:`main_process_only` makes the main process the only one that acts, exactly once per
signal, with two mechanisms that cover different children:

* **Handlers that check the pid.** Each handled signal's handler is wrapped: in the process that
  entered the block it calls the previous handler (or performs the default action where there
  was none); in any other process it returns, i.e. the signal is ignored. A ``fork()``ed child
  (DataLoader workers under Linux's default start method, from any thread) inherits the
  wrapper.
* **A blocked signal mask in the main thread.** A child started by ``spawn``/``forkserver`` or
  ``subprocess`` runs a fresh program: it inherits no Python handler (a handled signal is reset
  to the default action by ``exec``) but it inherits the signal MASK of the thread that started
  it. The block therefore blocks the signals in the main thread, where DataLoader workers and
  helper processes are started, and starts one idle thread that leaves them unblocked: the
  kernel delivers the process's signals to that thread, and Python runs the handler in the
  main thread as always. A signal then reaches the main process's handler after the main
  thread's current blocking call returns (a DataLoader waits at most 5 s between checks).
  ``multiprocessing``'s resource tracker UNBLOCKS SIGINT/SIGTERM in the calling thread after it
  starts (CPython's ``resource_tracker.ensure_running``), so the block starts the tracker itself
  (a helper process, started once per process, that then ignores the signals too) and blocks
  again. Children started by a thread other than the main thread get only the first mechanism.

The trainer's DataLoaders use the default start method: ``fork`` on Linux up to Python 3.13,
``forkserver`` from 3.14. tests/test_child_signals.py checks all three start methods.
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Any, Callable, Iterable, Iterator

#: Signals whose default action leaves the process running (nothing to re-enact).
_HARMLESS_BY_DEFAULT = {signal.SIGCHLD, signal.SIGCONT, signal.SIGURG, signal.SIGWINCH}


def slurm_signals() -> tuple[int, ...]:
    """What Slurm sends a submitit job: submitit's preemption signal (``SUBMITIT_PREEMPT_SIGNAL``,
    USR2 by default), SIGTERM and SIGCONT."""
    from submitit import JobEnvironment

    return (JobEnvironment._usr_sig(), signal.SIGTERM, signal.SIGCONT)


def local_signals() -> tuple[int, ...]:
    """What a local job's main process acts on and its children ignore: USR2 (the signal a
    scheduler or a user sends to ask for a checkpoint) and SIGTERM (the CLI ends the run)."""
    return (signal.SIGUSR2, signal.SIGTERM)


def _main_only(signum: int, previous: Any, main_pid: int) -> Callable[[int, Any], None]:
    def handler(sig: int, frame: Any) -> None:
        if os.getpid() != main_pid:
            return  # a child: the main process decides what happens
        if callable(previous):
            previous(sig, frame)
        elif signum not in _HARMLESS_BY_DEFAULT:  # SIG_DFL: the default action, i.e. terminate
            signal.signal(signum, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, [signum])
            signal.raise_signal(signum)

    return handler


@contextlib.contextmanager
def main_process_only(signums: Iterable[int]) -> Iterator[None]:
    """Within the block, ``signums`` act in this process only (its current handlers, or the
    default action); every process started inside the block ignores them. Restores the handlers
    and the signal mask on exit. Entered from another thread (where Python cannot set handlers)
    it changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signums = tuple(dict.fromkeys(int(s) for s in signums))
    main_pid = os.getpid()
    previous = {s: signal.getsignal(s) for s in signums}
    wrapped = [s for s, h in previous.items() if h is not None and h != signal.SIG_IGN]
    stop = threading.Event()
    receiver = threading.Thread(target=stop.wait, name="signal-receiver", daemon=True)
    receiver.start()  # before the mask: it keeps the signals unblocked, so the kernel delivers them
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    try:
        for s in wrapped:
            signal.signal(s, _main_only(s, previous[s], main_pid))
        signal.pthread_sigmask(signal.SIG_BLOCK, signums)
        # multiprocessing's resource tracker (spawn/forkserver start it on first use) UNBLOCKS
        # SIGINT/SIGTERM in the calling thread once it has started: start it now, then block again.
        from multiprocessing import resource_tracker

        resource_tracker.ensure_running()
        signal.pthread_sigmask(signal.SIG_BLOCK, signums)
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # a pending signal runs the wrapper now
        for s in wrapped:
            signal.signal(s, previous[s])
        stop.set()
        receiver.join(timeout=5)
