"""An asyncio client for ObservableSocket servers, on the `websockets` library.

It behaves like the JS client: requests are correlated by a fresh uuid4 string, global
headers are merged into every message (PINGs included), a PING goes out every
`heartbeat_interval` and the socket counts as dead when no PONG answers it, and a lost
connection is reopened with backoff unless the server closed it with 1008 or 1011; a
handshake the server refuses with `Retry-After` (503, overload) is not retried sooner.

Rules of the client's life (this module alone changes them)::

    CONNECTING   the first handshake; `connect()` raises `ConnectFailed` if it fails.
    OPEN         requests are sent and answered; pushes are delivered.
    RECONNECTING the socket closed: every pending request has already failed with
                 `ConnectionClosed` (nothing is resent); new requests wait, within their
                 timeout, for the next connection. Once reconnected, the calls made with
                 `subscribe()` are sent again with the last position seen on their topic.
    CLOSED       `close()` was called, the server closed with 1008/1011, or reconnecting
                 gave up: requests raise `ConnectionClosed`, `pushes()` ends.

Pushes (messages the server sends unasked) go to the `on_push` callback when one is given,
otherwise into a bounded buffer read with `pushes()`. When the buffer is full the oldest
push is dropped (`overflow="drop_oldest"`, the default: a listener wants what is current)
or the new one is (`overflow="drop_newest"`); `dropped_pushes` counts them and the first
drop of each overflow episode is logged as a warning.

Only the I/O lives here: frames are built and read by `envelope.py`, which answer belongs to
which request and the push buffer are the pure `_correlation.py` (shared with the test
client), and reconnection delays come from the pure `_backoff.py`.
"""

from __future__ import annotations

import asyncio
import logging
import uuid as uuid_module
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

try:
    import websockets
    from websockets.asyncio.client import ClientConnection
    from websockets.protocol import State
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "the client needs websockets; install the extra: "
        'pip install "observable-socket-asgi[client]"'
    ) from exc

from .._backoff import backoff, may_reconnect, parse_retry_after, retry_delay
from .._concurrency import is_async_callable
from ..envelope import PING, Push, Response, encode_request, push_from, response_from
from ..errors import ClientError, ConnectFailed, ConnectionClosed, ProtocolError, RequestTimeout
from ..pubsub._resume import Position, Positions
from ..types import Payload
from ._correlation import (
    Answer,
    Correlator,
    Dropped,
    Overflow,
    Pong,
    PushBuffer,
    Pushed,
    report_failed_send,
)

__all__ = [
    "Client",
    "Position",
    "ClientError",
    "ConnectFailed",
    "ConnectionClosed",
    "Push",
    "RequestTimeout",
    "connect",
    "push_from",
    "response_from",
]

logger = logging.getLogger("observable_socket_asgi.client")

_DEFAULT: Any = object()


PushCallback = Callable[[Push], Awaitable[None] | None]
OpenCallback = Callable[["Client"], Awaitable[None] | None]


class _Pending:
    """One request waiting for its answer."""

    __slots__ = ("future", "route", "sent")

    def __init__(self, future: asyncio.Future[Response], route: str) -> None:
        self.future = future
        self.route = route
        # set just before the frame is handed to the socket: from then on the server may
        # have it, and a close says so
        self.sent = False


@dataclass(frozen=True, slots=True)
class _Subscribe:
    """A subscribe call the client sends again, with its position, after every reconnect."""

    route: str
    payload: dict[str, Any]
    topic: str
    since_field: str
    headers: Mapping[str, Any] | None
    on_answer: Callable[[Response], Awaitable[None] | None] | None


