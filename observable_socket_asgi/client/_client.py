"""An asyncio client for ObservableSocket servers, on the `websockets` library: the request API.

It behaves like the JS client: requests are correlated by a fresh uuid4 string, global
headers are merged into every message (PINGs included), a PING goes out every
`heartbeat_interval` and the socket counts as dead when no PONG answers it, and a lost
connection is reopened with backoff unless the server closed it with 1008 or 1011; a
handshake the server refuses with `Retry-After` (503, overload) is not retried sooner.

The client's life is an explicit state, `client.state` (a `ClientState`: CONNECTING, OPEN,
RECONNECTING, CLOSING, CLOSED); its rules are in `_state.py`, and only the socket's owner
(`_connection.py`, the class `Client` builds on) moves it.

Pushes (messages the server sends unasked) go to the `on_push` callback when one is given,
otherwise into a bounded buffer read with `pushes()`. When the buffer is full the oldest
push is dropped (`overflow="drop_oldest"`, the default: a listener wants what is current)
or the new one is (`overflow="drop_newest"`); `dropped_pushes` counts them and the first
drop of each overflow episode is logged as a warning.

Only the I/O lives in this folder's asyncio modules: frames are built and read by
`envelope.py`, which answer belongs to which request and the push buffer are the pure
`_correlation.py` (shared with the test client), the last position per topic is the pure
`_positions.py`, and reconnection delays come from the pure `_backoff.py`.
"""

from __future__ import annotations

import asyncio
import uuid as uuid_module
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..envelope import Push, Response, encode_request
from ..errors import ClientError, RequestTimeout
from ..types import Payload
from ._callbacks import Callback, invoke
from ._connection import ReconnectingSocket, logger
from ._correlation import Overflow, Pending, PushBuffer
from ._positions import Position, Positions
from ._state import ClientState

# the package `client` re-exports these with the rest of the client's public names
__all__ = ["Client", "connect"]

_DEFAULT: Any = object()


PushCallback = Callback[Push]
OpenCallback = Callback["Client"]


@dataclass(frozen=True, slots=True)
class _Subscribe:
    """A subscribe call the client sends again, with its position, after every reconnect."""

    route: str
    payload: dict[str, Any]
    topic: str
    since_field: str
    headers: Mapping[str, Any] | None
    on_answer: Callback[Response] | None


class Client(ReconnectingSocket):
    """A connection to an ObservableSocket server that survives restarts.

    Use `connect(...)` as an async context manager rather than building one directly.
    Where it is in its life is `state`, a `ClientState`: CONNECTING, OPEN, RECONNECTING,
    CLOSING, CLOSED.

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
        super().__init__(
            url,
            headers,
            (heartbeat_interval, heartbeat_timeout),
            reconnect,
            max_attempts,
            (backoff_initial, backoff_max, backoff_factor),
            {
                "open_timeout": open_timeout,
                "ping_interval": None,  # the protocol's PING/PONG is the heartbeat
                "compression": None,  # small JSON frames: deflate costs more than it saves
                "close_timeout": 5.0,
                **connect_options,
            },
        )
        self.timeout = timeout
        # the pushes read by pushes(), with their overflow policy
        self._pushes = PushBuffer(max_pushes, overflow)
        # adds the trace context to a request's headers; None unless tracing
        self._inject: Callable[[dict[str, Any]], Any] | None = None
        if tracing:
            from ..observe.tracing import inject

            self._inject = inject
        self._on_push = on_push
        self._on_open = on_open
        # the task reading pushes() while it waits for the next one
        self._push_waiter: asyncio.Future[None] | None = None
        #: the last position (`headers.offset`, `headers.epoch`) seen per topic
        self.positions = Positions()
        # topic -> the subscribe call to send again, with `since`, after every reconnect
        self._subscriptions: dict[str, _Subscribe] = {}

    # Public API

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
        pending = Pending(asyncio.get_running_loop().create_future(), route)
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
        on_answer: Callback[Response] | None = None,
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
        pending = Pending(asyncio.get_running_loop().create_future(), route)
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
            if self.closed:
                return
            waiter = self._push_waiter = loop.create_future()
            try:
                await waiter
            finally:
                self._push_waiter = None

    async def __aenter__(self) -> Client:
        if self.state is ClientState.CONNECTING:
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
                    await invoke(call.on_answer, answer)
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

    # Private methods: what the socket's owner calls

    def _opened(self, reconnected: bool) -> None:
        if self._on_open is not None:
            # an async callback runs as a task: it may make requests, which need the reader
            self._tasks.call(self._on_open, self, "on_open callback failed for %s", self.url)
        if reconnected and self._subscriptions:
            self._tasks.spawn(self._resubscribe())

    def _pushed(self, push: Push) -> None:
        self.positions.observe(push.route, push.headers)
        callback = self._on_push
        if callback is not None:
            self._tasks.call(callback, push, "on_push callback failed for route %r", push.route)
            return
        if self._pushes.add(push):
            logger.warning(
                "push buffer full (%d): dropping the %s push(es) until it is read",
                self.max_pushes,
                "oldest" if self.overflow == "drop_oldest" else "newest",
            )
        self._wake_pushes()

    def _wake_pushes(self) -> None:
        waiter = self._push_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


def connect(url: str, **options: Any) -> Client:
    """Return a client for `url`, to use as `async with connect(url) as sock:`.

    The options are `Client`'s: `headers`, `timeout`, `heartbeat_interval`,
    `heartbeat_timeout`, `reconnect`, `max_attempts`, `on_push`, `on_open`, `max_pushes`,
    `overflow`...

    Raises:
        ConnectFailed: on entering the block, if the first handshake fails.
    """
    return Client(url, **options)
