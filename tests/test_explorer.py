"""The explorer page: its HTTP answers over ASGI, then the page itself in a real headless
Chromium against real uvicorn.

The browser is Debian's `chromium` (installed by scripts/install and .ci/run), driven by
Playwright's Python API with `executable_path`: Playwright reports the page's console
messages, its requests and its WebSockets as events, which is what "no console error and
no request outside the server" needs; Playwright's own browser download is never used.
Where chromium is missing the browser tests skip on a developer's machine and fail in CI.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest
import uvicorn

from observable_socket_asgi import SocketRouter
from observable_socket_asgi.describe.explorer import Explorer
from tests import explorer_app
from tests.helpers import PROCESS_TIMEOUT, TIMEOUT, Communicator, free_socket, pause, running

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("OBSERVABLE_SOCKET_CHROMIUM", "/usr/bin/chromium")
#: where the screenshots of this run go too, when set (the docs' images: docs/img)
SCREENSHOTS = os.environ.get("OBSERVABLE_SOCKET_SCREENSHOTS")


# HTTP, over ASGI


async def http_get(
    app: Any,
    path: str,
    method: str = "GET",
    root_path: str = "",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> tuple[int, dict[bytes, bytes], bytes]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": root_path,
        "query_string": b"",
        "headers": [(b"host", b"testserver:8000"), *(headers or [])],
    }
    comm = Communicator(app, scope)
    await comm.send_input({"type": "http.request", "body": b"", "more_body": False})
    start = await comm.receive_output(TIMEOUT)
    body = await comm.receive_output(TIMEOUT)
    await comm.wait(TIMEOUT)
    return start["status"], dict(start["headers"]), body["body"]


def typed_router(**options: Any) -> SocketRouter:
    router = SocketRouter(explorer_url="/explorer", **options)

    @router.route("echo", {"access": lambda ws, message: True})
    async def echo(ws: Any, headers: Any, payload: Any) -> Any:
        return {"payload": payload}

    return router


def test_off_by_default_and_checked() -> None:
    """Without explorer_url there is no explorer; a path that is not absolute is refused."""
    assert SocketRouter().explorer is None
    for bad in ("explorer", "/explorer/", ""):
        with pytest.raises(ValueError, match="explorer_url"):
            SocketRouter(explorer_url=bad)


async def test_off_by_default_http_stays_426() -> None:
    """Without explorer_url the page's path is answered 426, as every plain HTTP request."""
    assert (await http_get(SocketRouter(), "/explorer"))[0] == 426
    assert (await http_get(typed_router(), "/explorerx"))[0] == 426


async def test_page_has_a_strict_policy_and_no_inline_script() -> None:
    """The page: a strict CSP allowing this host's socket, revalidated, no inline code."""
    status, headers, body = await http_get(typed_router(), "/explorer")
    assert status == 200 and headers[b"content-type"] == b"text/html; charset=utf-8"
    csp = headers[b"content-security-policy"].decode()
    assert "default-src 'self'" in csp and "script-src 'self';" in csp
    assert "connect-src 'self' ws://testserver:8000 wss://testserver:8000;" in csp
    assert "unsafe" not in csp
    assert headers[b"cache-control"] == b"no-cache" and headers[b"etag"].startswith(b'"')
    assert headers[b"x-content-type-options"] == b"nosniff"
    page = body.decode()
    assert int(headers[b"content-length"]) == len(body)
    # every script has a source; no inline handler or style; every URL on the page's path
    assert re.findall(r"<script\b[^>]*>", page) == [
        f'<script type="module" src="/explorer/explorer.js?v={_asset_hash("explorer.js")}">'
    ]
    assert not re.search(r"\son\w+=|\sstyle=|javascript:", page)
    urls = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert urls and all(url.startswith("/explorer/") for url in urls), urls
    assert 'data-socket="/explorer"' in page and "{{" not in page


def _asset_hash(name: str) -> str:
    return Explorer(SocketRouter())._assets[name].etag.strip('"')


