"""Where and with what a record was produced: commit, code fingerprint, packages, machine, device.

Code fingerprint (``code_fingerprint``): which code made a record
------------------------------------------------------------------
The job id hashes WHAT a job computes (its semantic fields); the code fingerprint hashes the code
that COMPUTES it. A done record whose ``provenance.code_fingerprint`` differs from
:func:`current_code_fingerprint` of its method (or is missing) is **stale** (``bench.run.store``).

Scope -- what counts (decided once, here; README "When is a record stale?"):

* every ``*.py`` file under ``bench/`` and ``methods/`` (recursively, ``__pycache__`` never),
  EXCEPT the modules in :data:`EXCLUDED`, which cannot change a number in a record: they read
  records, talk to the user or the scheduler, or decide WHICH job runs (and so act only through
  the job's semantic fields, which the job id already hashes). A new module is included until
  someone adds it to :data:`EXCLUDED` with a reason: the default errs towards "stale".
* **What is hashed is the code, not the layout** (scheme 2, :func:`code_units`): each file is
  split into its top-level statements (a function, a class, an assignment, with its decorators);
  comments, blank lines, docstrings and other bare string statements are dropped, and the module
  path of every import of the project (``from bench.x.y import f`` -> ``from _ import f``) is
  blanked, the imported names kept. The fingerprint is the sha256 of the sorted unit hashes,
  imports as a set. So moving a function to another file, splitting a module, renaming a
  package or rewording a comment or docstring changes nothing; changing a statement, an
  imported name or a default does.
* **Scoped by method**: the units of a method's own module (``methods/<name>.py`` of a
  registered method, and the method modules it imports, e.g. ProbMCL's probe uses ASL's
  defaults) count only for that method's records; everything else counts for every record.
  A change to ProbMCL's file makes ProbMCL's records stale, not ASL's.

A record is also current when ``results/code-equivalence.json`` links its fingerprint to today's,
an entry written only when shown to compute the same (:mod:`bench.run.equivalence`).

Records made under scheme 1 (sha256 of every file's bytes with its path, one value for every
method) are current when :data:`LEGACY` maps their fingerprint to the current scheme-2 value of
their method: the table is computed from the commit that made them (``tests/test_stale.py``
recomputes it from git), never written by hand.

Not hashed: the suite/sweep YAML (its effect is the job id's semantic fields), tests, docs,
benchmarks, REPORT.md, pyproject.toml. Package versions, Python, CPU model and threads are
recorded beside the fingerprint but do not make a record stale: they change float reduction
order, not the method (README "What agreement to expect"). The fingerprint is computed ONCE per
process, when this module is first imported (before training): a record describes the code the
process loaded even if a file is edited while it trains.
"""
from __future__ import annotations

import datetime as dt
import functools
import hashlib
import importlib.metadata as md
import io
import os
import platform
import subprocess
import tokenize
from pathlib import Path
from typing import Mapping

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("torch", "torchvision", "timm", "fvcore", "numpy", "submitit", "pycocotools", "pandas")

