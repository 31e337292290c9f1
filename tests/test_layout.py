"""The layout docs/architecture.md describes: flow-stage packages, no import circles, small files.

Static (ast) import graph of every module under bench/ and methods/, lazy imports inside
functions included: a circle there is a circle in the design even when Python tolerates it.
"""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MAX_LINES = 450
MAX_TOP_LEVEL = 8


def _modules() -> dict[str, Path]:
    out = {}
    for folder in ("bench", "methods"):
        for path in sorted((REPO / folder).rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            name = ".".join(path.relative_to(REPO).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = path
    return out


def import_graph() -> dict[str, set[str]]:
    """{module: project modules it imports} (``from pkg import mod`` counts as pkg.mod)."""
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            for target in targets:
                while target and target not in mods:
                    target = target.rpartition(".")[0]
                if target and target != name and not name.startswith(target + "."):
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_circles():
    found = cycles(import_graph())
    assert not found, "import circles: " + "; ".join(" <-> ".join(c) for c in found)


def test_cycle_finder_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_errors_module_imports_nothing_of_the_project():
    assert import_graph()["bench.errors"] == set()


def test_no_file_past_the_limit():
    long = {p.relative_to(REPO).as_posix(): n for p in _modules().values()
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"files past {MAX_LINES} lines: {long}"


def test_few_top_level_modules():
    top = sorted(p.name for p in (REPO / "bench").glob("*.py") if p.name != "__init__.py")
    assert len(top) <= MAX_TOP_LEVEL, top


def test_architecture_page_names_every_package():
    page = (REPO / "docs" / "architecture.md").read_text()
    packages = sorted(p.name for p in (REPO / "bench").iterdir()
                      if p.is_dir() and (p / "__init__.py").exists())
    missing = [p for p in packages if f"bench/{p}/" not in page]
    assert not missing, f"docs/architecture.md does not describe {missing}"


def test_methods_never_import_the_harness():
    graph = import_graph()
    bad = {m: sorted(t for t in ts if t.startswith("bench")) for m, ts in graph.items()
           if m.startswith("methods") and any(t.startswith("bench") for t in ts)}
    assert not bad, bad


#: bench/report/'s packages, in the order of the report's pipeline (issue #26; docs/architecture.md).
REPORT_STAGES = ("collect", "ledger", "findings", "figures", "pages")


def _top_level_imports(path: Path) -> set[str]:
    """Project modules imported at module level (not inside a function)."""
    out = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
    return out


def test_report_tree_is_the_pipeline():
    """bench/report/ holds one package per stage (collect -> ledger -> findings -> figures ->
    pages) and build.py, which runs them; every rule and check of the ledger is in ledger/; a
    stage imports only itself and earlier stages at module level (a figure drawn by an earlier
    stage takes figures.plots' rendering helpers inside the function that draws it)."""
    report = REPO / "bench" / "report"
    assert sorted(p.name for p in report.iterdir() if (p / "__init__.py").is_file()) == sorted(REPORT_STAGES)
    assert sorted(p.name for p in report.glob("*.py")) == ["__init__.py", "build.py"]
    ledger = [p.relative_to(report).as_posix() for p in report.rglob("*.py")
              if p.stem.startswith(("check", "claim", "rule"))]
    assert ledger and all(p.startswith("ledger/") for p in ledger), ledger
    rank = {stage: i for i, stage in enumerate(REPORT_STAGES)}
    late = []
    for stage in REPORT_STAGES:
        for path in sorted((report / stage).glob("*.py")):
            for target in _top_level_imports(path):
                parts = target.split(".")
                if parts[:2] == ["bench", "report"] and len(parts) > 2 and rank.get(parts[2], -1) > rank[stage]:
                    late.append(f"{stage}/{path.name} imports {target}")
    assert not late, late
    page = (REPO / "docs" / "architecture.md").read_text()
    assert [s for s in REPORT_STAGES if f"bench/report/{s}/" not in page] == []
