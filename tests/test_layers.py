"""The import graph of both packages, read from the source: no cycle, and layers go one way."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import observable_socket_asgi

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("observable_socket_asgi", "fastapi_adapter")

# Imports under `if TYPE_CHECKING:` count as edges too: an annotation that points upward is
# still a layer that knows the one above it, so a cycle of names used only in annotations
# fails the suite like a run-time one.
COUNT_TYPE_CHECKING = True


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def module_names(package: str) -> dict[str, bool]:
    """Each module of `package`, dotted from the package (`server.connection`), mapped to
    whether it is a package. A folder's `__init__.py` is `server.__init__`; the package's own
    is `__init__`."""
    directory = ROOT / package
    names: dict[str, bool] = {}
    for path in directory.rglob("*.py"):
        parts = path.relative_to(directory).with_suffix("").parts
        names[".".join(parts)] = parts[-1] == "__init__"
    return names


def _resolve(parts: list[str], names: dict[str, bool]) -> str | None:
    """The module a dotted path within the package names: a module, or a folder's `__init__`."""
    dotted = ".".join(parts)
    if dotted in names:
        return dotted
    init = ".".join([*parts, "__init__"])
    return init if init in names else None


def _imports(
    tree: ast.AST,
    package: str,
    module: str,
    names: dict[str, bool],
    type_checking: bool | None = None,
) -> set[str]:
    """Modules of `package` (of `names`) that `module` imports when it runs: at the top, in
    functions, anywhere; relative imports of any level and absolute ones are resolved.

    Imports under `if TYPE_CHECKING:` count unless `COUNT_TYPE_CHECKING` (or `type_checking`)
    says otherwise: they never run, but a type named from a layer above is a dependency on it.
    """
    count_type_checking = COUNT_TYPE_CHECKING if type_checking is None else type_checking
    # the folder `module` sits in, as parts below `package`
    here = module.split(".")[:-1]
    found: set[str] = set()

    def add(start: list[str], aliases: list[str]) -> None:
        for alias in aliases:
            # `from .x import y` names the module x.y if there is one, else a name of x
            target = _resolve([*start, alias], names) or _resolve(start, names)
            if target is not None:
                found.add(target)

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test) and not count_type_checking:
            for statement in node.orelse:
                visit(statement)
            return
        if isinstance(node, ast.ImportFrom):
            aliases = [alias.name for alias in node.names]
            dotted = node.module.split(".") if node.module else []
            if node.level >= 1:
                base = here[: len(here) - (node.level - 1)]
                add([*base, *dotted], aliases)
            elif dotted and dotted[0] == package:
                add(dotted[1:], aliases)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                dotted = alias.name.split(".")
                if dotted[0] == package and len(dotted) > 1:
                    target = _resolve(dotted[1:], names)
                    if target is not None:
                        found.add(target)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    found.discard(module)
    return found


def import_graph(package: str) -> dict[str, set[str]]:
    """Map each module of `package` to the modules of `package` it imports at run time."""
    directory = ROOT / package
    names = module_names(package)
    graph: dict[str, set[str]] = {}
    for name in sorted(names):
        path = directory / (name.replace(".", "/") + ".py")
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        graph[name] = _imports(tree, package, name, names)
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


def folder_of(module: str) -> str:
    """The folder a module lives in: `server/` for `server.connection`, `./` at the top."""
    parts = module.split(".")
    return "/".join(parts[:-1]) + "/" if len(parts) > 1 else "./"


def documented_groups() -> list[tuple[str, list[list[str]]]]:
    """The layers the package docstring lists, lowest first, under their folder headings.

    A line whose first word ends with `/` opens a folder; every other line is one layer.
    """
    doc = observable_socket_asgi.__doc__ or ""
    block = doc.split("Layers, lowest first", 1)[1].split("\n\n", 2)[1]
    groups: list[tuple[str, list[list[str]]]] = []
    for line in block.splitlines():
        names = re.split(r"\s{2,}", line.strip(), maxsplit=1)[0].split()
        if len(names) == 1 and names[0].endswith("/"):
            groups.append((names[0], []))
        else:
            assert groups, f"{line!r} comes before any folder heading"
            groups[-1][1].append(names)
    return groups


def documented_layers() -> list[list[str]]:
    """The layers the package docstring lists, lowest first: one line, one layer."""
    return [layer for _, layers in documented_groups() for layer in layers]