async def test_assets_are_cached_and_revalidated() -> None:
    """Assets are immutable under their hashed URL; a matching If-None-Match gets a 304."""
    router = typed_router()
    status, headers, body = await http_get(router, "/explorer/explorer.js")
    assert status == 200 and headers[b"content-type"].startswith(b"text/javascript")
    assert b"immutable" in headers[b"cache-control"] and b"WebSocket" in body
    etag = headers[b"etag"]
    again = await http_get(router, "/explorer/explorer.js", headers=[(b"if-none-match", etag)])
    assert again[0] == 304 and again[2] == b""
    page = await http_get(router, "/explorer/")
    assert (await http_get(router, "/explorer/", headers=[(b"if-none-match", page[1][b"etag"])]))[
        0
    ] == 304
    head = await http_get(router, "/explorer/explorer.css", method="HEAD")
    assert head[0] == 200 and head[2] == b"" and int(head[1][b"content-length"]) > 0
    post = await http_get(router, "/explorer", method="POST")
    assert post[0] == 405 and post[1][b"allow"] == b"GET, HEAD"
    assert (await http_get(router, "/explorer/nothing.js"))[0] == 404
    assert (await http_get(router, "/explorer/top.json"))[0] == 404  # no metrics


async def test_under_a_root_path_and_mounted() -> None:
    """Behind a root_path the page's URLs carry it; for_socket() serves it at its mount."""
    router = typed_router()
    status, _, body = await http_get(router, "/api/explorer", root_path="/api")
    assert status == 200 and b'src="/api/explorer/explorer.js' in body
    assert b'data-socket="/api/explorer"' in body
    assert router.explorer is not None
    mounted = router.explorer.for_socket("/ws")
    status, _, body = await http_get(mounted, "/docs/", root_path="/docs")
    assert status == 200 and b'data-socket="/ws"' in body and b'href="/docs/explorer.css' in body
    with pytest.raises(ValueError, match="socket_url"):
        router.explorer.for_socket("ws")


async def test_api_json_describes_routes_and_hooks() -> None:
    """api.json holds the router's own AsyncAPI document and each route's guarding hooks."""
    router = explorer_app.router
    status, headers, body = await http_get(router, "/explorer/api.json")
    assert status == 200 and headers[b"cache-control"] == b"no-store"
    api = json.loads(body)
    assert api["asyncapi"] == router.asyncapi()
    assert api["routes"]["rooms/join"]["hooks"] == ["access"]
    assert api["routes"]["math/sum"]["hooks"] == [] and api["metrics"] is True


async def test_top_json_is_the_top_snapshot() -> None:
    """top.json is strict JSON (the +Inf bound written null) with the figures top reads."""
    router = typed_router(metrics_url="/metrics")
    status, _, body = await http_get(router, "/explorer/top.json")
    assert status == 200

    def refuse(name: str) -> Any:
        raise ValueError(f"not JSON: {name}")

    snap = json.loads(body, parse_constant=refuse)
    assert snap["connections_open"] == 0 and snap["in_flight"] == 0
    assert "queued_push_bytes" in snap and "backplane_connected" in snap


# The page in Chromium


def chromium() -> str:
    """Debian's chromium; skipped without it, failed in CI (where .ci/run installs it)."""
    if shutil.which(CHROMIUM):
        return CHROMIUM
    message = f"{CHROMIUM} not found: apt-get install chromium (scripts/install does)"
    if os.environ.get("OBSERVABLE_SOCKET_REQUIRE_CHROMIUM") or os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@dataclass
class Session:
    """A browser page with what it logged and asked for, and the server it talks to."""

    page: Any
    port: int
    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def watch(self) -> None:
        page = self.page
        page.set_default_timeout(TIMEOUT * 4 * 1000)
        page.on(
            "console",
            lambda msg: self.console_errors.append(msg.text) if msg.type == "error" else None,
        )
        page.on("pageerror", lambda exc: self.console_errors.append(str(exc)))
        page.on("request", lambda request: self.requests.append(request.url))
        page.on("websocket", lambda ws: self.requests.append(ws.url))

    def send(self, route: str, payload: str | None = None) -> str:
        """Choose `route`, send (the example, or `payload`), return the answer's text."""
        page = self.page
        page.click(f'[data-route="{route}"]')
        if payload is not None:
            page.fill("textarea[data-role=payload]", payload)
        page.evaluate("document.querySelector('[data-role=response]').replaceChildren()")
        page.click("[data-role=send]")
        page.wait_for_selector("[data-role=response] [data-role=status]")
        return str(page.inner_text("[data-role=response]"))

    def shot(self, name: str, tmp: Path) -> None:
        path = tmp / f"{name}.png"
        self.page.screenshot(path=str(path))
        assert path.stat().st_size > 1000
        if SCREENSHOTS:
            shutil.copy(path, Path(SCREENSHOTS) / path.name)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def session(browser: Any) -> Iterator[Session]:
    """One page on the typed example with the explorer on, for the tests that share it."""
    with running(explorer_app.router) as server:
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        s = Session(context.new_page(), server.port)
        s.watch()
        s.page.goto(f"{s.url}/explorer")
        s.page.wait_for_selector('[data-role=state][data-state="open"]')
        s.page.wait_for_selector("body[data-ready=true]")
        try:
            yield s
        finally:
            context.close()


