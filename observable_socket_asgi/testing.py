"""An in-process test client: drive a router through ASGI, with no server and no network.

It speaks to the app exactly as a server would (`websocket.connect`, `websocket.receive`,
`websocket.disconnect`) and offers the real client's `request()`, `send()` and `pushes()`,
so a test reads like production code. It has two faces:

- `with TestClient(app) as client:` in a plain `def` test: the app runs on an event loop of
  its own on a background thread (a `Portal`), and `client` is a `BlockingTestClient` whose
  methods block. No async test plugin is needed::

    from observable_socket_asgi.testing import TestClient

    def test_sum():
        with TestClient(router, headers={"token": "abc"}) as client:
            res = client.request("math/sum", [1, 2, 3])
            assert res.ok and res.payload == {"sum": 6}

- `async with TestClient(app) as client:` in an `async def` test, in the test's own loop.
  pytest runs such tests when they are marked `@pytest.mark.observable_socket` (this
  package's pytest plugin, registered on install) or by any async test plugin.

Every wait is bounded by `timeout` (5 s by default), so a stuck handler or a push that
never comes fails the test with a message that says what was awaited, instead of hanging it.
"""

from __future__ import annotations

import asyncio
import logging
import uuid as uuid_module
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any

from .client._correlation import (
    Answer,
    Correlator,
    Dropped,
    Pending,
    PushBuffer,
    Pushed,
    fail_pending,
    report_failed_send,
)
from .client._portal import Portal
from .envelope import Push, Response, encode_request
from .errors import ConnectionClosed, HandshakeRejected, RequestTimeout
from .types import Payload

__all__ = [
    "BlockingTestClient",
    "ConnectionClosed",
    "HandshakeRejected",
    "RequestTimeout",
    "TestClient",
    "websocket_scope",
]

_DEFAULT: Any = object()

logger = logging.getLogger("observable_socket_asgi.testing")


def websocket_scope(
    path: str = "/ws",
    headers: list[tuple[bytes, bytes]] | None = None,
    query_string: bytes = b"",
    *,
    subprotocols: Sequence[str] = (),
    state: dict[str, Any] | None = None,
    server: tuple[str, int] = ("testserver", 80),
    client: tuple[str, int] = ("testclient", 50000),
) -> dict[str, Any]:
    """A `websocket` ASGI scope as a server builds it, for driving an app in-process."""
    return {
        "type": "websocket",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "scheme": "ws",
        "server": server,
        "client": client,
        "root_path": "",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query_string,
        "headers": [(b"host", b"testserver")] if headers is None else headers,
        "subprotocols": list(subprotocols),
        "state": {} if state is None else state,
    }


