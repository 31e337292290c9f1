"""Small shared helpers for the harness tests: tiny suites written to tmp_path."""
from __future__ import annotations

import os
import subprocess
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
    """Run `bench ARGS` in its own process, as a user would, and capture its output and exit code.

    The process is forked from a server that imported bench once (tests/bench_forks.py): it runs
    the same ``bench.cli.main`` as ``python -m bench.cli`` without the interpreter's start (~1 s
    for a torch-free command, ~5 s for one that trains). The start itself (what it imports) is
    checked with fresh interpreters in tests/test_cli_fast.py."""
    from bench_forks import shared

    env = {**os.environ, "BENCH_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "BENCH_CACHE_DIR": str(Path(cwd or REPO) / ".cache" / "data")}
    return shared().run(list(args), env, cwd or REPO, timeout)


def fake_hub_cache(root: Path, files: dict[str, dict[str, bytes]], revision: str = "a" * 40) -> Path:
    """A huggingface_hub cache laid out as the library writes it: models--ORG--NAME/blobs/<sha256>,
    snapshots/<revision>/<file> -> ../../blobs/<sha256> (a relative symlink), refs/main."""
    import hashlib

    for repo_id, content in files.items():
        repo = Path(root) / ("models--" + repo_id.replace("/", "--"))
        (repo / "blobs").mkdir(parents=True, exist_ok=True)
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / "main").write_text(revision)
        snap = repo / "snapshots" / revision
        snap.mkdir(parents=True, exist_ok=True)
        for filename, data in content.items():
            sha = hashlib.sha256(data).hexdigest()
            (repo / "blobs" / sha).write_bytes(data)
            link = snap / filename
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(Path("..") / ".." / "blobs" / sha)
    return Path(root)


def child_processes(pid: int, recursive: bool = True) -> list[int]:
    """The children of process ``pid`` (every descendant when ``recursive``), from /proc."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process has gone
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            if recursive:
                todo.append(child)
    return out


#: What a rank of the tests' two-process groups imports: loaded once by multiprocessing's fork
#: server, so each rank starts as a fork of it instead of a fresh interpreter importing torch.
RANK_PRELOAD = ["torch", "torch._dynamo", "torch.distributed", "timm.utils", "methods", "bench.run.distributed",
                "bench.train.loop", "bench.train.data"]


def spawn_ranks(fn, args: tuple, nprocs: int = 2) -> None:
    """``torch.multiprocessing.spawn(fn, args, nprocs)`` with ranks forked from a fork server that
    preloaded :data:`RANK_PRELOAD` (a fresh interpreter per rank costs ~4 s of imports)."""
    import multiprocessing

    import torch.multiprocessing

    multiprocessing.set_forkserver_preload(RANK_PRELOAD)  # ignored once this process's server runs
    torch.multiprocessing.start_processes(fn, args=args, nprocs=nprocs, join=True, start_method="forkserver")
