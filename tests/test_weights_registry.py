"""`weights: imagenet` for timm backbones: a huggingface_hub cache laid out on disk in tmp (the
layout the library reads), loaded through timm's own pretrained path and through our resolver +
strict loader; missing / wrong / undeclared weights are one-line exit-2 errors at suite load."""
from __future__ import annotations

import io

import pytest
import torch
import yaml

from helpers import fake_hub_cache

TAG = "test_resnet.r160_in1k"  # timm's tiny test model, with real Hugging Face weights in its registry
REPO = "timm/test_resnet.r160_in1k"


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty local HF cache (offline), with test_resnet registered like a paper backbone."""
    import huggingface_hub.constants

    from bench.spec import weights

    root = tmp_path / "hub"
    root.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(root))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setitem(weights.REGISTRY, "test_resnet", {"tag": TAG, "pretraining": "test", "reason": "test"})
    # test_resnet's own config says mean/std 0.5 (no feed normalisation gives it: see
    # test_weights_whose_statistics_no_feed_gives_are_refused); here it stands for ImageNet weights
    from timm.models import _registry

    cfg = _registry._model_pretrained_cfgs[TAG]  # get_pretrained_cfg returns copies of it
    monkeypatch.setattr(cfg, "mean", (0.485, 0.456, 0.406))
    monkeypatch.setattr(cfg, "std", (0.229, 0.224, 0.225))
    weights._DIGESTS.clear()
    return root


def test_weights_whose_statistics_no_feed_gives_are_refused(tmp_path, monkeypatch, capsys):
    """timm's real config of test_resnet.r160_in1k says mean/std 0.5: a suite on those weights is
    refused at load with one line naming the weights and their numbers (exit 2)."""
    from bench.spec import weights

    monkeypatch.setitem(weights.REGISTRY, "test_resnet", {"tag": TAG, "pretraining": "test", "reason": "test"})
    assert bench("run", "--suite", str(suite_file(tmp_path)), "--dry-run") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and TAG in err[0] and "[0.5, 0.5, 0.5]" in err[0]


def saved_state(seed: int = 0) -> dict[str, torch.Tensor]:
    import timm

    torch.manual_seed(seed)
    model = timm.create_model("test_resnet", pretrained=False)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))  # unlike any fresh init
    return model.state_dict()


def put(hub, state, revision="a" * 40) -> bytes:
    buf = io.BytesIO()
    torch.save(state, buf)
    fake_hub_cache(hub, {REPO: {"pytorch_model.bin": buf.getvalue()}}, revision)
    return buf.getvalue()


IMAGENET = {"weights": "imagenet"}


def suite_file(tmp_path, options=IMAGENET, name="w"):
    backbone = {"name": "test_resnet", "options": options} if options is not None else "test_resnet"
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({
        "name": name, "dataset": {"name": "mnist-mosaic", "options": {"n_train": 64, "n_val": 16, "n_test": 16}},
        "backbone": backbone, "budget": {"epochs": 1, "batch_size": 16, "resolution": 32, "normalize": "imagenet"},
        "methods": ["baseline", "asl"]}))
    return path


def bench(*argv):
    from bench.cli import main

    return main(list(argv))


def test_the_cached_file_loads_through_timm_and_through_our_resolver_tensor_for_tensor(hub):
    import timm

    from bench.spec.weights import resolve_backbone
    from methods.backbones import build_backbone

    state = saved_state()
    put(hub, state)
    reference = timm.create_model(TAG, pretrained=True).state_dict()  # timm's own hub route, offline
    assert all(torch.equal(reference[k], v) for k, v in state.items())
    backbone = resolve_backbone({"name": "test_resnet", "options": {"weights": "imagenet"}})
    prep = timm.data.resolve_data_config(pretrained_cfg=timm.models.get_pretrained_cfg(TAG).to_dict())
    assert backbone["weights"] == {"tag": TAG, "source": f"hf:{REPO}/pytorch_model.bin", "preprocessing": {
        "mean": list(prep["mean"]), "std": list(prep["std"]), "interpolation": prep["interpolation"],
        "crop_pct": prep["crop_pct"], "input_size": list(prep["input_size"])}}  # in the job id
    assert backbone["options"]["drop"] == ["fc."]  # timm pretrained_cfg.classifier
    net = build_backbone("test_resnet", 3, backbone["options"])  # the strict loader a job uses
    ours = net.model.state_dict()
    assert ours and all(torch.equal(v, reference[k]) for k, v in ours.items())
    assert net.weights_info["sha256"] == backbone["options"]["weights_sha256"]
    assert net.weights_info["dropped"] == ["fc.weight", "fc.bias"]


def test_job_id_holds_sha_and_tag_not_the_cache_path(hub, tmp_path, monkeypatch):
    import huggingface_hub.constants

    from bench.spec.suites import expand_jobs, load_suite

    put(hub, saved_state(0))
    first = expand_jobs(load_suite(str(suite_file(tmp_path))))
    job = first[0]
    assert job.backbone["weights"]["tag"] == TAG and job.backbone["options"]["pretrained_path"].startswith(str(hub))
    other = tmp_path / "elsewhere"
    put(other, saved_state(0))  # the same file under another machine's cache path
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(other))
    moved = expand_jobs(load_suite(str(suite_file(tmp_path))))
    assert [j.job_id for j in moved] == [j.job_id for j in first]
    put(other, saved_state(1), revision="b" * 40)  # other weights: another id
    assert expand_jobs(load_suite(str(suite_file(tmp_path))))[0].job_id != job.job_id


def test_dry_run_lists_the_weights_each_backbone_loads(hub, tmp_path, capsys):
    data = put(hub, saved_state())
    import hashlib

    assert bench("run", "--suite", str(suite_file(tmp_path)), "--dry-run", "--results", str(tmp_path / "r")) == 0
    out = capsys.readouterr().out
    assert f"weights (w): test_resnet <- {TAG} present, sha256 {hashlib.sha256(data).hexdigest()[:12]}" in out
    assert "from scratch" not in out


def test_missing_weights_exit_2_naming_the_fetch_command_and_nothing_is_written(hub, tmp_path, capsys):
    """A run stops at load with one line; a dry run shows the whole plan (every job), marks the
    missing file with its fetch command, and exits 2 after printing (issue 25)."""
    results = tmp_path / "r"
    assert bench("run", "--suite", str(suite_file(tmp_path)), "--results", str(results)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"run `bench weights fetch {TAG}`" in err
    assert "Traceback" not in err
    assert bench("run", "--suite", str(suite_file(tmp_path)), "--results", str(results), "--dry-run") == 2
    captured = capsys.readouterr()
    assert captured.err == "" and f"{TAG} MISSING" in captured.out and f"bench weights fetch {TAG}" in captured.out
    assert "2 jobs: 2 new" in captured.out  # the plan is whole: both rows
    assert not results.exists()


def test_wrong_sha256_exits_2(hub, tmp_path, capsys):
    put(hub, saved_state())
    path = suite_file(tmp_path, {"weights": "imagenet", "weights_sha256": "0" * 64})
    assert bench("run", "--suite", str(path), "--dry-run", "--results", str(tmp_path / "r")) == 2
    assert "weights_sha256 says 000000000000" in capsys.readouterr().err
    blob = next((hub / f"models--{REPO.replace('/', '--')}" / "blobs").iterdir())
    blob.write_bytes(blob.read_bytes() + b"x")  # a corrupt download: content != the hub's sha256
    assert bench("run", "--suite", str(suite_file(tmp_path)), "--dry-run", "--results", str(tmp_path / "r")) == 2
    assert "corrupt download" in capsys.readouterr().err


def test_a_timm_backbone_without_weights_is_an_error_and_none_means_from_scratch(hub, tmp_path, capsys):
    from bench.spec.suites import expand_jobs, load_suite

    results = str(tmp_path / "r")
    assert bench("run", "--suite", str(suite_file(tmp_path, None)), "--dry-run", "--results", results) == 2
    err = capsys.readouterr().err
    assert "has no weights" in err and "weights: none" in err and f"imagenet (timm {TAG}" in err
    scratch = suite_file(tmp_path, {"weights": "none"})
    assert bench("run", "--suite", str(scratch), "--dry-run", "--results", results) == 0
    out = capsys.readouterr().out
    assert "test_resnet <- from scratch" in out and out.count("  from scratch") == 2  # beside both rows
    assert expand_jobs(load_suite(str(scratch)))[0].backbone == {"name": "test_resnet", "options": {}}


def test_every_paper_suite_declares_imagenet_weights():
    from bench.spec.suites import SUITES_DIR
    from bench.spec.weights import REGISTRY

    paper = [p for p in SUITES_DIR.glob("*.yaml")
             if p.stem.startswith(("coco-tables", "voc-tables")) or p.stem == "coco-small"]
    assert len(paper) == 12  # coco-tables-tresnetl-v2: the KMCL/ProbMCL authors' TResNet-L (issue 25)
    for path in paper:
        backbone = yaml.safe_load(path.read_text())["backbone"]
        assert backbone["options"]["weights"] == "imagenet" and backbone["name"] in REGISTRY, path.name


def test_bench_weights_list_verify_and_fetch(hub, tmp_path, capsys, monkeypatch):
    import huggingface_hub
    import huggingface_hub.constants

    path = str(suite_file(tmp_path))
    assert bench("weights", "list", "--suite", path) == 0
    out = capsys.readouterr().out
    assert "missing" in out and f"bench weights fetch {TAG}" in out
    assert bench("weights", "verify", TAG) == 2
    state = saved_state()
    seen = []

    def fake_download(repo_id, filename, force_download=False):  # what fetch asks of the hub
        seen.append((repo_id, filename, huggingface_hub.constants.HF_HUB_OFFLINE))
        put(hub, state)
        return huggingface_hub.try_to_load_from_cache(repo_id, filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    # the faked hub needs no network: pass fetch's reachability probe (tests/test_cli_fast.py tests it)
    monkeypatch.setattr("bench.spec.weights_cmd.unreachable", lambda url, timeout=3.0: None)
    assert bench("weights", "fetch", "--suite", path) == 0
    assert seen == [(REPO, "pytorch_model.bin", False)]  # online only while it downloads
    assert huggingface_hub.constants.HF_HUB_OFFLINE is True
    capsys.readouterr()
    assert bench("weights", "list", "--suite", path) == 0
    assert "present" in capsys.readouterr().out
    assert bench("weights", "verify", "test_resnet") == 0
    assert "tensors equal to timm's pretrained load" in capsys.readouterr().out
