"""The resume / idempotency / presence page (docs/resume.md) runs as written.

Its `# name.py` blocks are written to a temporary directory; the test module among them runs
under pytest; the client script runs against the module's router served by real uvicorn (the
`<!-- serve: module:attr -->` comment names it, and `127.0.0.1:8000` is rewritten to the free
port); the JS recipe is checked by `node --check`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import MS, free_socket

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
CONFTEST = """
import asyncio, inspect
import pytest

@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    if inspect.iscoroutinefunction(pyfuncitem.obj):
        names = pyfuncitem._fixtureinfo.argnames
        asyncio.run(pyfuncitem.obj(**{n: pyfuncitem.funcargs[n] for n in names}))
        return True
    return None
"""


def blocks() -> list[tuple[str, str, str]]:
    """(language, the comment line before the fence, code) of every block in the section."""
    text = (ROOT / "docs" / "resume.md").read_text()
    section = text[text.index("<!-- BEGIN:resume -->") : text.index("<!-- END:resume -->")]
    found = []
    for match in re.finditer(r"((?:<!--[^\n]*-->\n)?)```(\w+)\n(.*?)\n```", section, re.S):
        found.append((match.group(2), match.group(1).strip(), match.group(3)))
    return found


@pytest.fixture
def page(tmp_path: Path) -> Path:
    """The section's modules, written where its scripts and tests import them from."""
    for language, _, code in blocks():
        first = code.splitlines()[0]
        if language == "python" and re.fullmatch(r"# \w+\.py", first):
            (tmp_path / first[2:]).write_text(code)
    (tmp_path / "conftest.py").write_text(CONFTEST)
    return tmp_path


def env(directory: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(directory), str(ROOT)])}


def test_section_has_what_it_promises() -> None:
    """An app module, a test module, a served client script and the JS recipe."""
    kinds = [(lang, code.splitlines()[0]) for lang, _, code in blocks()]
    assert ("python", "# rooms.py") in kinds and ("python", "# test_rooms.py") in kinds
    assert [lang for lang, _ in kinds].count("js") == 1
    assert any(comment == "<!-- serve: rooms:router -->" for _, comment, _ in blocks())


def test_the_test_module_passes(page: Path) -> None:
    """The page's test of a resume passes under pytest."""
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_rooms.py"],
        cwd=page,
        env=env(page),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert " passed" in proc.stdout


def test_the_client_script_runs_against_the_served_router(page: Path) -> None:
    """The Python client script exits 0 against the section's router on real uvicorn."""
    ((_, comment, script),) = [b for b in blocks() if b[1].startswith("<!-- serve:")]
    target = comment.removeprefix("<!-- serve: ").removesuffix(" -->")
    sock = free_socket()
    port = sock.getsockname()[1]
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            target,
            "--fd",
            str(sock.fileno()),
            "--log-level",
            "warning",
        ],
        cwd=page,
        env=env(page),
        pass_fds=[sock.fileno()],
    )
    try:
        code = script.replace("127.0.0.1:8000", f"127.0.0.1:{port}")
        proc = subprocess.run(
            [sys.executable, "-c", code],
            cwd=page,
            env=env(page),
            capture_output=True,
            text=True,
            timeout=max(30.0, 30_000 * MS),
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "position 0" in proc.stdout
    finally:
        server.terminate()
        server.wait(10)
        sock.close()


def test_the_js_recipe_parses(tmp_path: Path) -> None:
    """The JS client recipe is valid JavaScript (`node --check`)."""
    node = shutil.which("node")
    if node is None:
        if os.environ.get("OBSERVABLE_SOCKET_REQUIRE_NODE") == "1":
            pytest.fail("node is required here (OBSERVABLE_SOCKET_REQUIRE_NODE=1)")
        pytest.skip("node not found: apt-get install nodejs")
    ((_, _, code),) = [b for b in blocks() if b[0] == "js"]
    path = tmp_path / "recipe.mjs"
    path.write_text(code)
    proc = subprocess.run([node, "--check", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
