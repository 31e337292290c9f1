"""Where and with what a record was produced: commit, code fingerprint, packages, machine, device.

Code fingerprint (``code_fingerprint``): which code made a record
------------------------------------------------------------------
The job id hashes WHAT a job computes (its semantic fields, ``bench.jobs``); the code
fingerprint hashes the code that COMPUTES it. A done record whose
``provenance.code_fingerprint`` differs from :func:`current_code_fingerprint` (or is
missing or unreadable) is **stale** (``bench.store.JobDir.state``).

Scope -- what counts (decided once, here; README "When is a record stale?"):

* every ``*.py`` file under ``bench/`` and ``methods/`` (recursively, ``__pycache__``
  never), by CONTENT (sha256 of the bytes, never mtimes), each with its path relative to
  the repository, in sorted path order: a rename counts, a checkout or a copy does not;
* EXCEPT the modules in :data:`EXCLUDED`, which cannot change a number in a record: they
  read records, talk to the user or the scheduler, or decide WHICH job runs (and so act
  only through the job's semantic fields, which the job id already hashes). A new module
  is included until someone adds it to :data:`EXCLUDED` with a reason: the default errs
  towards "stale".

Not hashed: the suite/sweep YAML (its effect on a job is exactly the job's semantic fields,
already in the job id), tests, docs, benchmarks, REPORT.md, pyproject.toml. Package versions,
Python, CPU model and thread count are recorded beside the fingerprint (``packages``,
``python``, ``machine``, ``threads``) but do not make a record stale: they change float
reduction order, not the method (README "What agreement to expect").

The fingerprint is computed ONCE per process, when this module is first imported (the
runner imports it before training), so a record describes the code the process loaded
even if a file is edited while it trains.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import importlib.metadata as md
import os
import platform
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("torch", "torchvision", "timm", "fvcore", "numpy", "submitit", "pycocotools", "pandas")

#: Folders whose Python files make up the code that can change a result.
CODE_DIRS = ("bench", "methods")
#: Modules of CODE_DIRS that cannot change a number in a record, each with the reason.
EXCLUDED: dict[str, str] = {
    # read records and render; never write one
    "bench/report.py": "renders REPORT.md from records",
    "bench/report_common.py": "reads records for the report",
    "bench/report_tables.py": "renders tables from records",
    "bench/report_plots.py": "renders figures from records",
    "bench/claims.py": "decides claim verdicts from records",
    "bench/claims_text.py": "the claims' text and checks",
    "bench/stats.py": "report statistics over finished records",
    "bench/paper_values.py": "the papers' numbers",
    "bench/paper_costs.py": "the papers' cost numbers",
    "bench/collect.py": "`bench results`: prints records",
    "bench/compare.py": "`bench compare`: compares finished records",
    "bench/status.py": "`bench status`: reads the store and the scheduler",
    # talk to the user or the scheduler; choose WHICH jobs run, never how
    "bench/cli.py": "argument parsing",
    "bench/run_suite.py": "`bench run`: selects jobs, prints, hands them to an executor",
    "bench/sweep_cmd.py": "`bench sweep`: selects jobs, hands them to an executor",
    "bench/executors.py": "calls the runner job after job (threads are recorded in provenance)",
    "bench/slurm.py": "submits to Slurm and requeues; the job runs the same runner",
    "bench/errors.py": "exception classes",
    "bench/data/inspect.py": "`bench data inspect`: prints label statistics",
    # a job's identity: every effect passes through the job's semantic fields (the job id)
    "bench/suites.py": "YAML -> JobSpec; what it decides is in the job id",
    "bench/sweeps.py": "sweep YAML -> JobSpecs; what it decides is in the job id",
    "bench/jobs.py": "the JobSpec and its id; what a job computes is in the id",
    # bookkeeping around a record, not its numbers
    "bench/store.py": "writes the runner's record and predictions byte for byte; job states",
    "bench/provenance.py": "describes the run (commit, machine, this fingerprint)",
    # `bench cost` writes results/cost/*.json, not job records
    "bench/cost.py": "`bench cost`: parameter/GMAC records, not job records",
    "bench/cost_timing.py": "`bench cost --timing`",
}


def code_files(root: Path = REPO) -> list[Path]:
    """The files the fingerprint hashes, sorted by their repository-relative POSIX path."""
    out = []
    for folder in CODE_DIRS:
        for path in (root / folder).rglob("*.py"):
            rel = path.relative_to(root).as_posix()
            if "__pycache__" not in path.parts and rel not in EXCLUDED and path.is_file():
                out.append(path)
    return sorted(out, key=lambda p: p.relative_to(root).as_posix())


def code_file_hashes(root: Path = REPO) -> dict[str, str]:
    """{relative path: sha256 of its bytes (first 12 hex digits)} of :func:`code_files`."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()[:12]
            for p in code_files(root)}


def code_fingerprint(root: Path = REPO) -> str:
    """sha256 over (path, full content hash) of every code file, in sorted path order (16 hex)."""
    digest = hashlib.sha256()
    for path in code_files(root):
        rel = path.relative_to(root).as_posix()
        digest.update(rel.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest() + b"\n")
    return digest.hexdigest()[:16]


#: The code this process loaded (computed at import, before any training).
_LOADED = (code_fingerprint(), code_file_hashes())


def current_code_fingerprint() -> str:
    """The fingerprint of the code this process runs (computed when this module was imported)."""
    return _LOADED[0]


def current_code_files() -> dict[str, str]:
    return dict(_LOADED[1])


@functools.lru_cache(maxsize=1)
def git_state() -> tuple[str, bool]:
    """(commit, dirty) of the checkout the code runs from; ("unknown", False) outside git."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                                text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, timeout=10).stdout.strip() != ""
        return commit or "unknown", dirty
    except (OSError, subprocess.SubprocessError):
        return "unknown", False


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def package_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "absent"
    return out


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()


def provenance(device: str, threads: int) -> dict:
    commit, dirty = git_state()
    return {
        "git_commit": commit, "git_dirty": dirty, "code_fingerprint": current_code_fingerprint(),
        "code_files": current_code_files(), "packages": package_versions(),
        "python": platform.python_version(), "platform": platform.platform(),
        "machine": f"{cpu_model()} x{os.cpu_count()}", "device": device, "threads": threads,
        "mkl_cbwr": os.environ.get("MKL_CBWR"),
    }
