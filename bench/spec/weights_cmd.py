"""`bench weights list | fetch | verify`: the pretrained weights the suites need (bench/spec/weights.py).

list    every suite's and sweep's backbone (or those of ``--suite``): which weights it starts
        from, the timm tag, present or missing in the local Hugging Face cache, where, sha256.
fetch   downloads each needed tag's file into the cache -- the one command that uses the
        network, on a machine that has it (a login node); HF_HUB_OFFLINE is lifted for this
        process only, and only while it downloads.
verify  re-hashes each cached file and loads it twice -- through ``timm.create_model(tag,
        pretrained=True, pretrained_cfg_overlay={'file': path})`` and through our strict loader
        (the route a job takes) -- and checks that both give the same tensors.
Names are timm tags (resnet101.tv_in1k) or backbone names (resnet101); none given: every tag
the selected suites need.
"""
from __future__ import annotations

import argparse
import os
from typing import Any, Mapping

from bench.errors import BenchError, SpecError
from bench.spec import weights as W


#: timm tag -> its Hugging Face repo, as timm's registry says (``hub_location``); read here so that
#: `bench weights list` needs neither timm nor torch. tests/test_cli_fast.py checks it against timm.
HUB_IDS = {"resnet101.tv_in1k": "timm/resnet101.tv_in1k", "tresnet_m.miil_in21k": "timm/tresnet_m.miil_in21k",
           "tresnet_l.miil_in1k_448": "timm/tresnet_l.miil_in1k_448",
           "tresnet_v2_l.miil_in21k": "timm/tresnet_v2_l.miil_in21k"}


def hub_location(tag: str) -> tuple[str, str]:
    return (HUB_IDS[tag], W.HUB_FILE) if tag in HUB_IDS else W.hub_location(tag)


def cached_path(tag: str) -> str | None:
    """As ``bench.spec.weights.cached_path``, without importing timm for the registry's tags."""
    if tag not in HUB_IDS:
        return W.cached_path(tag)
    import huggingface_hub

    found = huggingface_hub.try_to_load_from_cache(*hub_location(tag))
    return found if isinstance(found, str) and os.path.isfile(found) else None


def _declared_backbone(name: str, files: Mapping[str, dict]) -> dict[str, Any] | None:
    """The backbone block of suite or sweep ``name`` read from its YAML (a sweep's own, else its
    suite's), normalised as the suite loader does; None when it needs the loader to say more."""
    raw = files.get(name)
    if raw is None:
        return None
    if "search" in raw and "backbone" not in raw:
        return _declared_backbone(str(raw.get("suite")), files) if raw.get("suite") in files else None
    block = raw.get("backbone", "smallcnn") if ("methods" in raw or "search" in raw) else None
    if isinstance(block, str):
        return {"name": block, "options": {}}
    if isinstance(block, Mapping) and set(block) <= {"name", "options"} and "name" in block:
        return {"name": str(block["name"]), "options": dict(block.get("options") or {})}
    return None


def suite_backbones(names: list[str]) -> list[tuple[str, Mapping[str, Any]]]:
    """(suite or sweep name, backbone block as declared) for ``names``, or every suite and sweep.
    Read from the YAML files where they are plain (no torch); through the suite loader otherwise."""
    from bench.spec.listing import _yaml_files, suite_and_sweep_names

    files = _yaml_files()
    suites, sweep_list = suite_and_sweep_names()
    fast = [(n, _declared_backbone(n, files)) for n in names or [*suites, *sweep_list]]
    if all(bb is not None for _, bb in fast):
        return fast  # type: ignore[return-value]
    from bench.spec.suites import load_suite, suite_names
    from bench.spec.sweeps import load_sweep, sweep_names

    sweeps = set(sweep_names())
    out = []
    for name in names or [*suite_names(), *sorted(sweeps)]:
        spec = load_sweep(name).base if name in sweeps or name.endswith(".yaml") and _is_sweep(name) \
            else load_suite(name)
        out.append((name, spec.backbone))
    return out


def _is_sweep(path: str) -> bool:
    import yaml

    try:
        return "search" in (yaml.safe_load(open(path)) or {})
    except (OSError, yaml.YAMLError):
        return False


def wanted_tags(args: argparse.Namespace) -> list[str]:
    tags: list[str] = []
    for name in args.names:
        tag = W.REGISTRY[name]["tag"] if name in W.REGISTRY else name
        hub_location(tag)  # an unknown tag is a one-line error here
        tags.append(tag)
    if args.suite or not args.names:
        for _, bb in suite_backbones(args.suite):
            options = dict(bb.get("options") or {})
            if options.get("weights") == "imagenet" and bb["name"] in W.REGISTRY:
                tags.append(W.REGISTRY[bb["name"]]["tag"])
    return list(dict.fromkeys(tags))


