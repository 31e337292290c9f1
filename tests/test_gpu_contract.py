"""Issue 25: the cluster path cannot waste a GPU-day.

A GPU suite asks Slurm for its GPUs (and CPUs and memory to match), never falls back to the CPU
(locally at load; on a node without CUDA in its first seconds, exit 2, nothing recorded, no cache),
each backbone gets its weights' own normalisation, the dry run shows the sbatch request, the
GPU-hours and the peak memory, refuses what would not fit, and shows the whole plan even when
weights are missing. The real-Slurm case (a GPU job on a node without CUDA) is in tests/test_slurm.py, with the
cluster's other tests (one xdist worker, one cluster).
"""
from __future__ import annotations


import pytest
import yaml

from bench.cli import main as bench
from helpers import REPO

PAPER_SUITES = sorted(p.stem for p in (REPO / "sweeps").glob("*.yaml")
                      if p.stem.startswith(("coco-tables", "voc-tables")) or p.stem == "coco-small")


def test_every_paper_suite_needs_cuda_and_slurm_asks_for_the_gpus_and_memory(paper_weights_cache):
    from bench.spec.cluster import parse_cluster, slurm_parameters
    from bench.spec.suites import expand_jobs, load_suite

    assert len(PAPER_SUITES) == 12
    for name in PAPER_SUITES:
        suite = load_suite(name)
        job = expand_jobs(suite)[0]
        assert job.resources == {"device": "cuda", "gpus": 1}, name
        params = slurm_parameters(parse_cluster(suite.cluster), job.resources, 7)
        assert params["gpus_per_node"] == 1 and params["ntasks_per_node"] == 1, name
        assert params["mem"] == "64GB" and params["cpus_per_task"] == 8, name
    # a CPU suite asks for no GPU; an explicit gpus_per_node wins; 2 GPUs = 2 DDP ranks
    default = expand_jobs(load_suite("default"))[0]
    assert default.resources is None and "resources" not in default.to_dict()
    assert "gpus_per_node" not in slurm_parameters(parse_cluster({}), default.resources, 1)
    two = slurm_parameters(parse_cluster({}), {"device": "cuda", "gpus": 2}, 1)
    assert two["gpus_per_node"] == 2 and two["ntasks_per_node"] == 2 and two["mem"] == "128GB"


