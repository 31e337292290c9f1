"""Code fingerprint and stale records: what counts, the one set of state names, half-written
records, `bench run --dry-run` / `bench status` messages, --rerun-stale keeping the old
record aside. No training: records are written by hand."""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import subprocess
from pathlib import Path

import pytest

import methods
from bench.run import provenance
from bench.run import run_suite
from bench.run import status
from bench.run.store import STATES, JobDir, Store, staleness
from bench.spec.suites import expand_jobs, load_suite

REPO = Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------------------- fingerprint

def _tree(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    for rel in ("bench/run/runner.py", "bench/report/build.py", "bench/data/inspect.py", "bench/data/embedded.py",
                "methods/losses.py", "methods/__init__.py"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(f"# {rel}\n")
    for rel in ("tests/test_x.py", "docs/x.md", "README.md", "sweeps/smoke.yaml", "methods/notes.md"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("text\n")
    return root


def test_fingerprint_hashes_contents_of_result_code_only(tmp_path):
    root = _tree(tmp_path)
    base = provenance.code_fingerprint(root)
    assert len(base) == 16
    assert [p.relative_to(root).as_posix() for p in provenance.code_files(root)] == [
        "bench/data/embedded.py", "bench/run/runner.py", "methods/__init__.py", "methods/losses.py"]
    # docs, tests, suites, README, report/inspect modules, mtimes, caches: no change
    for rel in ("tests/test_x.py", "docs/x.md", "README.md", "sweeps/smoke.yaml", "methods/notes.md",
                "bench/report/build.py", "bench/data/inspect.py"):
        (root / rel).write_text("changed\n")
    os.utime(root / "methods/losses.py", (1, 1))
    (root / "methods/__pycache__").mkdir()
    (root / "methods/__pycache__/losses.cpython-311.py").write_text("x")
    assert provenance.code_fingerprint(root) == base
    # a loss changes: the fingerprint changes; undoing it restores it (content, not history)
    (root / "methods/losses.py").write_text("# methods/losses.py\nscale = 2\n")
    changed = provenance.code_fingerprint(root)
    assert changed != base
    (root / "methods/losses.py").write_text("# methods/losses.py\n")
    assert provenance.code_fingerprint(root) == base
    # a new module counts (included by default), a rename counts
    (root / "bench/new_piece.py").write_text("x = 1\n")
    assert provenance.code_fingerprint(root) != base
    (root / "bench/new_piece.py").unlink()
    # scheme 2 hashes the code, not the layout: a rename or a move changes nothing
    (root / "methods/losses.py").rename(root / "methods/loss.py")
    assert provenance.code_fingerprint(root) == base


def _write(root: Path, rel: str, text: str) -> None:
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_text(text)


LOSS = '''"""Losses."""
from methods.base import HparamError as Err  # the project's import path is blanked


def bce(x, y, scale=1.0):
    """Binary cross-entropy."""
    # a comment
    return scale * (x - y)


@staticmethod
def helper():
    return 2
'''


def test_fingerprint_ignores_layout_comments_docstrings_and_import_paths(tmp_path):
    root = tmp_path / "repo"
    _write(root, "methods/losses.py", LOSS)
    base = provenance.code_fingerprint(root)
    # moved to a package, import path rewritten, docstrings and comments reworded
    (root / "methods/losses.py").unlink()
    moved = (LOSS.replace("from methods.base import", "from methods.core.base import")
             .replace('"""Binary cross-entropy."""', '"""BCE, (B, C) -> scalar."""').replace("# a comment", "# other"))
    _write(root, "methods/core/losses.py", moved)
    assert provenance.code_fingerprint(root) == base
    # split in two files: the same statements, so the same fingerprint
    head, _, tail = moved.partition("@staticmethod")
    _write(root, "methods/core/losses.py", head)
    _write(root, "methods/core/helpers.py", "@staticmethod" + tail)
    assert provenance.code_fingerprint(root) == base
    # any change to a statement, a default, a decorator or an imported NAME counts
    for edit in (("scale=1.0", "scale=2.0"), ("(x - y)", "(y - x)"), ("HparamError as Err", "DataError as Err")):
        _write(root, "methods/core/losses.py", head.replace(*edit))
        assert provenance.code_fingerprint(root) != base, edit
    _write(root, "methods/core/losses.py", head)
    _write(root, "methods/core/helpers.py", "@classmethod" + tail)
    assert provenance.code_fingerprint(root) != base


def test_a_method_module_counts_only_for_its_own_records():
    fps = provenance.code_fingerprints(REPO)
    assert set(fps) == {"*", *methods.names()} and len(set(fps.values())) == len(fps)
    scoped = provenance.method_modules(REPO)
    assert scoped["asl"] == {"methods/asl.py"}
    assert "methods/asl.py" in scoped["probmcl"]  # ProbMCL's probe uses ASL's defaults
    units, _ = provenance.code_units((REPO / "methods/probmcl.py").read_text())
    assert units  # the scoped file has statements of its own


def test_legacy_table_is_what_its_commit_computes():
    """LEGACY maps scheme-1 fingerprints to scheme-2 values computed from the commit's own tree."""
    for v1, entry in provenance.LEGACY.items():
        commit = str(entry["commit"])
        have = subprocess.run(["git", "cat-file", "-e", commit + "^{commit}"], cwd=REPO, capture_output=True)
        if have.returncode != 0:
            pytest.skip(f"commit {commit} is not in this clone (shallow?)")
        assert provenance.legacy_entry(commit) == (v1, entry)


def test_committed_records_are_current():
    """Every record under results/ is current for its method (scheme 2, or scheme 1 via LEGACY)."""
    from bench.run.store import read_record, staleness

    stale = {}
    for path in sorted((REPO / "results").glob("*/*/record.json")):
        why = staleness(read_record(path))
        if why:
            stale[str(path.relative_to(REPO))] = why
    assert not stale, f"{len(stale)} stale records, e.g. {next(iter(stale.items()))}"


def test_every_excluded_module_exists_and_runner_code_is_included():
    """The exclusion list names real files (no silent typo) and never the code that trains."""
    files = {p.relative_to(REPO).as_posix() for d in provenance.CODE_DIRS for p in (REPO / d).rglob("*.py")}
    assert {k for k in provenance.EXCLUDED if k != "bench/report/collect/compare.py"} <= files
    hashed = set(provenance.current_code_files())
    for must in ("bench/run/runner.py", "bench/train/loop.py", "bench/evaluate/metrics.py", "bench/train/augment.py",
                 "bench/data/embedded.py", "methods/losses.py", "methods/probmcl.py", "methods/base.py"):
        assert must in hashed
    assert not hashed & set(provenance.EXCLUDED)


def test_provenance_carries_fingerprint_and_commit():
    prov = provenance.provenance("cpu", 1)
    assert prov["code_fingerprint"] == provenance.current_code_fingerprint()
    assert prov["git_commit"] and prov["threads"] == 1 and "machine" in prov
    assert set(prov["code_files"]) == set(provenance.current_code_files())


# ----------------------------------------------------------------------------- states

def _record(job_id: str, fingerprint: str | None = "current", **extra) -> dict:
    prov = {"git_commit": "abc"}
    if fingerprint == "current":
        prov["code_fingerprint"] = provenance.current_code_fingerprint()
    elif fingerprint is not None:
        prov["code_fingerprint"] = fingerprint
    return {"job_id": job_id, "job": {"label": "x", "seed": 0}, "provenance": prov, **extra}


def _finish(jd: JobDir, record: dict) -> None:
    jd.path.mkdir(parents=True, exist_ok=True)
    (jd.path / "job.json").write_text("{}")
    jd.record_file.write_text(json.dumps(record))
    jd.predictions_file.write_bytes(b"npz")
    jd.done_file.write_text("")


def test_state_names(tmp_path):
    def jd(name):
        return JobDir(tmp_path, "s", name)

    assert jd("a").state == "new"
    _finish(jd("b"), _record("b"))
    assert jd("b").state == "done"
    _finish(jd("c"), _record("c", "0" * 16))
    state, why = jd("c").describe()
    assert state == "stale" and "0000000000000000" in why and jd("c").is_done
    _finish(jd("d"), _record("d", None))  # made before fingerprints existed
    state, why = jd("d").describe()
    assert state == "stale" and "no readable provenance.code_fingerprint" in why
    _finish(jd("d2"), {**_record("d2"), "provenance": "garbage"})
    assert jd("d2").state == "stale"
    jd("e").path.mkdir(parents=True)
    (jd("e").path / "job.json").write_text("{}")
    assert jd("e").state == "incomplete"
    (jd("e").path / "error.txt").write_text("Traceback\nValueError: boom\n")
    assert jd("e").describe() == ("failed", "ValueError: boom")
    assert {jd(x).state for x in "abcde"} <= set(STATES)


def test_half_written_record_never_counts_as_done(tmp_path):
    jd = JobDir(tmp_path, "s", "h")
    _finish(jd, _record("h"))
    jd.record_file.write_text('{"job_id": "h", "metr')  # killed while writing
    assert not jd.is_done and jd.describe()[0] == "incomplete" and "unreadable" in jd.describe()[1]
    jd.record_file.unlink()
    assert not jd.is_done and jd.state == "incomplete"
    assert Store(tmp_path).records("s") == []


def test_running_means_a_live_process_holds_the_lock(tmp_path):
    jd = JobDir(tmp_path, "s", "r")
    jd.path.mkdir(parents=True)
    (jd.path / "job.json").write_text("{}")
    (jd.path / "lock").write_text("")
    assert jd.state == "incomplete"  # a lock file nobody holds
    with open(jd.path / "lock", "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert jd.state == "running"
    assert jd.state == "incomplete"
    assert not (JobDir(tmp_path, "s", "nothing").path).exists() and JobDir(tmp_path, "s", "nothing").state == "new"


def test_set_aside_restore_and_finish(tmp_path):
    import numpy as np

    jd = JobDir(tmp_path, "s", "j")
    _finish(jd, _record("j", "f" * 16))
    aside = jd.set_aside()
    assert aside.name == "stale-" + "f" * 16 and (aside / "record.json").is_file() and (aside / "DONE").is_file()
    assert not jd.done_file.exists() and jd.state == "incomplete"
    assert jd.restore_aside() and jd.state == "stale" and not jd.stale_dirs()
    jd.set_aside()
    jd.finish(_record("j"), {"test_scores": np.zeros((2, 2))})
    assert jd.state == "done" and not jd.stale_dirs()  # the new record replaced the old one
    assert not jd.restore_aside()


def test_staleness_names_changed_files():
    rec = _record("x", "1" * 16)
    files = provenance.current_code_files()
    rec["provenance"]["code_files"] = {**files, "methods/losses.py": "000000000000"}
    assert "(changed: methods/losses.py)" in staleness(rec)
    assert staleness(_record("x")) == ""


# ----------------------------------------------------------------------------- commands

def _smoke_records(root: Path, fingerprints: list[str | None]) -> list:
    jobs = expand_jobs(load_suite("smoke"))
    store = Store(root)
    for job, fp in zip(jobs, fingerprints):
        _finish(store.job_dir(job), _record(job.job_id, fp))
    return jobs


def _run_args(root: Path, **kw) -> argparse.Namespace:
    base = dict(suite="smoke", results=str(root), data_root=None, seeds=None, methods=None, dry_run=True,
                executor=None, cluster=None, device=None, threads=1, no_report=True, rerun_stale=False)
    return argparse.Namespace(**{**base, **kw})


def test_dry_run_and_status_count_stale_and_say_how_to_rerun(tmp_path, capsys):
    root = tmp_path / "res"
    jobs = _smoke_records(root, ["current", "0" * 16, None])
    assert run_suite.main(_run_args(root)) == 0
    out = capsys.readouterr().out
    n = len(jobs)
    assert f"{n} jobs: {n - 3} new, 1 done, 2 stale" in out
    assert "2 stale record(s)" in out and "--rerun-stale" in out and "not rerun" in out
    assert "missing" not in out
    assert not any(p.name == "lock" for p in root.rglob("*"))  # dry-run writes nothing
    args = argparse.Namespace(suite="smoke", sweep=None, results=str(root), verbose=True)
    assert status.main(args) == 0
    out = capsys.readouterr().out
    assert "2 stale" in out and "1 done" in out and f"{n - 3} new" in out
    assert f"bench run --suite smoke --results {root} --rerun-stale" in out
    assert run_suite.main(_run_args(root, rerun_stale=True)) == 0
    assert "2 stale record(s) would be set aside and rerun" in capsys.readouterr().out


def test_run_without_flag_keeps_stale_and_with_flag_sets_them_aside(tmp_path, capsys, monkeypatch):
    root = tmp_path / "res"
    jobs = _smoke_records(root, ["current", "0" * 16])
    ran = []

    class Fake:
        def submit(self, todo, store):
            ran.extend(j.job_id for j in todo)
            for j in todo:
                jd = store.job_dir(j)
                assert not jd.is_done  # set aside before the executor sees it
                if j.job_id == jobs[1].job_id:
                    jd.finish(_record(j.job_id), {"x": __import__("numpy").zeros(1)})
            return {"failed": []}

    monkeypatch.setattr(run_suite, "get_executor", lambda name, options: Fake())
    monkeypatch.setattr(run_suite, "_preflight", lambda job: None)
    only = f"{jobs[0].label},{jobs[1].label}"
    assert run_suite.main(_run_args(root, dry_run=False, methods=only)) == 0
    out = capsys.readouterr().out
    assert ran == [] and "1 already done, 1 stale" in out and "not rerun" in out
    assert run_suite.main(_run_args(root, dry_run=False, methods=only, rerun_stale=True)) == 0
    assert ran == [jobs[1].job_id]
    assert Store(root).job_dir(jobs[1]).state == "done"


def test_failed_rerun_puts_the_stale_record_back(tmp_path, capsys, monkeypatch):
    root = tmp_path / "res"
    jobs = _smoke_records(root, ["0" * 16])

    class Failing:
        def submit(self, todo, store):
            for j in todo:
                store.job_dir(j).mark_failed("Traceback\nRuntimeError: killed\n")
            return {"failed": [j.job_id for j in todo]}

    monkeypatch.setattr(run_suite, "get_executor", lambda name, options: Failing())
    monkeypatch.setattr(run_suite, "_preflight", lambda job: None)
    assert run_suite.main(_run_args(root, dry_run=False, methods=jobs[0].label, rerun_stale=True)) == 1
    assert "old (stale) records are back" in capsys.readouterr().out
    jd = Store(root).job_dir(jobs[0])
    assert jd.state == "stale" and json.loads(jd.record_file.read_text())["job_id"] == jobs[0].job_id


def test_sweep_dry_run_uses_the_same_state_names(tmp_path, capsys):
    from bench.run import sweep_cmd
    from bench.spec.sweeps import expand_sweep, load_sweep

    root = tmp_path / "res"
    jobs = expand_sweep(load_sweep("ablation-csra-norm-cpu"))
    _finish(Store(root).job_dir(jobs[0]), _record(jobs[0].job_id, None))
    args = argparse.Namespace(spec="ablation-csra-norm-cpu", seeds=None, data_root=None, results=str(root),
                              executor=None, cluster=[], dry_run=True, device=None, threads=1, rerun_stale=False,
                              sets=[])
    assert sweep_cmd.main(args) == 0
    out = capsys.readouterr().out
    assert f"{len(jobs)} jobs: {len(jobs) - 1} new, 1 stale" in out and "missing" not in out
    assert "bench sweep ablation-csra-norm-cpu --results" in out and "--rerun-stale" in out


def test_a_job_resumed_across_a_code_change_is_stale(tmp_path, monkeypatch):
    import numpy as np

    from bench.run import store as store_mod

    jd = JobDir(tmp_path, "s", "m")
    job = expand_jobs(load_suite("smoke"))[0]
    monkeypatch.setattr(store_mod, "current_code_fingerprint", lambda *a: "a" * 16)
    jd.write_job(job)
    jd.checkpoint_file.write_bytes(b"epoch 1")  # killed after epoch 1
    monkeypatch.setattr(store_mod, "current_code_fingerprint", lambda *a: "b" * 16)
    assert jd.describe()[0] == "incomplete" and "started by other code" in jd.describe()[1]
    assert jd.started_by_other_code()
    jd.write_job(job)  # the resume
    assert jd.attempt_fingerprints() == ["a" * 16, "b" * 16]
    jd.finish({"job_id": "m", "job": {"label": "x", "seed": 0}, "provenance": {"code_fingerprint": "b" * 16}},
              {"x": np.zeros(1)})
    rec = jd.record()
    assert rec["provenance"]["code_fingerprint"] == "mixed-" + "a" * 16 + "-" + "b" * 16
    assert rec["provenance"]["code_fingerprints"] == ["a" * 16, "b" * 16] and jd.state == "stale"
    assert not jd.code_file.exists()
    # a fresh start (no checkpoint) after a failed attempt by other code is not mixed
    jd2 = JobDir(tmp_path, "s", "f")
    monkeypatch.setattr(store_mod, "current_code_fingerprint", lambda *a: "a" * 16)
    jd2.write_job(job)
    monkeypatch.setattr(store_mod, "current_code_fingerprint", lambda *a: "b" * 16)
    jd2.write_job(job)
    assert jd2.attempt_fingerprints() == ["b" * 16]


def test_a_job_done_under_another_suite_is_reused_when_current(tmp_path, capsys):
    """The same job id asked for by a second suite (e.g. an ablation sweep whose grid point is the
    default suite's row) is copied, not retrained, when its record was made by the current code."""
    import dataclasses

    root = tmp_path / "res"
    jobs = _smoke_records(root, ["current", "0" * 16])  # suite smoke: job 0 current, job 1 stale
    store = Store(root)
    other = [dataclasses.replace(j, suite="other", label=f"{j.label} in other") for j in jobs[:3]]
    reused = store.reuse_done(other, {j.job_id: "new" for j in other})
    assert reused == {other[0].job_id: "smoke"}  # the stale one and the missing one are not reused
    copy = store.job_dir(other[0])
    assert copy.is_done and copy.state == "done"
    record = copy.record()
    assert record["job"]["label"] == f"{jobs[0].label} in other" and record["job"]["suite"] == "other"
    assert record["reused_from"]["suite"] == "smoke"
    assert copy.predictions_file.read_bytes() == b"npz"
    assert store.reuse_done(other, {other[0].job_id: "done"}) == {}  # never over a record in place
