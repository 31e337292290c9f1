"""Verified code equivalence: committed records stay current across a change that computes the same.

A record is stale when the code that computes it changes (``bench.run.provenance``). Some
changes cannot change a number at the records' setting -- a wrapper built only with several
processes, a gather over one rank, ``.float()`` of an fp32 tensor, an error message -- yet they
change the fingerprint, and regenerating every record costs hours. This module lets such a
change keep the records current **only when it is shown, not asserted**:

``python -m bench.run.equivalence check --base COMMIT [--write]``

1. takes every committed job (one per distinct configuration; the seed is the lowest) and
   SHRINKS it (:func:`shrink`: 128/64/64 images, 2 epochs) -- the same methods, options, stages,
   augmentations, weights and evaluation, on less data;
2. runs those jobs twice on this machine, in two fresh processes with their own caches (the
   in-domain pretraining and the image caches are rebuilt by each code): with COMMIT's code
   (``git archive``) and with the working tree's;
3. compares every output bit for bit (:func:`outputs`: the score arrays, the history without
   its timings, the metrics, the trick, the collapse check, the selected epoch, the pretrained
   weights' sha256).

Only if every output is identical does ``--write`` append an entry to :data:`TABLE`
(``results/code-equivalence.json``): COMMIT's fingerprint of each method -> the working tree's,
with what was compared. ``bench.run.store.staleness`` then counts a record made by a ``from``
fingerprint as made by the ``to`` fingerprint (entries chain). ``tests/test_equivalence.py``
recomputes every entry's fingerprints from git and reruns the comparison on small jobs of every
method against the last entry's base, so a change that moves a number fails the tests.

What this cannot see: settings no committed record uses (GPU, bf16, several processes): the
records do not depend on them. Runs are deterministic on one machine (CPU, fixed threads); the
two codes run on the same machine, so a different CPU cannot pass for a code change.
"""
from __future__ import annotations

import argparse
import copy
import datetime as dt
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping

from bench.run import provenance

REPO = provenance.REPO
TABLE = REPO / "results" / "code-equivalence.json"
#: The shrunken size of every probe job (images per split, epochs of the whole budget).
SHRINK = {"n_train": 128, "n_val": 64, "n_test": 64, "epochs": 2}
#: Record keys compared besides the score arrays (history entries lose TIMING_KEYS).
COMPARED = ("metrics", "history", "selected_epoch", "nonfinite_steps", "training_free", "collapse",
            "stages", "model")
TIMING_KEYS = ("seconds", "images_per_s", "eval_s", "wall_s", "train_s")

#: Runs one code's probe jobs: ``python -c DRIVER specs.json results_dir`` with that code first
#: on sys.path. It uses only APIs both codes have (JobSpec, Store, run_job).
DRIVER = """
import json, sys
from bench.spec.jobs import JobSpec
from bench.run.runner import run_job
from bench.run.store import Store
store = Store(sys.argv[2])
for spec in json.load(open(sys.argv[1])):
    run_job(JobSpec(**spec), store, device="cpu", threads=1, progress=False)
    print("ran", spec["method"], spec["label"], flush=True)
"""


def committed_jobs(results: Path = REPO / "results") -> list[dict[str, Any]]:
    """One job (the record's ``job``) per distinct configuration among the done records under ``results`` (the
    lowest seed), sorted by method and label."""
    seen: dict[str, dict[str, Any]] = {}
    for done in sorted(results.glob("*/*/DONE")):
        job = json.loads((done.parent / "record.json").read_text())["job"]
        key = json.dumps({k: v for k, v in job.items() if k not in ("seed", "label", "suite", "data_root")},
                         sort_keys=True, default=str)
        if key not in seen or job["seed"] < seen[key]["seed"]:
            seen[key] = job
    return sorted(seen.values(), key=lambda j: (j["method"], j["label"], json.dumps(j, sort_keys=True)))