class TestClient:
    """Drive an ASGI WebSocket app (a `SocketRouter`) in-process, in the test's event loop.

    Args:
        app: the ASGI application.
        path: the WebSocket path of the scope.
        headers: global message headers merged into every message (per-call headers win).
        handshake_headers: HTTP headers of the handshake (`Origin`, `Authorization`...).
        query_string: the handshake URL's query string.
        timeout: seconds any wait may take before the test fails with a clear message.
        lifespan: run the app's lifespan startup on entry and shutdown on exit.
        subprotocols: subprotocols the client offers.
    """

    __test__ = False  # not a pytest test class, despite its name

    def __init__(
        self,
        app: Any,
        path: str = "/ws",
        *,
        headers: Mapping[str, Any] | None = None,
        handshake_headers: Mapping[str, str] | None = None,
        query_string: str = "",
        timeout: float = 5.0,
        lifespan: bool = True,
        subprotocols: Sequence[str] = (),
    ) -> None:
        self.app = app
        self.headers: dict[str, Any] = dict(headers or {})
        self.timeout = timeout
        raw_headers = [(b"host", b"testserver")]
        raw_headers += [
            (key.lower().encode("latin-1"), value.encode("latin-1"))
            for key, value in (handshake_headers or {}).items()
        ]
        self._lifespan_enabled = lifespan
        self._state: dict[str, Any] = {}
        self.scope = websocket_scope(
            path,
            raw_headers,
            query_string.encode(),
            subprotocols=subprotocols,
            state=self._state,
        )
        #: the close code the app sent, once it closed the socket
        self.close_code: int | None = None
        self.close_reason = ""
        # frames and events for the app to receive
        self._inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._accepted: asyncio.Future[None] | None = None
        # the pure part, shared with the real client: pending requests, what a frame is
        self._protocol: Correlator[Pending] = Correlator()
        # unbounded: a test reads what it expects, and a lost push would hide a bug
        self._pushes = PushBuffer(None)
        self._changed: asyncio.Event = asyncio.Event()
        self._lifespan: (
            tuple[asyncio.Task[None], asyncio.Queue[dict[str, Any]], asyncio.Queue[dict[str, Any]]]
            | None
        ) = None
        # the loop the app runs on while used as `with TestClient(app)`
        self._portal: Portal | None = None

    # Public API

    async def __aenter__(self) -> TestClient:
        if self._lifespan_enabled:
            await self._startup()
        loop = asyncio.get_running_loop()
        self._accepted = loop.create_future()
        self._task = loop.create_task(self._run_app())
        # an app that returns or crashes fails the waiting requests at once
        self._task.add_done_callback(lambda _: self._fail_pending())
        await self._inbox.put({"type": "websocket.connect"})
        await self._wait(self._accepted, "the app to accept the WebSocket")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
        if self._lifespan is not None:
            await self._shutdown()

    def __enter__(self) -> BlockingTestClient:
        """Start the app on a loop of its own, for plain `def` tests; see `BlockingTestClient`."""
        if self._task is not None:
            raise RuntimeError("this TestClient is already connected")
        portal = Portal()
        try:
            portal.call(self.__aenter__())
        except BaseException:
            portal.stop()
            raise
        self._portal = portal
        return BlockingTestClient(self, portal)

    def __exit__(self, *exc_info: object) -> None:
        portal, self._portal = self._portal, None
        if portal is None:
            return
        try:
            portal.call(self.__aexit__(None, None, None))
        finally:
            portal.stop()

    @property
    def closed(self) -> bool:
        """True once the app closed the socket or `close()` was called."""
        return self.close_code is not None

    async def request(
        self,
        route: str,
        payload: Payload = None,
        *,
        headers: Mapping[str, Any] | None = None,
        timeout: float | None = _DEFAULT,  # noqa: ASYNC109 (same API as the real client)
    ) -> Response:
        """Send a request and return the app's answer.

        Raises:
            RequestTimeout: no answer within the timeout (the message names route and uuid).
            ConnectionClosed: the app closed the socket first.
        """
        wait = self.timeout if timeout is _DEFAULT or timeout is None else timeout
        self._check_open(route)
        uuid = str(uuid_module.uuid4())
        future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        # sent: the app has the frame as soon as it is queued
        self._protocol.expect(uuid, Pending(future, route, sent=True))
        await self._inbox.put(self._frame(uuid, route, headers, payload))
        try:
            async with asyncio.timeout(wait):
                return await future
        except TimeoutError:
            raise RequestTimeout(route, uuid, wait, True) from None
        finally:
            self._protocol.forget(uuid)
            self._raise_app_error()

    async def send(
        self, route: str, payload: Payload = None, *, headers: Mapping[str, Any] | None = None
    ) -> None:
        """Send a message without waiting for its answer (which is dropped when it comes).

        An error answer (not 2xx) is logged as a warning on `observable_socket_asgi.testing`,
        as the real client does; use `request()` to assert on it.
        """
        self._check_open(route)
        uuid = str(uuid_module.uuid4())
        self._protocol.ignore(uuid, route)
        await self._inbox.put(self._frame(uuid, route, headers, payload))

    async def send_raw(self, data: str | bytes) -> None:
        """Send a frame as is (to test how the app answers malformed input)."""
        if isinstance(data, bytes):
            await self._inbox.put({"type": "websocket.receive", "bytes": data})
        else:
            await self._inbox.put({"type": "websocket.receive", "text": data})

    async def next_push(self, timeout: float | None = None) -> Push:  # noqa: ASYNC109
        """Return the next push, waiting at most `timeout` (the client's default).

        Raises:
            AssertionError: no push came in time (the test fails saying so).
            ConnectionClosed: the app closed the socket and no push is left.
        """
        wait = self.timeout if timeout is None else timeout
        try:
            async with asyncio.timeout(wait):
                while not self._pushes:
                    self._raise_app_error()
                    if self.closed:
                        raise ConnectionClosed(self.close_reason, code=self.close_code)
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"no push arrived within {wait} s") from None
        return self._pushes.pop()

    async def pushes(self) -> AsyncIterator[Push]:
        """Yield pushes until the app closes the socket; fails a test that waits too long."""
        while True:
            try:
                yield await self.next_push()
            except ConnectionClosed:
                return

    async def wait_closed(self) -> int:
        """Wait for the app to close the socket and return its close code (1008 refusals).

        Raises:
            AssertionError: the app did not close it within the timeout.
        """
        try:
            async with asyncio.timeout(self.timeout):
                while self.close_code is None:
                    self._raise_app_error()
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(
                f"the app did not close the socket within {self.timeout} s"
            ) from None
        return self.close_code

    async def close(self, code: int = 1000) -> None:
        """Disconnect and wait for the app to return; re-raises an error the app raised."""
        task = self._task
        if task is None:
            return
        if not task.done():
            await self._inbox.put({"type": "websocket.disconnect", "code": code})
            try:
                await self._wait(task, "the app to return after the disconnect")
            except AssertionError:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                raise
        if self.close_code is None:
            self.close_code = code
        self._fail_pending()
        self._raise_app_error()

    # Private methods

    def _frame(
        self, uuid: str, route: str, headers: Mapping[str, Any] | None, payload: Payload
    ) -> dict[str, Any]:
        merged = dict(self.headers)
        if headers:
            merged.update(headers)
        return {"type": "websocket.receive", "text": encode_request(uuid, route, merged, payload)}

    def _check_open(self, route: str) -> None:
        if self._task is None:
            raise RuntimeError("use the TestClient as `async with TestClient(app) as client:`")
        self._raise_app_error()
        if self.closed:
            raise ConnectionClosed(self.close_reason, code=self.close_code, route=route)

    async def _wait(self, awaitable: asyncio.Future[Any], what: str) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                await asyncio.shield(awaitable)
        except TimeoutError:
            raise AssertionError(f"timed out after {self.timeout} s waiting for {what}") from None

    async def _run_app(self) -> None:
        await self.app(self.scope, self._receive, self._send)

    async def _receive(self) -> dict[str, Any]:
        return await self._inbox.get()

    async def _send(self, message: Mapping[str, Any]) -> None:
        kind = message["type"]
        if kind == "websocket.accept":
            if self._accepted is not None and not self._accepted.done():
                self._accepted.set_result(None)
        elif kind == "websocket.send":
            data = message.get("text")
            if data is None:
                data = message.get("bytes") or b""
            self._dispatch(data)
        elif kind == "websocket.close":
            self.close_code = int(message.get("code", 1000))
            self.close_reason = str(message.get("reason") or "")
            if self._accepted is not None and not self._accepted.done():
                self._accepted.set_exception(HandshakeRejected(self.close_code, self.close_reason))
            self._fail_pending()
            await self._inbox.put({"type": "websocket.disconnect", "code": self.close_code})
        self._changed.set()

    def _dispatch(self, data: str | bytes) -> None:
        incoming = self._protocol.receive(data)
        if isinstance(incoming, Answer):
            incoming.waiter.answer(incoming.response)
        elif isinstance(incoming, Pushed):
            self._pushes.add(incoming.push)
        elif isinstance(incoming, Dropped):
            report_failed_send(logger, incoming)
        # a PONG: dropped

    def _fail_pending(self) -> None:
        fail_pending(self._protocol, self.close_code, self.close_reason)
        self._changed.set()

    def _raise_app_error(self) -> None:
        task = self._task
        if task is not None and task.done() and not task.cancelled():
            error = task.exception()
            if error is not None:
                raise AssertionError(f"the app raised {error!r}") from error

    async def _startup(self) -> None:
        inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        scope = {
            "type": "lifespan",
            "asgi": {"version": "3.0", "spec_version": "2.0"},
            "state": self._state,
        }

        async def run() -> None:
            try:
                await self.app(scope, inbox.get, outbox.put)
            finally:
                await outbox.put({"type": "lifespan.ended"})

        task = asyncio.get_running_loop().create_task(run())
        await inbox.put({"type": "lifespan.startup"})
        message = await self._next_lifespan(outbox, "lifespan startup")
        if message["type"] == "lifespan.startup.failed":
            await asyncio.gather(task, return_exceptions=True)
            raise AssertionError(f"lifespan startup failed: {message.get('message', '')}")
        if message["type"] == "lifespan.ended":
            # the app does not speak lifespan (it returned or raised): run without it
            await asyncio.gather(task, return_exceptions=True)
            return
        self._lifespan = (task, inbox, outbox)

    async def _shutdown(self) -> None:
        assert self._lifespan is not None
        task, inbox, outbox = self._lifespan
        self._lifespan = None
        await inbox.put({"type": "lifespan.shutdown"})
        message = await self._next_lifespan(outbox, "lifespan shutdown")
        await asyncio.gather(task, return_exceptions=True)
        if message["type"] == "lifespan.shutdown.failed":
            raise AssertionError(f"lifespan shutdown failed: {message.get('message', '')}")

    async def _next_lifespan(
        self, outbox: asyncio.Queue[dict[str, Any]], what: str
    ) -> dict[str, Any]:
        try:
            async with asyncio.timeout(self.timeout):
                return await outbox.get()
        except TimeoutError:
            raise AssertionError(f"timed out after {self.timeout} s waiting for {what}") from None


