"""The command line through subprocess: output, exit statuses, listen and serve."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute

from observable_socket_asgi import SocketRouter
from observable_socket_asgi.envelope import encode_push
from tests.helpers import PROCESS_TIMEOUT, refusing_port, running

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent

router = SocketRouter()


@router.route("math/sum")
async def total(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
    return {"payload": {"sum": sum(payload)}}


@router.route("echo")
async def echo(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
    return {"headers": headers, "payload": payload}


@router.route("boom")
async def boom(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
    raise RuntimeError("boom")


@router.route("slow")
async def slow(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
    import asyncio

    await asyncio.sleep(payload)
    return {}


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "observable_socket_asgi", *args],
        capture_output=True,
        text=True,
        timeout=PROCESS_TIMEOUT,
        cwd=ROOT,
    )


def popen(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "observable_socket_asgi", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def lines_of(stream: IO[str]) -> queue.Queue[str]:
    """Read `stream` line by line on a thread, so the test can wait with a deadline."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def stop(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(PROCESS_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_call_prints_the_answer_and_exits_0_on_2xx() -> None:
    """A 2xx answer is printed as one JSON object (compact off a terminal), exit 0."""
    with running(router) as server:
        done = cli("call", server.url, "math/sum", "[1, 2, 3, 4]")
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["status"] == 200 and answer["payload"] == {"sum": 10}
    assert done.stdout.count("\n") == 1


def test_call_headers_and_non_2xx() -> None:
    """-H headers reach the server; a 404 is printed too, with exit status 1."""
    with running(router) as server:
        done = cli("call", server.url, "echo", '"x"', "-H", "token=abc", "-H", "lang=fr")
        missing = cli("call", server.url, "nope")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["headers"] == {"token": "abc", "lang": "fr"}
    assert missing.returncode == 1
    assert json.loads(missing.stdout)["payload"] == {"message": "route not found: nope"}


def test_call_timeout_exits_4() -> None:
    """No answer within --timeout: a message naming the route, exit status 4."""
    with running(router) as server:
        done = cli("call", server.url, "slow", "30", "--timeout", "0.2")
    assert done.returncode == 4
    assert "no answer to request 'slow'" in done.stderr
    assert done.stdout == ""


def test_call_refused_and_closed_exit_3() -> None:
    """Nobody listening, or a server closing with 1008: a clear message and exit 3."""
    with refusing_port() as port:
        done = cli("call", f"ws://127.0.0.1:{port}/ws", "math/sum", "[1]")
    assert done.returncode == 3
    assert "connection refused" in done.stderr

    with running(SocketRouter(access_logic=lambda ws: False)) as server:
        closed = cli("call", server.url, "math/sum", "[1]")
    assert closed.returncode == 3
    assert "connection closed (code 1008" in closed.stderr


def test_call_at_a_path_with_no_websocket_route_says_check_the_path() -> None:
    """The router mounted at /ws in Starlette: a call at /wrong is refused with HTTP 403 by
    Starlette's routing, and the message names the path to check; exit 3."""
    app = Starlette(routes=[WebSocketRoute("/ws", router)])
    with running(app) as server:
        assert cli("call", f"{server.url}/ws", "math/sum", "[1, 2]").returncode == 0
        wrong = cli("call", f"{server.url}/wrong", "math/sum", "[1]")
    assert wrong.returncode == 3
    assert "HTTP 403" in wrong.stderr
    assert "check the path" in wrong.stderr and "no WebSocket route at /wrong?" in wrong.stderr


def test_call_usage_errors_exit_2() -> None:
    """A payload that is not JSON or a malformed -H is a usage error, before connecting."""
    bad_json = cli("call", "ws://127.0.0.1:1/ws", "echo", "{nope")
    assert bad_json.returncode == 2 and "not valid JSON" in bad_json.stderr
    bad_header = cli("call", "ws://127.0.0.1:1/ws", "echo", "-H", "novalue")
    assert bad_header.returncode == 2 and "KEY=VALUE" in bad_header.stderr


def test_call_reads_a_large_payload_from_stdin_or_a_file(tmp_path: Path) -> None:
    """`-` reads the payload from stdin and `@FILE` from a file: a payload larger than one
    command-line argument may be (128 KiB on Linux) gets through both."""
    payload = json.dumps([1] * 60_000)  # 180 kB
    assert len(payload) > 128 * 1024
    path = tmp_path / "payload.json"
    path.write_text(payload, encoding="utf-8")
    with running(router) as server:
        piped = subprocess.run(
            [sys.executable, "-m", "observable_socket_asgi", "call", server.url, "math/sum", "-"],
            input=payload,
            capture_output=True,
            text=True,
            timeout=PROCESS_TIMEOUT,
            cwd=ROOT,
        )
        filed = cli("call", server.url, "math/sum", f"@{path}")
    for done in (piped, filed):
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["payload"] == {"sum": 60_000}


