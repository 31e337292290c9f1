"""Sweep spec parsing and expansion (no Slurm needed)."""
from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import yaml

import methods
from bench.spec.suites import SpecError, load_suite, suite_names
from bench.spec.sweeps import expand_sweep, load_sweep, parse_sweep, sweep_names

SWEEPS_DIR = Path(__file__).resolve().parent.parent / "sweeps"


def _write(tmp_path: Path, raw: dict, name: str | None = None) -> Path:
    path = tmp_path / (name or f"{raw.get('name', 'sw')}.yaml")  # a sweep's name is its file's stem
    path.write_text(yaml.safe_dump(raw))
    return path


def test_grid_expands_to_cartesian_product_times_seeds(tmp_path):
    raw = {"name": "t", "suite": "smoke", "seeds": [3, 4],
           "search": [{"method": "asl", "hparams": {"clip": 0.0},
                       "grid": {"gamma_neg": [1.0, 2.0, 4.0], "gamma_pos": [0.0, 1.0]}}]}
    jobs = expand_sweep(load_sweep(str(_write(tmp_path, raw))))
    assert len(jobs) == 3 * 2 * 2
    combos = {(j.hparams["gamma_neg"], j.hparams["gamma_pos"], j.seed) for j in jobs}
    assert combos == set(itertools.product([1.0, 2.0, 4.0], [0.0, 1.0], [3, 4]))
    assert all(j.hparams["clip"] == 0.0 and j.suite == "t" for j in jobs)
    # unvaried hyperparameters keep the method's defaults
    assert all(j.hparams["eps"] == methods.get("asl").defaults["eps"] for j in jobs)
    assert jobs[0].label == "asl gamma_neg=1 gamma_pos=0"


def test_base_suite_fields_and_overrides(tmp_path):
    base = load_suite("smoke")
    raw = {"name": "t", "suite": "smoke", "budget": {"epochs": 1}, "search": [{"method": "baseline"}]}
    sweep = load_sweep(str(_write(tmp_path, raw)))
    jobs = expand_sweep(sweep)
    assert len(jobs) == len(base.seeds)
    job = jobs[0]
    # a method without a contrastive stage carries no contrastive_recipe (bench.spec.protocol)
    assert job.budget == {k: v for k, v in {**base.budget, "epochs": 1}.items() if k != "contrastive_recipe"}
    # the job's optimiser is the suite's with the weight-decay mode resolved (adamw: decoupled)
    assert job.dataset == base.dataset and job.optimizer == {**base.optimizer, "weight_decay_mode": "decoupled"}
    assert job.evaluation == base.evaluation and job.backbone == base.backbone
    # the same run asked for by the suite and by a sweep has the same job id
    from bench.spec.suites import expand_jobs
    from dataclasses import replace
    same = [j for j in expand_jobs(replace(base, budget={**base.budget, "epochs": 1}))
            if j.method == "baseline"][0]
    assert same.job_id == job.job_id and same.suite != job.suite


def test_random_search_uses_per_name_generators(tmp_path):
    def draws(names):
        raw = {"name": "t", "suite": "smoke", "seeds": [0],
               "search": [{"method": "asl", "random": {"trials": 6, "hparams": names, "seed": 10}}]}
        return list(parse_sweep(raw, "x.yaml").entries[0].hparam_sets)  # before job dedup

    one, two = draws(["gamma_neg"]), draws(["gamma_neg", "clip"])
    # adding a name to the search does not change the other's draws (DomainBed style)
    assert [h["gamma_neg"] for h in one] == [h["gamma_neg"] for h in two]
    assert len({h["gamma_neg"] for h in one}) > 1  # the trials do differ
    spec = methods.get("asl")
    for t, hp in enumerate(draws(["gamma_neg", "clip"])):
        assert hp["gamma_neg"] == spec.sample(10 + t, ["gamma_neg"])["gamma_neg"]
        assert hp["clip"] == spec.sample(10 + t, ["clip"])["clip"]