#: Folders whose Python files make up the code that can change a result.
CODE_DIRS = ("bench", "methods")
#: Modules of CODE_DIRS that cannot change a number in a record, each with the reason.
EXCLUDED: dict[str, str] = {
    # read records and render; never write one
    "bench/report/build.py": "renders REPORT.md from records",
    "bench/train/syncs.py": "counts host syncs for tests and benchmarks; no job imports it",
    **{f"bench/report/{stage}/__init__.py": "a report stage's package (docstring only)"
       for stage in ("collect", "ledger", "findings", "figures", "pages")},
    "bench/report/collect/records.py": "reads records for the report",
    "bench/report/collect/configurations.py": "groups finished records by configuration for the report",
    "bench/report/figures/tables.py": "renders tables from records",
    "bench/report/figures/plots.py": "renders figures from records",
    "bench/report/ledger/claims.py": "assembles the claims ledger from records",
    "bench/report/ledger/claims_text.py": "the claims' text and checks",
    "bench/evaluate/stats.py": "report statistics over finished records",
    "bench/report/collect/paper_values.py": "the papers' numbers",
    "bench/cost/paper_costs.py": "the papers' cost numbers",
    "bench/report/collect/results.py": "`bench results`: prints records",
    "bench/report/collect/compare.py": "`bench compare`: compares finished records",
    "bench/run/status.py": "`bench status`: reads the store and the scheduler",
    # talk to the user or the scheduler; choose WHICH jobs run, never how
    "bench/cli.py": "argument parsing",
    "bench/run/run_suite.py": "`bench run`: selects jobs, prints, hands them to an executor",
    "bench/run/sweep_cmd.py": "`bench sweep`: selects jobs, hands them to an executor",
    "bench/run/executors.py": "calls the runner job after job (threads are recorded in provenance)",
    "bench/run/slurm.py": "submits to Slurm and requeues; the job runs the same runner",
    "bench/run/inputs.py": "builds input caches in a child process before jobs train (the loaders it calls are hashed)",
    "bench/run/devices.py": "refuses to start a GPU suite's job without CUDA; never touches a running job",
    "bench/run/plan.py": "`--dry-run`: prints the sbatch request and cost estimates; runs no job",
    "bench/run/signals.py": "which process acts on Slurm's/the user's signals; computes nothing",
    "bench/errors.py": "exception classes",
    "bench/data/inspect.py": "`bench data inspect`: prints label statistics",
    "bench/data/fetch.py": "`bench data fetch`: downloads and extracts archives; the loaders read the files",
    "bench/run/epochlog.py": "per-epoch CSV / TensorBoard / wandb logs written from the history; never read back",
    "bench/run/summary.py": "the end-of-run summary: prints what the finished records say",
    "bench/run/progress.py": "the terminal's progress bar and per-epoch lines; computes nothing",
    "bench/run/equivalence.py": "runs two codes' probe jobs in child processes and compares them; writes no record",
    # a job's identity: every effect passes through the job's semantic fields (the job id)
    "bench/spec/suites.py": "YAML -> JobSpec; what it decides is in the job id",
    "bench/spec/sweeps.py": "sweep YAML -> JobSpecs; what it decides is in the job id",
    "bench/spec/schema.py": "suite keys' defaults and domains; what they decide is in the job id",
    "bench/spec/named.py": "checks dataset/backbone names and options; reads no data",
    "bench/spec/yaml_io.py": "reads suite YAML and --set; what it decides is in the job id",
    "bench/run/roots.py": "where results go (default root, variant file, writability probe)",
    "bench/spec/listing.py": "`bench list`: prints suites, sweeps, methods, datasets, keys",
    "bench/spec/weights.py": "decides which weights file a job loads; the file's sha256 is in the job id",
    "bench/spec/weights_cmd.py": "`bench weights`: lists, fetches and verifies weights files",
    "bench/spec/jobs.py": "the JobSpec and its id; what a job computes is in the id",
    "bench/spec/source_read.py": "reads the method registry's names/defaults and literals from source; computes nothing",
    "bench/spec/method_facts.py": "a row's resolved hparams, stages and recipe, as the registry gives them; in the job id",
    "bench/spec/protocol.py": "what equal budget shares; its effect is budget.stage_recipe, in the job id",
    # bookkeeping around a record, not its numbers
    "bench/run/store.py": "writes the runner's record and predictions byte for byte; job states",
    "bench/run/provenance.py": "describes the run (commit, machine, this fingerprint)",
    # `bench cost` writes results/cost/*.json, not job records
    "bench/cost/count.py": "`bench cost`: parameter/GMAC records, not job records",
    "bench/cost/timing.py": "`bench cost --timing`",
    "bench/cost/command.py": "`bench cost`: prints and writes cost records",
    "bench/cost/cache.py": "`bench cost`: reuses counted cost rows, keyed by their inputs; no job record",
    "bench/report/ledger/rules.py": "the ledger's rules and checks over finished records",
    "bench/report/ledger/rows.py": "the ledger's mAP checks over finished records",
    "bench/report/ledger/costs.py": "the ledger's cost and timing checks over finished records and cost records",
    "bench/report/ledger/stage1.py": "renders the ProbMCL stage-1 budget section from records",
    "bench/report/findings/table.py": "selects and summarises the ledger's verdicts for REPORT.md's first screen",
    "bench/report/findings/sentences.py": "generates REPORT.md's key-finding sentences from records and verdicts",
    "bench/report/pages/methods.py": "renders the methods and significance tables from records",
    "bench/report/pages/ledger.py": "renders the ledger's rules and the generated cells page from records",
    "bench/report/collect/cache.py": "caches the report's bootstraps of finished records' predictions, outside the repo",
    "bench/report/figures/diagnostics.py": "loss-curve and accuracy-vs-cost figures from finished records and cost records",
    "bench/report/figures/per_class.py": "per-class AP table and heatmap from finished records' predictions",
    "bench/spec/cluster.py": "the cluster block: where a job runs, never what it computes",
    # a verdict over a record's own curves, recomputed from its history whenever it is read
    "bench/evaluate/convergence.py": "convergence verdicts from a record's history (recomputed when read)",
}


