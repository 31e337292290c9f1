"""Every value of a suite is checked at load, before any job folder exists (issue 13): a bad
value is one line naming the file, row and key, exit 2, never "retry"; a suite's name is its
file's stem; ``--set KEY=VALUE`` is validated like the YAML and is part of the job's identity."""
from __future__ import annotations

import shutil

import pytest
import yaml

import methods
from bench.spec.suites import (BUDGET_DEFAULTS, OPTIMIZER_DEFAULTS, SUITES_DIR, SpecError, apply_sets,
                          expand_jobs, load_suite, suite_names)
from bench.spec.sweeps import expand_sweep, load_sweep, sweep_names
from tests.helpers import run_bench, tiny_suite


def _one_line_exit_2(out, *needles: str) -> str:
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stderr and "retry" not in (out.stdout + out.stderr)
    lines = [l for l in out.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, out.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# ----------------------------------------------------------------------------- the issue's cases
@pytest.mark.parametrize("change, needles", [
    ({"methods": [{"method": "probmcl", "hparams": {"tau": float("nan")}}]}, ("methods[0]", "tau")),
    ({"optimizer": {"lr": -2.0e-3}}, ("optimizer.lr",)),
    ({"budget": {"epochs": -2, "batch_size": 32, "resolution": 24}}, ("budget.epochs",)),
])
def test_issue_bad_values_exit_2_and_leave_no_job_folder(tmp_path, change, needles):
    path = tiny_suite(tmp_path, **change)
    results = tmp_path / "r"
    dry = run_bench("run", "--suite", str(path), "--dry-run", "--results", str(results))
    _one_line_exit_2(dry, str(path), *needles)
    real = run_bench("run", "--suite", str(path), "--results", str(results), "--no-report")
    _one_line_exit_2(real, str(path), *needles)
    assert not results.exists() or not any(results.rglob("*"))  # nothing created, nothing DONE


# ----------------------------------------------------------------------------- domains, in process
BAD = [
    ("budget", "epochs", 0), ("budget", "epochs", 2.5), ("budget", "batch_size", 0),
    ("budget", "eval_batch_size", -1), ("budget", "resolution", 0), ("budget", "train_images", 0),
    ("budget", "augmentation", "flip"), ("budget", "normalize", "imagenett"),
    ("budget", "stage_split", [1, 5]), ("budget", "epochs", True),
    ("optimizer", "lr", 0), ("optimizer", "lr", float("inf")), ("optimizer", "lr", "fast"),
    ("optimizer", "weight_decay", -1e-4), ("optimizer", "pct_start", 0), ("optimizer", "pct_start", 1.0),
    ("optimizer", "name", "lamb"), ("optimizer", "schedule", "linear"), ("optimizer", "momentum", 1.0),
    ("optimizer", "grad_clip", 0), ("optimizer", "warmup_epochs", -1), ("optimizer", "step_epochs", 0),
    ("optimizer", "step_gamma", 0), ("optimizer", "backbone_lr_scale", 0),
    ("optimizer", "backbone_lr_scale", 1.5), ("optimizer", "planned_epochs", 0),
    ("optimizer", "weight_decay_mode", "true"),
    ("evaluation", "convention", "sklearn"), ("evaluation", "trick_lambdas", []),
    ("evaluation", "trick_lambdas", [-0.1]), ("evaluation", "trick_lambdas", [float("nan")]),
]


@pytest.mark.parametrize("section, key, value", BAD, ids=[f"{s}.{k}={v!r}" for s, k, v in BAD])
def test_bad_value_names_file_and_key(tmp_path, section, key, value):
    base = {"budget": {"epochs": 2, "batch_size": 32, "resolution": 24}}
    block = {**base.get(section, {}), key: value}
    path = tiny_suite(tmp_path, **{section: block})
    with pytest.raises(SpecError) as err:
        load_suite(str(path))
    text = str(err.value)
    assert str(path) in text and f"{section}.{key}" in text and "\n" not in text, text


def test_every_budget_and_optimizer_key_has_a_domain(tmp_path):
    """A key added to the defaults without a check would pass anything: a non-numeric string
    must be refused for every key (strings of a choice key are not in its list)."""
    for section, defaults in (("budget", BUDGET_DEFAULTS), ("optimizer", OPTIMIZER_DEFAULTS)):
        for key in defaults:
            block = {"epochs": 2, "batch_size": 32, "resolution": 24} if section == "budget" else {}
            path = tiny_suite(tmp_path, **{section: {**block, key: "no-such-value"}})
            with pytest.raises(SpecError) as err:
                load_suite(str(path))
            assert f"{section}.{key}=" in str(err.value), str(err.value)


@pytest.mark.parametrize("backbone, resolution, ok", [
    ("smallcnn", 16, True), ("smallcnn", 12, False), ("resnet101", 32, True), ("resnet101", 24, False),
    ("tresnet_m", 36, True), ("tresnet_m", 34, False), ("no-such-net", 64, False),
])
def test_resolution_the_backbone_can_take(tmp_path, backbone, resolution, ok):
    block = backbone if backbone == "smallcnn" else {"name": backbone, "options": {"weights": "none"}}
    path = tiny_suite(tmp_path, backbone=block, dataset={"name": "coco2014"},
                      budget={"epochs": 1, "batch_size": 2, "resolution": resolution})
    if ok:
        assert load_suite(str(path)).budget["resolution"] == resolution
    else:
        with pytest.raises(SpecError, match="resolution|unknown backbone"):
            load_suite(str(path))


@pytest.mark.parametrize("dataset, needle", [
    ({"name": "mnist-mosaic", "options": {"n_train": 0}}, "n_train"),
    ({"name": "mnist-mosaic", "options": {"p_group": 2}}, "p_group"),
    ({"name": "coco2014", "options": {"class_order": "random"}}, "class_order"),
    ({"name": "coco2014", "options": {"val_fraction": 1.5}}, "val_fraction"),
    ({"name": "voc2007", "options": {"difficult_train": "drop"}}, "difficult_train"),
    ({"name": "imagenet-21k"}, "imagenet-21k"),
])
def test_dataset_options_checked_without_data(tmp_path, dataset, needle):
    with pytest.raises(SpecError, match=needle):
        load_suite(str(tiny_suite(tmp_path, dataset=dataset)))


def test_seeds_and_nested_non_finite(tmp_path):
    with pytest.raises(SpecError, match="repeat"):
        load_suite(str(tiny_suite(tmp_path, seeds=[1, 1])))
    path = tiny_suite(tmp_path, dataset={"name": "mnist-mosaic", "options": {"noise": float("inf")}})
    with pytest.raises(SpecError, match=r"dataset\.options\.noise=inf"):
        load_suite(str(path))


def test_yaml_exponent_without_dot_is_a_number(tmp_path):
    path = tmp_path / "expo.yaml"
    path.write_text(tiny_suite(tmp_path, name="expo").read_text().replace(
        "methods:", "optimizer: {lr: 1e-3, weight_decay: 5e-5}\nmethods:"))
    suite = load_suite(str(path))
    assert suite.optimizer["lr"] == 1e-3 and suite.optimizer["weight_decay"] == 5e-5


@pytest.mark.parametrize("name", suite_names())
def test_shipped_suites_pass_validation_under_their_recipes(name, paper_weights_cache):
    raw = yaml.safe_load((SUITES_DIR / f"{name}.yaml").read_text())
    if any((r if isinstance(r, str) else r["method"]) not in methods.names() for r in raw["methods"]):
        pytest.skip("a method of this suite is not registered")
    suite = load_suite(name)
    jobs = expand_jobs(suite)
    assert jobs and all(j.budget["resolution"] == suite.budget["resolution"] for j in jobs)


def test_paper_recipe_keeps_the_suites_resolution(paper_weights_cache):
    """The suite decides backbone and resolution (SUITE_DECIDES); the recipe's are recorded."""
    suite = load_suite("coco-tables-recipe")
    asl = next(j for j in expand_jobs(suite) if j.method == "asl")
    assert asl.budget["resolution"] == 448 and "resolution" in asl.budget["recipe_suite_decides"]
    assert asl.budget["recipe_not_applied"] == [] and asl.budget["ema"] == 0.9997


# ----------------------------------------------------------------------------- name == file stem
def test_every_file_in_sweeps_is_named_after_itself():
    for path in sorted(SUITES_DIR.glob("*.yaml")):
        raw = yaml.safe_load(path.read_text()) or {}
        assert raw.get("name", path.stem) == path.stem, path
    assert set(suite_names()) | set(sweep_names()) == {p.stem for p in SUITES_DIR.glob("*.yaml")}
    for name in sweep_names():
        assert load_sweep(name).name == name


def test_renamed_copy_of_a_suite_keeping_the_old_name_fails(tmp_path):
    copy = tmp_path / "smoke-copy.yaml"
    shutil.copy(SUITES_DIR / "smoke.yaml", copy)
    results = tmp_path / "r"
    out = run_bench("run", "--suite", str(copy), "--dry-run", "--results", str(results))
    _one_line_exit_2(out, "'smoke'", "'smoke-copy'", str(copy))
    assert not results.exists()


def test_absent_name_is_the_file_stem(tmp_path):
    path = tiny_suite(tmp_path, name="nameless")
    raw = yaml.safe_load(path.read_text())
    del raw["name"]
    path.write_text(yaml.safe_dump(raw))
    suite = load_suite(str(path))
    assert suite.name == "nameless" and expand_jobs(suite)[0].suite == "nameless"


def test_sweep_name_must_match_its_file(tmp_path):
    tiny_suite(tmp_path, name="tiny")
    sweep = tmp_path / "sw.yaml"
    sweep.write_text(yaml.safe_dump({"name": "other", "suite": "tiny.yaml", "search": [{"method": "baseline"}]}))
    with pytest.raises(SpecError, match="'other' differs from the file name 'sw'"):
        load_sweep(str(sweep))
    sweep.write_text(yaml.safe_dump({"suite": "tiny.yaml", "search": [{"method": "baseline"}]}))
    assert load_sweep(str(sweep)).name == "sw"


def test_sweep_values_are_validated_too(tmp_path):
    tiny_suite(tmp_path, name="tiny")
    sweep = tmp_path / "sw.yaml"
    sweep.write_text(yaml.safe_dump({"suite": "tiny.yaml", "budget": {"epochs": -1},
                                     "search": [{"method": "baseline"}]}))
    with pytest.raises(SpecError, match=r"sw\.yaml.*budget\.epochs=-1"):
        load_sweep(str(sweep))


# ----------------------------------------------------------------------------- --set
def test_set_changes_the_job_id_and_the_job(tmp_path):
    path = tiny_suite(tmp_path, methods=["baseline", {"method": "asl", "label": "asl c0", "hparams": {"clip": 0.0}}])
    plain = expand_jobs(load_suite(str(path)))
    changed = expand_jobs(load_suite(str(path), ["budget.epochs=3", "optimizer.lr=1e-3",
                                                 "dataset.options.n_train=500"]))
    assert [j.budget["epochs"] for j in changed] == [3, 3]
    assert changed[0].optimizer["lr"] == 1e-3 and changed[0].dataset["options"]["n_train"] == 500
    assert not {j.job_id for j in plain} & {j.job_id for j in changed}
    # setting a value to what it already is keeps the identity
    same = expand_jobs(load_suite(str(path), ["budget.epochs=2"]))
    assert [j.job_id for j in same] == [j.job_id for j in plain]
    # rows by index, [index] or label; a bare row name becomes a mapping
    by_label = expand_jobs(load_suite(str(path), ["methods.asl c0.hparams.clip=0.1"]))
    assert by_label[1].hparams["clip"] == 0.1
    by_index = expand_jobs(load_suite(str(path), ["methods[0].hparams.pooling=max"]))
    assert by_index[0].hparams["pooling"] == "max"
    assert by_index[0].job_id != plain[0].job_id and by_index[1].job_id == plain[1].job_id


@pytest.mark.parametrize("item, needle", [
    ("budget.epochs=-2", "budget.epochs=-2"),
    ("optimizer.lr=.nan", "optimizer.lr=nan"),
    ("budget.epochz=3", "unknown key 'epochz'"),
    ("methods.0.hparams.clipp=1", "no hyperparameter 'clipp'"),
    ("methods.5.hparams.clip=1", "out of range"),
    ("budget.epochs", "expected KEY=VALUE"),
    ("name=other", "differs from the file name"),
])
def test_set_is_validated_like_the_yaml(tmp_path, item, needle):
    path = tiny_suite(tmp_path)
    with pytest.raises(SpecError) as err:
        load_suite(str(path), [item])
    text = str(err.value)
    assert needle in text and f"--set {item}" in text and str(path) in text and "\n" not in text, text


def test_set_on_the_command_line(tmp_path):
    path = tiny_suite(tmp_path)
    results = tmp_path / "r"
    ok = run_bench("run", "--suite", str(path), "--dry-run", "--results", str(results))
    other = run_bench("run", "--suite", str(path), "--dry-run", "--results", str(results),
                      "--set", "budget.epochs=3", "--set", "optimizer.lr=1e-3")
    assert ok.returncode == 0 and other.returncode == 0, ok.stderr + other.stderr
    def first_job_id(out: str) -> str:  # the row after the table header (a weights line may come first)
        lines = out.split("\n")
        return lines[next(i for i, ln in enumerate(lines) if ln.startswith("job_id")) + 1].split()[0]

    assert first_job_id(ok.stdout) != first_job_id(other.stdout)  # job ids
    bad = run_bench("run", "--suite", str(path), "--results", str(results), "--no-report",
                    "--set", "optimizer.lr=-2e-3")
    _one_line_exit_2(bad, "--set optimizer.lr=-2e-3", "optimizer.lr")
    assert not results.exists()
    tiny_suite(tmp_path, name="tiny")
    sweep = tmp_path / "sw.yaml"
    sweep.write_text(yaml.safe_dump({"suite": "tiny.yaml", "search": [{"method": "baseline"}]}))
    bad_sweep = run_bench("sweep", str(sweep), "--dry-run", "--results", str(results),
                          "--set", "budget.batch_size=0")
    _one_line_exit_2(bad_sweep, "--set budget.batch_size=0", "budget.batch_size")
    good_sweep = run_bench("sweep", str(sweep), "--dry-run", "--results", str(results),
                           "--set", "budget.epochs=1")
    assert good_sweep.returncode == 0, good_sweep.stderr
    assert not results.exists()


def test_sweep_set_reaches_the_jobs(tmp_path):
    tiny_suite(tmp_path, name="tiny")
    sweep = tmp_path / "sw.yaml"
    sweep.write_text(yaml.safe_dump({"suite": "tiny.yaml", "search": [{"method": "baseline"}]}))
    plain = expand_sweep(load_sweep(str(sweep)))
    set_ = expand_sweep(load_sweep(str(sweep), ["budget.epochs=1", "seeds=[0, 1]"]))
    assert [j.seed for j in set_] == [0, 1] and all(j.budget["epochs"] == 1 for j in set_)
    assert plain[0].job_id != set_[0].job_id


def test_apply_sets_does_not_touch_its_input():
    raw = {"budget": {"epochs": 2}, "methods": ["baseline"]}
    out = apply_sets(raw, ["budget.epochs=5", "methods.baseline.hparams.pooling=max"])
    assert raw == {"budget": {"epochs": 2}, "methods": ["baseline"]}
    assert out["budget"]["epochs"] == 5
    assert out["methods"][0] == {"method": "baseline", "hparams": {"pooling": "max"}}


@pytest.mark.parametrize("item, needle", [
    ("executor.name=slurmm", "executor.name"), ("executor.partition=gpu", "executor: unknown key"),
    ("cluster.time_min=0", "time_min"), ("cluster.partitionn=gpu", "unknown cluster option"),
])
def test_executor_and_cluster_checked_at_load(tmp_path, item, needle):
    from bench.cli import user_errors

    with pytest.raises(user_errors(), match=needle):
        load_suite(str(tiny_suite(tmp_path)), [item])


def test_stage_split_must_fit_every_rows_stages(tmp_path):
    path = tiny_suite(tmp_path, methods=["probmcl", "imlgcn"])
    assert load_suite(str(path), ["budget.stage_split=[1, 1]"])  # two stages each
    with pytest.raises(SpecError, match=r"methods\[0\] \(baseline\).*one per stage"):
        load_suite(str(tiny_suite(tmp_path, name="one")), ["budget.stage_split=[1, 1]"])


def test_batch_larger_than_the_embedded_training_set(tmp_path):
    path = tiny_suite(tmp_path)  # n_train 128
    with pytest.raises(SpecError, match="budget.batch_size=256 exceeds the 128 training images"):
        load_suite(str(path), ["budget.batch_size=256"])
    with pytest.raises(SpecError, match="exceeds the 16 training images"):
        load_suite(str(path), ["budget.train_images=16"])


def test_decoupled_under_paper_recipe_leaves_sgd_recipes_coupled():
    scratch = "backbone.options.weights=none"  # no ImageNet file needed to read the optimisers
    jobs = expand_jobs(load_suite("coco-tables-recipe", ["optimizer.weight_decay_mode=decoupled", scratch]))
    modes = {j.method: (j.optimizer["name"], j.optimizer["weight_decay_mode"]) for j in jobs}
    assert modes["asl"] == ("adamw", "decoupled") and modes["kmcl"] == ("adamw", "decoupled")
    assert modes["csra"] == ("sgd", "coupled") and modes["mlgcn"] == ("sgd", "coupled")
    default = {j.method: j.optimizer["name"] for j in expand_jobs(load_suite("coco-tables-recipe", [scratch]))}
    assert default["asl"] == default["kmcl"] == "adam"  # the official code: Adam + coupled L2