def test_a_local_run_of_a_gpu_suite_without_cuda_stops_at_load(paper_weights_cache, tmp_path, capsys,
                                                               monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("BENCH_CACHE_DIR", str(cache))
    results = tmp_path / "results"
    code = bench(["run", "--suite", "coco-tables", "--methods", "baseline", "--data-root", str(tmp_path / "coco"),
                  "--results", str(results)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "needs CUDA" in err[0] and "--device cpu" in err[0] and "--executor slurm" in err[0]
    assert not results.exists() and not cache.exists()  # nothing recorded, no cache built


def test_require_device_lets_an_explicit_cpu_run_through_and_counts_gpus(monkeypatch):
    from bench.errors import BenchError
    from bench.run import devices

    cuda = {"device": "cuda", "gpus": 2}
    devices.require_device(cuda, "cpu", "suite x")  # --device cpu: on purpose
    devices.require_device(None, None, "suite x")  # a CPU suite runs anywhere
    monkeypatch.setattr(devices, "visible_gpus", lambda: (1, ""))
    with pytest.raises(BenchError, match="needs 2 GPU"):
        devices.require_device(cuda, None, "suite x")
    monkeypatch.setattr(devices, "visible_gpus", lambda: (2, ""))
    devices.require_device(cuda, None, "suite x")


@pytest.mark.parametrize("pair, says", [
    ("gpus_per_node=two", "gpus_per_node='two' must be an integer >= 0 or null"),
    ("gpus_per_node=-1", "gpus_per_node=-1 must be an integer >= 0 or null"),
    ("mem_gb=lots", "mem_gb='lots' must be a number > 0"),
    ("partition=7", "partition=7 must be a partition name or null"),
    ("gpus=1", "did you mean 'gpus_per_node'?"),
])
def test_every_cluster_value_is_checked_at_load(pair, says, paper_weights_cache, capsys):
    code = bench(["run", "--suite", "coco-tables", "--executor", "slurm", "--cluster", pair, "--dry-run"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and says in err[0], err


def test_slurm_dry_run_prints_the_request_gpu_hours_and_memory(paper_weights_cache, tmp_path, capsys,
                                                               monkeypatch):
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    argv = ["run", "--suite", "coco-tables", "--methods", "probmcl", "--executor", "slurm", "--dry-run",
            "--cluster", "partition=gpu", "--results", str(tmp_path / "r")]
    assert bench(argv) == 0
    out = capsys.readouterr().out
    request = next(line for line in out.splitlines() if line.startswith("sbatch"))
    for part in ("time=2880", "cpus_per_task=8", "nodes=1", "ntasks_per_node=1", "partition=gpu", "mem=64GB",
                 "gpus_per_node=1"):
        assert part in request, (part, request)
    assert "GPU-hours" in out and "estimated" in out and "total:" in out
    row = next(line for line in out.splitlines() if line.startswith("probmcl "))
    gpu_h, peak = (float(v) for v in row.split()[2:4])
    assert 1 < gpu_h < 20 and 5 < peak < 80  # ResNet-101 at 448, 30 epochs of 73,873 images, 2 views
    assert "input: weights trained at 224 px, mean [0.485, 0.456, 0.406]" in out
    # the same job on a 16 GB card is refused, in the dry run and before any sbatch
    assert bench(argv + ["--cluster", "gpu_mem_gb=16"]) == 2
    out = capsys.readouterr().out
    assert "REFUSED: probmcl: estimated peak" in out and "budget.accumulate" in out
    code = bench([a for a in argv if a != "--dry-run"] + ["--cluster", "gpu_mem_gb=16"])
    err = capsys.readouterr().err
    assert code == 2 and "exceeds gpu_mem_gb=16" in err and not (tmp_path / "r").exists()


def test_each_registry_tag_normalises_as_its_weights_were_trained():
    import timm.data
    import timm.models

    from bench.spec.weights import FEED_NORMALIZATIONS, REGISTRY, feed_normalization, preprocessing

    expected = {"resnet101": "imagenet", "tresnet_m": "none", "tresnet_l": "none", "tresnet_v2_l": "none"}
    assert set(REGISTRY) == set(expected)
    for name, entry in REGISTRY.items():
        ref = timm.data.resolve_data_config(pretrained_cfg=timm.models.get_pretrained_cfg(entry["tag"]).to_dict())
        prep = preprocessing(entry["tag"])
        assert prep["mean"] == pytest.approx(list(ref["mean"])) and prep["std"] == pytest.approx(list(ref["std"]))
        assert prep["interpolation"] == ref["interpolation"] and prep["input_size"] == list(ref["input_size"])
        mode = feed_normalization(entry["tag"], prep)
        assert mode == expected[name], name
        assert list(FEED_NORMALIZATIONS[mode][0]) == pytest.approx(list(ref["mean"]))


def test_paper_suites_feed_each_backbone_its_weights_statistics(paper_weights_cache, tmp_path, capsys):
    from bench.spec.suites import expand_jobs, load_suite

    for name in PAPER_SUITES:
        job = expand_jobs(load_suite(name))[0]
        want = "imagenet" if job.backbone["name"] == "resnet101" else "none"  # MIIL TResNets: [0, 1] inputs
        assert job.budget["normalize"] == want, name
        assert job.backbone["weights"]["preprocessing"]["mean"][0] == (0.485 if want == "imagenet" else 0.0)
    text = (REPO / "sweeps" / "coco-tables-tresnetl.yaml").read_text().replace("normalize: weights",
                                                                               "normalize: imagenet")
    (tmp_path / "t.yaml").write_text(text.replace("name: coco-tables-tresnetl", "name: t"))
    assert bench(["run", "--suite", str(tmp_path / "t.yaml"), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "budget.normalize=imagenet contradicts the weights tresnet_l.miil_in1k_448" in err


def test_tresnet_l_rows_offer_both_authors_weights(capsys):
    from bench.spec.weights import REGISTRY

    assert bench(["weights", "list", "--suite", "coco-tables-tresnetl-v2"]) == 0
    out = capsys.readouterr().out  # each tag with its reason
    assert "tresnet_v2_l.miil_in21k" in out and "train_dist.py" in out and "MODEL_ZOO" in out

    assert REGISTRY["tresnet_l"]["tag"] == "tresnet_l.miil_in1k_448" and "ASL" in REGISTRY["tresnet_l"]["reason"]
    v2 = REGISTRY["tresnet_v2_l"]
    assert v2["tag"] == "tresnet_v2_l.miil_in21k" and "train_dist.py" in v2["reason"]
    suite = yaml.safe_load((REPO / "sweeps" / "coco-tables-tresnetl-v2.yaml").read_text())
    assert suite["backbone"]["name"] == "tresnet_v2_l" and suite["budget"]["resolution"] == 448


def test_a_w_process_launch_is_its_own_experiment(monkeypatch):
    """Issue 29 item 1: W > 1 changes what BatchNorm and the contrastive terms see, so it is part of
    the job id (W = 1 keeps every committed id), shown in the row's name, and checked on the node."""
    from dataclasses import replace

    from bench.errors import BenchError
    from bench.run.devices import require_world_size, with_world_size
    from bench.spec.jobs import JobSpec
    from bench.spec.suites import expand_jobs, load_suite

    one = expand_jobs(load_suite("default"))[0]
    assert with_world_size([one], "local", {})[0] is one  # no torchrun: W = 1, the same job
    two = with_world_size([one], "slurm", {"tasks_per_node": 2})[0]
    assert two.world_size == 2 and two.job_id != one.job_id and two.display_name == f"{one.label} W=2"
    assert JobSpec.from_dict(two.to_dict()) == two and "world_size" not in one.to_dict()
    gpus = with_world_size([replace(one, resources={"device": "cuda", "gpus": 4})], "slurm", {})[0]
    assert gpus.world_size == 4  # one DDP rank per GPU
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("SLURM_STEP_NUM_TASKS", raising=False)
    require_world_size(one, "job")  # one process, W = 1
    with pytest.raises(BenchError, match="submitted for 2 data-parallel process"):
        require_world_size(two, "job")


def test_thread_count_follows_the_affinity_not_the_node(monkeypatch):
    """Issue 29 item 3: on a cgroup-limited node os.cpu_count() is the whole machine; a job's
    threads come from its affinity, shared among the ranks of its node."""
    import os

    from bench.run.executors import LocalExecutor
    from bench.run.inputs import usable_cpus

    monkeypatch.setattr(os, "cpu_count", lambda: 128)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5, 6, 7})
    monkeypatch.delenv("SLURM_NTASKS_PER_NODE", raising=False)
    monkeypatch.delenv("BENCH_THREADS", raising=False)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert usable_cpus() == 4
    assert LocalExecutor()._threads() == 4 and LocalExecutor(threads=3)._threads() == 3
    monkeypatch.setenv("BENCH_THREADS", "1")
    assert LocalExecutor()._threads() == 1
