"""The results store: one folder per job under <root>/<suite>/<job_id>/.

Files of a job folder, each written atomically (temp file + rename):
  job.json         the JobSpec (written when the job is first started)
  checkpoint.pt    per-epoch training state (resume); deleted when the job is done
  record.json      the final record (metrics, history, provenance)
  predictions.npz  test scores at the selected epoch (for bootstrap tests in the report)
  error.txt        the last failure's traceback (removed when the job succeeds)
  DONE             written LAST; a folder without it is not a result
A job runs only while holding an exclusive lock on its folder's ``lock`` file,
so two launchers never run the same job at once.
"""
from __future__ import annotations

import fcntl
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from bench.jobs import JobSpec

DEFAULT_ROOT = Path("results")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
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

    @property
    def is_done(self) -> bool:
        return self.done_file.exists()

    @property
    def state(self) -> str:
        """'done', 'failed', 'incomplete' (started, has a checkpoint or job.json) or 'new'."""
        if self.is_done:
            return "done"
        if self.error_file.exists():
            return "failed"
        if self.job_file.exists():
            return "incomplete"
        return "new"

    def write_job(self, job: JobSpec) -> None:
        if not self.job_file.exists():
            atomic_write_json(self.job_file, job.to_dict())

    def mark_failed(self, message: str) -> None:
        atomic_write_bytes(self.error_file, message.encode())

    def finish(self, record: dict[str, Any], predictions: dict[str, np.ndarray]) -> None:
        """Write predictions and record, then DONE last; drop checkpoint and error."""
        import io

        buf = io.BytesIO()
        np.savez_compressed(buf, **predictions)
        atomic_write_bytes(self.predictions_file, buf.getvalue())
        atomic_write_json(self.record_file, record)
        self.error_file.unlink(missing_ok=True)
        atomic_write_bytes(self.done_file, b"")
        self.checkpoint_file.unlink(missing_ok=True)

    @contextmanager
    def lock(self) -> Iterator[bool]:
        """Yield True if this process got the job's exclusive lock (non-blocking)."""
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / "lock", "a+") as f:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)


class Store:
    def __init__(self, root: str | Path = DEFAULT_ROOT) -> None:
        self.root = Path(root)

    def job_dir(self, job: JobSpec, suite: str | None = None) -> JobDir:
        return JobDir(self.root, suite or job.suite, job.job_id)

    def records(self, suite: str) -> list[dict[str, Any]]:
        """Every finished record of ``suite``, sorted by (label, seed, job_id)."""
        out = []
        for done in sorted((self.root / suite).glob("*/DONE")):
            out.append(json.loads((done.parent / "record.json").read_text()))
        return sorted(out, key=lambda r: (r["job"]["label"], r["job"]["seed"], r["job_id"]))

    def suites(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and any(p.glob("*/DONE")))

