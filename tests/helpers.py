"""Small shared helpers for the harness tests: tiny suites written to tmp_path."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


def tiny_suite(tmp_path: Path, name: str = "tiny", methods: list | None = None, epochs: int = 2,
               n_train: int = 128, seeds: list[int] | None = None, **overrides) -> Path:
    """Write a tiny embedded-data suite YAML and return its path."""
    suite = {
        "name": name,
        "dataset": {"name": "mnist-mosaic", "options": {"n_train": n_train, "n_val": 32, "n_test": 64}},
        "backbone": "smallcnn",
        "budget": {"epochs": epochs, "batch_size": 32, "resolution": 24},
        "evaluation": {"trick_lambdas": [0.1]},
        "seeds": seeds or [0],
        "methods": methods or ["baseline"],
    }
    suite.update(overrides)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(suite))
    return path


def run_bench(*args: str, cwd: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run the real `bench` entry point in a subprocess (as a user would)."""
    env = {**os.environ, "BENCH_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "BENCH_CACHE_DIR": str(Path(cwd or REPO) / ".cache" / "data")}
    return subprocess.run([sys.executable, "-m", "bench.cli", *args], cwd=cwd or REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)