@pytest.mark.e2e
def test_lists_routes_and_topics(session: Session, tmp_path: Path) -> None:
    """Every route and push topic of the typed example is listed, grouped, with its hooks."""
    page = session.page
    names = page.eval_on_selector_all("[data-route]", "els => els.map(e => e.dataset.route)")
    assert names == ["math/sum", "game/move", "orders/create", "rooms/join"]
    topics = page.eval_on_selector_all("[data-topic]", "els => els.map(e => e.dataset.topic)")
    assert topics == ["room:{room}"]
    assert page.inner_text('[data-topic="room:{room}"]').startswith("room:{room}")
    groups = page.eval_on_selector_all(
        "[data-role=routes] [data-group]", "els => els.map(e => e.dataset.group)"
    )
    assert groups == ["math", "game", "orders", "rooms"]
    assert "access" in page.inner_text('[data-route="rooms/join"]')
    page.click('[data-route="math/sum"]')
    assert json.loads(page.input_value("textarea[data-role=payload]")) == {"numbers": [0]}
    assert "SumIn" in page.inner_text("[data-role=payload-schema]")
    assert "SumOut" in page.inner_text("[data-role=response-schema]")
    page.click('[data-route="game/move"]')
    assert json.loads(page.input_value("textarea[data-role=payload]")) == {"x": 0, "y": 0}
    # nested models through $ref, a default, an optional field: an example the route takes
    page.click('[data-route="orders/create"]')
    example = json.loads(page.input_value("textarea[data-role=payload]"))
    assert example == {"items": [{"name": "string", "tags": []}], "note": None}
    assert "Item" in page.inner_text("[data-role=payload-schema]")


@pytest.mark.e2e
def test_sends_a_request_and_shows_the_answer(session: Session, tmp_path: Path) -> None:
    """Send shows 200 with the uuid, the time taken and the payload; the frame log has both."""
    text = session.send("math/sum", '{"numbers": [1, 2, 39]}')
    assert text.startswith("200") and re.search(r"uuid [0-9a-f-]{36}", text)
    assert re.search(r"\d+\.\d ms", text)
    assert json.loads(session.page.inner_text("[data-role=response-payload]")) == {"sum": 42}
    created = session.send("orders/create")  # the example as it was built
    assert created.startswith("201") and '"total": 1' in created
    log = session.page.inner_text("[data-role=log]")
    assert '"route":"math/sum"' in log and '"payload":{"sum":42}' in log
    session.shot("explorer-request", tmp_path)


@pytest.mark.e2e
def test_shows_field_errors_beside_their_fields(session: Session, tmp_path: Path) -> None:
    """A payload that does not fit: 400, and each field error beside the field it names."""
    text = session.send("math/sum", '{"numbers": [1, "two"]}')
    assert text.startswith("400")
    errors = session.page.inner_text("[data-role=field-errors]")
    assert errors.startswith("numbers.1: ") and "integer" in errors
    beside = session.page.inner_text('[data-field="numbers"] .field-error')
    assert beside.startswith("numbers.1: ")
    session.shot("explorer-field-errors", tmp_path)


@pytest.mark.e2e
def test_guarded_route_and_pushes(session: Session, tmp_path: Path) -> None:
    """Headers stay across requests; a subscribing route's push is listed with its topic,
    offset and epoch; without the token the access hook answers 403."""
    page = session.page
    page.fill("textarea[data-role=headers]", '{"token": "abc"}')
    page.click('[data-route="rooms/join"]')
    assert json.loads(page.input_value("textarea[data-role=payload]")) == {"room": "lobby"}
    assert session.send("rooms/join").startswith("202")
    push = page.wait_for_selector('[data-role=pushes] > [data-push-topic="room:lobby"]')
    assert push is not None
    text = push.inner_text()
    assert "offset 1" in text and re.search(r"epoch \S+", text) and '"sum": 5' in text
    assert session.send("math/sum").startswith("200")
    assert page.input_value("textarea[data-role=headers]") == '{"token": "abc"}'
    session.shot("explorer-push", tmp_path)
    page.fill("textarea[data-role=headers]", "{}")
    assert session.send("rooms/join").startswith("403")


