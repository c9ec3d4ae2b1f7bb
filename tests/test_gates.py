"""The gates of scripts/test fail when what they check is broken: each is run here on a private
copy of the tree with one deliberate fault in it."""

from __future__ import annotations

import inspect
import os
import re
import shutil
import subprocess
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

from observable_socket_asgi import SocketRouter
from tests.helpers import PROCESS_TIMEOUT
from tests.wheel_smoke import missing_from_wheel

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "observable_socket_asgi"


def tree_copy(tmp_path: Path, *names: str) -> Path:
    """A copy of the repository's `names` under `tmp_path`, sharing the environment the
    scripts use (.venv, or OBSERVABLE_SOCKET_VENV's under scripts/test-latest)."""
    copy = tmp_path / "tree"
    copy.mkdir()
    for name in names:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, copy / name)
    venv = os.environ.get("OBSERVABLE_SOCKET_VENV", ".venv")
    if not Path(venv).is_absolute():
        (copy / venv).symlink_to(ROOT / venv)
    return copy


def gate(copy: Path, script: str) -> subprocess.CompletedProcess[str]:
    """Run the copy's scripts/`script` as scripts/test runs it (installed already)."""
    return subprocess.run(
        [str(copy / "scripts" / script)],
        capture_output=True,
        text=True,
        timeout=PROCESS_TIMEOUT,
        cwd=copy,
        env={**os.environ, "OBSERVABLE_SOCKET_NO_INSTALL": "1"},
    )


def test_scripts_test_runs_the_docs_gate_without_quiet() -> None:
    """scripts/test builds the docs through scripts/docs, which never passes --quiet (with it,
    strict mode counts no warning)."""
    assert "./scripts/docs" in (ROOT / "scripts" / "test").read_text()
    docs = (ROOT / "scripts" / "docs").read_text()
    command = next(line for line in docs.splitlines() if '/bin/mkdocs" build' in line)
    assert "--strict" in command
    assert "--quiet" not in command and " -q" not in command


def test_the_docs_gate_fails_on_a_docstring_griffe_cannot_read(tmp_path: Path) -> None:
    """A parameter documented in SocketRouter's docstring but absent from its signature (what
    a line naming two parameters at once amounts to) fails the docs build, naming the line."""
    copy = tree_copy(
        tmp_path, "mkdocs.yml", "docs", "observable_socket_asgi", "fastapi_adapter", "scripts"
    )
    source = Path(inspect.getsourcefile(SocketRouter) or "")
    module = copy / source.relative_to(ROOT)
    lines = module.read_text(encoding="utf-8").splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.startswith("class SocketRouter"))
    args = next(i for i in range(start, len(lines)) if lines[i].strip() == "Args:")
    indent = lines[args][: lines[args].index("Args:")] + "    "
    lines.insert(args + 1, f"{indent}first_limit, second_limit: two parameters on one line.\n")
    module.write_text("".join(lines), encoding="utf-8")

    result = gate(copy, "docs")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "first_limit, second_limit" in output
    assert "strict mode" in output


def wheel_of(tmp_path: Path, names: list[str], entry_points: str) -> Path:
    wheel = tmp_path / "observable_socket_asgi-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name in names:
            archive.writestr(name, "")
        archive.writestr("observable_socket_asgi-0.1.0.dist-info/entry_points.txt", entry_points)
    return wheel


ENTRY_POINTS = """\
[console_scripts]
observable-socket = observable_socket_asgi.__main__:main

[pytest11]
observable_socket = observable_socket_asgi._pytest_plugin
"""


def test_the_wheel_check_names_each_file_the_wheel_lacks(tmp_path: Path) -> None:
    """scripts/test-wheel fails on a wheel without a tracked package file (package data,
    py.typed) or without an entry point; a complete one passes."""
    tracked = [
        "observable_socket_asgi/__init__.py",
        "observable_socket_asgi/py.typed",
        "observable_socket_asgi/static/page.html",
        "fastapi_adapter/py.typed",
    ]
    complete = wheel_of(tmp_path, tracked, ENTRY_POINTS)
    assert missing_from_wheel(complete, tracked) == []

    (tmp_path / "partial").mkdir()
    partial = wheel_of(
        tmp_path / "partial", tracked[:1] + tracked[3:], ENTRY_POINTS.split("\n\n")[0]
    )
    assert missing_from_wheel(partial, tracked) == [
        "observable_socket_asgi/py.typed",
        "observable_socket_asgi/static/page.html",
        "entry point [pytest11] observable_socket = observable_socket_asgi._pytest_plugin",
    ]


