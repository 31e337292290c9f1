"""The commands that only read (`bench --help`, `bench list`, `bench weights list`, `bench results`,
`bench weights fetch` without network) answer without importing torch or timm, and what they
read without importing equals what the imports would say. `bench status` and the dry run of a
CPU suite load the suite without torch once the methods' answers are cached
(bench/spec/method_facts.py: a row's hyperparameters are validated by the methods' own code
once per version of methods/)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import typing
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PROBE = ("import sys; from bench.cli import main; code = main({argv!r}); "
         "print('LOADED', 'torch' in sys.modules, 'timm' in sys.modules, code)")


def run_probe(argv: list[str], **env: str) -> tuple[str, str]:
    out = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv)], cwd=REPO, capture_output=True,
                         text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO), **env})
    return out.stdout, out.stderr


@pytest.mark.parametrize("argv", [["list"], ["list", "methods"], ["list", "keys", "--format", "md"],
                                  ["weights", "list"], ["results", "--suite", "default"]])
def test_listings_import_neither_torch_nor_timm(argv):
    stdout, stderr = run_probe(argv)
    assert stdout.splitlines()[-1] == "LOADED False False 0", stderr[-2000:]


def test_method_listing_read_from_source_equals_the_registry():
    import methods
    from bench.spec.listing import method_catalog

    assert method_catalog() == [{"name": n, "paper": methods.get(n).paper, "summary": methods.get(n).summary,
                                 "defaults": dict(methods.get(n).defaults),
                                 "searchable": list(methods.get(n).search_space)} for n in methods.names()]


def test_suite_key_choices_read_from_source_equal_the_code():
    from bench.spec import schema
    from bench.spec.listing import resolve_choices

    def choices():
        return {(s, k.name): k.domain.values for s, keys in schema.SECTIONS.items() for k in keys
                if hasattr(k.domain, "values")}

    before = choices()
    resolve_choices()
    assert choices() == before and {"augmentation", "schedule"} <= {name for _, name in before}


def test_suite_and_sweep_names_equal_the_loaders():
    from bench.spec.listing import suite_and_sweep_names
    from bench.spec.suites import suite_names
    from bench.spec.sweeps import sweep_names

    suites, sweeps = suite_and_sweep_names()
    assert suites == suite_names() and sorted(sweeps) == sorted(sweep_names())


def test_weights_backbones_read_from_yaml_equal_the_loaders(monkeypatch):
    from bench.spec import listing, weights_cmd

    fast = weights_cmd.suite_backbones([])
    monkeypatch.setattr(weights_cmd, "_declared_backbone", lambda name, files: None)  # the loader's route
    slow = weights_cmd.suite_backbones([])
    assert [(n, {"name": b["name"], "options": dict(b["options"])}) for n, b in slow] == fast
    assert len(fast) == sum(map(len, listing.suite_and_sweep_names()))


def test_hub_ids_equal_timm_registry():
    from bench.spec import weights as W
    from bench.spec.weights_cmd import HUB_IDS

    assert set(HUB_IDS) == {e["tag"] for e in W.REGISTRY.values()}
    assert all(W.hub_location(tag)[0] == repo for tag, repo in HUB_IDS.items())


def test_listing_prints_whole_descriptions_and_tells_twins_apart():
    from bench.spec.listing import lines

    out = lines("sweeps")
    heads = next(line for line in out if line.split()[0] == "ablation-csra-heads")
    twin = next(line for line in out if line.split()[0] == "ablation-csra-heads-cpu")
    assert "8)" in heads and heads.split(None, 1)[1] != twin.split(None, 1)[1]
    default = next(line for line in lines("suites") if line.split()[0] == "default")
    assert default.rstrip().endswith("3 seeds")  # was cut at 100 characters


def test_weights_fetch_without_network_is_one_line_at_once(tmp_path):
    start = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "bench.cli", "weights", "fetch", "resnet101.tv_in1k", "--force"],
                         cwd=REPO, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(REPO), "HF_ENDPOINT": "https://nonexistent.invalid",
                              "HF_HUB_CACHE": str(tmp_path)})
    assert time.monotonic() - start < 5
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "no network" in out.stderr and "resnet101.tv_in1k" in out.stderr


def test_status_and_dry_run_import_no_torch_once_the_method_answers_are_cached(tmp_path):
    env = {"BENCH_SPEC_CACHE_DIR": str(tmp_path / "spec"), "HF_HUB_OFFLINE": "1"}
    stdout, stderr = run_probe(["status", "--suite", "default"], **env)  # fills the cache (may import)
    assert stdout.splitlines()[-1].endswith(" 0"), stderr[-2000:]
    assert list((tmp_path / "spec").glob("*.json"))
    for argv in (["status", "--suite", "default"],
                 ["run", "--suite", "default", "--dry-run", "--results", str(tmp_path / "r")]):
        stdout, stderr = run_probe(argv, **env)
        assert stdout.splitlines()[-1] == "LOADED False False 0", (argv, stderr[-2000:])
    assert not (tmp_path / "r").exists()


def test_method_answers_equal_the_registry_cached_or_not(tmp_path, monkeypatch):
    import methods
    from bench.spec import method_facts as F
    from methods import backbones

    monkeypatch.setenv("BENCH_SPEC_CACHE_DIR", str(tmp_path))
    assert F.names() == methods.names()
    assert F.backbone_weights_names() == (tuple(backbones.NAMED_WEIGHTS), tuple(backbones.WEIGHT_OPTIONS))
    for _ in ("miss", "hit"):
        for name in methods.names():
            spec = methods.get(name)
            assert F.resolve(name, {}) == spec.resolve({}) and F.defaults(name) == dict(spec.defaults)
            assert F.recipe(name) == dict(spec.recipe)
            assert F.stages(name) == tuple(typing.get_type_hints(spec.build)["return"].stages)
        with pytest.raises(ValueError) as cached:
            F.resolve("csra", {"num_heads": 2.5})
        with pytest.raises(ValueError) as registry:
            methods.get("csra").resolve({"num_heads": 2.5})
        assert str(cached.value) == str(registry.value)
    assert F.resolve("baseline", {"pooling": "max"}) == methods.get("baseline").resolve({"pooling": "max"})
    assert len(list(tmp_path.glob("*.json"))) >= 3 * len(methods.names())


def test_method_answers_are_keyed_by_the_method_code(tmp_path, monkeypatch):
    import shutil

    from bench.spec import method_facts as F

    shutil.copytree(REPO / "methods", tmp_path / "methods", ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(F, "REPO", tmp_path)
    F.code_digest.cache_clear()
    try:
        before = F.code_digest()
        with open(tmp_path / "methods" / "csra.py", "a") as fh:
            fh.write("\n# one byte more\n")
        F.code_digest.cache_clear()
        assert F.code_digest() != before
    finally:
        F.code_digest.cache_clear()


def test_a_value_json_would_change_is_never_cached(tmp_path, monkeypatch):
    from bench.spec import method_facts as F

    monkeypatch.setenv("BENCH_SPEC_CACHE_DIR", str(tmp_path))
    assert F._cached({"ask": "x"}, lambda: {"a": (1, 2)}) == {"a": (1, 2)}  # a tuple: comes back itself
    assert not list(tmp_path.glob("*.json"))
    assert F._cached({"ask": "y"}, lambda: {"a": [1, 2]}) == {"a": [1, 2]}
    assert F._cached({"ask": "y"}, lambda: {"a": "recomputed"}) == {"a": [1, 2]}  # a hit