class Client:
    """A connection to an ObservableSocket server that survives restarts.

    Use `connect(...)` as an async context manager rather than building one directly.

    Args:
        url: the `ws://` or `wss://` URL.
        headers: global message headers merged into every message, PINGs included (the JS
            client's `globalHeaders`); per-call headers win.
        timeout: the default seconds `request()` waits for its answer; None waits forever.
        heartbeat_interval: seconds between PINGs; None disables the heartbeat.
        heartbeat_timeout: seconds a PING may wait for its PONG before the socket counts as
            dead; it is then closed, pending requests fail, and it is reopened.
        reconnect: reopen a lost connection (never after close codes 1008 and 1011).
        max_attempts: reconnection attempts before giving up; None tries forever.
        backoff_initial: the first delay before reconnecting; the delays between attempts
            grow exponentially, with full jitter. They reset, and so does the attempt count,
            only once a connection has stayed open for `backoff_max` seconds: a server that
            accepts and closes at once (1013 "try again later") is retried ever more slowly
            and counts against `max_attempts`, instead of being hammered.
        backoff_max: the longest delay between attempts.
        backoff_factor: how much each delay grows over the previous one.
        on_push: called with every push (sync, or async: then run as a task); when given,
            pushes are not buffered for `pushes()`.
        on_open: called with the client after every successful handshake, the first and each
            reconnection (sync, or async: then run as a task that may make requests). The
            server forgets a connection's subscriptions when it closes: renew them here.
            Its failure is logged, never raised.
        max_pushes: the size of the push buffer read by `pushes()`.
        overflow: `"drop_oldest"` or `"drop_newest"`: which push a full buffer loses.
        open_timeout: seconds for each handshake.
        tracing: add the current OpenTelemetry trace context (`traceparent`) to the headers
            of every request, so the server's span continues the caller's trace; a
            `traceparent` given in the headers wins. Needs the `otel` extra.
        connect_options: passed to `websockets.asyncio.client.connect` (for instance
            `additional_headers` for handshake headers, `origin`, `ssl`, `max_size`).
            The library's own keepalive is off and compression is off unless given here.
    """

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, Any] | None = None,
        timeout: float | None = 30.0,
        heartbeat_interval: float | None = 30.0,
        heartbeat_timeout: float = 20.0,
        reconnect: bool = True,
        max_attempts: int | None = 5,
        backoff_initial: float = 0.5,
        backoff_max: float = 10.0,
        backoff_factor: float = 2.0,
        on_push: PushCallback | None = None,
        on_open: OpenCallback | None = None,
        max_pushes: int = 1024,
        overflow: Overflow = "drop_oldest",
        open_timeout: float = 10.0,
        tracing: bool = False,
        **connect_options: Any,
    ) -> None:
        # the pure part: pending requests by uuid, what a frame is, the push buffer
        self._protocol: Correlator[_Pending] = Correlator()
        self._pushes = PushBuffer(max_pushes, overflow)
        if heartbeat_interval is not None and not heartbeat_interval > 0:
            raise ValueError(
                f"heartbeat_interval must be positive or None, got {heartbeat_interval}"
            )
        if not heartbeat_timeout > 0:
            raise ValueError(f"heartbeat_timeout must be positive, got {heartbeat_timeout}")
        if max_attempts is not None and max_attempts < 0:
            raise ValueError(f"max_attempts must be >= 0 or None, got {max_attempts}")
        self.url = url
        self.headers: dict[str, Any] = dict(headers or {})
        self.timeout = timeout
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_timeout = heartbeat_timeout
        self.reconnect = reconnect
        self.max_attempts = max_attempts
        self._backoff = (backoff_initial, backoff_max, backoff_factor)
        # adds the trace context to a request's headers; None unless tracing
        self._inject: Callable[[dict[str, Any]], Any] | None = None
        if tracing:
            from ..observe.tracing import inject

            self._inject = inject
        # Reconnection state that outlives a short-lived connection: the delay generator and
        # the attempts made since the last connection that stayed up for backoff_max seconds.
        self._delays: Iterator[float] | None = None
        self._attempts = 0
        self._opened_at = 0.0
        self._on_push = on_push
        self._on_push_async = on_push is not None and is_async_callable(on_push)
        self._on_open = on_open
        self._connect_options: dict[str, Any] = {
            "open_timeout": open_timeout,
            "ping_interval": None,  # the protocol's PING/PONG is the heartbeat
            "compression": None,  # small JSON frames: deflate costs more than it saves
            "close_timeout": 5.0,
            **connect_options,
        }
        # the open socket, or None while (re)connecting or closed
        self._ws: ClientConnection | None = None
        # set while _ws is usable, and once the client is closed for good (waiters re-check)
        self._ready = asyncio.Event()
        # the PONG the heartbeat waits for
        self._pong: asyncio.Future[None] | None = None
        self._push_waiter: asyncio.Future[None] | None = None
        self._callback_tasks: set[asyncio.Task[None]] = set()
        # the task that owns the socket: reads it, runs the heartbeat, reconnects
        self._runner: asyncio.Task[None] | None = None
        self._closing = False
        self._closed_error: ConnectionClosed | None = None
        self._close_done: asyncio.Future[None] | None = None
        # why the current socket was given up by this side (heartbeat), if it was
        self._dropped_reason: str | None = None
        #: the last position (`headers.offset`, `headers.epoch`) seen per topic
        self.positions = Positions()
        # topic -> the subscribe call to send again, with `since`, after every reconnect
        self._subscriptions: dict[str, _Subscribe] = {}
        #: the last close code the server sent (or 1006), for callers that want it
        self.close_code: int | None = None
        self.close_reason: str = ""

    # Public API

    async def connect(self) -> Client:
        """Open the first connection.

        Raises:
            ConnectFailed: the handshake failed (refused, unreachable, rejected, timed out).
        """
        if self._runner is not None:
            raise RuntimeError("this client is already connected")
        ws = await self._open()
        self._attach(ws)
        self._runner = asyncio.get_running_loop().create_task(self._run(ws))
        return self

    @property
    def max_pushes(self) -> int:
        """The size of the push buffer read by `pushes()`."""
        assert self._pushes.max_pushes is not None
        return self._pushes.max_pushes

    @property
    def overflow(self) -> Overflow:
        """Which push a full buffer loses: `"drop_oldest"` or `"drop_newest"`."""
        return self._pushes.overflow

    @property
    def dropped_pushes(self) -> int:
        """Pushes lost to a full buffer since the client was created."""
        return self._pushes.dropped

    @property
    def connected(self) -> bool:
        """True while a socket is open."""
        return self._ws is not None

    @property
    def closed(self) -> bool:
        """True once the client is closed for good (by `close()`, 1008/1011, or giving up)."""
        return self._closed_error is not None

    async def request(
        self,
        route: str,
        payload: Payload = None,
        *,
        headers: Mapping[str, Any] | None = None,
        timeout: float | None = _DEFAULT,  # noqa: ASYNC109 (the API the JS client has)
        uuid: str | None = None,
    ) -> Response:
        """Send a request and return its answer, whatever its status.

        While the client is reconnecting the request waits for the next connection, within
        its timeout. Many requests may be in flight at once.

        Args:
            route: the route name.
            payload: any JSON value.
            headers: merged over the global headers for this request.
            timeout: seconds to wait (the client's default when omitted; None: no limit).
            uuid: the request's uuid; a fresh one when omitted. Give the same uuid to retry
                a request to an idempotent route after `ConnectionClosed` with
                `may_have_reached_server`: it runs at most once.

        Raises:
            RequestTimeout: no answer in time (also an `asyncio.TimeoutError`).
            ConnectionClosed: the connection closed first, or the client is closed.
            EncodeError: the payload or headers cannot be encoded as JSON.
            ValueError: `uuid` is the uuid of a request still waiting for its answer.
        """
        if timeout is _DEFAULT:
            timeout = self.timeout
        if uuid is None:
            uuid = str(uuid_module.uuid4())
        elif self._protocol.waits_for(uuid):
            raise ValueError(f"uuid {uuid!r} is already waiting for an answer")
        frame = encode_request(uuid, route, self._merge(headers), payload)
        pending = _Pending(asyncio.get_running_loop().create_future(), route)
        try:
            async with asyncio.timeout(timeout):
                ws = await self._wait_open(route)
                self._protocol.expect(uuid, pending)
                await self._send_frame(ws, frame, pending)
                return await pending.future
        except TimeoutError as exc:
            if isinstance(exc, ClientError):
                raise
            assert timeout is not None
            raise RequestTimeout(route, uuid, timeout, pending.sent) from None
        finally:
            self._protocol.forget(uuid)
            future = pending.future
            if future.done() and not future.cancelled():
                future.exception()  # retrieved: no "never retrieved" warning
            else:
                future.cancel()

    async def subscribe(
        self,
        route: str,
        payload: Mapping[str, Any] | None = None,
        *,
        topic: str,
        since_field: str = "since",
        headers: Mapping[str, Any] | None = None,
        on_answer: Callable[[Response], Awaitable[None] | None] | None = None,
    ) -> Response:
        """Call a subscribe route now, and again after every reconnect, resuming `topic`.

        The payload is sent with `since_field` set to the last position seen on `topic`
        (`{"offset": n, "epoch": e}` from the pushes' headers, or None), so a route that
        passes it to `ws.subscribe(topic, since=...)` replays what was missed. An answer
        whose payload holds `offset` and `epoch` counts as a position too.

        Args:
            route: the app's subscribe route.
            payload: the route's payload (a mapping); `since_field` is added to it.
            topic: the topic the route subscribes to, as the server names it.
            since_field: the payload key the route reads the position from.
            headers: merged over the global headers.
            on_answer: called (sync or async) with the answer of every re-run after a
                reconnect, e.g. to reload state when `recovered` is false; a failure or a
                lost connection is logged.

        Returns:
            The answer of the first call.

        Raises:
            As `request()`; TypeError: `payload` is not a mapping.
        """
        if payload is not None and not isinstance(payload, Mapping):
            raise TypeError(f"subscribe payload must be a mapping, got {type(payload).__name__}")
        call = _Subscribe(route, dict(payload or {}), topic, since_field, headers, on_answer)
        self._subscriptions[topic] = call
        return await self._subscribe(call)

    def forget_subscription(self, topic: str) -> None:
        """Stop re-running the subscribe call of `topic` after reconnects; forget its position."""
        self._subscriptions.pop(topic, None)
        self.positions.forget(topic)

    def position(self, topic: str) -> Position | None:
        """The last position seen on `topic` (from pushes or a subscribe answer), or None."""
        return self.positions.get(topic)

    async def send(
        self,
        route: str,
        payload: Payload = None,
        *,
        headers: Mapping[str, Any] | None = None,
    ) -> None:
        """Send a message without waiting for its answer (fire and forget).

        The frame still carries a fresh uuid, since the server answers every request; that
        answer is dropped on arrival, but an error answer (not 2xx: a route that does not
        exist, a refused check) is logged as a warning on the
        `observable_socket_asgi.client` logger with its route, uuid, status and payload. It
        waits, within the default timeout, for a connection if the client is reconnecting.

        Raises:
            RequestTimeout: no connection within the default timeout.
            ConnectionClosed: the client is closed, or the socket closed while sending.
        """
        uuid = str(uuid_module.uuid4())
        frame = encode_request(uuid, route, self._merge(headers), payload)
        pending = _Pending(asyncio.get_running_loop().create_future(), route)
        try:
            async with asyncio.timeout(self.timeout):
                ws = await self._wait_open(route)
                self._protocol.ignore(uuid, route)
                await self._send_frame(ws, frame, pending)
        except TimeoutError as exc:
            if isinstance(exc, ClientError):
                raise
            assert self.timeout is not None
            raise RequestTimeout(route, uuid, self.timeout, pending.sent) from None
        finally:
            pending.future.cancel()

    async def pushes(self) -> AsyncIterator[Push]:
        """Yield pushes as they arrive, across reconnections, until the client is closed.

        Read it from one task: several readers would share the pushes between them.

        Raises:
            RuntimeError: the client was given an `on_push` callback, which takes them all.
        """
        if self._on_push is not None:
            raise RuntimeError("pushes go to the on_push callback; pushes() has none to give")
        loop = asyncio.get_running_loop()
        while True:
            while self._pushes:
                yield self._pushes.pop()
            if self._closed_error is not None:
                return
            waiter = self._push_waiter = loop.create_future()
            try:
                await waiter
            finally:
                self._push_waiter = None

    async def close(self) -> None:
        """Close the connection for good; pending requests fail with `ConnectionClosed`.

        Idempotent and safe from any task of the client's loop, including a push callback.
        """
        if self._close_done is not None:
            if asyncio.current_task() is not self._runner:
                await asyncio.shield(self._close_done)
            return
        self._close_done = asyncio.get_running_loop().create_future()
        try:
            self._closing = True
            self._finish(ConnectionClosed("client closed", code=1000))
            ws = self._ws
            if ws is not None:
                self._fail_pending(1000, "client closed")
                await ws.close()
                self._ws = None
            runner = self._runner
            if runner is not None and runner is not asyncio.current_task():
                runner.cancel()
                await asyncio.gather(runner, return_exceptions=True)
            current = asyncio.current_task()
            tasks = [task for task in self._callback_tasks if task is not current]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            self._close_done.set_result(None)

    async def __aenter__(self) -> Client:
        if self._runner is None:
            await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # Private methods: sending

    async def _subscribe(self, call: _Subscribe) -> Response:
        position = self.positions.get(call.topic)
        payload = {
            **call.payload,
            call.since_field: None if position is None else position.to_dict(),
        }
        answer = await self.request(call.route, payload, headers=call.headers)
        if answer.ok:
            self.positions.observe(call.topic, answer.payload)
        return answer

    async def _resubscribe(self) -> None:
        """Re-run every subscribe call after a reconnect; failures are logged, not raised."""
        for call in list(self._subscriptions.values()):
            try:
                answer = await self._subscribe(call)
                if call.on_answer is not None:
                    result = call.on_answer(answer)
                    if result is not None:
                        await result
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("resubscribing %r through %r failed", call.topic, call.route)

    def _merge(self, headers: Mapping[str, Any] | None) -> dict[str, Any]:
        inject = self._inject
        if not headers and inject is None:
            return self.headers
        merged = dict(self.headers)
        if headers:
            merged.update(headers)
        if inject is not None:
            for key, value in inject({}).items():
                merged.setdefault(key, value)
        return merged

    async def _wait_open(self, route: str) -> ClientConnection:
        while True:
            if self._closed_error is not None:
                error = self._closed_error
                raise ConnectionClosed(error.reason, code=error.code, route=route)
            ws = self._ws
            if ws is not None:
                return ws
            await self._ready.wait()

    async def _send_frame(self, ws: ClientConnection, frame: str, pending: _Pending) -> None:
        if ws.state is not State.OPEN:
            # closing: the server's close frame may be in already, with the code that matters
            rcvd = ws.protocol.close_rcvd
            if rcvd is not None:
                raise ConnectionClosed(rcvd.reason, code=rcvd.code, route=pending.route)
            raise ConnectionClosed("connection is closing", code=ws.close_code, route=pending.route)
        pending.sent = True
        try:
            await ws.send(frame)
        except websockets.ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd is not None else 1006
            reason = exc.rcvd.reason if exc.rcvd is not None else ""
            raise ConnectionClosed(
                reason, code=code, may_have_reached_server=True, route=pending.route
            ) from None

    # Private methods: the socket's owner

    async def _open(self) -> ClientConnection:
        try:
            return await websockets.connect(self.url, **self._connect_options)
        except (OSError, TimeoutError, websockets.InvalidHandshake, websockets.InvalidURI) as exc:
            status = retry_after = None
            if isinstance(exc, websockets.InvalidStatus):
                status = exc.response.status_code
                retry_after = parse_retry_after(exc.response.headers.get("Retry-After"))
            raise ConnectFailed(
                f"cannot connect to {self.url}: {_describe(exc)}", status, retry_after
            ) from exc

    def _attach(self, ws: ClientConnection) -> None:
        self._ws = ws
        self._dropped_reason = None
        self._ready.set()
        if self._on_open is not None:
            # a task: the callback may make requests, which need the reader running
            task = asyncio.get_running_loop().create_task(self._run_on_open(self._on_open))
            self._callback_tasks.add(task)
            task.add_done_callback(self._callback_tasks.discard)

    async def _run_on_open(self, callback: OpenCallback) -> None:
        """Run the on_open callback; its failure is logged, never raised."""
        try:
            result = callback(self)
            if result is not None:
                await result
        except Exception:
            logger.exception("on_open callback failed for %s", self.url)

    async def _run(self, ws: ClientConnection) -> None:
        """Own the socket: read it, beat the heart, reconnect. Never raises; logs failures.

        On return (the client is closed for good) nothing it started is still running.
        """
        loop = asyncio.get_running_loop()
        try:
            while True:
                self._opened_at = loop.time()
                code, reason = await self._serve(ws)
                if loop.time() - self._opened_at >= self._backoff[1]:
                    self._delays = None  # it was a healthy connection: start afresh
                    self._attempts = 0
                self._ws = None
                self._ready.clear()
                self.close_code, self.close_reason = code, reason
                self._fail_pending(code, reason)
                if self._closing:
                    return
                if not self.reconnect or not may_reconnect(code):
                    logger.info(
                        "connection to %s closed (%s %r): not reconnecting", self.url, code, reason
                    )
                    self._finish(ConnectionClosed(reason, code=code))
                    return
                logger.info("connection to %s closed (%s %r): reconnecting", self.url, code, reason)
                new_ws = await self._reconnect()
                if new_ws is None:
                    gave_up = f"{reason or 'closed'}; gave up reconnecting"
                    self._finish(ConnectionClosed(gave_up, code=code))
                    return
                ws = new_ws
                self._attach(ws)
                if self._subscriptions:
                    task = loop.create_task(self._resubscribe())
                    self._callback_tasks.add(task)
                    task.add_done_callback(self._callback_tasks.discard)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("client connection to %s failed", self.url)
            self._fail_pending(1006, "client failure")
            self._finish(ConnectionClosed("client failure", code=1006))
            if self._ws is not None:
                await self._ws.close()

    async def _serve(self, ws: ClientConnection) -> tuple[int | None, str]:
        """Read `ws` until it closes; return the close code and reason."""
        heart: asyncio.Task[None] | None = None
        if self.heartbeat_interval is not None:
            heart = asyncio.get_running_loop().create_task(self._heartbeat(ws))
        try:
            while True:
                data = await ws.recv()
                self._dispatch(data)
        except websockets.ConnectionClosed:
            pass
        finally:
            if heart is not None:
                heart.cancel()
                await asyncio.gather(heart, return_exceptions=True)
        if self._dropped_reason is not None:
            return 1006, self._dropped_reason
        rcvd = ws.protocol.close_rcvd
        if rcvd is None:
            return 1006, ""
        return rcvd.code, rcvd.reason

    async def _heartbeat(self, ws: ClientConnection) -> None:
        """PING every `heartbeat_interval`; give the socket up when a PONG is late."""
        assert self.heartbeat_interval is not None
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            uuid = str(uuid_module.uuid4())
            self._protocol.ignore(uuid)  # a server without a heartbeat answers 404: not a push
            pong = self._pong = loop.create_future()
            try:
                # the send is inside the deadline too: a peer that stops reading is as
                # dead as one that stops answering
                async with asyncio.timeout(self.heartbeat_timeout):
                    await ws.send(encode_request(uuid, PING, self.headers, {}))
                    await pong
            except websockets.ConnectionClosed:
                return
            except TimeoutError:
                reason = f"no PONG within {self.heartbeat_timeout} s"
                logger.warning("connection to %s is dead: %s", self.url, reason)
                self._dropped_reason = reason
                # Fail the waiters now: the close handshake with a dead peer may take
                # close_timeout, and nobody should wait it out.
                self._fail_pending(1006, reason)
                closer = loop.create_task(ws.close(1001, "heartbeat timeout"))
                self._callback_tasks.add(closer)
                closer.add_done_callback(self._callback_tasks.discard)
                return
            finally:
                self._pong = None

    async def _reconnect(self) -> ClientConnection | None:
        if self._delays is None:
            self._delays = backoff(*self._backoff)
        retry_after: float | None = None
        while self.max_attempts is None or self._attempts < self.max_attempts:
            self._attempts += 1
            await asyncio.sleep(retry_delay(next(self._delays), retry_after))
            try:
                return await self._open()
            except ConnectFailed as exc:
                # a server refusing with 503 says when to come back: never sooner
                retry_after = exc.retry_after
                logger.info(
                    "reconnection attempt %d to %s failed: %s", self._attempts, self.url, exc
                )
        logger.warning("gave up reconnecting to %s after %d attempts", self.url, self._attempts)
        return None

    # Private methods: incoming frames and endings

    def _dispatch(self, data: str | bytes) -> None:
        try:
            incoming = self._protocol.receive(data)
        except ProtocolError as exc:
            logger.warning("dropped a frame from %s: %s", self.url, exc.message)
            return
        if isinstance(incoming, Answer):
            future = incoming.waiter.future
            if not future.done():
                future.set_result(incoming.response)
        elif isinstance(incoming, Pushed):
            push = incoming.push
            self.positions.observe(push.route, push.headers)
            self._deliver(push)
        elif isinstance(incoming, Pong):
            pong = self._pong
            if pong is not None and not pong.done():
                pong.set_result(None)
        elif isinstance(incoming, Dropped):
            # nobody waits for it; but a send() that failed must not fail silently
            report_failed_send(logger, incoming)

    def _deliver(self, push: Push) -> None:
        callback = self._on_push
        if callback is not None:
            if self._on_push_async:
                task = asyncio.get_running_loop().create_task(self._run_callback(callback, push))
                self._callback_tasks.add(task)
                task.add_done_callback(self._callback_tasks.discard)
                return
            try:
                callback(push)
            except Exception:
                logger.exception("on_push callback failed for route %r", push.route)
            return
        if self._pushes.add(push):
            logger.warning(
                "push buffer full (%d): dropping the %s push(es) until it is read",
                self.max_pushes,
                "oldest" if self.overflow == "drop_oldest" else "newest",
            )
        self._wake_pushes()

    async def _run_callback(self, callback: PushCallback, push: Push) -> None:
        """Run an async push callback; its failure is logged, never raised."""
        try:
            result = callback(push)
            if result is not None:
                await result
        except Exception:
            logger.exception("on_push callback failed for route %r", push.route)

    def _wake_pushes(self) -> None:
        waiter = self._push_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail_pending(self, code: int | None, reason: str) -> None:
        for item in self._protocol.take_all():
            if not item.future.done():
                item.future.set_exception(
                    ConnectionClosed(
                        reason, code=code, may_have_reached_server=item.sent, route=item.route
                    )
                )

    def _finish(self, error: ConnectionClosed) -> None:
        if self._closed_error is None:
            self._closed_error = error
        self._ready.set()  # wake request() waiters: they see the closed state
        self._wake_pushes()


def connect(url: str, **options: Any) -> Client:
    """Return a client for `url`, to use as `async with connect(url) as sock:`.

    The options are `Client`'s: `headers`, `timeout`, `heartbeat_interval`,
    `heartbeat_timeout`, `reconnect`, `max_attempts`, `on_push`, `on_open`, `max_pushes`,
    `overflow`...

    Raises:
        ConnectFailed: on entering the block, if the first handshake fails.
    """
    return Client(url, **options)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "timed out during the handshake"
    if isinstance(exc, websockets.InvalidStatus):
        return f"the server answered HTTP {exc.response.status_code} instead of a WebSocket"
    return str(exc) or type(exc).__name__