def list_weights(args: argparse.Namespace) -> int:
    print(f"{'suite':<30} {'backbone':<18} {'weights':<26} {'state':<8} {'sha256':<13} path")
    for suite, bb in suite_backbones(args.suite):
        options, name = dict(bb.get("options") or {}), str(bb["name"])
        weights = options.get("weights") or ("file" if options.get("pretrained_path") else None)
        state, sha, path = "-", "", ""
        if weights == "imagenet" and name in W.REGISTRY:
            tag = W.REGISTRY[name]["tag"]
            path = cached_path(tag) or ""
            state = "present" if path else "missing"
            sha = W.file_digest(path)[:12] if path else ""
            weights = tag
        elif weights is None:
            weights = "none (from scratch)" if W.is_timm(name) else "none (random init)"
        elif weights == "none":
            weights = "none (from scratch)"
        print(f"{suite:<30} {name:<18} {str(weights):<26} {state:<8} {sha:<13} {path}")
    print("\nwhy each tag (the authors' code or paper; bench/spec/weights.py):")
    for name, entry in W.REGISTRY.items():
        print(f"  {name:<13} {entry['tag']:<26} {entry['pretraining']}: {entry['reason']}")
    missing = [t for t in wanted_tags(args) if cached_path(t) is None]
    if missing:
        print(f"missing: {', '.join(missing)}; fetch on a machine with network: "
              f"bench weights fetch {' '.join(missing)}")
    return 0


def unreachable(url: str, timeout: float = 3.0) -> str | None:
    """Why ``url``'s host (or the https proxy in the environment) cannot be reached in ``timeout``
    seconds; None when a TCP connection opens. Lets a command without network say so in one
    line at once instead of retrying for half a minute (huggingface_hub retries 5 times)."""
    import socket
    from urllib.parse import urlsplit

    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    target = urlsplit(proxy if proxy and url.startswith("https") else url)
    port = target.port or (443 if target.scheme == "https" else 80)
    try:
        socket.create_connection((target.hostname or "", port), timeout=timeout).close()
    except OSError as err:
        return f"{target.hostname}:{port}: {err.strerror or type(err).__name__}"
    return None


def fetch(args: argparse.Namespace) -> int:
    import huggingface_hub
    from huggingface_hub import constants

    tags = wanted_tags(args)
    if not tags:
        print("no suite needs hub weights")
        return 0
    todo = [t for t in tags if args.force or not cached_path(t)]
    why = unreachable(constants.ENDPOINT) if todo else None
    if why:
        raise BenchError(f"bench weights fetch: no network ({why}); run it on a machine with network (a login "
                         f"node) for {', '.join(todo)}, into a Hugging Face cache the jobs see "
                         f"(HF_HOME / HF_HUB_CACHE, now {constants.HF_HUB_CACHE})")
    offline = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = False  # explicit opt-in: this command only, while it downloads
    try:
        for tag in tags:
            repo, filename = W.hub_location(tag)
            if cached_path(tag) and not args.force:
                print(f"{tag}: present ({cached_path(tag)})")
                continue
            try:
                path = huggingface_hub.hf_hub_download(repo, filename, force_download=bool(args.force))
            except Exception as err:  # noqa: BLE001 -- network, auth, missing file: one line each
                raise BenchError(f"bench weights fetch {tag}: could not download {repo}/{filename} "
                                 f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); "
                                 "run it on a machine with network (HF_ENDPOINT / HF_TOKEN as needed)") from None
            print(f"{tag}: fetched {path} (sha256 {W.file_digest(path)[:12]}...)")
    finally:
        constants.HF_HUB_OFFLINE = offline
    return 0


def verify(args: argparse.Namespace) -> int:
    import timm
    import torch

    from methods.backbones import build_backbone

    tags = wanted_tags(args)
    for tag in tags:
        path = W.cached_path(tag)
        if path is None:
            raise SpecError(f"{tag}: not in the local Hugging Face cache: run `{W.fetch_command(tag)}` "
                            "on a machine with network")
        W._DIGESTS.clear()  # re-hash from disk
        digest = W.check_file(path, None, "bench weights verify", tag)
        name = tag.split(".")[0]
        backbone = W.resolve_backbone({"name": name, "options": {"weights": "imagenet"}}
                                      if name in W.REGISTRY and W.REGISTRY[name]["tag"] == tag else
                                      {"name": name, "options": {}}, "bench weights verify")
        options = dict(backbone["options"]) if "weights" in backbone else {
            "pretrained_path": path, "drop": list(W.classifier_prefixes(tag)), "weights_sha256": digest}
        ours = build_backbone(name, 3, options).model.state_dict()
        reference = timm.create_model(tag, pretrained=True, pretrained_cfg_overlay={"file": path}).state_dict()
        differ = [k for k, v in ours.items() if k not in reference or not torch.equal(v, reference[k])]
        if differ:
            raise SpecError(f"{tag}: our strict loader and timm's pretrained loader differ on {len(differ)} "
                            f"tensor(s), e.g. {differ[0]!r} ({path})")
        print(f"{tag}: ok, sha256 {digest}, {len(ours)} tensors equal to timm's pretrained load ({path})")
    return 0


def main(args: argparse.Namespace) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return {"list": list_weights, "fetch": fetch, "verify": verify}[args.action](args)