def code_files(root: Path = REPO, excluded: Mapping[str, str] | None = None) -> list[Path]:
    """The files the fingerprint hashes, sorted by their repository-relative POSIX path."""
    excluded = EXCLUDED if excluded is None else excluded
    out = []
    for folder in CODE_DIRS:
        for path in (root / folder).rglob("*.py"):
            rel = path.relative_to(root).as_posix()
            if "__pycache__" not in path.parts and rel not in excluded and path.is_file():
                out.append(path)
    return sorted(out, key=lambda p: p.relative_to(root).as_posix())


def code_file_hashes(root: Path = REPO) -> dict[str, str]:
    """{relative path: sha256 of its bytes (first 12 hex digits)} of :func:`code_files` (lets
    ``bench status -v`` name the files that changed)."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()[:12]
            for p in code_files(root)}


def code_fingerprint_v1(root: Path = REPO, excluded: Mapping[str, str] | None = None) -> str:
    """Scheme 1 (records before scheme 2): sha256 over (path, content hash) of every code file."""
    digest = hashlib.sha256()
    for path in code_files(root, excluded):
        rel = path.relative_to(root).as_posix()
        digest.update(rel.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest() + b"\n")
    return digest.hexdigest()[:16]


_SKIP = {tokenize.COMMENT, tokenize.NL, tokenize.ENCODING, tokenize.ENDMARKER}
PROJECT_PACKAGES = ("bench", "methods")


def _logical_lines(text: str) -> list[tuple[int, list[str]]]:
    """(indent depth, significant token strings) of each logical line."""
    lines, current, depth = [], [], 0
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type == tokenize.INDENT:
            depth += 1
        elif tok.type == tokenize.DEDENT:
            depth -= 1
        elif tok.type == tokenize.NEWLINE:
            if current:
                lines.append((depth, current))
            current = []
        elif tok.type not in _SKIP:
            current.append(tok.string)
    if current:
        lines.append((depth, current))
    return lines


def _normalise(tokens: list[str]) -> list[str] | None:
    """A logical line with the project's import paths blanked; None for a bare string statement."""
    if tokens and all(t[:1] in "'\"" or t[:2].lower() in ("r'", 'r"', "b'", 'b"', "f'", 'f"', "u'", 'u"')
                      for t in tokens):
        return None  # a docstring or another string expression: no effect
    if tokens[:1] == ["from"] and (tokens[1] in PROJECT_PACKAGES or tokens[1] == "."):
        return ["from", "_", *tokens[tokens.index("import"):]]
    if tokens[:1] == ["import"] and tokens[1] in PROJECT_PACKAGES and "as" in tokens:
        return ["import", "_", *tokens[tokens.index("as"):]]
    return tokens


def _imported_names(tokens: list[str]) -> list[str]:
    """One entry per imported name of a top-level import ('from M import a, b as c' -> 'M:a',
    'M:b as c'), so splitting a module adds no new entry when its names were imported before."""
    if tokens[0] == "from":
        module = "".join(tokens[1:tokens.index("import")])
        names = [t for t in tokens[tokens.index("import") + 1:] if t not in "()"]
    else:
        module, names = "", tokens[1:]
    out, current = [], []
    for tok in names + [","]:
        if tok == ",":
            # a plain name from the project binds a definition that is hashed as its own unit;
            # only an alias ('f as g') says something the units do not. Known blind spot: a
            # plain import switched between two project modules that both define that name
            # (e.g. ``validate``) goes unseen -- such an edit also changes the importer's use.
            if current and (module != "_" or "as" in current):
                out.append(module + ":" + " ".join(current))
            current = []
        else:
            current.append(tok)
    return out


