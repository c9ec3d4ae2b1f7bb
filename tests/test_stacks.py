"""examples/litestar_app.py and examples/quart_app.py: the router inside each framework's
app, on real uvicorn; users log in through the framework, and sockets find them from its
session cookie."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import connect

from tests.helpers import TIMEOUT, Server, request, running

pytestmark = pytest.mark.e2e


@dataclass
class Site:
    server: Server

    @property
    def ws_url(self) -> str:
        return f"{self.server.url}/ws"

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.server.url.replace("ws://", "http://"), timeout=TIMEOUT)

    def log_in(self, username: str) -> dict[str, str]:
        """Log in through the framework's own view: the session cookie it sets."""
        with self.http() as http:
            answer = http.post(
                "/login", json={"username": username, "password": f"{username}-password"}
            )
            assert answer.is_success, answer.text
            return dict(http.cookies.items())


@pytest.fixture(scope="module", params=["litestar", "quart"])
def site(request: pytest.FixtureRequest) -> Iterator[Site]:
    """The framework's example app on uvicorn, lifespan on (the framework's own, which
    starts the router's backplane)."""
    from examples import litestar_app, quart_app

    app: Any = {"litestar": litestar_app.app, "quart": quart_app.app}[request.param]
    with running(app, lifespan="on") as server:
        yield Site(server)


def cookie_header(cookies: dict[str, str]) -> dict[str, str]:
    return {"Cookie": "; ".join(f"{name}={value}" for name, value in cookies.items())}


async def talk(url: str, *frames: str, cookies: dict[str, str] | None = None) -> list[Any]:
    """Send each frame on one connection and read its answer."""
    headers = cookie_header(cookies or {})
    async with asyncio.timeout(TIMEOUT), connect(url, additional_headers=headers) as ws:
        answers = []
        for frame in frames:
            await ws.send(frame)
            answers.append(orjson.loads(await ws.recv()))
        return answers


def test_anonymous_socket_has_no_user_and_no_news(site: Site) -> None:
    """Without a session the socket is admitted with no user; `news/subscribe` answers 403."""
    me, news = asyncio.run(talk(site.ws_url, request("me", uuid=1), request("news/subscribe")))
    assert me["payload"] == {"user": None}
    assert news["status"] == 403


def test_session_of_a_framework_login_is_the_socket_user(site: Site) -> None:
    """The cookie the framework's login set makes the socket that user's; a wrong password
    sets none, and a forged cookie opens an anonymous socket."""
    (me,) = asyncio.run(talk(site.ws_url, request("me"), cookies=site.log_in("alice")))
    assert me["payload"] == {"user": "alice"}
    with site.http() as http:
        wrong = http.post("/login", json={"username": "alice", "password": "guess"})
        assert wrong.status_code == 401
        after_wrong = dict(http.cookies.items())
    (refused,) = asyncio.run(talk(site.ws_url, request("me"), cookies=after_wrong))
    assert refused["payload"] == {"user": None}
    forged = {"session": "eyJ1c2VyIjoiYWxpY2UifQ.forged.signature"}
    (nobody,) = asyncio.run(talk(site.ws_url, request("me"), cookies=forged))
    assert nobody["payload"] == {"user": None}


def test_framework_route_publishes_to_subscribed_sockets(site: Site) -> None:
    """bob's POST /news reaches alice's socket subscribed to `news`; an anonymous POST is
    refused and publishes nothing."""
    alice, bob = site.log_in("alice"), site.log_in("bob")

    def post_news() -> tuple[int, int]:
        with site.http() as anonymous:
            refused = anonymous.post("/news", json={"text": "not me"}).status_code
        with site.http() as http:
            http.cookies.update(bob)
            posted = http.post("/news", json={"text": "hello"}).status_code
        return refused, posted

    async def run() -> tuple[tuple[int, int], dict[str, Any]]:
        async with (
            asyncio.timeout(TIMEOUT),
            connect(site.ws_url, additional_headers=cookie_header(alice)) as ws,
        ):
            await ws.send(request("news/subscribe"))
            assert orjson.loads(await ws.recv())["status"] == 200
            statuses = await asyncio.to_thread(post_news)
            push = orjson.loads(await ws.recv())
            return statuses, push

    (refused, posted), push = asyncio.run(run())
    assert refused == 401 and posted == 201
    assert push["route"] == "news"
    assert push["payload"] == {"text": "hello", "by": "bob"}  # the anonymous one never came


def test_other_http_is_the_framework_s(site: Site) -> None:
    """A path neither app serves is the framework's 404, not the router's 426."""
    with site.http() as http:
        assert http.get("/nowhere").status_code == 404
