"""bench cost's count cache (bench/cost/cache.py): a hit gives the rows a recount gives, without
recounting; any input that changes a row -- configuration, stages, code, library version -- misses."""
from __future__ import annotations

import shutil

import pytest

from bench.cost import cache
from bench.cost import count as cost
from bench.cost.count import CostConfig, cost_rows

SMALL = dict(backbone="smallcnn", resolution=32, num_classes=10, in_chans=1)


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_COST_CACHE_DIR", str(tmp_path / "cost-cache"))
    monkeypatch.delenv("BENCH_COST_CACHE", raising=False)


def _counting(monkeypatch) -> list:
    """Record every real count (measure call) from now on."""
    calls, real = [], cost.measure
    monkeypatch.setattr(cost, "measure", lambda cfg, all_stages=False: calls.append(cfg) or real(cfg, all_stages))
    return calls


def test_hit_returns_the_recounted_rows_without_counting(monkeypatch, tmp_path):
    configs = [CostConfig("baseline", **SMALL), CostConfig("probmcl", **SMALL, label="p")]
    calls = _counting(monkeypatch)
    first = cost_rows(configs, all_stages=True)
    assert len(calls) == 2 and len(list((tmp_path / "cost-cache").glob("*.json"))) == 2
    second = cost_rows(configs, all_stages=True)
    assert len(calls) == 2 and second == first  # no recount, same rows (notes included)
    monkeypatch.setenv("BENCH_COST_CACHE", "0")
    assert cost_rows(configs, all_stages=True) == first and len(calls) == 4  # off: recounted, equal


def test_every_input_enters_the_key(tmp_path, monkeypatch):
    cfg = CostConfig("csra", **SMALL, hparams={"num_heads": 2})
    code = cache.code_digest()
    key = cache.cache_key(cfg, False, code)
    assert key == cache.cache_key(CostConfig("csra", **SMALL, hparams={"num_heads": 2}), False, code)
    assert key != cache.cache_key(CostConfig("csra", **SMALL, hparams={"num_heads": 4}), False, code)
    assert key != cache.cache_key(CostConfig("csra", **{**SMALL, "resolution": 48}, hparams={"num_heads": 2}),
                                  False, code)
    assert key != cache.cache_key(cfg, True, code)
    # the code: one byte changed in one method file changes the digest
    root = tmp_path / "repo"
    for folder in cache.CODE_DIRS:
        shutil.copytree(cache.REPO / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__"))
    assert cache.code_digest(root) == code
    csra = root / "methods" / "csra.py"
    csra.write_text(csra.read_text() + "\n# edited\n")
    assert cache.code_digest(root) != code
    # a library version
    monkeypatch.setattr(cache, "_version", lambda name: "0.0-other" if name == "timm" else "x")
    assert cache.cache_key(cfg, False, code) != key


def test_failures_are_not_cached_and_a_corrupt_entry_is_a_miss(monkeypatch, tmp_path):
    calls = _counting(monkeypatch)
    bad = CostConfig("baseline", "no_such_net", 32, 10, in_chans=1, label="bad")
    for _ in range(2):
        [row] = cost_rows([bad])
        assert row["mode"] == "error" and "no_such_net" in row["error"]
    assert len(calls) == 2 and not list((tmp_path / "cost-cache").glob("*.json"))
    good = CostConfig("baseline", **SMALL)
    rows = cost_rows([good])
    (entry,) = (tmp_path / "cost-cache").glob("*.json")
    entry.write_text("{not json")
    assert cost_rows([good]) == rows and len(calls) == 4  # recounted, and rewritten
    assert cost_rows([good]) == rows and len(calls) == 4
