"""Method and module facts read from the source without importing it (the method modules import
torch): the registry's listing (``method_catalog``: name, paper, summary, defaults, searchable
keys) and top-level literals (``source_value``). Each falls back to the import, or raises
_NotLiteral, where the source does not hold a plain literal; tests/test_cli_fast.py checks that
what is read equals what the import gives."""
from __future__ import annotations

import ast
import operator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


class _NotLiteral(Exception):
    pass


_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.Pow: operator.pow, ast.USub: operator.neg, ast.UAdd: operator.pos}


def _literal(node: ast.AST, env: dict[str, Any]) -> Any:
    """The value of a literal expression (constants, containers, arithmetic, names bound to
    literals in the same module); _NotLiteral otherwise."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name) and node.id in env:
        return env[node.id]
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_literal(e, env) for e in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    if isinstance(node, ast.Dict) and None not in node.keys:
        return {_literal(k, env): _literal(v, env) for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        return _OPS[type(node.op)](_literal(node.left, env), _literal(node.right, env))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _OPS:
        return _OPS[type(node.op)](_literal(node.operand, env))
    raise _NotLiteral(ast.dump(node)[:60])


def _module_catalog(path: Path) -> list[dict[str, Any]]:
    tree = ast.parse(path.read_text())
    env: dict[str, Any] = {}
    dict_keys: dict[str, list[Any]] = {}
    specs = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if isinstance(node.value, ast.Dict) and None not in node.value.keys:
                dict_keys[name] = [_literal(k, env) for k in node.value.keys]
            try:
                env[name] = _literal(node.value, env)
            except _NotLiteral:
                env.pop(name, None)
        call = node.value if isinstance(node, (ast.Assign, ast.Expr)) else None
        if (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "register"
                and call.args and isinstance(call.args[0], ast.Call)):
            kw = {k.arg: k.value for k in call.args[0].keywords}
            space = kw.get("search_space")
            keys = ([] if space is None else dict_keys[space.id] if isinstance(space, ast.Name)
                    and space.id in dict_keys else list(_literal(space, env)))
            specs.append({"name": _literal(kw["name"], env), "paper": _literal(kw["paper"], env),
                          "summary": _literal(kw["summary"], env),
                          "defaults": dict(_literal(kw["defaults"], env)), "searchable": keys})
    return specs


def method_catalog() -> list[dict[str, Any]]:
    """[{name, paper, summary, defaults, searchable}] of every registered method, in the
    registry's order, read from methods/*.py; the imported registry where that is not literal."""
    try:
        init = ast.parse((REPO / "methods" / "__init__.py").read_text())
        modules = next(_literal(n.value, {}) for n in init.body if isinstance(n, ast.Assign)
                       and getattr(n.targets[0], "id", "") == "_MODULES")
        out = [spec for m in modules for spec in _module_catalog(REPO / "methods" / f"{m}.py")]
        if not out:
            raise _NotLiteral("no register(MethodSpec(...)) call found")
        return out
    except (_NotLiteral, KeyError, StopIteration, OSError, SyntaxError, TypeError):
        import methods  # the registry itself (imports torch)

        return [{"name": n, "paper": s.paper, "summary": s.summary, "defaults": dict(s.defaults),
                 "searchable": list(s.search_space)} for n in methods.names() for s in [methods.get(n)]]


def source_value(module: str, name: str) -> tuple[Any, ...]:
    """The keys (a dict) or items (a tuple, list) of the top-level literal ``name`` of ``module``,
    read from its source."""
    tree = ast.parse((REPO / (module.replace(".", "/") + ".py")).read_text())
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) else getattr(node, "target", None)
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and getattr(target, "id", "") == name and node.value:
            if isinstance(node.value, ast.Dict):
                return tuple(_literal(k, {}) for k in node.value.keys)
            return tuple(_literal(node.value, {}))
    raise _NotLiteral(f"{module}.{name}")