def code_units(text: str) -> tuple[list[str], set[str]]:
    """(hashes of the top-level statements, hashes of the top-level imports) of a file.

    A unit is a top-level statement with its body (decorators belong to the following
    definition); nested imports stay in their unit, path-blanked."""
    units: list[list[str]] = []
    imports: set[str] = set()
    pending: list[str] = []  # decorators waiting for their definition
    for depth, tokens in _logical_lines(text):
        norm = _normalise(tokens)
        if norm is None:
            continue
        line = f"{depth}:" + " ".join(norm)
        if depth == 0 and norm[0] in ("import", "from"):
            imports |= {hashlib.sha256(name.encode()).hexdigest() for name in _imported_names(norm)}
        elif depth == 0:
            if pending:
                pending.append(line)
                if norm[0] != "@":
                    units.append(pending)
                    pending = []
            elif norm[0] == "@":
                pending = [line]
            else:
                units.append([line])
        elif units:
            units[-1].append(line)
    if pending:
        units.append(pending)
    return [hashlib.sha256("\n".join(u).encode()).hexdigest() for u in units], imports


def method_modules(root: Path = REPO) -> dict[str, set[str]]:
    """{method name: repository paths of its own module and the method modules it imports}.

    A method module is ``methods/<name>.py`` of a name in the method registry."""
    from bench.spec.listing import method_catalog  # the registry's names, read without importing torch

    names = [spec["name"] for spec in method_catalog()]
    paths = {name: f"methods/{name}.py" for name in names if (root / "methods" / f"{name}.py").is_file()}
    direct: dict[str, set[str]] = {}
    for name, rel in paths.items():
        text = (root / rel).read_text()
        direct[name] = {rel} | {paths[other] for other in paths
                                if other != name and (f"from methods.{other} import" in text
                                                      or f"from methods import {other}" in text)}
    out = {}
    for name in paths:  # transitive closure
        seen, todo = set(), set(direct[name])
        while todo:
            rel = todo.pop()
            if rel not in seen:
                seen.add(rel)
                other = rel.removeprefix("methods/").removesuffix(".py")
                todo |= direct.get(other, set()) - seen
        out[name] = seen
    return out


def code_fingerprints(root: Path = REPO, excluded: Mapping[str, str] | None = None) -> dict[str, str]:
    """Scheme 2: {method: fingerprint (16 hex)} and ``"*"``: the fingerprint of the shared code
    alone (no method module), for jobs of a method without a module of its own."""
    scoped = method_modules(root)
    owned = set().union(*scoped.values()) if scoped else set()
    shared_units: list[str] = []
    shared_imports: set[str] = set()
    per_file: dict[str, tuple[list[str], set[str]]] = {}
    for path in code_files(root, excluded):
        rel = path.relative_to(root).as_posix()
        units, imports = code_units(path.read_text())
        if rel in owned:
            per_file[rel] = (units, imports)
        else:
            shared_units += units
            shared_imports |= imports

    def digest(units: list[str], imports: set[str]) -> str:
        body = "u:" + ",".join(sorted(units)) + "\ni:" + ",".join(sorted(imports))
        return hashlib.sha256(body.encode()).hexdigest()[:16]

    out = {"*": digest(shared_units, shared_imports)}
    for name, files in scoped.items():
        units = list(shared_units) + [u for f in sorted(files) for u in per_file[f][0]]
        imports = set(shared_imports).union(*(per_file[f][1] for f in files))
        out[name] = digest(units, imports)
    return out


def code_fingerprint(root: Path = REPO) -> str:
    """The scheme-2 fingerprint of the shared code alone (every method's records depend on it)."""
    return code_fingerprints(root)["*"]