def test_find_cycle_finds_a_lazy_cycle() -> None:
    """The checker itself: an import inside a function closes a cycle like any other."""
    source = "def f():\n    from .b import x\n"
    graph = {"a": _imports(ast.parse(source), "pkg", "a", {"a": False, "b": False}), "b": {"a"}}
    assert find_cycle(graph) == ["a", "b", "a"]


def test_type_checking_imports_can_be_left_out() -> None:
    """With the switch off, imports under `if TYPE_CHECKING:` are not in the graph."""
    source = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import x\n"
    names = {"a": False, "b": False}
    assert _imports(ast.parse(source), "pkg", "a", names, type_checking=False) == set()


def test_the_switch_counts_type_checking_imports(monkeypatch: pytest.MonkeyPatch) -> None:
    """With `COUNT_TYPE_CHECKING` on, a cycle of type-only imports is found like any other."""
    source = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import x\n"
    names = {"a": False, "b": False}
    monkeypatch.setattr(f"{__name__}.COUNT_TYPE_CHECKING", True)
    graph = {"a": _imports(ast.parse(source), "pkg", "a", names), "b": {"a"}}
    assert find_cycle(graph) == ["a", "b", "a"]


def test_relative_and_absolute_imports_resolve_across_folders() -> None:
    """Level 1 and 2 relative imports and absolute ones name the dotted module they reach."""
    names = {
        "__init__": True,
        "envelope": False,
        "server.__init__": True,
        "server.pipeline": False,
        "server.connection": False,
        "observe.__init__": True,
        "observe._top": False,
    }
    source = (
        "from ..envelope import Request\n"
        "from .pipeline import run\n"
        "from ..observe import _top\n"
        "from .. import __version__\n"
        "import pkg.server\n"
        "def f():\n    from pkg.server.pipeline import run\n"
    )
    found = _imports(ast.parse(source), "pkg", "server.connection", names)
    assert found == {"envelope", "server.pipeline", "observe._top", "__init__", "server.__init__"}


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycle(package: str) -> None:
    """No module of the package imports, even lazily, a module that imports it back."""
    assert find_cycle(import_graph(package)) is None


def test_layers_cover_every_module() -> None:
    """Each module of the core is listed in exactly one layer of the package docstring."""
    listed = [name for layer in documented_layers() for name in layer]
    assert len(listed) == len(set(listed)), listed
    assert set(listed) == set(import_graph("observable_socket_asgi"))


def test_each_module_is_listed_under_its_folder() -> None:
    """The folder headings of the docstring tell the truth, and each folder has one block
    (the top of the package opens the list with the core and closes it with the entry points)."""
    groups = documented_groups()
    misplaced = [
        f"{name} under {folder}"
        for folder, layers in groups
        for layer in layers
        for name in layer
        if folder_of(name) != folder
    ]
    assert misplaced == []
    headings = [folder for folder, _ in groups]
    inner = headings[1:-1]
    assert headings[0] == headings[-1] == "./" and len(inner) == len(set(inner)), headings
    assert "./" not in inner, headings


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


def test_no_folder_imports_a_folder_above_it() -> None:
    """A module imports from another folder only if that folder is listed below its own."""
    rank = {
        name: i
        for i, (_, layers) in enumerate(documented_groups())
        for layer in layers
        for name in layer
    }
    upward = sorted(
        f"{module} -> {target}"
        for module, targets in import_graph("observable_socket_asgi").items()
        for target in targets
        if folder_of(target) != folder_of(module) and rank[target] > rank[module]
    )
    assert upward == []


def test_the_client_needs_no_server() -> None:
    """client/ imports nothing from server/ or pubsub/, type-only imports included: a program
    that only talks to a server loads none of the serving machinery."""
    directory = ROOT / "observable_socket_asgi"
    names = module_names("observable_socket_asgi")
    reached = sorted(
        f"{name} -> {target}"
        for name in names
        if name.startswith("client.")
        for target in _imports(
            ast.parse((directory / (name.replace(".", "/") + ".py")).read_text(encoding="utf-8")),
            "observable_socket_asgi",
            name,
            names,
            type_checking=True,
        )
        if target.startswith(("server.", "pubsub."))
    )
    assert reached == []
