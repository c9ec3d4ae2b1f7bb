"""examples/django_site: Django's ASGI handler and the router side by side, on real uvicorn.

One server for the module, on a SQLite file migrated for it; the users log in with Django's
own code, and the sockets find them from the session cookie alone.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.helpers import TIMEOUT, Server, request, running

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery staple"


@dataclass
class Site:
    server: Server
    #: Django's session key of a logged-in user, by username
    sessions: dict[str, str]

    @property
    def ws_url(self) -> str:
        return f"{self.server.url}/ws"

    @property
    def http_url(self) -> str:
        return self.server.url.replace("ws://", "http://")


def log_in(username: str) -> str:
    """Log `username` in with Django's own code (the test client's `login`): its session key."""
    from django.test import Client

    client = Client()
    assert client.login(username=username, password=PASSWORD)
    return str(client.cookies["sessionid"].value)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The example project on a fresh SQLite file, migrated, with users alice and bob."""
    database = tmp_path_factory.mktemp("django") / "db.sqlite3"
    saved = {name: os.environ.get(name) for name in ("DJANGO_DB", "DJANGO_SETTINGS_MODULE")}
    os.environ["DJANGO_DB"] = str(database)
    os.environ["DJANGO_SETTINGS_MODULE"] = "examples.django_site.settings"
    try:
        from django.conf import settings
        from django.contrib.auth import get_user_model
        from django.core.management import call_command

        from examples.django_site import asgi

        # the settings are read once per process: this module's file, or the test is void
        assert Path(settings.DATABASES["default"]["NAME"]) == database
        call_command("migrate", verbosity=0)
        for name in ("alice", "bob"):
            get_user_model().objects.create_user(name, password=PASSWORD)
        sessions = {name: log_in(name) for name in ("alice", "bob")}
        # lifespan "on": Django's handler refuses the lifespan scope, so the router must take it
        with running(asgi.application, lifespan="on") as server:
            yield Site(server, sessions)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


async def talk(url: str, *frames: str, cookie: str | None = None) -> list[dict[str, Any]]:
    """Send each frame on one connection and read its answer, setting pushes aside."""
    headers = {"Cookie": f"sessionid={cookie}"} if cookie else {}
    async with asyncio.timeout(TIMEOUT), connect(url, additional_headers=headers) as ws:
        answers = []
        for frame in frames:
            await ws.send(frame)
            answer = orjson.loads(await ws.recv())
            while "route" in answer:  # a push (replies carry no route)
                answer = orjson.loads(await ws.recv())
            answers.append(answer)
        return answers


def test_anonymous_connection_is_admitted_but_not_to_the_notes(site: Site) -> None:
    """Without a session cookie the socket is Django's anonymous user: `me` has no name,
    and the routes behind `logged_in` answer 403."""
    me, notes, add = asyncio.run(
        talk(
            site.ws_url,
            request("me", uuid=1),
            request("notes/list", uuid=2),
            request("notes/add", {"text": "hi"}, uuid=3),
        )
    )
    assert me["payload"] == {"username": None}
    assert (notes["status"], add["status"]) == (403, 403)


def test_session_cookie_user_writes_and_reads_with_the_orm(site: Site) -> None:
    """alice's session cookie makes the socket alice's: a note saved in a transaction from a
    handler comes back from the async ORM; a bad payload is a 400 before the handler."""
    me, added, listed, bad = asyncio.run(
        talk(
            site.ws_url,
            request("me", uuid=1),
            request("notes/add", {"text": "from a socket"}, uuid=2),
            request("notes/list", uuid=3),
            request("notes/add", {"text": ""}, uuid=4),
            cookie=site.sessions["alice"],
        )
    )
    assert me["payload"] == {"username": "alice"}
    assert added["status"] == 201
    assert added["payload"]["author"] == "alice" and added["payload"]["text"] == "from a socket"
    assert added["payload"] in listed["payload"]
    assert {note["author"] for note in listed["payload"]} == {"alice"}
    assert bad["status"] == 400