#: Scheme-1 fingerprints of committed records -> the commit that had that code and the scheme-2
#: fingerprint, per method, of that commit's code. Computed (``python -m bench.run.provenance
#: legacy COMMIT``) and checked against git by tests/test_stale.py, never edited by hand.
LEGACY: dict[str, dict[str, object]] = {
    "03caf1f07af4de37": {"commit": "21a1252", "v2": {
        "*": "8e2b4895b18a6969",
        "baseline": "d709f9c6e0cf4282",
        "asl": "97048723904f93d6",
        "kmcl": "6947cbff810e13ab",
        "probmcl": "2292d4ce5936ea69",
        "csra": "10f6444a377b3ca0",
        "mlgcn": "6c59424c1a098138",
        "imlgcn": "b95f7ac8cc8d4253",
    }},
}


def legacy_equivalent(fingerprint: str, method: str) -> str | None:
    """The scheme-2 fingerprint that a scheme-1 ``fingerprint`` stands for (None: unknown)."""
    entry = LEGACY.get(fingerprint)
    return None if entry is None else entry["v2"].get(method, entry["v2"].get("*"))  # type: ignore[union-attr]


#: The code this process loaded (computed at import, before any training).
_LOADED = (code_fingerprints(), code_file_hashes())


def current_code_fingerprint(method: str | None = None) -> str:
    """The fingerprint of the code this process runs for ``method``'s records (computed when
    this module was imported); ``None``: the shared code alone."""
    fps = _LOADED[0]
    return fps.get(method or "*", fps["*"])


def current_code_files() -> dict[str, str]:
    return dict(_LOADED[1])


def legacy_entry(commit: str) -> tuple[str, dict[str, object]]:
    """(scheme-1 fingerprint, LEGACY entry) of ``commit``'s code, from ``git archive``."""
    import tarfile
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        blob = subprocess.run(["git", "archive", commit, *CODE_DIRS], cwd=REPO, capture_output=True,
                              check=True).stdout
        with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
            tar.extractall(tmp, filter="data")
        root = Path(tmp)
        # that commit's own exclusions (its paths), plus its modules excluded since then
        then = _excluded_of(root)
        now = {**then, **{old: EXCLUDED[new] for old, new in EXCLUDED_SINCE.items()}}
        return code_fingerprint_v1(root, then), {"commit": commit, "v2": code_fingerprints(root, now)}


#: Modules excluded after scheme-1 records were made: {their path then: their path now}.
EXCLUDED_SINCE: dict[str, str] = {"bench/convergence.py": "bench/evaluate/convergence.py"}


def _excluded_of(root: Path) -> dict[str, str]:
    """The EXCLUDED table of the provenance module of the tree at ``root`` (any layout)."""
    import ast

    for rel in ("bench/run/provenance.py", "bench/provenance.py"):
        if (root / rel).is_file():
            for node in ast.parse((root / rel).read_text()).body:
                if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "EXCLUDED":
                    try:
                        return ast.literal_eval(node.value)
                    except ValueError:  # a display with ``**{... for ...}`` over literals: no names, no builtins
                        return eval(compile(ast.Expression(node.value), rel, "eval"), {"__builtins__": {}}, {})
    raise ValueError(f"no EXCLUDED table under {root}")


@functools.lru_cache(maxsize=1)
def git_state() -> tuple[str, bool]:
    """(commit, dirty) of the checkout the code runs from; ("unknown", False) outside git."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                                text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, timeout=10).stdout.strip() != ""
        return commit or "unknown", dirty
    except (OSError, subprocess.SubprocessError):
        return "unknown", False


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def package_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "absent"
    return out


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()


def provenance(device: str, threads: int) -> dict:
    commit, dirty = git_state()
    return {
        "fingerprint_scheme": 2,
        "git_commit": commit, "git_dirty": dirty, "code_fingerprint": current_code_fingerprint(),
        "code_files": current_code_files(), "packages": package_versions(),
        "python": platform.python_version(), "platform": platform.platform(),
        "machine": f"{cpu_model()} x{os.cpu_count()}", "device": device, "threads": threads,
        "mkl_cbwr": os.environ.get("MKL_CBWR"),
    }


if __name__ == "__main__":  # python -m bench.run.provenance legacy COMMIT
    import json
    import sys

    if sys.argv[1:2] == ["legacy"] and len(sys.argv) == 3:
        v1, entry = legacy_entry(sys.argv[2])
        print(json.dumps({v1: entry}, indent=2))
    else:
        print("usage: python -m bench.run.provenance legacy COMMIT", file=sys.stderr)
        sys.exit(2)
