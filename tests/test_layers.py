"""The import graph of both packages, read from the source: no cycle, and layers go one way."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import observable_socket_asgi

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("observable_socket_asgi", "fastapi_adapter")


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, package: str, module: str) -> set[str]:
    """Sibling modules `module` imports when it runs: at the top, in functions, anywhere.

    Imports under `if TYPE_CHECKING:` are left out: they are never executed, so they cannot
    take part in a cycle; they only name types for annotations.
    """
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for statement in node.orelse:
                visit(statement)
            return
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:
                if node.module:
                    found.add(node.module.split(".")[0])
                else:
                    found.update(alias.name for alias in node.names)
            elif node.level == 0 and node.module and node.module.split(".")[0] == package:
                parts = node.module.split(".")
                if len(parts) > 1:
                    found.add(parts[1])
                else:
                    found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == package and len(parts) > 1:
                    found.add(parts[1])
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    found.discard(module)
    return found


def import_graph(package: str) -> dict[str, set[str]]:
    """Map each module of `package` to the sibling modules it imports at run time."""
    directory = ROOT / package
    modules = {path.stem for path in directory.glob("*.py")}
    graph: dict[str, set[str]] = {}
    for path in sorted(directory.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        graph[path.stem] = _imports(tree, package, path.stem) & modules
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """Return one import cycle as a path `[a, b, ..., a]`, or None."""
    done: set[str] = set()
    stack: list[str] = []
    on_stack: set[str] = set()

    def visit(node: str) -> list[str] | None:
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt in on_stack:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in done:
                cycle = visit(nxt)
                if cycle is not None:
                    return cycle
        stack.pop()
        on_stack.discard(node)
        done.add(node)
        return None

    for node in sorted(graph):
        if node not in done:
            cycle = visit(node)
            if cycle is not None:
                return cycle
    return None


def documented_layers() -> list[list[str]]:
    """The layers the package docstring lists, lowest first: one line, one layer."""
    doc = observable_socket_asgi.__doc__ or ""
    block = doc.split("Layers, lowest first", 1)[1].split("\n\n", 2)[1]
    layers = []
    for line in block.splitlines():
        names = re.split(r"\s{2,}", line.strip(), maxsplit=1)[0]
        layers.append(names.split())
    return layers


def test_find_cycle_finds_a_lazy_cycle() -> None:
    """The checker itself: an import inside a function closes a cycle like any other."""
    source = "def f():\n    from .b import x\n"
    graph = {"a": _imports(ast.parse(source), "pkg", "a"), "b": {"a"}}
    assert find_cycle(graph) == ["a", "b", "a"]


def test_type_checking_imports_are_not_edges() -> None:
    """Imports under `if TYPE_CHECKING:` never run, so they are not in the graph."""
    source = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import x\n"
    assert _imports(ast.parse(source), "pkg", "a") == set()


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycle(package: str) -> None:
    """No module of the package imports, even lazily, a module that imports it back."""
    assert find_cycle(import_graph(package)) is None


def test_layers_cover_every_module() -> None:
    """Each module of the core is listed in exactly one layer of the package docstring."""
    listed = [name for layer in documented_layers() for name in layer]
    assert len(listed) == len(set(listed)), listed
    assert set(listed) == set(import_graph("observable_socket_asgi"))


def test_imports_go_down_the_layers() -> None:
    """A module imports only modules of the layers below its own, as the docstring says."""
    level = {name: i for i, layer in enumerate(documented_layers()) for name in layer}
    upward = sorted(
        f"{module} -> {target}"
        for module, targets in import_graph("observable_socket_asgi").items()
        for target in targets
        if level[target] >= level[module]
    )
    assert upward == []
