"""The results store: one folder per job under <root>/<suite>/<job_id>/.

Files of a job folder, each written atomically (temp file + rename):
  job.json         the JobSpec (written when the job is first started)
  checkpoint.pt    per-epoch training state (resume); deleted when the job is done
  record.json      the final record (metrics, history, provenance)
  predictions.npz  test scores at the selected epoch (for bootstrap tests in the report)
  error.txt        the last failure's traceback (removed when the job succeeds)
  code.txt         the code fingerprint of every attempt (start, resumes); removed when DONE
  DONE             written LAST; a folder without it is not a result
  stale-<fp>/      a stale record set aside by ``bench run --rerun-stale`` (DONE, record.json,
                   predictions.npz of code <fp>); removed once the new record is DONE
A job runs only while holding an exclusive lock on its folder's ``lock`` file,
so two launchers never run the same job at once.

Job states (:data:`STATES`, the same names in ``bench run --dry-run``, ``bench sweep
--dry-run`` and ``bench status``):
  new         nothing of the job exists yet (or only an empty folder / a lock file)
  running     a live process holds the job's lock
  incomplete  started and interrupted: job.json or a checkpoint, no DONE; resumes from the
              last epoch checkpoint. A DONE marker beside a missing or unreadable
              record.json (killed while writing) is incomplete too, never done
  failed      the last attempt raised (error.txt); re-running retries it
  done        DONE, a readable record.json, made by the current code (same code fingerprint)
  stale       DONE and a readable record.json made by other code: its
              provenance.code_fingerprint differs from the current one, or is missing or
              unreadable (bench.run.provenance). Counts as done (not rerun) unless
              ``bench run --rerun-stale``
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from bench.spec.jobs import JobSpec
from bench.run.equivalence import equivalent
from bench.run.provenance import current_code_files, current_code_fingerprint, legacy_equivalent

DEFAULT_ROOT = Path("results")
STATES = ("new", "running", "incomplete", "failed", "done", "stale")
STALE_PREFIX = "stale-"
LOCK_RETRIES = 4  # x 50 ms: outlasts a status probe, not a running job


def read_record(path: Path) -> dict[str, Any] | None:
    """The record at ``path``, or None when it is missing, unreadable or not a JSON object."""
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def record_fingerprint(record: Any) -> str | None:
    prov = record.get("provenance") if isinstance(record, dict) else None
    fp = prov.get("code_fingerprint") if isinstance(prov, dict) else None
    return fp if isinstance(fp, str) and fp else None


def record_method(record: Any) -> str | None:
    job = record.get("job") if isinstance(record, dict) else None
    method = job.get("method") if isinstance(job, dict) else None
    return method if isinstance(method, str) else None


def staleness(record: Any, current: str | None = None) -> str:
    """'' when ``record`` was made by the current code of its method; otherwise why it is stale.

    A scheme-1 fingerprint (records made before fingerprints were scoped by method) counts as
    the scheme-2 value that ``provenance.LEGACY`` computed for its commit; a fingerprint that
    ``results/code-equivalence.json`` links to the current one (bench.run.equivalence) is current."""
    current = current or current_code_fingerprint(record_method(record))
    fp = record_fingerprint(record)
    if fp is None:
        return ("no readable provenance.code_fingerprint (recorded before code fingerprints existed, "
                "or damaged): counted as stale")
    method = record_method(record) or "*"
    if fp == current or legacy_equivalent(fp, method) == current:
        return ""
    if current in equivalent(legacy_equivalent(fp, method) or fp, method):
        return ""  # shown to compute the same (bench.run.equivalence)
    return f"made by code {fp}, current code is {current}" + _changed_files(record)


def _job_method(job_file: Path) -> str | None:
    value = read_record(job_file)
    method = value.get("method") if value else None
    return method if isinstance(method, str) else None


def last_error_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else "failed (empty error.txt)"


def _changed_files(record: dict[str, Any]) -> str:
    old = (record.get("provenance") or {}).get("code_files")
    if not isinstance(old, dict):
        return ""
    new = current_code_files()
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if not changed:
        return ""
    shown = ", ".join(changed[:4]) + (f" and {len(changed) - 4} more" if len(changed) > 4 else "")
    return f" (changed: {shown})"


#: Fault injection for the crash-safety test (tests/test_kill_resume.py): "NAME:N" kills this
#: process with SIGKILL in the middle of the N-th atomic write of a file called NAME (temp file
#: written, not yet renamed). Unset in normal use.
FAULT_ENV = "BENCH_FAULT_KILL"
_fault_count: dict[str, int] = {}


def _maybe_fault(path: Path) -> None:
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    name, _, nth = spec.partition(":")
    if path.name == name:
        _fault_count[name] = _fault_count.get(name, 0) + 1
        if _fault_count[name] == int(nth or 1):
            import signal

            os.kill(os.getpid(), signal.SIGKILL)


#: called as hook(job folder, record) once a record is written (bench.run.epochlog adds itself)
FINISH_HOOKS: list[Any] = []


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        _maybe_fault(path)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; results are shared reading
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, value: Any) -> None:
    atomic_write_bytes(path, (json.dumps(value, indent=1, sort_keys=True, default=str) + "\n").encode())


class JobDir:
    """Paths and state of one job's folder."""

    def __init__(self, root: Path, suite: str, job_id: str) -> None:
        self.path = Path(root) / suite / job_id
        self.job_id = job_id

    job_file = property(lambda self: self.path / "job.json")
    record_file = property(lambda self: self.path / "record.json")
    checkpoint_file = property(lambda self: self.path / "checkpoint.pt")
    predictions_file = property(lambda self: self.path / "predictions.npz")
    error_file = property(lambda self: self.path / "error.txt")
    done_file = property(lambda self: self.path / "DONE")

    def record(self) -> dict[str, Any] | None:
        """The finished record: None without DONE or when record.json is unreadable."""
        if not self.done_file.exists():
            return None
        return read_record(self.record_file)

    @property
    def is_done(self) -> bool:
        """DONE and a readable record.json (stale or not): the runner need not run it again."""
        return self.record() is not None

    def is_running(self) -> bool:
        """A live process holds this job's lock (probed without creating anything)."""
        lock = self.path / "lock"
        try:
            f = open(lock, "r")
        except OSError:
            return False
        with f:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            except OSError:
                return False
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
            return False

    def describe(self) -> tuple[str, str]:
        """(state, reason): one of :data:`STATES` and, for stale/incomplete/failed, why."""
        record = self.record()
        if record is not None:
            why = staleness(record)
            return ("stale", why) if why else ("done", "")
        if self.is_running():
            return "running", ""
        if self.error_file.exists():
            return "failed", last_error_line(self.error_file.read_text(errors="replace"))
        if self.done_file.exists():
            return "incomplete", "DONE marker but record.json is missing or unreadable (killed while writing?)"
        if self.job_file.exists() or self.checkpoint_file.exists() or self.record_file.exists():
            other = [f for f in self.attempt_fingerprints() if f != self.current_fingerprint()]
            if other and self.checkpoint_file.exists():
                return "incomplete", (f"started by other code ({other[-1]}): resuming mixes code and gives a stale "
                                      "record; `--rerun-stale` restarts it from scratch")
            return "incomplete", "started, not finished: resumes from its last epoch checkpoint"
        return "new", ""

    @property
    def state(self) -> str:
        """One of :data:`STATES` (see the module docstring)."""
        return self.describe()[0]

    def started_by_other_code(self) -> bool:
        """Not done, a checkpoint exists, and an earlier attempt ran other code than the current."""
        return (not self.is_done and self.checkpoint_file.exists()
                and any(f != self.current_fingerprint() for f in self.attempt_fingerprints()))

    def stale_dirs(self) -> list[Path]:
        return sorted(p for p in self.path.glob(STALE_PREFIX + "*") if p.is_dir()) if self.path.is_dir() else []

    def set_aside(self) -> Path:
        """Move a stale record (DONE first, then record.json, predictions.npz) into
        ``stale-<fingerprint>/`` so the job runs again; :meth:`finish` deletes it once the new
        record is DONE, :meth:`restore_aside` puts it back if the rerun fails."""
        fp = record_fingerprint(self.record()) or (self.attempt_fingerprints() or ["unknown"])[-1]
        aside = self.path / f"{STALE_PREFIX}{fp}"
        n = 1
        while aside.exists():
            n += 1
            aside = self.path / f"{STALE_PREFIX}{fp}-{n}"
        aside.mkdir(parents=True)
        for f in (self.done_file, self.record_file, self.predictions_file, self.checkpoint_file,
                  self.code_file):  # DONE first: never half-done
            if f.exists():
                os.replace(f, aside / f.name)
        return aside

    def restore_aside(self) -> bool:
        """Put the newest set-aside record back when no new record is DONE; True if restored."""
        dirs = [d for d in self.stale_dirs() if (d / "DONE").exists()]  # a set-aside checkpoint stays aside
        if self.is_done or not dirs:
            return False
        aside = max(dirs, key=lambda p: p.stat().st_mtime)
        for name in ("code.txt", "checkpoint.pt", "predictions.npz", "record.json", "DONE"):  # DONE last
            if (aside / name).exists():
                os.replace(aside / name, self.path / name)
        shutil.rmtree(aside, ignore_errors=True)
        return True

    code_file = property(lambda self: self.path / "code.txt")

    def write_job(self, job: JobSpec) -> None:
        """job.json once; and, at every (re)start, the code fingerprint of this attempt in code.txt."""
        if not self.job_file.exists():
            atomic_write_json(self.job_file, job.to_dict())
        attempts = self.attempt_fingerprints() if self.checkpoint_file.exists() else []  # no checkpoint: a fresh start
        current = current_code_fingerprint(job.method)
        if not attempts or attempts[-1] != current:
            atomic_write_bytes(self.code_file, "".join(f + "\n" for f in attempts + [current]).encode())

    def current_fingerprint(self) -> str:
        """The current code's fingerprint for this job's method (job.json; shared code without it)."""
        return current_code_fingerprint(_job_method(self.job_file))

    def attempt_fingerprints(self) -> list[str]:
        """The code fingerprints of the attempts so far (started, resumed), oldest first."""
        try:
            return [ln.strip() for ln in self.code_file.read_text().splitlines() if ln.strip()]
        except OSError:
            return []

    def mark_failed(self, message: str) -> None:
        atomic_write_bytes(self.error_file, message.encode())

    def finish(self, record: dict[str, Any], predictions: dict[str, np.ndarray]) -> None:
        """Write predictions and record, then DONE last; drop checkpoint and error.

        A job resumed across a code change was trained by more than one code version: its record
        keeps every attempt's fingerprint (provenance.code_fingerprints) and its code_fingerprint
        becomes ``mixed-...``, so it is stale for every code (README "When is a record stale?")."""
        import io

        attempts = list(dict.fromkeys(self.attempt_fingerprints()))
        prov = record.get("provenance") if isinstance(record.get("provenance"), dict) else None
        if prov is not None and prov.get("fingerprint_scheme") == 2:  # the code scoped to the job's method
            prov["code_fingerprint"] = current_code_fingerprint(record_method(record))
        if prov is not None and attempts:
            prov["code_fingerprints"] = attempts
            if len(attempts) > 1 or (prov.get("code_fingerprint") and prov.get("code_fingerprint") != attempts[0]):
                prov["code_fingerprint"] = "mixed-" + "-".join(attempts)

        buf = io.BytesIO()
        np.savez_compressed(buf, **predictions)
        atomic_write_bytes(self.predictions_file, buf.getvalue())
        atomic_write_json(self.record_file, record)
        for hook in FINISH_HOOKS:  # bench.run.epochlog.log_final: the test metrics to --log's loggers
            hook(self.path, record)
        self.error_file.unlink(missing_ok=True)
        atomic_write_bytes(self.done_file, b"")
        self.checkpoint_file.unlink(missing_ok=True)
        self.code_file.unlink(missing_ok=True)
        for aside in self.stale_dirs():  # the stale record it replaces
            shutil.rmtree(aside, ignore_errors=True)

    @contextmanager
    def lock(self) -> Iterator[bool]:
        """Yield True if this process got the job's exclusive lock (non-blocking). A few short
        retries: a state probe (:meth:`is_running`) holds a shared lock for microseconds, a
        running job holds it for its whole run."""
        import time

        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / "lock", "a+") as f:
            for attempt in range(LOCK_RETRIES + 1):
                try:
                    fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if attempt == LOCK_RETRIES:
                        yield False
                        return
                    time.sleep(0.05)
            _HELD_LOCK_FDS.add(f.fileno())
            try:
                yield True
            finally:
                _HELD_LOCK_FDS.discard(f.fileno())
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)