def test_scripts_test_runs_the_wheel_check() -> None:
    """The wheel check is one of scripts/test's gates, and it builds, checks and installs."""
    assert "./scripts/test-wheel" in (ROOT / "scripts" / "test").read_text()
    script = (ROOT / "scripts" / "test-wheel").read_text()
    for step in ("-m build", "twine check --strict", "-m venv", "wheel_smoke.py"):
        assert step in script


def lock_pins() -> dict[str, str]:
    """requirements/lock.txt's pins: normalised name -> version (markers aside)."""
    pins: dict[str, str] = {}
    for line in (ROOT / "requirements" / "lock.txt").read_text().splitlines():
        if line and not line.startswith((" ", "#")):
            name, _, version = line.split(";")[0].strip().partition("==")
            pins[canonical(name)] = version
    return pins


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_lock_pins_every_dependency_of_every_extra() -> None:
    """Each requirement of the project and of each extra, and the installers, has a pin:
    a dependency added without running scripts/lock fails here."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"])
    for requirements in project["optional-dependencies"].values():
        wanted += requirements
    tools = (ROOT / "requirements" / "tools.in").read_text().splitlines()
    wanted += [line.split("#")[0].strip() for line in tools]
    wanted = [req for req in wanted if req]
    names = {canonical(re.split(r"[\s<>=!~\[;]", req, maxsplit=1)[0]) for req in wanted}
    missing = sorted(n for n in names if n not in lock_pins())
    assert missing == [], f"not in requirements/lock.txt (run scripts/lock): {missing}"


def test_every_script_that_installs_takes_the_lock() -> None:
    """The scripts that install the suite's environments constrain pip with the lock."""
    scripts = ("install", "test-pythons", "test-fastapi-oldest", "test-django-lts", "test-wheel")
    for script in scripts:
        text = (ROOT / "scripts" / script).read_text()
        assert "requirements/lock.txt" in text, script
    assert '-c "$lock"' in (ROOT / "scripts" / "install").read_text()


def test_the_tools_running_now_are_the_locked_ones() -> None:
    """The checkers and the docs build run at the versions the lock pins (scripts/test-latest
    alone runs them unlocked, and says so with OBSERVABLE_SOCKET_UNLOCKED=1)."""
    if os.environ.get("OBSERVABLE_SOCKET_UNLOCKED") == "1":
        pytest.skip("scripts/test-latest: the newest releases, not the lock")
    pins = lock_pins()
    checked = []
    for tool in ("ruff", "mypy", "pytest", "mkdocs", "mkdocstrings", "mkdocstrings-python"):
        try:
            version = metadata.version(tool)
        except metadata.PackageNotFoundError:
            # the other Pythons' environments run the suite only: no docs build, no checkers
            continue
        assert version == pins[tool], tool
        checked.append(tool)
    assert "pytest" in checked


#: a command of a shell block that runs a tool of the project's environment by its bare name
BARE_TOOL = re.compile(
    r"^(?:\$ )?(?:\w+=\S+\s+)*(uvicorn|python|pip3?|observable-socket|mkdocs|pytest)\b"
)


def test_shell_blocks_run_the_clones_tools_through_dot_venv() -> None:
    """Every documented command runs the clone's tools as `.venv/bin/TOOL`, as the README and
    getting started do, never by a bare name that works only in an activated environment."""
    from tests.test_docs import PAGES, blocks_of

    bare = [
        f"{block.id}: {line.strip()}"
        for page in PAGES
        for block in blocks_of(page)
        if block.lang in ("bash", "console")
        for line in block.code.splitlines()
        if BARE_TOOL.match(line.strip())
    ]
    assert bare == []
