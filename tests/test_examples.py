"""The examples run as the README says: the demo server on a real SQLite file, and embedding."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from websockets.asyncio.client import connect

from observable_socket_asgi import SocketRouter
from tests.helpers import TIMEOUT, plain_asgi, request, running

pytestmark = pytest.mark.e2e


async def ask(url: str, *frames: str) -> list[dict[str, Any]]:
    """Send each frame and read one answer per frame, on one connection."""
    async with asyncio.timeout(TIMEOUT), connect(url) as ws:
        answers = []
        for frame in frames:
            await ws.send(frame)
            answers.append(orjson.loads(await ws.recv()))
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