#: File descriptors of the job locks this process holds. A flock belongs to the open file
#: description, which a forked child shares: a DataLoader worker (bench/train/data.py, forked)
#: would keep a job locked after its trainer was killed, and the resumed run would find the job
#: "running elsewhere". Forked children therefore drop these descriptors (not the lock).
_HELD_LOCK_FDS: set[int] = set()


def _drop_inherited_locks() -> None:
    """In a forked child: point every inherited job-lock descriptor at /dev/null."""
    if not _HELD_LOCK_FDS:
        return
    null = os.open(os.devnull, os.O_RDONLY)
    for fd in list(_HELD_LOCK_FDS):
        os.dup2(null, fd)
    os.close(null)
    _HELD_LOCK_FDS.clear()


os.register_at_fork(after_in_child=_drop_inherited_locks)


class Store:
    def __init__(self, root: str | Path = DEFAULT_ROOT) -> None:
        self.root = Path(root)

    def job_dir(self, job: JobSpec, suite: str | None = None) -> JobDir:
        return JobDir(self.root, suite or job.suite, job.job_id)

    def records(self, suite: str) -> list[dict[str, Any]]:
        """Every finished record of ``suite`` (stale ones included; a DONE beside an unreadable
        record.json is skipped: never a result), sorted by (label, seed, job_id)."""
        out = []
        for done in sorted((self.root / suite).glob("*/DONE")):
            record = read_record(done.parent / "record.json")
            if record is not None and isinstance(record.get("job"), dict):
                out.append(record)
        return sorted(out, key=lambda r: (r["job"]["label"], r["job"]["seed"], r["job_id"]))

    def reuse_done(self, jobs: list[JobSpec], states: dict[str, str]) -> dict[str, str]:
        """Copy into place the current (not stale) record of any job of ``jobs`` (state new or
        failed here) that is already done under another suite of this root: the same job id
        is the same computation (the id hashes every semantic field; the code fingerprint
        matches). The copy keeps every number, takes this job's label and suite, and says
        where it came from (``reused_from``). Returns {job_id: source suite}."""
        reused: dict[str, str] = {}
        for job in jobs:
            if states.get(job.job_id) not in ("new", "failed"):
                continue
            for done in sorted(self.root.glob(f"*/{job.job_id}/DONE")):
                source = JobDir(self.root, done.parent.parent.name, job.job_id)
                record = source.record()
                if source.path.parent.name == job.suite or record is None or staleness(record):
                    continue
                if not source.predictions_file.is_file():
                    continue
                target = self.job_dir(job)
                target.path.mkdir(parents=True, exist_ok=True)
                record = {**record, "job": {**record["job"], "label": job.label, "suite": job.suite},
                          "reused_from": {"suite": source.path.parent.name, "path": str(source.path)}}
                atomic_write_bytes(target.predictions_file, source.predictions_file.read_bytes())
                atomic_write_json(target.record_file, record)
                target.error_file.unlink(missing_ok=True)
                atomic_write_bytes(target.done_file, b"")  # last: only now is it a result
                reused[job.job_id] = source.path.parent.name
                break
        return reused

    def suites(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and any(p.glob("*/DONE")))


    def unreadable(self, suite: str) -> list[Path]:
        """record.json files of ``suite`` beside a DONE marker that cannot be read (corrupt,
        truncated): no result, retrained by the next ``bench run``. :meth:`records` skips them;
        the commands that read records say so (one line)."""
        return [done.parent / "record.json" for done in sorted((self.root / suite).glob("*/DONE"))
                if read_record(done.parent / "record.json") is None]
