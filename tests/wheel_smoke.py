"""The wheel as shipped, used from a virtual environment that holds it alone.

scripts/test-wheel builds the sdist and the wheel, installs the wheel (and the extras this
needs, from the lock) into a fresh virtual environment, then runs this file with that
environment's Python from a scratch directory away from the clone, so nothing here can be
imported from the source tree. It fails when a file is missing from the wheel: a module or
package data (every file git tracks in the packages), `py.typed`, the `observable-socket`
script or the pytest plugin's entry point; and it runs what a user runs first: the CLI, the
demo, a page the router serves over plain HTTP, and a test under the pytest plugin.

Usage: python wheel_smoke.py WHEEL TRACKED_LIST EXAMPLES_DIR  (stdlib only, and the wheel)
"""

from __future__ import annotations

import configparser
import contextlib
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

#: a bound on each step (an interpreter start, a server start, an answer); generous: shared
STEP_TIMEOUT = 120.0
PACKAGES = ("observable_socket_asgi", "fastapi_adapter")
ENTRY_POINTS = {
    "console_scripts": ("observable-socket", "observable_socket_asgi.__main__:main"),
    "pytest11": ("observable_socket", "observable_socket_asgi._pytest_plugin"),
}


def missing_from_wheel(wheel: Path, tracked: list[str]) -> list[str]:
    """What the wheel lacks: each tracked package file not in it, and each entry point not
    declared as pyproject.toml declares it."""
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next((n for n in names if n.endswith(".dist-info/entry_points.txt")), None)
        declared = configparser.ConfigParser()
        if entry_points is not None:
            declared.read_string(archive.read(entry_points).decode("utf-8"))
    missing = sorted(
        path
        for path in tracked
        if path.startswith(tuple(f"{p}/" for p in PACKAGES)) and path not in names
    )
    for group, (name, target) in ENTRY_POINTS.items():
        if not declared.has_option(group, name) or declared.get(group, name) != target:
            missing.append(f"entry point [{group}] {name} = {target}")
    return missing


def lines_of(proc: subprocess.Popen[str]) -> queue.Queue[str]:
    """The process's output, line by line, read on a thread so a wait can have a deadline."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def wait_for(lines: queue.Queue[str], pattern: str) -> re.Match[str]:
    """The first line matching `pattern`; fail after STEP_TIMEOUT without one."""
    seen: list[str] = []
    while True:
        try:
            line = lines.get(timeout=STEP_TIMEOUT)
        except queue.Empty:
            raise AssertionError(f"no line matching {pattern!r} in:\n{''.join(seen)}") from None
        seen.append(line)
        match = re.search(pattern, line)
        if match:
            return match


@contextlib.contextmanager
def started(args: list[str], cwd: Path) -> Iterator[queue.Queue[str]]:
    """A process with stdout and stderr merged, interrupted (Ctrl-C) and reaped at the end."""
    proc = subprocess.Popen(
        args,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        yield lines_of(proc)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(STEP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run(args: list[str], cwd: Path) -> str:
    """Run a command to completion; its stdout, or fail with everything it printed."""
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=STEP_TIMEOUT)
    if result.returncode != 0:
        raise AssertionError(f"{args} exited {result.returncode}:\n{result.stdout}{result.stderr}")
    return result.stdout


def check_installed(scratch: Path) -> None:
    """The packages come from the environment, not a source tree, with py.typed beside them."""
    import importlib.util

    import observable_socket_asgi

    for package in PACKAGES:
        # found, not imported: fastapi_adapter needs the fastapi extra to import
        spec = importlib.util.find_spec(package)
        assert spec is not None and spec.origin is not None, f"{package} is not installed"
        location = Path(spec.origin).resolve().parent
        assert Path(sys.prefix).resolve() in location.parents, f"{package} is at {location}"
        assert (location / "py.typed").is_file(), f"{package}/py.typed is not installed"
    print(f"installed: observable-socket-asgi {observable_socket_asgi.__version__} in {sys.prefix}")


def check_cli(scratch: Path) -> None:
    """The `observable-socket` script is installed and runs."""
    import observable_socket_asgi

    script = Path(sys.executable).with_name("observable-socket")
    out = run([str(script), "--help"], scratch)
    assert "serve" in out and "call" in out, out
    version = run([str(script), "--version"], scratch).strip()
    assert version == f"observable-socket {observable_socket_asgi.__version__}", version
    print(f"cli: observable-socket --help, --version ({version})")


def check_demo(scratch: Path, examples: Path) -> None:
    """The demo (examples/, which the wheel does not ship) runs on the installed package and
    answers the CLI's call."""
    shutil.copytree(examples, scratch / "examples", ignore=shutil.ignore_patterns("*.db"))
    demo = [sys.executable, "-m", "examples.app", "--port", "0"]
    with started(demo, scratch) as lines:
        url = wait_for(lines, r"(ws://127\.0\.0\.1:\d+/ws)").group(1)
        script = str(Path(sys.executable).with_name("observable-socket"))
        answer = json.loads(run([script, "call", url, "math/sum", "[1, 2, 3, 4]"], scratch))
        assert answer["payload"] == {"sum": 10}, answer
    print(f"demo: python -m examples.app answered math/sum at {url}")