def shrink(job: Mapping[str, Any]) -> dict[str, Any]:
    """``job`` on less data and 2 epochs; everything else (method, options, stages, recipe,
    weights, evaluation) unchanged. A stage split becomes one epoch per stage that trains."""
    out = copy.deepcopy(dict(job))
    options = out["dataset"].setdefault("options", {})
    for key in ("n_train", "n_val", "n_test"):
        if key in options:
            options[key] = SHRINK[key]
    budget = out["budget"]
    budget["epochs"] = SHRINK["epochs"]
    if budget.get("stage_split"):  # one epoch per stage that trains; a skipped stage stays skipped
        budget["stage_split"] = [min(int(e), 1) for e in budget["stage_split"]]
        budget["epochs"] = sum(budget["stage_split"])
    if budget.get("train_images"):
        budget["train_images"] = min(budget["train_images"], SHRINK["n_train"])
    out["suite"] = "equivalence"
    out["data_root"] = None
    return out


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _untimed(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _untimed(v) for k, v in value.items() if k not in TIMING_KEYS}
    if isinstance(value, list):
        return [_untimed(v) for v in value]
    return value


def outputs(results: Path, cache: Path) -> dict[str, dict[str, str]]:
    """{job id: {output name: digest}} of every record under ``results``, plus the in-domain
    pretrained weights' sha256 under ``cache``."""
    import numpy as np

    out: dict[str, dict[str, str]] = {}
    for record_file in sorted(results.glob("*/*/record.json")):
        record = json.loads(record_file.read_text())
        row = {key: _digest(_untimed(record.get(key))) for key in COMPARED}
        with np.load(record_file.parent / "predictions.npz") as arrays:
            for name in sorted(arrays.files):
                a = arrays[name]
                row[f"predictions.{name}"] = hashlib.sha256(
                    str(a.dtype).encode() + str(a.shape).encode() + a.tobytes()).hexdigest()[:16]
        out[record["job_id"]] = row
    for sidecar in sorted(cache.glob("pretrained/*.json")):
        out[f"pretrained/{sidecar.stem}"] = {"sha256": str(json.loads(sidecar.read_text()).get("sha256"))}
    return out


