"""The examples run as the README says: the demo server on a real SQLite file, and embedding."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from websockets.asyncio.client import connect

from observable_socket_asgi import SocketRouter
from tests.helpers import PROCESS_TIMEOUT, TIMEOUT, free_socket, plain_asgi, request, running
from tests.processes import stop

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent


async def ask(url: str, *frames: str) -> list[dict[str, Any]]:
    """Send each frame and read its answer, on one connection, setting pushes aside."""
    async with asyncio.timeout(TIMEOUT), connect(url) as ws:
        answers = []
        for frame in frames:
            await ws.send(frame)
            answer = orjson.loads(await ws.recv())
            while "route" in answer:  # a push (replies carry no route)
                answer = orjson.loads(await ws.recv())
            answers.append(answer)
        return answers


def article(uuid: int, article_id: Any) -> str:
    return request("get-article", None, uuid=uuid, headers={"article": article_id})


def test_demo_server_fetch_once_use_twice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """examples/app.py creates and seeds its SQLite file on start; the README's article
    route answers by the article's access level and the user, dehydrated on 2xx only."""
    db_file = tmp_path / "articles.db"
    monkeypatch.setenv("EXAMPLES_DB_URL", f"sqlite+aiosqlite:///{db_file}")
    from examples import app as demo

    expected = {
        # user: statuses for articles 1 (public), 2 (members), 3 (alice's), 4 (bob's), 99, "x"
        None: [200, 403, 403, 403, 404, 400],
        "alice": [200, 200, 200, 403, 404, 400],
        "bob": [200, 200, 403, 200, 404, 400],
    }
    with running(demo.app) as server:
        assert db_file.exists()
        for user, statuses in expected.items():
            url = f"{server.url}/ws" + (f"?user={user}" if user else "")
            frames = [article(n, a) for n, a in enumerate([1, 2, 3, 4, 99, "x"])]
            answers = asyncio.run(ask(url, *frames))
            assert [a["status"] for a in answers] == statuses, user
            assert [a["uuid"] for a in answers] == list(range(6))
        first = asyncio.run(ask(f"{server.url}/ws", article(1, 1)))[0]
        assert first["payload"] == {
            "title": "Hello, sockets",
            "author": "alice",
            "body": "A public article anyone may read.",
        }
        not_found = asyncio.run(ask(f"{server.url}/ws", article(1, 99)))[0]
        assert not_found["payload"] == {"message": "not found"}  # not dehydrated: a 404


