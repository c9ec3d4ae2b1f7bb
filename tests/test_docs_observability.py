"""The "Metrics, tracing and a live view" page (docs/observability.md) runs as written.

Its Python blocks become `app.py` (the app, then the SDK set-up appended, as the text says)
and `client.py`; its shell blocks run in bash as they are, on a free port instead of 8013,
with `uvicorn` started in the background (and stopped after the block) and `top` shown twice.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("prometheus_client")
pytest.importorskip("opentelemetry.sdk")

from tests.helpers import MS, free_socket

ROOT = Path(__file__).resolve().parent.parent
SECTION = re.compile(r"<!-- BEGIN:observability -->(.*?)<!-- END:observability -->", re.S)
BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.S)

# Shell functions standing in for the long-running commands of the blocks.
SHIMS = """
set -euo pipefail
# Stop the servers gracefully when the block ends, and wait for them.
trap 'for p in $(cat "$SERVER_PIDS" 2>/dev/null); do kill "$p" 2>/dev/null || :; done; wait' EXIT
# uvicorn serves the socket the test holds bound to $PORT (inherited as $PORT_FD): a port
# closed and named again could be taken meanwhile by another copy of the suite. The socket
# listens already, so readiness is an HTTP answer, not an accepted connection.
uvicorn() {
    command "$PY" -m uvicorn "$@" --fd "$PORT_FD" --log-level warning >>"$SERVER_LOG" 2>&1 &
    echo $! >>"$SERVER_PIDS"
    "$PY" - <<'WAIT'
import os, socket, time
deadline = time.monotonic() + 20 * float(os.environ["SCALE"])
while True:
    try:
        with socket.create_connection(("127.0.0.1", int(os.environ["PORT"])), 0.5) as sock:
            sock.sendall(b"GET /metrics HTTP/1.0\\r\\n\\r\\n")
            if sock.recv(16).startswith(b"HTTP/"):
                break
    except OSError:
        pass
    assert time.monotonic() < deadline, "uvicorn did not answer"
    time.sleep(0.05)
WAIT
}
python() { command "$PY" "$@"; }
observable-socket() { command "$PY" -m observable_socket_asgi "$@" --count 2 --interval 0.05; }
"""


def blocks() -> list[tuple[str, str]]:
    text = (ROOT / "docs" / "observability.md").read_text()
    match = SECTION.search(text)
    assert match, "docs/observability.md lost its observability section"
    return [(lang, body) for lang, body in BLOCK.findall(match.group(1))]


def test_the_section_has_the_blocks_this_test_runs() -> None:
    """Two Python files, one SDK set-up, two shell sessions: nothing is left unrun."""
    langs = [lang for lang, _ in blocks()]
    assert langs == ["python", "python", "python", "bash", "bash"]


def run_bash(block: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run a shell block; its servers stop with it (the trap), or here if it timed out."""
    # the page runs the clone's own tools (`.venv/bin/uvicorn`): the shims stand for them
    script = SHIMS + block.replace("8013", "$PORT").replace(".venv/bin/", "")
    pids = Path(env["SERVER_PIDS"])
    try:
        return subprocess.run(
            ["bash", "-c", script],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            pass_fds=[int(env["PORT_FD"])],
        )
    finally:
        for pid in pids.read_text().split() if pids.exists() else ():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        pids.unlink(missing_ok=True)


@pytest.fixture
def port() -> Iterator[socket.socket]:
    """A listening socket on a free loopback port, closed after the test whatever happens."""
    with free_socket() as sock:
        yield sock


def test_readme_observability_section_runs(tmp_path: Path, port: socket.socket) -> None:
    """The app serves metrics and spans, the traced client continues its trace on the server,
    `top` shows the route, and the multi-worker set-up scrapes both workers."""
    (app, sdk), client, (_, one), (_, many) = blocks()[:2], blocks()[2], blocks()[3], blocks()[4]
    (tmp_path / "app.py").write_text(app[1] + "\n" + sdk[1])
    number = port.getsockname()[1]
    env = {
        **os.environ,
        "PY": sys.executable,
        "PORT": str(number),
        "PORT_FD": str(port.fileno()),
        "SCALE": str(MS * 1000),
        "SERVER_LOG": str(tmp_path / "server.log"),
        "SERVER_PIDS": str(tmp_path / "pids"),
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    (tmp_path / "client.py").write_text(client[1].replace("8013", str(number)))

    done = run_bash(one, tmp_path, env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "{'sum': 6}" in done.stdout
    row = next(line for line in done.stdout.splitlines() if line.startswith("math/sum"))
    assert row.split()[-1] == "1"
    # The ConsoleSpanExporter printed the server's span: a child of the client's span.
    log = (tmp_path / "server.log").read_text()
    assert '"name": "math/sum"' in log
    assert '"rpc.system": "observable_socket"' in log
    assert re.search(r'"name": "math/sum".*?"parent_id": "0x[0-9a-f]{16}"', log, re.S), log

    many = many.replace("/tmp/observable-metrics", str(tmp_path / "prometheus"))
    done = run_bash(many, tmp_path, env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "{'sum': 6}" in done.stdout
    assert any(line.startswith("math/sum") for line in done.stdout.splitlines())
    assert len(list((tmp_path / "prometheus").glob("*.db"))) >= 2  # both workers wrote
