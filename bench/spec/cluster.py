"""A suite's or sweep's ``cluster:`` block and ``--cluster key=value``: keys, defaults, checks."""
from __future__ import annotations

from typing import Any, Mapping

from bench.errors import BenchError

#: Cluster options (a suite's or sweep's ``cluster:`` block, ``--cluster key=value``).
CLUSTER_DEFAULTS: dict[str, Any] = {
    "partition": None, "account": None, "qos": None,
    "time_min": 60,  # wall-clock limit of one attempt; a timed-out job is requeued and resumes
    "cpus_per_task": 2, "mem_gb": None, "gpus_per_node": 0, "nodes": 1, "tasks_per_node": 1,
    "array_parallelism": 64,  # array tasks running at once
    "sbatch": {},  # extra sbatch options, e.g. {constraint: volta, exclusive: true}
    "setup": [],  # shell lines run before the job (module load ..., source venv)
    "max_requeues": 3,  # preemptions / timeouts tolerated before the job is failed
    "signal_delay_s": 90,  # USR2 this long before the time limit (time to checkpoint)
    "job_name": "bench",
}
#: Options the ``bench run`` / ``bench sweep`` commands add next to the cluster block.
RUN_OPTIONS = ("device", "threads", "progress")

def parse_cluster(options: Mapping[str, Any], where: str = "cluster") -> dict[str, Any]:
    """Cluster defaults updated with ``options``; an unknown key is a one-line BenchError."""
    unknown = sorted(set(options) - set(CLUSTER_DEFAULTS) - set(RUN_OPTIONS))
    if unknown:
        raise BenchError(f"{where}: unknown cluster option {unknown[0]!r}; known: "
                         f"{', '.join(sorted(CLUSTER_DEFAULTS))}")
    out = {**CLUSTER_DEFAULTS, **{k: v for k, v in options.items() if k in CLUSTER_DEFAULTS}}
    for key in ("time_min", "cpus_per_task", "nodes", "tasks_per_node", "array_parallelism", "max_requeues"):
        if not isinstance(out[key], int) or isinstance(out[key], bool) or out[key] < (0 if key == "max_requeues" else 1):
            raise BenchError(f"{where}: {key}={out[key]!r} must be a positive integer")
    if not isinstance(out["sbatch"], Mapping) or not isinstance(out["setup"], list):
        raise BenchError(f"{where}: sbatch must be a mapping and setup a list of shell lines")
    return out


def parse_cluster_overrides(pairs: list[str] | None) -> dict[str, Any]:
    """``--cluster key=value`` pairs; values parsed as YAML (numbers, lists, mappings)."""
    import yaml

    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise BenchError(f"--cluster {pair!r}: expected key=value, e.g. --cluster partition=gpu")
        out[key.strip()] = yaml.safe_load(value) if value else None
    return out