def test_call_payload_file_errors_are_usage_errors(tmp_path: Path) -> None:
    """A payload file that is missing, or not JSON, is a usage error naming it."""
    missing = cli("call", "ws://127.0.0.1:1/ws", "echo", f"@{tmp_path / 'nope.json'}")
    assert missing.returncode == 2 and "nope.json" in missing.stderr
    bad = tmp_path / "bad.json"
    bad.write_text("{nope", encoding="utf-8")
    invalid = cli("call", "ws://127.0.0.1:1/ws", "echo", f"@{bad}")
    assert invalid.returncode == 2 and "not valid JSON" in invalid.stderr
    assert str(bad) in invalid.stderr


@pytest.mark.parametrize("value", ["-1", "0", "nan", "soon"])
def test_a_timeout_must_be_a_positive_number(value: str) -> None:
    """`--timeout -1` (or 0, or not a number) is refused as a usage error."""
    done = cli("call", "ws://127.0.0.1:1/ws", "echo", "--timeout", value)
    assert done.returncode == 2
    assert "--timeout" in done.stderr
    interval = cli("top", "http://127.0.0.1:1/metrics", "--interval", value)
    assert interval.returncode == 2 and "--interval" in interval.stderr


def test_a_mistyped_option_shows_the_commands_usage() -> None:
    """An unknown option after a command is reported with that command's usage."""
    done = cli("call", "ws://127.0.0.1:1/ws", "echo", "--timout", "3")
    assert done.returncode == 2
    assert done.stderr.startswith("usage: observable-socket call ")
    assert "unrecognized arguments: --timout 3" in done.stderr


