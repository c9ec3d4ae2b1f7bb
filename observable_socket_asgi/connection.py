"""One served WebSocket: the receive loop, the writer, in-flight accounting, and its state.

Rules of a connection's life (this module alone changes them):

    OPEN      requests are read, served concurrently, answered; pushes are sent.
    CLOSING   `close()` was called, the client left, or a limit closed it: nothing more is
              read or written; in-flight requests are cancelled and awaited.
    CLOSED    `run()` has returned; nothing of the connection is left running.

Concurrency: each request starts at once, inside the receive loop, and becomes a task only
if it suspends (`_concurrency.start_eagerly`). At most `max_in_flight` requests are between
"read" and "reply handed to the server"; at the limit the loop reads one message ahead, only
to hear a disconnect, then stops reading, so TCP backpressure, not memory, absorbs a client
that sends faster than it reads. Every frame
leaves through `_write`: whoever finds the writer idle writes, others queue their frame
behind it, so frames are whole and never interleaved, and the common case costs no task
switch. Pushes queue behind a separate bound (`max_queued_pushes`) with a slow-consumer
policy; replies are never dropped by it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import TYPE_CHECKING, Any, cast

from ._concurrency import start_eagerly
from ._observe import MALFORMED, UNKNOWN, status_of
from ._observe import PING as PING_LABEL
from .datastructures import Address, Headers, QueryParams, State, parse_cookies
from .envelope import PING, encode_error, encode_pong, encode_push, parse_request
from .errors import ConnectionClosed, ProtocolError
from .pipeline import run as run_pipeline
from .status import CloseCode, Status

if TYPE_CHECKING:
    from .routing import Route, SocketRouter
    from .types import ASGIReceiveCallable, ASGISendCallable, Header, Payload, Request

__all__ = ["Connection", "ConnectionClosed"]

logger = logging.getLogger("observable_socket_asgi.connection")

_OPEN, _CLOSING, _CLOSED = 0, 1, 2


class _Bucket:
    """A token bucket: `rate` messages per `per` seconds, bursts up to `rate`."""

    __slots__ = ("capacity", "refill", "stamp", "tokens")

    def __init__(self, rate: int, per: float, now: float) -> None:
        self.capacity = float(rate)
        self.refill = rate / per
        self.tokens = float(rate)
        self.stamp = now

    def take(self, now: float) -> bool:
        tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.refill)
        self.stamp = now
        if tokens < 1.0:
            self.tokens = tokens
            return False
        self.tokens = tokens - 1.0
        return True


class Connection:
    """A served WebSocket, and the `ws` that hooks and handlers receive in the core.

    Its read-only attributes match Starlette's `WebSocket` where they overlap: `scope`,
    `headers`, `query_params`, `cookies`, `client`, `state`, `path`. `push()` sends an unasked
    message to this client and `close()` ends the connection.
    """

    __slots__ = (
        "_ahead",
        "_bucket",
        "_close_code",
        "_cookies",
        "_headers",
        "_idle_handle",
        "_in_flight",
        "_last_seen",
        "_loop",
        "_main_task",
        "_observer",
        "_out",
        "_query_params",
        "_queued_pushes",
        "_receive",
        "_route_buckets",
        "_router",
        "_send",
        "_slot_waiter",
        "_state",
        "_status",
        "_tasks",
        "_writing",
        "on_close",
        "scope",
        "socket",
    )

    def __init__(
        self,
        router: SocketRouter,
        scope: Any,
        receive: ASGIReceiveCallable,
        send: ASGISendCallable,
    ) -> None:
        #: the ASGI scope, shared with middleware (a `user` or `db` put there is seen here)
        self.scope = scope
        #: the object handlers receive as `ws`: this connection, or an adapter's object
        self.socket: Any = self
        #: callables run (sync, no arguments) once the connection is closed; for extensions
        #: that keep per-connection state elsewhere (topic subscriptions)
        self.on_close: list[Any] = []
        self._router = router
        self._receive = receive
        # asgiref types `websocket.send` with both `bytes` and `text`; servers read either, and
        # the writer sends `text` alone. Typed loosely once here, not per frame.
        self._send = cast("Callable[[dict[str, Any]], Awaitable[None]]", send)
        self._loop = asyncio.get_running_loop()
        self._status = _OPEN
        # requests read whose reply has not yet been handed to the server
        self._in_flight = 0
        # a future the receive loop awaits while at max_in_flight
        self._slot_waiter: asyncio.Future[None] | None = None
        # the one receive() the loop keeps pending while at max_in_flight, so that a client
        # that leaves is noticed (and its requests cancelled) even while no slot is free
        self._ahead: asyncio.Task[dict[str, Any]] | None = None
        # request tasks that suspended (those that finished eagerly never appear here)
        self._tasks: set[asyncio.Task[None]] | None = None
        # frames waiting for the writer: (frame, is_reply); created on first contention
        self._out: deque[tuple[str, bool]] | None = None
        self._writing = False
        self._queued_pushes = 0
        self._main_task: asyncio.Task[Any] | None = None
        self._idle_handle: asyncio.TimerHandle | None = None
        self._last_seen = 0.0
        self._bucket: _Bucket | None = None
        self._route_buckets: dict[str, _Bucket] | None = None
        # lazily built views of the handshake
        self._headers: Headers | None = None
        self._query_params: QueryParams | None = None
        self._cookies: dict[str, str] | None = None
        self._state: State | None = None
        # the router's observer (metrics, tracing); None: nothing watches, nothing extra runs
        self._observer = router._observer
        # the first close code sent or received; reported when the connection ends
        self._close_code: int | None = None

    # Public API: the Starlette-compatible view

    @property
    def headers(self) -> Headers:
        """The handshake's headers, case-insensitive."""
        if self._headers is None:
            self._headers = Headers(self.scope.get("headers"))
        return self._headers

    @property
    def query_params(self) -> QueryParams:
        """The handshake URL's query string."""
        if self._query_params is None:
            self._query_params = QueryParams(self.scope.get("query_string", b""))
        return self._query_params

    @property
    def cookies(self) -> dict[str, str]:
        """The handshake's cookies."""
        if self._cookies is None:
            self._cookies = parse_cookies(self.headers.get("cookie", ""))
        return self._cookies

    @property
    def client(self) -> Address | None:
        """The peer's `(host, port)`, when the server knows it."""
        client = self.scope.get("client")
        return None if client is None else Address(*client)

    @property
    def path(self) -> str:
        """The request path of the handshake."""
        return str(self.scope.get("path", ""))

    @property
    def state(self) -> State:
        """Attribute access to `scope["state"]` (lifespan state, per-connection data)."""
        if self._state is None:
            self._state = State(self.scope.setdefault("state", {}))
        return self._state

    @property
    def close_code(self) -> int | None:
        """The first close code sent or received, None while open or if none was exchanged."""
        return self._close_code

    @property
    def closed(self) -> bool:
        """True once the connection is closing or closed: pushes are refused."""
        return self._status != _OPEN

    async def push(
        self,
        route: str,
        payload: Payload = None,
        headers: Header | None = None,
        status: int = Status.OK,
    ) -> None:
        """Send this client a message it did not ask for, under a fresh server uuid.

        Raises:
            ConnectionClosed: the connection is closing or closed.
            EncodeError: the payload or headers cannot be encoded as JSON.
        """
        await self.send_frame(encode_push(route, payload, headers, status))

    async def send_frame(self, frame: str) -> None:
        """Send an already encoded push frame; publishing encodes once for many connections.

        When the writer is busy the frame is queued; past `max_queued_pushes` the router's
        slow-consumer policy applies.

        Raises:
            ConnectionClosed: the connection is closing or closed.
        """
        if self._status != _OPEN:
            raise ConnectionClosed("connection is closed")
        if self._writing and self._queued_pushes >= self._router.max_queued_pushes:
            if not self._slow_consumer():
                if self._observer is not None:
                    self._observer.pushes_dropped(1)  # this push too
                return
        await self._write(frame, False)

    async def subscribe(self, topic: str) -> None:
        """Receive, as pushes, what is published to `topic`, until unsubscribed or closed.

        Raises:
            ConnectionClosed: the connection is closing or closed.
        """
        await self._router.backplane.subscribe(self, topic)

    async def unsubscribe(self, topic: str) -> None:
        """Stop receiving `topic`; a topic this connection does not hold is ignored."""
        await self._router.backplane.unsubscribe(self, topic)

    async def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Close the connection; in-flight requests are cancelled. Idempotent."""
        if self._status != _OPEN:
            return
        self._status = _CLOSING
        if self._close_code is None:
            self._close_code = code
        try:
            await self._send({"type": "websocket.close", "code": code, "reason": reason})
        except Exception:  # the peer is already gone: nothing to tell it
            logger.debug("close(%s) after the peer left", code)

    # The receive loop

    async def run(self) -> None:
        """Serve the connection until the client leaves or the connection is closed.

        The request tasks it starts are its own: on return every one of them has been
        cancelled and awaited, and `on_close` callbacks have run.
        """
        router = self._router
        routes = router._routes
        receive = cast("Callable[[], Awaitable[dict[str, Any]]]", self._receive)
        max_in_flight = router.max_in_flight
        max_bytes = router.max_message_bytes
        heartbeat = router.heartbeat
        rate_limit = router.rate_limit
        loop = self._loop
        serve = self._serve
        observer = self._observer
        started = 0.0
        self._main_task = asyncio.current_task()
        if router.idle_timeout is not None:
            self._last_seen = loop.time()
            self._idle_handle = loop.call_later(router.idle_timeout, self._check_idle)
        if rate_limit is not None:
            self._bucket = _Bucket(rate_limit[0], rate_limit[1], loop.time())
        try:
            while self._status == _OPEN:
                if self._in_flight >= max_in_flight:
                    await self._wait_for_slot(receive)  # a slot is free, or the client left
                ahead = self._ahead
                if ahead is None:
                    message = await receive()
                else:
                    self._ahead = None
                    message = await ahead
                mtype = message["type"]
                if mtype == "websocket.receive":
                    self._last_seen = loop.time()
                    if observer is not None:
                        started = perf_counter()
                    data = message.get("text")
                    if data is None:
                        data = message.get("bytes") or b""
                    self._in_flight += 1
                    try:
                        request = parse_request(data, max_bytes)
                    except ProtocolError as exc:
                        logger.debug("bad frame (uuid %r): %s", exc.uuid, exc.message)
                        await self._write(encode_error(exc.status, exc.uuid, exc.message), True)
                        if observer is not None:
                            observer.answered(MALFORMED, exc.status, started)
                        continue
                    name = request.route
                    route = routes.get(name)
                    if route is None:
                        if name == PING and heartbeat:
                            await self._write(encode_pong(request.uuid), True)
                            if observer is not None:
                                observer.answered(PING_LABEL, Status.OK, started)
                        else:
                            await self._write(
                                encode_error(
                                    Status.NOT_FOUND, request.uuid, f"route not found: {name}"
                                ),
                                True,
                            )
                            if observer is not None:
                                observer.answered(UNKNOWN, Status.NOT_FOUND, started)
                        continue
                    if (rate_limit is not None or route.rate_limit is not None) and not self._allow(
                        route
                    ):
                        await self._write(
                            encode_error(
                                Status.TOO_MANY_REQUESTS,
                                request.uuid,
                                "rate limit exceeded, slow down",
                            ),
                            True,
                        )
                        if observer is not None:
                            observer.answered(route.name, Status.TOO_MANY_REQUESTS, started)
                        continue
                    if observer is None:
                        task = start_eagerly(serve(route, request), loop)
                    else:
                        task = start_eagerly(self._serve_observed(route, request, started), loop)
                    if task is not None:  # it suspended: keep it to cancel on disconnect
                        self._track(task)
                elif mtype == "websocket.disconnect":
                    if self._close_code is None:
                        self._close_code = message.get("code", CloseCode.NORMAL_CLOSURE)
                    break
        except asyncio.CancelledError:
            # _abort() cancels this task to stop a connection whose peer does not read; any
            # other cancellation (server shutdown timeout) is not ours to swallow.
            if self._status != _CLOSED:
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
        finally:
            await self._cleanup()

    # Private methods

    def _track(self, task: asyncio.Task[Any]) -> None:
        tasks = self._tasks
        if tasks is None:
            tasks = self._tasks = set()
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def _serve(self, route: Route, request: Request) -> None:
        """Run one request and write its reply. Never raises but CancelledError."""
        timeout = route.timeout
        if timeout is None:
            frame = await run_pipeline(route, self.socket, request)
        else:
            frame = await self._run_with_timeout(route, request, timeout)
        if self._writing or self._status != _OPEN:
            await self._write(frame, True)
            return
        # `_write`'s own path, inlined: one coroutine less per message (about 5 % of it).
        self._writing = True
        try:
            await self._send({"type": "websocket.send", "text": frame})
            self._sent(True)
            if self._out:
                await self._drain()
        except Exception as exc:
            self._write_failed(exc)
        finally:
            self._release_writer()

    async def _run_with_timeout(self, route: Route, request: Request, seconds: float) -> str:
        try:
            async with asyncio.timeout(seconds):
                return await run_pipeline(route, self.socket, request)
        except TimeoutError:
            logger.warning(
                "route %r (uuid %r) timed out after %s s and was cancelled",
                route.name,
                request.uuid,
                seconds,
            )
            return encode_error(
                Status.GATEWAY_TIMEOUT, request.uuid, f"handler timed out after {seconds} s"
            )

    async def _serve_observed(self, route: Route, request: Request, started: float) -> None:
        """`_serve`, reported to the observer; used only when one is configured."""
        observer = self._observer
        assert observer is not None
        token = observer.request_started(route.name, request.headers, started)
        status: int | None = None  # stays None if cancelled before a reply exists
        try:
            timeout = route.timeout
            if timeout is None:
                frame = await run_pipeline(route, self.socket, request)
            else:
                frame = await self._run_with_timeout(route, request, timeout)
            status = status_of(frame)
            await self._write(frame, True)
        finally:
            observer.request_finished(token, route.name, status)

    def _allow(self, route: Route) -> bool:
        now = self._loop.time()
        if route.rate_limit is not None:
            buckets = self._route_buckets
            if buckets is None:
                buckets = self._route_buckets = {}
            bucket = buckets.get(route.name)
            if bucket is None:
                bucket = buckets[route.name] = _Bucket(*route.rate_limit, now)
            return bucket.take(now)
        assert self._bucket is not None
        return self._bucket.take(now)

    async def _write(self, frame: str, is_reply: bool) -> None:
        """Hand `frame` to the server, or queue it behind the write in progress."""
        if self._writing:
            self._enqueue(frame, is_reply)
            return
        if self._status != _OPEN:
            if is_reply:
                self._sent(is_reply)
            elif self._observer is not None:
                self._observer.pushes_dropped(1)
            return
        self._writing = True
        try:
            await self._send({"type": "websocket.send", "text": frame})
            self._sent(is_reply)
            if self._out:
                await self._drain()
        except Exception as exc:
            self._write_failed(exc)
        finally:
            self._release_writer()

    def _enqueue(self, frame: str, is_reply: bool) -> None:
        out = self._out
        if out is None:
            out = self._out = deque()
        out.append((frame, is_reply))
        if not is_reply:
            self._queued_pushes += 1
            if self._observer is not None:
                self._observer.queued_push_bytes(len(frame))

    async def _drain(self) -> None:
        """Send what queued up behind the current write; the caller holds the writer."""
        out = self._out
        send = self._send
        while out:
            frame, is_reply = out.popleft()
            if not is_reply:
                self._unqueued(frame)
            await send({"type": "websocket.send", "text": frame})
            self._sent(is_reply)

    def _write_failed(self, exc: Exception) -> None:
        # The peer is gone (uvicorn raises ClientDisconnected, an OSError): the receive
        # loop hears the disconnect and cleans up; nothing queued can be delivered.
        logger.debug("write failed, peer gone: %r", exc)
        self._status = max(self._status, _CLOSING)
        self._drop_queue()

    def _release_writer(self) -> None:
        self._writing = False
        if self._out and self._status == _OPEN:
            # This writer was cancelled (its request timed out or was cancelled) with
            # frames queued behind it: hand them to a task so no reply is stranded.
            self._spawn(self._write_queued())

    async def _write_queued(self) -> None:
        out = self._out
        if out and not self._writing:
            frame, is_reply = out.popleft()
            if not is_reply:
                self._unqueued(frame)
            await self._write(frame, is_reply)

    def _sent(self, is_reply: bool) -> None:
        if is_reply:
            self._in_flight -= 1
            waiter = self._slot_waiter
            if waiter is not None:
                self._slot_waiter = None
                if not waiter.done():
                    waiter.set_result(None)
        elif self._observer is not None:
            self._observer.push_sent()

    def _unqueued(self, frame: str) -> None:
        """A push left the queue (sent or dropped)."""
        self._queued_pushes -= 1
        if self._observer is not None:
            self._observer.queued_push_bytes(-len(frame))

    def _dropped(self, frames: list[str]) -> None:
        """Pushes taken out of the queue and never sent."""
        observer = self._observer
        if observer is not None and frames:
            observer.queued_push_bytes(-sum(len(frame) for frame in frames))
            observer.pushes_dropped(len(frames))

    def _drop_queue(self) -> None:
        out = self._out
        dropped: list[str] = []
        while out:
            frame, is_reply = out.popleft()
            if is_reply:
                self._sent(is_reply)
            else:
                dropped.append(frame)
        self._queued_pushes = 0
        self._dropped(dropped)

    async def _wait_for_slot(self, receive: Callable[[], Awaitable[dict[str, Any]]]) -> None:
        """Wait until a reply has been handed to the server, reading at most one message ahead.

        That one message is read only to hear a disconnect: if it is one, the slot wait ends
        at once and the loop handles it; a frame waits, unparsed, for its turn. Reading stops
        there, so TCP backpressure still holds the rest.
        """
        waiter = self._slot_waiter = self._loop.create_future()
        ahead = self._ahead
        if ahead is None:
            ahead = self._ahead = asyncio.ensure_future(receive())
        if not ahead.done():
            await asyncio.wait((waiter, ahead), return_when=asyncio.FIRST_COMPLETED)
        if waiter.done():
            return
        if ahead.exception() is None and ahead.result()["type"] == "websocket.disconnect":
            self._slot_waiter = None
            return  # the loop reads the disconnect from `_ahead` next
        await waiter  # a frame was read ahead: it waits, unparsed, for this slot

    def _slow_consumer(self) -> bool:
        """Apply the slow-consumer policy; return True if the new push may still be queued."""
        if self._router.slow_consumer == "drop_oldest":
            out = self._out
            assert out is not None
            for index, (frame, is_reply) in enumerate(out):
                if not is_reply:
                    del out[index]
                    self._queued_pushes -= 1
                    self._dropped([frame])
                    break
            return True
        logger.warning(
            "slow consumer %s: %d pushes queued, closing with 1013",
            self.client,
            self._queued_pushes,
        )
        # Drop the queued pushes (replies stay queued) so memory is freed at once, then close.
        # In place: the writer in progress holds this same deque.
        out = self._out
        if out:
            replies = [item for item in out if item[1]]
            self._dropped([frame for frame, is_reply in out if not is_reply])
            out.clear()
            out.extend(replies)
        self._queued_pushes = 0
        if self._observer is not None:
            self._observer.slow_consumer_closed()
        if self._close_code is None:
            self._close_code = CloseCode.TRY_AGAIN_LATER
        # Closing starts now, not when the task below runs: later pushes are refused at once
        # instead of filling the queue again and spawning another close.
        self._status = _CLOSING
        self._spawn(self._close_or_abort(CloseCode.TRY_AGAIN_LATER, "try again later"))
        return False

    async def _close_or_abort(self, code: int, reason: str) -> None:
        """Close with `code`; if the close frame cannot leave (the peer does not read),
        stop serving anyway so the server drops the socket."""
        if self._status == _OPEN:
            self._status = _CLOSING
        if self._close_code is None:
            self._close_code = code
        try:
            async with asyncio.timeout(self._router.close_timeout):
                await self._send({"type": "websocket.close", "code": code, "reason": reason})
        except TimeoutError:
            pass
        except Exception:  # the peer is already gone: nothing to tell it
            logger.debug("close(%s) after the peer left", code)
        self._abort()

    def _abort(self) -> None:
        """Stop the receive loop from outside; it returns normally."""
        if self._status == _CLOSED:
            return
        self._status = _CLOSED
        task = self._main_task
        if task is not None and task is not asyncio.current_task() and not task.done():
            task.cancel()

    def _check_idle(self) -> None:
        timeout = self._router.idle_timeout
        assert timeout is not None
        idle = self._loop.time() - self._last_seen
        if self._status != _OPEN:
            return
        if idle >= timeout:
            logger.info("closing %s: idle for %.0f s", self.client, idle)
            self._spawn(self._close_or_abort(CloseCode.GOING_AWAY, "idle timeout"))
        else:
            self._idle_handle = self._loop.call_later(timeout - idle, self._check_idle)

    def _spawn(self, coro: Any) -> None:
        self._track(self._loop.create_task(coro))

    async def _cleanup(self) -> None:
        self._status = _CLOSED
        if self._ahead is not None:
            self._ahead.cancel()  # the connection is over: nothing more will be read
            self._ahead = None
        if self._idle_handle is not None:
            self._idle_handle.cancel()
            self._idle_handle = None
        tasks = self._tasks
        current = asyncio.current_task()
        while tasks:
            pending = [task for task in tasks if task is not current]
            if not pending:
                break
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            tasks.difference_update(pending)
        self._drop_queue()
        for callback in self.on_close:
            try:
                callback()
            except Exception:
                logger.exception("on_close callback %r failed", callback)
        self.on_close.clear()
