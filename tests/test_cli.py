"""The command line through subprocess: output, exit statuses, listen and serve."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

import pytest

from observable_socket_asgi import SocketRouter
from observable_socket_asgi.envelope import encode_push
from tests.helpers import PROCESS_TIMEOUT, running

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent

router = SocketRouter()


@router.route("math/sum")
async def total(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
    return {"payload": {"sum": sum(payload)}}


@router.route("echo")
async def echo(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
    return {"headers": headers, "payload": payload}


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
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    done = cli("call", f"ws://127.0.0.1:{port}/ws", "math/sum", "[1]")
    assert done.returncode == 3
    assert "connection refused" in done.stderr

    with running(SocketRouter(access_logic=lambda ws: False)) as server:
        closed = cli("call", server.url, "math/sum", "[1]")
    assert closed.returncode == 3
    assert "connection closed (code 1008" in closed.stderr


def test_call_usage_errors_exit_2() -> None:
    """A payload that is not JSON or a malformed -H is a usage error, before connecting."""
    bad_json = cli("call", "ws://127.0.0.1:1/ws", "echo", "{nope")
    assert bad_json.returncode == 2 and "not valid JSON" in bad_json.stderr
    bad_header = cli("call", "ws://127.0.0.1:1/ws", "echo", "-H", "novalue")
    assert bad_header.returncode == 2 and "KEY=VALUE" in bad_header.stderr


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


def test_serve_runs_a_router_with_uvicorn() -> None:
    """serve module:router starts uvicorn; the call command gets an answer from it."""
    with popen("serve", "tests.test_cli:router", "--port", "0") as proc:
        try:
            assert proc.stderr is not None
            lines = lines_of(proc.stderr)
            port = None
            while port is None:
                line = lines.get(timeout=PROCESS_TIMEOUT)
                found = re.search(r"running on http://127\.0\.0\.1:(\d+)", line)
                if found:
                    port = int(found.group(1))
            done = cli("call", f"ws://127.0.0.1:{port}/ws", "math/sum", "[2, 3]")
            assert done.returncode == 0, done.stderr
            assert json.loads(done.stdout)["payload"] == {"sum": 5}
        finally:
            assert stop(proc) == 0