def test_version() -> None:
    """`--version` prints the installed version."""
    from observable_socket_asgi import __version__

    done = cli("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"observable-socket {__version__}"


def test_help_describes_serve_and_shows_defaults() -> None:
    """`serve --help` says what it does and each option's default; so does `top --help`."""
    serve = cli("serve", "--help").stdout
    assert "uvicorn" in serve.split("positional arguments")[0].split("\n\n", 1)[1]
    for default in ("(default 127.0.0.1)", "(default 8000", "(default info)"):
        assert default in serve
    assert "(default 1)" in " ".join(cli("top", "--help").stdout.split())


async def pusher(scope: Any, receive: Any, send: Any) -> None:
    """A bare ASGI app that pushes three messages unasked, then waits for the client to go."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    await receive()
    await send({"type": "websocket.accept"})
    for n in range(3):
        await send({"type": "websocket.send", "text": encode_push("ticks", {"n": n})})
    while (await receive())["type"] != "websocket.disconnect":
        pass


def test_listen_prints_pushes_as_json_lines_until_interrupted() -> None:
    """listen prints each push as one JSON line; Ctrl-C ends it with status 0."""
    with running(pusher) as server:
        with popen("listen", server.url) as proc:
            try:
                assert proc.stdout is not None
                lines = lines_of(proc.stdout)
                pushes = [json.loads(lines.get(timeout=PROCESS_TIMEOUT)) for _ in range(3)]
            finally:
                status = stop(proc)
    assert [p["payload"] for p in pushes] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert all(p["route"] == "ticks" and p["status"] == 200 for p in pushes)
    assert status == 0


def test_call_ping_prints_the_pong() -> None:
    """`call URL PING` prints the server's PONG and exits 0 (it is a request like any)."""
    with running(router) as server:
        done = cli("call", server.url, "PING", "--timeout", str(PROCESS_TIMEOUT))
    assert done.returncode == 0, done.stderr
    pong = json.loads(done.stdout)
    assert pong["route"] == "PONG" and pong["status"] == 200 and pong["payload"] is None
    assert isinstance(pong["uuid"], str)


@contextlib.contextmanager
def serving_demo(tmp_path: Path) -> Iterator[str]:
    """Run `observable-socket serve examples.app:app` on a free port; yield its URL."""
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "EXAMPLES_DB_URL": f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}",
    }
    with subprocess.Popen(
        [sys.executable, "-m", "observable_socket_asgi", "serve", "examples.app:app", "--port=0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    ) as proc:
        try:
            assert proc.stderr is not None
            lines = lines_of(proc.stderr)
            found = None
            while found is None:
                line = lines.get(timeout=PROCESS_TIMEOUT)
                found = re.search(r"running on http://127\.0\.0\.1:(\d+)", line)
            yield f"ws://127.0.0.1:{found.group(1)}/ws"
        finally:
            assert stop(proc) == 0


def test_listen_calls_a_route_first_and_says_when_connected(tmp_path: Path) -> None:
    """listen --call clock/subscribe on the demo: the call's answer and "connected" on
    stderr, then the clock's pushes as JSON lines on stdout."""
    listen = ["--call", "echo", "--payload", '{"a": 1}', "--call", "clock/subscribe"]
    with serving_demo(tmp_path) as url, popen("listen", url, *listen) as proc:
        try:
            assert proc.stdout is not None and proc.stderr is not None
            errors = lines_of(proc.stderr)
            said = [errors.get(timeout=PROCESS_TIMEOUT) for _ in range(3)]
            lines = lines_of(proc.stdout)
            pushes = [json.loads(lines.get(timeout=PROCESS_TIMEOUT)) for _ in range(2)]
        finally:
            status = stop(proc)
    assert said[0].startswith("called echo: ") and '"payload": {"a": 1}' in said[0]
    assert said[1].startswith("called clock/subscribe: ") and '"status": 200' in said[1]
    assert said[2] == f"connected to {url}; listening for pushes (Ctrl-C to stop)\n"
    assert [p["route"] for p in pushes] == ["clock", "clock"]
    assert all(re.fullmatch(r"\d\d:\d\d:\d\d", p["payload"]["time"]) for p in pushes)
    assert status == 0


def test_listen_stops_with_1_when_a_call_fails() -> None:
    """A --call answered with an error status ends listen with exit 1, saying which."""
    with running(router) as server:
        done = cli("listen", server.url, "--call", "nope", "--timeout", str(PROCESS_TIMEOUT))
    assert done.returncode == 1, done.stderr
    assert "called nope: " in done.stderr and '"status": 404' in done.stderr
    assert "error: --call nope was answered 404" in done.stderr
    assert done.stdout == ""


def test_listen_payload_usage_errors() -> None:
    """--payload without a --call before it, twice for one call, or not JSON: exit 2."""
    for args in (
        ["--payload", "1"],
        ["--call", "echo", "--payload", "1", "--payload", "2"],
        ["--call", "echo", "--payload", "{nope"],
    ):
        done = cli("listen", "ws://127.0.0.1:1/ws", *args)
        assert done.returncode == 2, (args, done.stderr)
        assert "--payload" in done.stderr


STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"


def next_line(lines: queue.Queue[str], pattern: str) -> re.Match[str]:
    """The first line read that matches `pattern` (earlier lines are skipped)."""
    while True:
        found = re.search(pattern, lines.get(timeout=PROCESS_TIMEOUT))
        if found:
            return found


def test_serve_runs_a_router_with_uvicorn() -> None:
    """serve module:router starts uvicorn; the call command gets an answer from it; uvicorn's
    lines and the router's share one format, with time and level."""
    with popen("serve", "tests.test_cli:router", "--port", "0") as proc:
        try:
            assert proc.stderr is not None
            lines = lines_of(proc.stderr)
            found = next_line(lines, r"running on http://127\.0\.0\.1:(\d+)")
            assert re.match(f"{STAMP} INFO    uvicorn.error: Uvicorn running", found.string)
            url = f"ws://127.0.0.1:{found.group(1)}/ws"
            done = cli("call", url, "math/sum", "[2, 3]")
            assert done.returncode == 0, done.stderr
            assert json.loads(done.stdout)["payload"] == {"sum": 5}
            assert cli("call", url, "boom").returncode == 1
            line = next_line(lines, "observable_socket_asgi").string
            assert re.match(
                f"{STAMP} ERROR   observable_socket_asgi.pipeline: "
                r"route 'boom' \(uuid '[-0-9a-f]+'\) raised "
                r"\[route=boom uuid=[-0-9a-f]+ client=127\.0\.0\.1:\d+\]$",
                line,
            ), line
            assert next_line(lines, "Traceback").string.startswith("Traceback")
        finally:
            assert stop(proc) == 0


def test_serve_logs_json_lines() -> None:
    """--log-format json: uvicorn's lines and the router's are JSON objects, the router's
    with route, uuid and client as fields."""
    with popen("serve", "tests.test_cli:router", "--port=0", "--log-format=json") as proc:
        try:
            assert proc.stderr is not None
            lines = lines_of(proc.stderr)
            started = json.loads(next_line(lines, "Uvicorn running on").string)
            assert (started["logger"], started["level"]) == ("uvicorn.error", "INFO")
            port = re.search(r":(\d+)", started["message"].rsplit("127.0.0.1", 1)[1])
            assert port is not None
            assert cli("call", f"ws://127.0.0.1:{port.group(1)}/ws", "boom").returncode == 1
            entry = json.loads(next_line(lines, "observable_socket_asgi").string)
        finally:
            assert stop(proc) == 0
    assert (entry["logger"], entry["level"], entry["route"]) == (
        "observable_socket_asgi.pipeline",
        "ERROR",
        "boom",
    )
    assert re.fullmatch(r"127\.0\.0\.1:\d+", entry["client"]) and entry["uuid"]
    assert entry["exc_info"].endswith("RuntimeError: boom") and entry["time"]
