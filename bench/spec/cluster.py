"""A suite's or sweep's ``cluster:`` block and ``--cluster key=value``: keys, defaults, checks."""
from __future__ import annotations

from typing import Any, Mapping

from bench.errors import BenchError

#: Cluster options (a suite's or sweep's ``cluster:`` block, ``--cluster key=value``).
CLUSTER_DEFAULTS: dict[str, Any] = {
    "partition": None, "account": None, "qos": None,
    "time_min": 60,  # wall-clock limit of one attempt; a timed-out job is requeued and resumes
    "cpus_per_task": 2,
    "mem_gb": None,  # null: the partition's default; a GPU suite asks MEM_GB_PER_GPU_TASK per task
    "gpus_per_node": None,  # null: the suite's resources.gpus when resources.device is cuda, else none
    "nodes": 1, "tasks_per_node": 1,
    "array_parallelism": 64,  # array tasks running at once
    "sbatch": {},  # extra sbatch options, e.g. {constraint: volta, exclusive: true}
    "setup": [],  # shell lines run before the job (module load ..., source venv)
    "max_requeues": 3,  # preemptions / timeouts tolerated before the job is failed
    "signal_delay_s": 90,  # USR2 this long before the time limit (time to checkpoint)
    "job_name": "bench",
    # what the dry run's estimates assume of one GPU of the partition (bench/run/plan.py)
    "gpu_mem_gb": 80,  # memory of one GPU: a job whose estimated peak exceeds it is refused at load
    "gpu_tflops": 60,  # effective training throughput of one GPU (TFLOP/s) behind the GPU-hour estimate
}
#: Options the ``bench run`` / ``bench sweep`` commands add next to the cluster block.
RUN_OPTIONS = ("device", "threads", "progress")

#: Each option's domain: (predicate, what it must be). Checked at load, like suite keys.
def _name_or_null(v: Any) -> bool:
    return v is None or (isinstance(v, str) and bool(v.strip()))


def _int_at_least(low: int):
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low


def _positive_number_or_null(v: Any) -> bool:
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0)


CLUSTER_DOMAINS: dict[str, tuple[Any, str]] = {
    "partition": (_name_or_null, "a partition name or null"),
    "account": (_name_or_null, "an account name or null"),
    "qos": (_name_or_null, "a QOS name or null"),
    "time_min": (_int_at_least(1), "an integer >= 1 (minutes)"),
    "cpus_per_task": (_int_at_least(1), "an integer >= 1"),
    "mem_gb": (_positive_number_or_null, "a number > 0 (GB per node) or null"),
    "gpus_per_node": (lambda v: v is None or _int_at_least(0)(v), "an integer >= 0 or null"),
    "nodes": (_int_at_least(1), "an integer >= 1"),
    "tasks_per_node": (_int_at_least(1), "an integer >= 1"),
    "array_parallelism": (_int_at_least(1), "an integer >= 1"),
    "sbatch": (lambda v: isinstance(v, Mapping), "a mapping of extra sbatch options"),
    "setup": (lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v), "a list of shell lines"),
    "max_requeues": (_int_at_least(0), "an integer >= 0"),
    "signal_delay_s": (_int_at_least(0), "an integer >= 0 (seconds)"),
    "job_name": (lambda v: isinstance(v, str) and bool(v.strip()), "a non-empty string"),
    "gpu_mem_gb": (lambda v: _positive_number_or_null(v) and v is not None, "a number > 0 (GB of one GPU)"),
    "gpu_tflops": (lambda v: _positive_number_or_null(v) and v is not None,
                   "a number > 0 (effective TFLOP/s of one GPU)"),
}


def parse_cluster(options: Mapping[str, Any], where: str = "cluster") -> dict[str, Any]:
    """Cluster defaults updated with ``options``; an unknown key or a value outside its domain is
    a one-line BenchError naming the key, the value and what it must be (exit 2)."""
    unknown = sorted(set(options) - set(CLUSTER_DEFAULTS) - set(RUN_OPTIONS))
    if unknown:
        import difflib

        close = ([k for k in CLUSTER_DEFAULTS if k.startswith(unknown[0])]  # gpus -> gpus_per_node
                 or difflib.get_close_matches(unknown[0], list(CLUSTER_DEFAULTS), n=1, cutoff=0.5))
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise BenchError(f"{where}: unknown cluster option {unknown[0]!r}{hint}; known: "
                         f"{', '.join(sorted(CLUSTER_DEFAULTS))}")
    out = {**CLUSTER_DEFAULTS, **{k: v for k, v in options.items() if k in CLUSTER_DEFAULTS}}
    for key, (ok, text) in CLUSTER_DOMAINS.items():
        if not ok(out[key]):
            raise BenchError(f"{where}: {key}={out[key]!r} must be {text}")
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


#: Memory asked per task of a GPU suite when the cluster block gives no mem_gb: the image cache
#: is a memmap (page cache, not counted), so this covers the process, 8 DataLoader workers and
#: pinned batches with room to spare (an assumption, not a measurement: set mem_gb to override).
MEM_GB_PER_GPU_TASK = 64


def slurm_parameters(cluster: Mapping[str, Any], resources: Mapping[str, Any] | None,
                     count: int) -> dict[str, Any]:
    """The submitit SlurmExecutor parameters of one array of ``count`` jobs: what sbatch receives.
    A suite whose ``resources.device`` is cuda asks for its ``resources.gpus`` per node (one task =
    one DDP rank per GPU) unless the cluster block says gpus_per_node itself, and for memory to
    match; `bench run --dry-run --executor slurm` prints exactly this dict."""
    c = dict(cluster)
    gpu_suite = bool(resources) and resources.get("device") == "cuda"
    gpus = c["gpus_per_node"]
    if gpus is None:
        gpus = int(resources.get("gpus", 1)) if gpu_suite else 0
    tasks = int(c["tasks_per_node"])
    if gpu_suite and gpus > 1 and tasks == 1:
        tasks = gpus  # one DDP rank per GPU
    params: dict[str, Any] = {
        "time": int(c["time_min"]), "cpus_per_task": int(c["cpus_per_task"]),
        "nodes": int(c["nodes"]), "ntasks_per_node": tasks,
        "array_parallelism": min(int(c["array_parallelism"]), max(count, 1)),
        "job_name": str(c["job_name"]), "signal_delay_s": int(c["signal_delay_s"]),
        "setup": [str(line) for line in c["setup"]],
        # a rank that fails ends the step at once instead of leaving the others in a collective
        # until its timeout (measured on the test cluster: 2 s instead of 96 s)
        "srun_args": ["--kill-on-bad-exit=1"],
    }
    for key in ("partition", "account", "qos"):
        if c[key]:
            params[key] = str(c[key])
    mem = c["mem_gb"]
    if mem is None and gpus:
        mem = MEM_GB_PER_GPU_TASK * tasks
    if mem:
        params["mem"] = f"{mem}GB"
    if gpus:
        params["gpus_per_node"] = int(gpus)
    if c["sbatch"]:
        params["additional_parameters"] = dict(c["sbatch"])
    return params