@pytest.mark.e2e
def test_frame_log_hides_heartbeats_and_filters(session: Session) -> None:
    """PING/PONG frames are hidden until asked for; the filter keeps matching frames only."""
    page = session.page
    page.evaluate("document.querySelector('[data-role=log]').replaceChildren()")
    session.send("math/sum", '{"numbers": [7]}')
    page.click("[data-role=ping]")
    page.wait_for_selector(
        "[data-role=log] > li[data-heartbeat=true][data-dir=in]", state="attached"
    )
    visible = "els => els.filter(e => !e.hidden).map(e => e.textContent)"
    shown = page.eval_on_selector_all("[data-role=log] > li", visible)
    assert any("math/sum" in t for t in shown) and not any('"PONG"' in t for t in shown)
    page.check("[data-role=log-heartbeat]")
    shown = page.eval_on_selector_all("[data-role=log] > li", visible)
    assert any('"route":"PONG"' in t for t in shown) and any('"route":"PING"' in t for t in shown)
    page.fill("[data-role=log-filter]", "PONG")
    assert all("PONG" in t for t in page.eval_on_selector_all("[data-role=log] > li", visible))
    page.fill("[data-role=log-filter]", "no frame says this")
    assert page.eval_on_selector_all("[data-role=log] > li", visible) == []
    page.fill("[data-role=log-filter]", "")
    page.uncheck("[data-role=log-heartbeat]")


@pytest.mark.e2e
def test_copy_as_python_and_cli_run(session: Session, tmp_path: Path) -> None:
    """The "Copy as" Python and CLI snippets for the editor's request run and get its answer;
    the TypeScript one names the route, the payload and the headers."""
    page = session.page
    page.click('[data-route="math/sum"]')
    page.fill("textarea[data-role=payload]", '{"numbers": [20, 22]}')
    page.fill("textarea[data-role=headers]", '{"token": "abc"}')
    page.click("[data-role=copy][data-format=python]")
    python = page.inner_text("[data-role=snippet]")
    run = subprocess.run(
        [sys.executable, "-c", python],
        capture_output=True,
        text=True,
        timeout=PROCESS_TIMEOUT,
        cwd=ROOT,
    )
    assert run.returncode == 0 and run.stdout.strip() == "200 {'sum': 42}", run.stderr
    page.click("[data-role=copy][data-format=cli]")
    cli = page.inner_text("[data-role=snippet]")
    assert cli.startswith("observable-socket call ") and "-H 'token=abc'" in cli
    bin_dir = Path(sys.executable).parent
    run = subprocess.run(
        ["bash", "-c", cli],
        capture_output=True,
        text=True,
        timeout=PROCESS_TIMEOUT,
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
    )
    assert run.returncode == 0 and json.loads(run.stdout)["payload"] == {"sum": 42}, run.stderr
    page.click("[data-role=copy][data-format=typescript]")
    ts = page.inner_text("[data-role=snippet]")
    assert 'new Message("math/sum", {"numbers":[20,22]}, {"token":"abc"})' in ts
    page.fill("textarea[data-role=headers]", "{}")


@pytest.mark.e2e
def test_metrics_panel(session: Session) -> None:
    """With metrics on, the live panel shows the open connection and each route's figures,
    refreshed every second."""
    page = session.page
    page.wait_for_selector("[data-role=metrics-panel]:not([hidden])")
    before = page.inner_text("[data-role=metrics]")
    session.send("math/sum", '{"numbers": [1]}')
    row = page.wait_for_selector('[data-metrics-route="math/sum"]')
    assert row is not None
    page.wait_for_function(
        "() => /\\d+\\.\\d/.test(document.querySelector('[data-metrics-route=\"math/sum\"]')"
        ".children[1].textContent)"
    )
    summary = page.inner_text("[data-role=metrics-summary]")
    assert re.search(r"connections [1-9]\d* open", summary), summary
    assert "backplane connected" in summary and "in flight 0" in summary
    assert before  # the panel had something before the request too


@pytest.mark.e2e
def test_no_console_error_and_no_outside_request(session: Session) -> None:
    """Everything the page did above: no console error, no request beyond its own server."""
    local = (f"http://127.0.0.1:{session.port}/", f"ws://127.0.0.1:{session.port}/")
    assert session.requests, "the page asked for nothing?"
    assert [url for url in session.requests if not url.startswith(local)] == []
    assert session.console_errors == []