def test_unknown_or_invalidated_session_is_anonymous(site: Site) -> None:
    """A made-up session key, and bob's real one after his password changed (Django's session
    hash check, as for HTTP), both open an anonymous socket."""
    from django.contrib.auth import get_user_model

    bob_session = log_in("bob")
    (before,) = asyncio.run(talk(site.ws_url, request("me"), cookie=bob_session))
    assert before["payload"] == {"username": "bob"}
    bob = get_user_model().objects.get(username="bob")
    bob.set_password("another " + PASSWORD)
    bob.save()
    (after,) = asyncio.run(talk(site.ws_url, request("me"), cookie=bob_session))
    (made_up,) = asyncio.run(talk(site.ws_url, request("me"), cookie="x" * 32))
    assert after["payload"] == made_up["payload"] == {"username": None}


def test_django_view_publishes_to_socket_subscribers(site: Site) -> None:
    """A note posted to the Django view (session cookie, CSRF token) is pushed to a socket
    subscribed to `notes`; without the CSRF token, or anonymous, the view refuses it."""

    async def run() -> tuple[dict[str, Any], list[httpx.Response]]:
        async with asyncio.timeout(TIMEOUT), connect(site.ws_url) as ws:
            await ws.send(request("notes/subscribe"))
            assert orjson.loads(await ws.recv())["status"] == 200
            responses = await asyncio.to_thread(post_notes)
            while True:
                frame = orjson.loads(await ws.recv())
                if frame.get("route") == "notes":
                    push: dict[str, Any] = frame["payload"]
                    return push, responses

    def post_notes() -> list[httpx.Response]:
        alice = {"sessionid": site.sessions["alice"]}
        with (
            httpx.Client(base_url=site.http_url, timeout=TIMEOUT) as anonymous,
            httpx.Client(base_url=site.http_url, timeout=TIMEOUT, cookies=alice) as http,
        ):
            page = http.get("/notes/")  # sets the csrftoken cookie, as for a browser
            assert page.status_code == 200 and "notes" in page.json()
            token = {"X-CSRFToken": http.cookies["csrftoken"]}
            no_token = http.post("/notes/new", data={"text": "x"})
            anonymous.get("/notes/")
            token_anonymous = {"X-CSRFToken": anonymous.cookies["csrftoken"]}
            refused = anonymous.post("/notes/new", data={"text": "x"}, headers=token_anonymous)
            posted = http.post("/notes/new", data={"text": "from a view"}, headers=token)
            return [no_token, refused, posted]

    push, (no_token, anonymous, posted) = asyncio.run(run())
    assert no_token.status_code == 403
    assert anonymous.status_code == 302 and "/accounts/login/" in anonymous.headers["location"]
    assert posted.status_code == 201
    assert push == posted.json()["note"]
    assert push["text"] == "from a view" and push["author"] == "alice"


def test_cookie_from_a_foreign_page_is_refused(site: Site) -> None:
    """A handshake from a page not in SOCKET_ALLOWED_ORIGINS is closed 1008, cookie or not
    (cross-site WebSocket hijacking); the site's own origin is served."""

    async def run(origin: str) -> Any:
        headers = {"Cookie": f"sessionid={site.sessions['alice']}", "Origin": origin}
        try:
            async with (
                asyncio.timeout(TIMEOUT),
                connect(site.ws_url, additional_headers=headers) as ws,
            ):
                await ws.send(request("me"))
                return orjson.loads(await ws.recv())["payload"]
        except ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd is not None else None

    assert asyncio.run(run("https://evil.example")) == 1008
    assert asyncio.run(run("http://localhost:8000")) == {"username": "alice"}


def test_plain_http_is_still_django(site: Site) -> None:
    """HTTP goes to Django whole: its URLconf, its 404, its JSON views."""
    with httpx.Client(base_url=site.http_url, timeout=TIMEOUT) as http:
        assert http.get("/nowhere/").status_code == 404
        assert http.get("/notes/").headers["content-type"] == "application/json"