def extract(commit: str, into: Path) -> Path:
    """``commit``'s bench/ and methods/ under ``into`` (git archive)."""
    blob = subprocess.run(["git", "archive", commit, *provenance.CODE_DIRS], cwd=REPO,
                          capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        tar.extractall(into, filter="data")
    return into


def run_code(code_root: Path, specs: list[dict[str, Any]], work: Path, log: Path) -> dict[str, dict[str, str]]:
    """Run ``specs`` with the code under ``code_root`` in a fresh process and cache; their outputs."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "specs.json").write_text(json.dumps(specs))
    env = {**os.environ, "PYTHONPATH": str(code_root), "BENCH_CACHE_DIR": str(work / "cache"),
           "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    with open(log, "w") as fh:
        done = subprocess.run([sys.executable, "-c", DRIVER, str(work / "specs.json"), str(work / "results")],
                              cwd=code_root, env=env, stdout=fh, stderr=subprocess.STDOUT)
    if done.returncode:
        raise RuntimeError(f"the probe jobs failed under {code_root} (exit {done.returncode}); see {log}")
    return outputs(work / "results", work / "cache")


def differences(base: Mapping[str, Mapping[str, str]], new: Mapping[str, Mapping[str, str]]) -> list[str]:
    """Every output that is not bit-identical between two runs ([] = equivalent)."""
    out = [f"{job}: only under {'base' if job in base else 'new'} code"
           for job in sorted(set(base) ^ set(new))]
    for job in sorted(set(base) & set(new)):
        out += [f"{job}: {name} differs" for name in sorted(set(base[job]) | set(new[job]))
                if base[job].get(name) != new[job].get(name)]
    return out


def fingerprints_at(commit: str) -> dict[str, str]:
    """Scheme-2 fingerprints, per method, of ``commit``'s code with that commit's exclusions."""
    with tempfile.TemporaryDirectory() as tmp:
        root = extract(commit, Path(tmp))
        return provenance.code_fingerprints(root, provenance._excluded_of(root))


def made_by(results: Path) -> set[str]:
    """The code fingerprints the records under ``results`` carry (which code really ran)."""
    return {json.loads(f.read_text())["provenance"]["code_fingerprint"] for f in results.glob("*/*/record.json")}


def compare(base_commit: str, specs: list[dict[str, Any]], work: Path) -> tuple[list[str], dict[str, Any]]:
    """Run ``specs`` under ``base_commit``'s code and the working tree's; (differences, outputs).
    Each run's records must carry its own code's fingerprints: a run that imported the other
    code (e.g. an installed copy ahead of PYTHONPATH) would compare a code with itself."""
    base_root = extract(base_commit, work / "base-code")
    base = run_code(base_root, specs, work / "base", work / "base.log")
    new = run_code(REPO, specs, work / "new", work / "new.log")
    for name, root, results in (("base", base_root, work / "base"), ("new", REPO, work / "new")):
        expected = set(provenance.code_fingerprints(root, provenance._excluded_of(root)).values())
        carried = made_by(results / "results")
        if not carried <= expected:
            raise RuntimeError(f"the {name} run did not run the code under {root}: its records carry "
                               f"{sorted(carried)}, that code is {sorted(expected)}")
    return differences(base, new), new


def load_table(path: Path | None = None) -> list[dict[str, Any]]:
    """The entries of the equivalence table (:data:`TABLE` unless ``path``; read once per change
    of the file)."""
    path = path or TABLE
    stamp = path.stat().st_mtime_ns if path.is_file() else None
    cached = _TABLE_CACHE.get(path)
    if cached is None or cached[0] != stamp:
        _TABLE_CACHE[path] = cached = (stamp, [] if stamp is None else json.loads(path.read_text())["entries"])
    return cached[1]


_TABLE_CACHE: dict[Path, tuple[int | None, list[dict[str, Any]]]] = {}


def equivalent(fingerprint: str, method: str, entries: Iterable[Mapping[str, Any]] | None = None) -> set[str]:
    """Every fingerprint that ``fingerprint`` (of ``method``'s code) is shown equivalent to."""
    entries = load_table() if entries is None else list(entries)
    found, todo = {fingerprint}, [fingerprint]
    while todo:
        fp = todo.pop()
        for entry in entries:
            old, new = entry["from"], entry["to"]
            if old.get(method, old["*"]) == fp and new.get(method, new["*"]) not in found:
                found.add(new.get(method, new["*"]))
                todo.append(new.get(method, new["*"]))
    return found


def check(base_commit: str, write: bool, work: Path | None = None) -> int:
    """The command: compare every committed configuration under both codes; append on success."""
    commit = subprocess.run(["git", "rev-parse", base_commit], cwd=REPO, capture_output=True,
                            text=True, check=True).stdout.strip()
    base_fps = fingerprints_at(commit)
    now_fps = provenance.code_fingerprints()
    specs = [shrink(job) for job in committed_jobs()]
    print(f"{len(specs)} committed configurations, shrunk to {SHRINK}; base {commit[:10]}", flush=True)
    work = work or Path(tempfile.mkdtemp(prefix="bench-equivalence-"))
    diffs, new = compare(commit, specs, work)
    if diffs:
        print(f"NOT equivalent ({len(diffs)} difference(s)); logs under {work}:")
        print("\n".join(f"  {d}" for d in diffs[:40]))
        return 1
    n_out = sum(len(v) for v in new.values())
    print(f"equivalent: {len(new)} jobs/artifacts, {n_out} outputs bit-identical (work: {work})")
    if write:
        entries = load_table()
        entries.append({
            "from_commit": commit, "from": base_fps, "to": now_fps,
            "checked": {"date": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
                        "machine": f"{provenance.cpu_model()} x{os.cpu_count()}",
                        "configurations": len(specs), "shrink": SHRINK, "outputs": n_out,
                        "digest": _digest(new),
                        "command": f"python -m bench.run.equivalence check --base {commit[:10]} --write"}})
        TABLE.write_text(json.dumps({"entries": entries}, indent=1, sort_keys=True) + "\n")
        print(f"appended to {TABLE.relative_to(REPO)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run.equivalence",
                                     description="show that the working tree computes what COMMIT computed")
    sub = parser.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check")
    c.add_argument("--base", required=True, help="the commit whose code made the committed records")
    c.add_argument("--write", action="store_true", help="append the entry when every output is identical")
    c.add_argument("--work", type=Path, help="keep the runs here (default: a new temporary folder)")
    args = parser.parse_args(argv)
    return check(args.base, args.write, args.work)


if __name__ == "__main__":
    sys.exit(main())