def test_demo_server_quickstart_and_pushes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The quickstart route answers, and clock/ticks answers 202 then pushes its ticks."""
    monkeypatch.setenv("EXAMPLES_DB_URL", f"sqlite+aiosqlite:///{tmp_path / 'a.db'}")
    from examples import app as demo

    async def run(url: str) -> list[dict[str, Any]]:
        async with asyncio.timeout(TIMEOUT), connect(url) as ws:
            await ws.send(request("math/sum", [1, 2, 3, 4]))
            await ws.send(request("clock/ticks", 3, uuid=2))
            return [orjson.loads(await ws.recv()) for _ in range(5)]

    with running(demo.app) as server:
        frames = asyncio.run(run(f"{server.url}/ws"))
    assert frames[0]["payload"] == {"sum": 10}
    assert frames[1]["status"] == 202 and frames[1]["uuid"] == 2
    ticks = [f for f in frames[2:] if f.get("route") == "clock/tick"]
    assert [t["payload"]["n"] for t in ticks] == [1, 2, 3]
    assert all(t["uuid"] not in (2, "2") and isinstance(t["uuid"], str) for t in ticks)


def test_router_mounted_in_starlette_with_root_path() -> None:
    """The core router under Starlette's Mount, with a root_path, sees its own path."""
    router = SocketRouter()

    @router.route("where")
    async def where(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        return {"payload": {"path": ws.path, "root_path": ws.scope.get("root_path")}}

    app = Starlette(routes=[Mount("/api", app=plain_asgi(router))])
    with running(app, root_path="/prefix") as server:
        answer = asyncio.run(ask(f"{server.url}/api/ws", request("where")))[0]
    assert answer["status"] == 200
    assert answer["payload"]["path"].endswith("/api/ws")
    assert answer["payload"]["root_path"].startswith("/prefix")


# Examples' error paths and the ways they are served


def test_chat_checks_payloads_in_data_check() -> None:
    """examples/chat.py answers 400 (not 500) to a join, leave or say with a bad payload."""
    from examples import chat

    bad = [
        request("room/join", None, uuid=1),
        request("room/join", {"name": "ada"}, uuid=2),
        request("room/join", {"room": ""}, uuid=3),
        request("room/leave", [1], uuid=4),
        request("room/say", {"room": "lobby"}, uuid=5),
        request("room/say", {"room": "lobby", "text": 5}, uuid=6),
    ]
    with running(chat.app) as server:
        answers = asyncio.run(ask(f"{server.url}/ws", *bad))
        (joined,) = asyncio.run(ask(f"{server.url}/ws", request("room/join", {"room": "x"})))
    assert [(a["uuid"], a["status"]) for a in answers] == [(n, 400) for n in range(1, 7)]
    assert joined["status"] == 200 and joined["payload"] == {"topic": "room:x"}


def test_chat_signs_what_is_said_with_the_name_given_at_join() -> None:
    """examples/chat.py: `room/say` without a name pushes the name its connection joined the
    room under, to everyone in the room; a connection that never joined signs with its own."""
    from examples import chat

    async def push_in(ws: Any, topic: str) -> dict[str, Any]:
        while True:  # replies and the "joined" pushes set aside
            frame = orjson.loads(await ws.recv())
            if frame.get("route") == topic and "text" in frame["payload"]:
                payload: dict[str, Any] = frame["payload"]
                return payload

    async def push_in_joined(ws: Any, name: str) -> None:
        while True:
            frame = orjson.loads(await ws.recv())
            if frame.get("payload") == {"event": "joined", "name": name}:
                return

    async def run(url: str) -> list[dict[str, Any]]:
        async with asyncio.timeout(TIMEOUT), connect(url) as ada, connect(url) as bob:
            await bob.send(request("room/join", {"room": "lobby", "name": "bob"}, uuid=1))
            await ada.send(request("room/join", {"room": "lobby", "name": "ada"}, uuid=2))
            await push_in_joined(bob, "ada")
            await ada.send(request("room/say", {"room": "lobby", "text": "hi"}, uuid=3))
            first = await push_in(bob, "room:lobby")
            await ada.send(request("room/leave", {"room": "lobby"}, uuid=4))
            said = {"room": "lobby", "text": "again", "name": "anon"}
            await ada.send(request("room/say", said, uuid=5))
            second = await push_in(bob, "room:lobby")
            return [first, second]

    with running(chat.app) as server:
        first, second = asyncio.run(run(f"{server.url}/ws"))
    assert first == {"text": "hi", "name": "ada"}
    assert second == {"text": "again", "name": "anon"}  # left the room: its name is gone


def test_articles_router_served_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`uvicorn examples.articles:router`: the router opens a session per connection itself."""
    monkeypatch.setenv("EXAMPLES_DB_URL", f"sqlite+aiosqlite:///{tmp_path / 'a.db'}")
    from examples import articles

    with running(articles.router) as server:
        alice = asyncio.run(
            ask(f"{server.url}/ws?user=alice", *map(article, range(5), (1, 3, 4, 99, "x")))
        )
        anonymous = asyncio.run(ask(f"{server.url}/", article(1, 2)))
    assert [a["status"] for a in alice] == [200, 200, 403, 404, 400]
    assert alice[1]["payload"]["title"] == "Alice's drafts"
    assert [a["status"] for a in anonymous] == [403]


@pytest.mark.parametrize("path", ["/ws", "/ws2", "/ws3", "/ws4/"])
def test_fastapi_example_every_way_has_a_session(
    path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each of the FastAPI example's four ways gives get-article a session and the user."""
    monkeypatch.setenv("EXAMPLES_DB_URL", f"sqlite+aiosqlite:///{tmp_path / 'a.db'}")
    from examples import fastapi_app

    with running(fastapi_app.app) as server:
        alice = asyncio.run(
            ask(f"{server.url}{path}?user=alice", *map(article, range(4), (1, 3, 4, 99)))
        )
        anonymous = asyncio.run(ask(f"{server.url}{path}", article(1, 3)))
    assert [a["status"] for a in alice] == [200, 200, 403, 404]
    assert alice[0]["payload"]["author"] == "alice"
    assert [a["status"] for a in anonymous] == [403]


def read_banner(proc: subprocess.Popen[str]) -> str:
    """The ws:// address the demo prints once it listens (fails if it exits first)."""
    assert proc.stdout is not None
    lines: list[str] = []

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "listening on" in line:
                return

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    thread.join(20 * TIMEOUT)
    match = re.search(r"listening on (ws://\S+/ws)\.", "".join(lines))
    assert match, f"no address in the demo's output: {lines!r}"
    return match.group(1)


@contextlib.contextmanager
def demo_process(args: list[str], env: dict[str, str]) -> Iterator[str]:
    proc = subprocess.Popen(
        args,
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        yield read_banner(proc)
    finally:
        stop(proc, 10)
        assert proc.stdout is not None
        proc.stdout.close()


@pytest.mark.parametrize(
    "args, env",
    [
        (["scripts/serve"], {"PORT": "0"}),
        ([sys.executable, "-m", "examples.app", "--port", "0"], {"PORT": "1"}),
        ([sys.executable, "-m", "examples.app", "--port", "0", "--host", "localhost"], {}),
    ],
    ids=["serve-PORT", "demo-port-over-PORT", "demo-host"],
)
def test_demo_prints_the_address_it_listens_on(
    args: list[str], env: dict[str, str], tmp_path: Path
) -> None:
    """`scripts/serve` and `python -m examples.app` take the port from --port, else PORT, and
    print the address they really listen on: a client reaches the demo there."""
    env = {**env, "EXAMPLES_DB_URL": f"sqlite+aiosqlite:///{tmp_path / 'a.db'}"}
    with demo_process(args, env) as url:
        assert not url.endswith(":0/ws") and ":1/ws" not in url
        (answer,) = asyncio.run(ask(url, request("math/sum", [1, 2, 3, 4])))
    assert answer["payload"] == {"sum": 10}


def test_scripts_serve_stops_on_ctrl_c_without_a_traceback(tmp_path: Path) -> None:
    """Ctrl-C stops `scripts/serve` after uvicorn's shutdown lines: exit 0, no traceback."""
    proc = subprocess.Popen(
        ["scripts/serve"],
        cwd=ROOT,
        env={**os.environ, "PORT": "0", "EXAMPLES_DB_URL": f"sqlite+aiosqlite:///{tmp_path}/a.db"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        read_banner(proc)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=PROCESS_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert "Shutting down" in err


def test_scripts_serve_on_a_busy_port_says_so_in_one_line(tmp_path: Path) -> None:
    """A port in use: uvicorn's one error line, a non-zero status, and no traceback."""
    with free_socket() as busy:
        port = busy.getsockname()[1]
        done = subprocess.run(
            ["scripts/serve", "--port", str(port)],
            cwd=ROOT,
            env={**os.environ, "EXAMPLES_DB_URL": f"sqlite+aiosqlite:///{tmp_path}/a.db"},
            capture_output=True,
            text=True,
            timeout=PROCESS_TIMEOUT,
        )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "address already in use" in errors[0], done.stderr