def test_seed_override_and_dedup(tmp_path):
    raw = {"name": "t", "suite": "smoke", "seeds": [0, 1],
           "search": [{"method": "asl", "grid": {"gamma_neg": [4.0, 4.0]}}]}
    sweep = parse_sweep(raw, "x.yaml")
    assert len(expand_sweep(sweep)) == 2  # the repeated value is one job per seed
    assert [j.seed for j in expand_sweep(sweep, seeds=(7,))] == [7]


@pytest.mark.parametrize("raw, message", [
    ({"name": "t", "suite": "smoke", "search": [{"method": "asl", "grid": {"gama_neg": [1.0]}}]},
     "no hyperparameter 'gama_neg'"),
    ({"name": "t", "suite": "smoke", "search": [{"method": "asl", "grid": {"gamma_neg": [-1.0]}}]},
     "gamma_neg"),
    ({"name": "t", "suite": "smoke", "search": [{"method": "nope"}]}, "unknown method 'nope'"),
    ({"name": "t", "suite": "nosuchsuite", "search": [{"method": "asl"}]}, "unknown suite"),
    ({"name": "t", "suite": "smoke", "serach": []}, "unknown key 'serach'"),
    ({"name": "t", "suite": "smoke", "search": []}, "search must be a non-empty list"),
    ({"name": "t", "suite": "smoke", "search": [{"method": "asl", "grid": {"clip": 0.1}}]},
     "grid.clip must be a non-empty list"),
    ({"name": "t", "suite": "smoke", "search": [{"method": "asl", "random": {"trials": 2, "hparams": ["eps"]}}]},
     "no search space for 'eps'"),
    ({"name": "t", "suite": "smoke", "budget": {"epoch": 1}, "search": [{"method": "asl"}]},
     "unknown key 'epoch'"),
    ({"name": "t", "suite": "smoke", "seeds": ["a"], "search": [{"method": "asl"}]}, "seeds must be"),
])
def test_bad_specs_name_file_and_key(raw, message):
    with pytest.raises(SpecError) as err:
        parse_sweep(raw, "bad.yaml")
    text = str(err.value)
    assert message in text and "bad.yaml" in text and "\n" not in text


def test_unknown_sweep_lists_known():
    with pytest.raises(SpecError, match="ablation-probmcl-tau"):
        load_sweep("no-such-sweep")


@pytest.mark.parametrize("name", sorted(p.stem for p in SWEEPS_DIR.glob("ablation-*.yaml")))
def test_shipped_ablation_sweeps_load(name):
    raw = yaml.safe_load((SWEEPS_DIR / f"{name}.yaml").read_text())
    for entry in raw["search"]:
        if entry["method"] not in methods.names():
            pytest.skip(f"method {entry['method']!r} is not registered yet")
    sweep = load_sweep(name)
    jobs = expand_sweep(sweep)
    assert jobs and all(j.suite == name for j in jobs)
    assert len({j.job_id for j in jobs}) == len(jobs)
    if name.endswith("-cpu"):
        assert sweep.seeds == tuple(range(len(sweep.seeds))) and len(sweep.seeds) <= 3  # CPU-sized
        full = load_sweep(name[: -len("-cpu")])
        for cpu_entry, full_entry in zip(sweep.entries, full.entries, strict=True):
            assert cpu_entry.hparam_sets  # a subset of the paper-scale grid, never other values
            assert all(hp in full_entry.hparam_sets for hp in cpu_entry.hparam_sets)


def test_paper_grids():
    """The grids that the papers state in their text (CSRA Table 7, ProbMCL overlap)."""
    if "csra" in methods.names():
        heads = load_sweep("ablation-csra-heads").entries[0]
        assert [hp["num_heads"] for hp in heads.hparam_sets] == [1, 2, 4, 6, 8]
    overlap = load_sweep("ablation-probmcl-overlap").entries[0]
    assert [hp["overlap"] for hp in overlap.hparam_sets] == ["jaccard", "cosine"]
    trick = load_sweep("ablation-trick-lambda")
    assert list(trick.base.evaluation["trick_lambdas"]) == [0.02, 0.03, 0.05, 0.1, 0.2, 0.3, 0.4, 0.8]


def test_sweeps_are_not_suites():
    names = set(sweep_names())
    assert "ablation-probmcl-tau" in names
    assert not names & set(suite_names())