class Restartable:
    """uvicorn on one listening socket that outlives each run, so a restart keeps the port:
    connections made while it is down wait in the backlog for the next run."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.listener = free_socket()
        self.port = int(self.listener.getsockname()[1])
        self.server: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        sock = self.listener.dup()
        config = uvicorn.Config(self.app, log_level="warning", lifespan="auto")
        server = self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True
        )
        self.thread.start()
        for _ in range(1000):
            if server.started:
                return
            pause(TIMEOUT / 500)
        raise RuntimeError("uvicorn did not start")

    def stop(self) -> None:
        if self.server is not None and self.thread is not None:
            self.server.should_exit = True
            self.thread.join(PROCESS_TIMEOUT)

    def close(self) -> None:
        self.stop()
        self.listener.close()


@pytest.mark.e2e
def test_survives_a_server_restart(browser: Any, tmp_path: Path) -> None:
    """The server restarts: the state goes to reconnecting, then open; requests work again,
    and the Reconnect button opens a new socket."""
    server = Restartable(explorer_app.router)
    context = browser.new_context()
    try:
        server.start()
        s = Session(context.new_page(), server.port)
        s.page.set_default_timeout(TIMEOUT * 4 * 1000)
        s.page.goto(f"{s.url}/explorer#math/sum")
        s.page.wait_for_selector('[data-role=state][data-state="open"]')
        s.page.wait_for_selector("[data-route='math/sum'][aria-current=true]")
        server.stop()
        s.page.wait_for_selector('[data-role=state][data-state="reconnecting"]')
        assert "1012" in s.page.inner_text("[data-role=log]")
        server.start()
        s.page.wait_for_selector('[data-role=state][data-state="open"]', timeout=TIMEOUT * 6000)
        assert s.send("math/sum", '{"numbers": [2, 3]}').startswith("200")
        # the Reconnect button: a new socket, opened
        opens = "els => els.filter(e => e.textContent.includes('open ws://')).length"
        assert s.page.eval_on_selector_all("[data-role=log] > li", opens) == 2
        s.page.click("[data-role=reconnect]")
        s.page.wait_for_selector('[data-role=state][data-state="open"]')
        assert s.page.eval_on_selector_all("[data-role=log] > li", opens) == 3
    finally:
        context.close()
        server.close()


@pytest.mark.e2e
def test_fastapi_adapter_mounted_page(browser: Any) -> None:
    """Under FastAPI: the page mounted with for_socket("/ws") talks to the router at /ws."""
    from fastapi import FastAPI

    import fastapi_adapter

    router = fastapi_adapter.SocketRouter(explorer_url="/explorer")

    @router.route("whoami")
    async def whoami(ws: Any, headers: Any, payload: Any) -> Any:
        """Who the socket is: Starlette's WebSocket, under the adapter."""
        return {"payload": {"path": ws.url.path}}

    app = FastAPI()
    app.add_api_websocket_route("/ws", router)
    assert router.explorer is not None
    app.mount("/explorer", cast(Any, router.explorer.for_socket("/ws")))
    context = browser.new_context()
    try:
        with running(app) as server:
            s = Session(context.new_page(), server.port)
            s.watch()
            s.page.goto(f"{s.url}/explorer/")
            s.page.wait_for_selector('[data-role=state][data-state="open"]')
            text = s.send("whoami", "null")
            assert text.startswith("200") and '"path": "/ws"' in text
            assert s.console_errors == []
    finally:
        context.close()


@pytest.mark.e2e
def test_page_socket_meets_allowed_origins(browser: Any) -> None:
    """The page's socket is a client like any other: an origin not allowed closes it 1008,
    and the page says so and stops, as the JS client does."""
    router = SocketRouter(explorer_url="/explorer", allowed_origins=["https://app.example.com"])

    @router.route("echo")
    async def echo(ws: Any, headers: Any, payload: Any) -> Any:
        return {"payload": payload}

    context = browser.new_context()
    try:
        with running(router) as server:
            page = context.new_page()
            page.set_default_timeout(TIMEOUT * 4 * 1000)
            page.goto(f"http://127.0.0.1:{server.port}/explorer")
            page.wait_for_selector('[data-role=state][data-state="closed"]')
            assert page.inner_text("[data-role=state]") == "closed 1008 origin not allowed"
            page.wait_for_selector('[data-route="echo"]')
    finally:
        context.close()
