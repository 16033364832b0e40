"""The package's shape: stages you can see in ``ls harness/``, imports that run one way."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import harness

PACKAGE = Path(harness.__file__).parent


def _modules(root: Path) -> dict[str, Path]:
    """Every module of the package at ``root``, by dotted name (a package by its ``__init__``)."""
    out = {}
    for file in root.rglob("*.py"):
        parts = list(file.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = file
    return out


def _type_checking_only(tree: ast.AST) -> set[int]:
    """Nodes under ``if TYPE_CHECKING:``: type-only imports make no runtime cycle."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else test.attr if isinstance(test, ast.Attribute) else ""
            if name == "TYPE_CHECKING":
                skip.update(id(n) for sub in node.body for n in ast.walk(sub))
    return skip


def import_graph(root: Path) -> dict[str, set[str]]:
    """Which modules of the package each module imports, function-level imports included."""
    modules = _modules(root)

    def owner(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, file in modules.items():
        base = name.split(".") if file.name == "__init__.py" else name.split(".")[:-1]
        tree = ast.parse(file.read_text())
        skip = _type_checking_only(tree)
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                prefix = base[: len(base) - node.level + 1] if node.level else []
                module = ".".join([*prefix, *([node.module] if node.module else [])])
                # `from pkg import submodule` depends on the submodule, not on the package's __init__
                subs = [f"{module}.{a.name}" for a in node.names if f"{module}.{a.name}" in modules]
                targets = subs + ([module] if len(subs) < len(node.names) else [])
            for target in targets:
                found = owner(target) if target.split(".")[0] == root.name else None
                if found and found != name:
                    graph[name].add(found)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_package_has_no_import_cycle() -> None:
    """No module of ``harness`` reaches itself through its imports, function-level ones included."""
    graph = import_graph(PACKAGE)
    assert len(graph) > 30  # every module was read
    assert cycles(graph) == []


def test_a_function_level_import_cycle_is_found(tmp_path: Path) -> None:
    """The cycle count sees an import inside a function, and ignores one under ``TYPE_CHECKING``."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.sub import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from ..a import x\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\n")
    (pkg / "d.py").write_text("from pkg import c\n")
    assert cycles(import_graph(pkg)) == [["pkg.a", "pkg.sub.b"]]


def test_stages_are_folders_that_shadow_no_public_name() -> None:
    """``ls harness/`` shows the pipeline; no sub-package hides a public name or sits beside a same-named module."""
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    assert {"scenario", "run", "checking", "policies", "report"} <= packages
    assert packages.isdisjoint(harness.__all__)
    assert packages.isdisjoint(modules)


@pytest.mark.parametrize("name", ["harness.policies", "harness.generators"])
def test_documented_import_paths_work(name: str) -> None:
    """The import paths the README documents still import."""
    module = __import__(name, fromlist=["_"])
    assert module.__name__ == name