SERVED_APP = """\
from observable_socket_asgi import SocketRouter

router = SocketRouter(
    asyncapi_url="/asyncapi.json", metrics_url="/metrics", explorer_url="/explorer"
)


@router.route("math/sum")
async def total(ws, headers, payload):
    return {"payload": {"sum": sum(payload)}}
"""


def check_served_pages(scratch: Path) -> None:
    """`observable-socket serve` serves a router whose plain-HTTP pages answer."""
    (scratch / "served_app.py").write_text(SERVED_APP, encoding="utf-8")
    script = str(Path(sys.executable).with_name("observable-socket"))
    with started([script, "serve", "served_app:router", "--port", "0"], scratch) as lines:
        base = wait_for(lines, r"running on (http://127\.0\.0\.1:\d+)").group(1)
        with urllib.request.urlopen(f"{base}/asyncapi.json", timeout=STEP_TIMEOUT) as page:
            document = json.loads(page.read())
        assert "math/sum" in json.dumps(document), document
        with urllib.request.urlopen(f"{base}/metrics", timeout=STEP_TIMEOUT) as page:
            metrics = page.read().decode("utf-8")
        assert "observable_socket" in metrics, metrics[:500]
        # the explorer's page and every file it loads: package data, read from the wheel
        with urllib.request.urlopen(f"{base}/explorer", timeout=STEP_TIMEOUT) as page:
            html = page.read().decode("utf-8")
        assert 'data-role="payload"' in html, html[:500]
        assets = re.findall(r'(?:href|src)="(/explorer/[^"?]+)', html)
        assert len(assets) >= 3, assets
        for asset in assets:
            with urllib.request.urlopen(f"{base}{asset}", timeout=STEP_TIMEOUT) as page:
                assert page.status == 200 and page.read(), asset
    print(f"served pages: {base}/asyncapi.json, /metrics, /explorer and {len(assets)} files")


PLUGIN_TEST = """\
import pytest

from observable_socket_asgi import SocketRouter
from observable_socket_asgi.testing import TestClient

router = SocketRouter()


@router.route("math/sum")
async def total(ws, headers, payload):
    return {"payload": {"sum": sum(payload)}}


@pytest.mark.observable_socket
async def test_sum_async():
    async with TestClient(router) as client:
        res = await client.request("math/sum", [4, 5])
        assert res.payload == {"sum": 9}
"""


def check_pytest_plugin(scratch: Path) -> None:
    """An `async def` test marked `observable_socket` runs under a bare pytest: the plugin's
    entry point is installed and loads."""
    tests = scratch / "plugin_tests"
    tests.mkdir()
    (tests / "test_plugin.py").write_text(PLUGIN_TEST, encoding="utf-8")
    args = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--strict-markers"]
    out = run([*args, "-W", "error", "test_plugin.py"], tests)
    assert "1 passed" in out, out
    print("pytest plugin: a marked async def test passed")


def main(argv: list[str]) -> int:
    wheel, tracked_list, examples = Path(argv[0]), Path(argv[1]), Path(argv[2])
    tracked = tracked_list.read_text(encoding="utf-8").split()
    missing = missing_from_wheel(wheel, tracked)
    if missing:
        print(f"{wheel.name} lacks:", *missing, sep="\n  ", file=sys.stderr)
        return 1
    print(f"contents: {wheel.name} holds the {len(tracked)} tracked package files")
    scratch = Path.cwd()
    check_installed(scratch)
    check_cli(scratch)
    check_demo(scratch, examples)
    check_served_pages(scratch)
    check_pytest_plugin(scratch)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
