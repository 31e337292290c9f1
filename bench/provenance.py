"""Where and with what a record was produced: commit, packages, machine, device."""
from __future__ import annotations

import datetime as dt
import functools
import importlib.metadata as md
import os
import platform
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("torch", "torchvision", "timm", "fvcore", "numpy", "submitit", "pycocotools", "pandas")


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
        "git_commit": commit, "git_dirty": dirty, "packages": package_versions(),
        "python": platform.python_version(), "platform": platform.platform(),
        "machine": f"{cpu_model()} x{os.cpu_count()}", "device": device, "threads": threads,
    }