class BlockingTestClient:
    """The blocking face of a `TestClient`, for plain `def` tests: `with TestClient(app) as c`.

    The app runs on an event loop of its own on a background thread, so sync and async
    handlers, pushes and the lifespan behave as under a server; each method blocks until the
    async `TestClient` method of the same name returns, and raises what it raises.
    """

    __test__ = False

    def __init__(self, client: TestClient, portal: Portal) -> None:
        #: the async client underneath (its methods must run on `portal.loop`)
        self.client = client
        self.portal = portal

    # Public API

    @property
    def closed(self) -> bool:
        """True once the app closed the socket or `close()` was called."""
        return self.client.closed

    @property
    def close_code(self) -> int | None:
        """The close code the app sent, once it closed the socket."""
        return self.client.close_code

    @property
    def close_reason(self) -> str:
        """The close reason the app sent."""
        return self.client.close_reason

    def request(
        self,
        route: str,
        payload: Payload = None,
        *,
        headers: Mapping[str, Any] | None = None,
        timeout: float | None = _DEFAULT,
    ) -> Response:
        """Send a request and return the app's answer; see `TestClient.request`."""
        return self.portal.call(
            self.client.request(route, payload, headers=headers, timeout=timeout)
        )

    def send(
        self, route: str, payload: Payload = None, *, headers: Mapping[str, Any] | None = None
    ) -> None:
        """Send a message without waiting for its answer; see `TestClient.send`."""
        self.portal.call(self.client.send(route, payload, headers=headers))

    def send_raw(self, data: str | bytes) -> None:
        """Send a frame as is."""
        self.portal.call(self.client.send_raw(data))

    def next_push(self, timeout: float | None = None) -> Push:
        """Return the next push; see `TestClient.next_push`."""
        return self.portal.call(self.client.next_push(timeout))

    def pushes(self) -> Iterator[Push]:
        """Yield pushes until the app closes the socket; fails a test that waits too long."""
        while True:
            try:
                yield self.next_push()
            except ConnectionClosed:
                return

    def wait_closed(self) -> int:
        """Wait for the app to close the socket and return its close code."""
        return self.portal.call(self.client.wait_closed())

    def close(self, code: int = 1000) -> None:
        """Disconnect and wait for the app to return; re-raises an error the app raised."""
        self.portal.call(self.client.close(code))
