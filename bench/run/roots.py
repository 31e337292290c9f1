"""Where results go: the default results root of a suite, the variant file of a ``--set`` run,
and the writability probe every writing command makes before it starts."""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.run.store import DEFAULT_ROOT, Store, atomic_write_json, read_record

VARIANT_FILE = "variant.json"
#: Results root of runs whose records are not the repository's evidence: a suite or sweep with
#: no committed folder under results/ (the README's first try, `bench run --suite smoke`) and
#: every ``--set`` variant. Git-ignored.
LOCAL_ROOT = "results-local"


def resolve_root(given: str | None, suite: str) -> str:
    """The results root of ``suite`` (a suite or sweep name, ``<name>+<hash>`` for a variant):
    ``--results`` when given; otherwise ``results`` for a suite whose records are committed
    there (results/<suite>/ exists), ``results-local`` (git-ignored) for anything else."""
    if given is not None:
        return given
    if "+" not in suite and (DEFAULT_ROOT / suite).is_dir():
        return str(DEFAULT_ROOT)
    return LOCAL_ROOT


def write_variant(root: str | Path, suite: str, overrides: Any, spec: str) -> None:
    """``<root>/<suite>+<hash>/variant.json``: what a ``--set`` run overrode, for the readers."""
    path = Path(root) / suite / VARIANT_FILE
    if not path.exists():
        atomic_write_json(path, {"suite": spec, "overrides": list(overrides)})


def read_variant(root: str | Path, suite: str) -> dict[str, Any] | None:
    return read_record(Path(root) / suite / VARIANT_FILE)


def variant_text(root: str | Path, suite: str) -> str:
    """'default+1a2b3c4d (--set budget.epochs=2)' for a variant folder, the name otherwise."""
    info = read_variant(root, suite) or {}
    sets = info.get("overrides") if isinstance(info.get("overrides"), list) else []
    return suite + (f" (--set {' --set '.join(map(str, sets))})" if sets else "")


def check_writable(folder: str | Path, flag: str = "--results") -> None:
    """A one-line BenchError unless files can be created in ``folder`` (or the nearest existing
    folder above it): a read-only, immutable or full folder, or a file in the way, is found
    before any job starts. Leaves nothing behind."""
    probe = Path(folder)
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        raise BenchError(f"{flag} {folder}: {probe} is a file, not a folder; give a folder with {flag}")
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as err:
        raise BenchError(f"{flag} {folder}: cannot write in {probe} ({err.strerror or err}); "
                         f"give a writable folder with {flag}") from None


def unreadable_line(statuses: Any, store: Store) -> str:
    """One line naming the jobs whose DONE sits beside an unreadable record.json ('' if none)."""
    bad = [st.job for st in statuses if st.state == "incomplete" and store.job_dir(st.job).done_file.exists()]
    if not bad:
        return ""
    first = store.job_dir(bad[0]).record_file
    return (f"{len(bad)} record(s) unreadable (corrupt record.json, e.g. {first}): not results; "
            "`bench run` retrains them")
