"""Layout rules import-linter cannot state: no import cycles, and rooms of a readable size.

The layer contracts themselves live in ``pyproject.toml`` (``lint-imports``); these tests add
what a layers contract does not see: a cycle between two modules of the same layer, and a class
or function grown too large to review (docs/architecture.md, "Rules of the layout").
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("owm_core", "owm_adapters", "owm_cli", "owm_server")
GENERATED = "owm_adapters.control_plane.grpc_gen"
MAX_CLASS_LINES = 300
MAX_FUNCTION_LINES = 80


def import_cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    modules = sorted(m for m in graph.modules if not m.startswith(GENERATED))
    edges = {m: sorted(graph.find_modules_directly_imported_by(m) & set(modules)) for m in modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    for start in modules:
        if start in index:
            continue
        work = [(start, iter(edges[start]))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        cycles.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(edges[child])))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return cycles


def test_no_module_of_owm_imports_a_module_that_imports_it_back() -> None:
    # grimp reads every import statement, function-local and TYPE_CHECKING ones included, so a
    # cycle hidden behind a lazy import is still found.
    graph = grimp.build_graph(*PACKAGES)
    assert import_cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle_hidden_behind_a_function_local_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "circle_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from circle_pkg import b\n")
    (package / "b.py").write_text("def late():\n    from circle_pkg import c\n")
    (package / "c.py").write_text("import circle_pkg.a\n")
    (package / "d.py").write_text("import circle_pkg.a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    graph = grimp.build_graph("circle_pkg", cache_dir=None)
    assert import_cycles(graph) == [["circle_pkg.a", "circle_pkg.b", "circle_pkg.c"]]


def _sources() -> Iterator[Path]:
    for package in ("owm_core", "owm_adapters", "owm_server"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if "grpc_gen" not in path.parts:
                yield path


def oversized(tree: ast.AST, where: str) -> list[str]:
    """Classes over 300 lines and functions over 80 lines, as ``where:line name (n lines)``."""
    found = []
    for node in ast.walk(tree):
        limit = None
        if isinstance(node, ast.ClassDef):
            limit = MAX_CLASS_LINES
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            limit = MAX_FUNCTION_LINES
        if limit is not None and node.end_lineno is not None:
            lines = node.end_lineno - node.lineno + 1
            if lines > limit:
                found.append(f"{where}:{node.lineno} {node.name} ({lines} lines)")
    return found


def test_no_class_is_over_300_lines_and_no_function_over_80() -> None:
    found = []
    for path in _sources():
        found += oversized(ast.parse(path.read_text()), str(path.relative_to(ROOT)))
    assert found == []


def test_the_size_rule_counts_a_function_body_of_81_lines_as_too_long() -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(80))
    assert oversized(ast.parse(f"def long():\n{body}\n"), "m.py") == ["m.py:1 long (81 lines)"]
    assert oversized(ast.parse(f"def fits():\n{body[: body.rindex(chr(10))]}\n"), "m.py") == []


def test_the_ports_declare_interfaces_only() -> None:
    # The values a port carries live in their bounded context (owm_core/<context>/), so the
    # domain never imports a port to get a value.
    found = []
    for path in sorted((ROOT / "owm_core" / "ports").rglob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ClassDef):
                bases = {ast.unparse(base) for base in node.bases}
                if not bases & {"Protocol", "typing.Protocol"}:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} class {node.name}")
            elif isinstance(node, ast.Assign | ast.AnnAssign | ast.FunctionDef):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {ast.unparse(node)[:40]}")
    assert found == []
