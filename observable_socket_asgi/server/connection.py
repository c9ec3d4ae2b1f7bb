"""One served WebSocket, the I/O shell around `_protocol.Protocol`: reads, writes, tasks.

What to do with each frame and push is decided by the connection's `Protocol` (no I/O);
this module carries the decisions out: it reads frames, starts requests, writes replies and
pushes, closes, and owns the connection's life.

Rules of a connection's life (`Lifecycle`; this module alone changes it, through
`_set_lifecycle`, which logs each move at debug and refuses any move back):

    OPEN      requests are read, served concurrently, answered; pushes are sent.
    CLOSING   `close()` was called, the client left, or a limit closed it: nothing more is
              read or written; in-flight requests are cancelled and awaited.
    CLOSED    `run()` has returned, or is returning; nothing of the connection is left running.

Concurrency: each request starts at once, inside the receive loop, and becomes a task only
if it suspends (`_concurrency.start_eagerly`). At `max_in_flight`, or with
`max_buffered_bytes` held for the client, the loop reads frames ahead only to hear a client
that leaves (as many as the protocol allows, held unparsed), then stops reading, so TCP
backpressure, not memory, absorbs a client that sends faster than it reads. Every frame
leaves through `_write`, the one writer (a push that finds it idle is written by the same
steps in `send_frame_nowait`): whoever finds it idle writes, others queue their frame behind
it, so frames are whole and never interleaved, and the common case costs no
task switch. Pushes queue behind their own bounds (`max_queued_pushes`, and the byte budget)
with a slow-consumer policy; replies are never dropped by it. The shell tells the protocol
the bytes it holds (`hold`/`release`, some inlined): a request from read to reply built, a
frame from `_write` until the server has taken it (a push only while the server's send waits:
one the server takes at once was never held where anything could see it).

A handler that raises `CancelledError` the router did not cause (its task was not
cancelled: it awaited something cancelled elsewhere) is answered 500 like any failure, so
its slot and bytes are freed; a cancelled request task has no reply.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from enum import IntEnum
from time import perf_counter
from typing import TYPE_CHECKING, Any, assert_never, cast

from .._concurrency import DONE, finish_in_task, start_eagerly
from .._protocol import Protocol, PushAction
from ..datastructures import ScopeViews
from ..envelope import encode_error, encode_push, frame_size, parse_request
from ..errors import ConnectionClosed, ProtocolError, SubscriptionLimitError
from ..logs import peer
from ..observe._observe import MALFORMED, UNKNOWN, status_of
from ..observe._observe import PING as PING_LABEL
from ..pubsub.presence import NO_PRESENCE
from ..status import CloseCode, Status
from .pipeline import failure, reply
from .pipeline import run as run_pipeline

if TYPE_CHECKING:
    from .._route import Route
    from ..envelope import Request
    from ..observe._observe import Observer
    from ..pubsub._history import Subscription
    from ..types import ASGIReceiveCallable, ASGISendCallable, Header, Payload
    from .runtime import Runtime as SocketRouter  # the router hands down its runtime

__all__ = ["Connection", "ConnectionClosed"]

logger = logging.getLogger("observable_socket_asgi.connection")


class Lifecycle(IntEnum):
    """Where a connection is in its life; see the module docstring for each state's rules."""

    OPEN = 0
    CLOSING = 1
    CLOSED = 2


# Module constants: the per-frame path compares with `is`, without an attribute lookup.
_OPEN, _CLOSING, _CLOSED = Lifecycle.OPEN, Lifecycle.CLOSING, Lifecycle.CLOSED


class Connection(ScopeViews):
    """A served WebSocket, and the `ws` that hooks and handlers receive in the core.

    Its read-only views of the handshake (`ScopeViews`) match Starlette's `WebSocket` where
    they overlap: `scope`, `headers`, `query_params`, `cookies`, `client`, `state`, `path`.
    `push()` sends an unasked message to this client and `close()` ends the connection.
    """

    __slots__ = (
        "_ahead",
        "_close_code",
        "_held",
        "_idle_handle",
        "_lifecycle",
        "_loop",
        "_main_task",
        "_observer",
        "_out",
        "_protocol",
        "_receive",
        "_router",
        "_send",
        "_slot_waiter",
        "_tasks",
        "_writing",
        "on_close",
        "socket",
    )

    def __init__(
        self,
        router: SocketRouter,
        scope: Any,
        receive: ASGIReceiveCallable,
        send: ASGISendCallable,
    ) -> None:
        super().__init__(scope)
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
        # where the connection is in its life; changed only through `_set_lifecycle`
        self._lifecycle = _OPEN
        # the rules: what to do with each frame and push; in-flight and push counts, buckets
        self._protocol = Protocol(router.settings, router.route_table, self._loop.time())
        # a future the receive loop awaits while at max_in_flight
        self._slot_waiter: asyncio.Future[None] | None = None
        # the one receive() the loop keeps pending while at max_in_flight, so that a client
        # that leaves is noticed (and its requests cancelled) even while no slot is free
        self._ahead: asyncio.Task[dict[str, Any]] | None = None
        # frames read ahead while paused, unparsed, waiting for a slot (see _wait_for_slot)
        self._held: deque[dict[str, Any]] | None = None
        # request tasks that suspended (those that finished eagerly never appear here)
        self._tasks: set[asyncio.Task[None]] | None = None
        # frames waiting for the writer: (frame, is_reply); created on first contention
        self._out: deque[tuple[str, bool]] | None = None
        self._writing = False
        self._main_task: asyncio.Task[Any] | None = None
        self._idle_handle: asyncio.TimerHandle | None = None
        # the router's observer (metrics, tracing); None: nothing watches, nothing extra runs
        self._observer = router.observer
        # the first close code sent or received; reported when the connection ends
        self._close_code: int | None = None

    # Public API

    @property
    def close_code(self) -> int | None:
        """The first close code sent or received; None while open, or if none was exchanged."""
        return self._close_code

    @property
    def closed(self) -> bool:
        """True once the connection is closing or closed: pushes are refused."""
        return self._lifecycle is not _OPEN

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
        if self._lifecycle is not _OPEN:
            raise ConnectionClosed("connection is closed")
        if self._admit_push(frame):
            await self._write(frame, False)

    def send_frame_nowait(self, frame: str) -> asyncio.Task[None] | None:
        """Send an already encoded push without awaiting it: what a publish does for each
        subscriber, so that no subscriber waits for another.

        With the writer idle the frame goes to the server at once, in the caller's task; if
        the server's send has to wait (a full socket buffer), the rest of it runs in the
        returned task. With the writer busy the frame queues behind it under the same bounds
        and slow-consumer policy as `send_frame`. A closed connection is skipped.

        Returns:
            The task finishing a write that had to wait, else None.
        """
        return self._push_nowait({"type": "websocket.send", "text": frame})

    def _push_nowait(self, message: dict[str, Any]) -> asyncio.Task[None] | None:
        """`send_frame_nowait` for a `websocket.send` message that a publish builds once and
        hands to every subscriber (servers only read it)."""
        if self._lifecycle is not _OPEN:
            return None
        if self._writing:  # the bounds apply only behind a busy writer
            frame: str = message["text"]
            if self._admit_push(frame):
                self._protocol.buffered += len(frame)  # `hold()`: until the server takes it
                self._enqueue(frame, False)
            return None
        # The server's send, stepped here in the publisher's task: it runs no user code, so
        # it needs no context copy or current-task swap, and most often it finishes at once.
        # Nothing of this connection runs during that synchronous step, so only a send that
        # has to wait takes the writer and holds the frame's bytes (in the budget).
        steps = self._send(message).__await__()
        try:
            yielded = next(steps, DONE)  # DONE: finished, with no StopIteration to handle
        except Exception as exc:
            self._write_failed(exc)
            self._release_writer()
            return None
        if yielded is DONE:  # `_sent(False, 0)`, inlined: once per subscriber of a publish
            if self._observer is not None:
                self._observer.push_sent()
            if self._out:
                self._release_writer()
            return None
        self._writing = True  # until the task finishing the send is done (`_push_written`)
        size = len(message["text"])
        self._protocol.buffered += size  # `hold()`: until the server has taken it
        task = finish_in_task(steps, yielded, self._loop)
        task.add_done_callback(functools.partial(self._push_written, size))
        return task

    async def subscribe(
        self, topic: str, since: Any = None, presence: Any = NO_PRESENCE
    ) -> Subscription:
        """Receive, as pushes, what is published to `topic`, until unsubscribed or closed.

        Args:
            topic: the topic.
            since: the client's last position, `{"offset": n, "epoch": e}` (from the
                `headers` of the last push it received), or None. With the router's history
                on, every push after it that is still kept is sent first, in order, then the
                live ones, with no duplicate and no gap.
            presence: any JSON value: the connection becomes a member of the topic with this
                info (`router.presence(topic)`) until it unsubscribes or disconnects.

        Returns:
            A `Subscription`: `recovered` (False: the gap could not be filled; reload the
            state), and the topic's `offset` and `epoch` (None without history).

        Raises:
            ConnectionClosed: the connection is closing or closed.
            SubscriptionLimitError: `topic` is longer than the router's `max_topic_bytes`,
                or this connection already holds `max_topics` topics (a `ValueError` with a
                `status` of 400, for the handler to answer with).
            ValueError: `since` is not a position, or `presence` is too large.
        """
        backplane = self._router.backplane
        if type(topic) is str:
            settings = self._router.settings
            limit = settings.max_topic_bytes
            if len(topic) > limit or (len(topic) * 4 > limit and frame_size(topic) > limit):
                raise SubscriptionLimitError(
                    f"topic name is {frame_size(topic)} bytes, over the limit of {limit}",
                    "max_topic_bytes",
                )
            held = backplane.topics_of(self)
            if len(held) >= settings.max_topics and topic not in held:
                raise SubscriptionLimitError(
                    f"a connection may subscribe to {settings.max_topics} topics at most",
                    "max_topics",
                )
        return await backplane.subscribe(self, topic, since, presence)

    async def unsubscribe(self, topic: str) -> None:
        """Stop receiving `topic`; a topic this connection does not hold is ignored."""
        await self._router.backplane.unsubscribe(self, topic)

    async def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Close the connection; in-flight requests are cancelled. Idempotent."""
        if self._lifecycle is not _OPEN:
            return
        self._set_lifecycle(_CLOSING)
        await self._send_close(code, reason)

    # The receive loop

    async def run(self) -> None:
        """Serve the connection until the client leaves or the connection is closed.

        The request tasks it starts are its own: on return every one of them has been
        cancelled and awaited, and `on_close` callbacks have run.
        """
        protocol = self._protocol
        receive = cast("Callable[[], Awaitable[dict[str, Any]]]", self._receive)
        loop = self._loop
        serve = self._serve
        write = self._write
        observer = self._observer
        started = 0.0
        # the loop is passed: without it, 3.11 makes a getpid() system call to find it
        self._main_task = asyncio.current_task(loop)
        # the idle clock starts when serving starts, not when the handshake began
        protocol.last_seen = loop.time()
        idle_timeout = self._router.settings.idle_timeout
        if idle_timeout is not None:
            self._idle_handle = loop.call_later(idle_timeout, self._check_idle)
        try:
            while self._lifecycle is _OPEN:
                # `protocol.paused()`, inlined: it is asked once per frame
                while (
                    protocol.in_flight >= protocol.max_in_flight
                    or protocol.buffered >= protocol.max_buffered_bytes
                ):
                    if await self._wait_for_slot(receive):
                        break  # the client left: `_ahead` holds its disconnect
                held = self._held
                if held:
                    message = held.popleft()
                    size = len(message.get("text") or message.get("bytes") or b"")
                    protocol.release(size)  # counted again below, as a request
                else:
                    ahead = self._ahead
                    if ahead is None:
                        message = await receive()
                    else:
                        self._ahead = None
                        message = await ahead
                mtype = message["type"]
                if mtype == "websocket.receive":
                    data = message.get("text")
                    if data is None:
                        data = message.get("bytes") or b""
                    if observer is not None:
                        started = perf_counter()
                    decision = protocol.receive(data, loop.time())
                    if isinstance(decision, str):  # answered at once: 413, 400, PONG, 404, 429
                        await write(decision, True)
                        if observer is not None:
                            self._answered(observer, decision, data, started)
                        if protocol.abusive:
                            await self._close_abusive()
                        continue
                    route, request = decision
                    size = len(data)
                    protocol.buffered += size  # `protocol.hold()`, inlined; `_serve` releases
                    if observer is None:
                        task = start_eagerly(serve(route, request, size), loop)
                    else:
                        task = start_eagerly(
                            self._serve_observed(route, request, started, size), loop
                        )
                    if task is not None:  # it suspended: keep it to cancel on disconnect
                        self._track(task)
                elif mtype == "websocket.disconnect":
                    if self._close_code is None:
                        self._close_code = message.get("code", CloseCode.NORMAL_CLOSURE)
                    break
        except asyncio.CancelledError:
            # _abort() cancels this task to stop a connection whose peer does not read; any
            # other cancellation (server shutdown timeout) is not ours to swallow.
            if self._lifecycle is not _CLOSED:
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
        finally:
            await self._cleanup()

    # Private methods

    def _set_lifecycle(self, new: Lifecycle) -> None:
        """Move to `new`, which must be a later state: a connection never reopens."""
        old = self._lifecycle
        if new <= old:
            raise RuntimeError(f"connection cannot go from {old.name} to {new.name}")
        if logger.isEnabledFor(logging.DEBUG):  # `self.client` builds an Address
            logger.debug("connection %s: %s -> %s", self.client, old.name, new.name)
        self._lifecycle = new

    async def _send_close(self, code: int, reason: str) -> None:
        """Send the close frame: the only place one goes to the server."""
        if self._close_code is None:
            self._close_code = code
        try:
            await self._send({"type": "websocket.close", "code": code, "reason": reason})
        except Exception:  # the peer is already gone: nothing to tell it
            logger.debug("close(%s) after the peer left", code)

    def _track(self, task: asyncio.Task[Any]) -> None:
        tasks = self._tasks
        if tasks is None:
            tasks = self._tasks = set()
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def _peer(self) -> str:
        """The client's address for log lines, `"host:port"` (only built when logging)."""
        return peer(self.scope.get("client"))

    async def _serve(self, route: Route, request: Request, size: int) -> None:
        """Run one request and write its reply. Never raises but CancelledError.

        `size` is the request frame's length, held in the byte budget until its reply is
        built (or the request is cancelled).
        """
        try:
            if route.plain:  # the common case: the pipeline's two steps, in this coroutine
                socket = self.socket
                try:
                    frame = reply(
                        request.uuid, await route.handler(socket, request.headers, request.payload)
                    )
                except Exception as exc:
                    frame = failure(route, socket, request.uuid, exc)
            elif route.idempotent:
                # run in a task of its own that this connection's end does not cancel
                frame = await self._router.answer_once(
                    route, self.socket, request, lambda: self._answer(route, request)
                )
            elif route.timeout is None:
                frame = await run_pipeline(route, self.socket, request)
            else:
                frame = await self._answer(route, request)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # this request was cancelled (its connection ended): no reply
            # A cancellation the router did not cause: the handler awaited a future or task
            # someone else cancelled. It is the handler's failure, answered like any other;
            # not answering would hold this request's slot for ever.
            frame = self._foreign_cancellation(route, request)
        finally:
            if self._slot_waiter is None:  # `_release(size)`, inlined for the common case
                self._protocol.buffered -= size
            else:
                self._release(size)
        await self._write(frame, True)

    def _foreign_cancellation(self, route: Route, request: Request) -> str:
        logger.error(
            "route %r (uuid %r) raised CancelledError the router did not cause (it awaited "
            "something cancelled elsewhere); answered 500",
            route.name,
            request.uuid,
            exc_info=True,
            extra={"route": route.name, "uuid": request.uuid, "client": self._peer()},
        )
        return encode_error(Status.INTERNAL_SERVER_ERROR, request.uuid, "internal server error")

    async def _answer(self, route: Route, request: Request) -> str:
        """The reply frame of one request, a 504 past the route's timeout."""
        timeout = route.timeout
        if timeout is None:
            return await run_pipeline(route, self.socket, request)
        try:
            async with asyncio.timeout(timeout):
                return await run_pipeline(route, self.socket, request)
        except TimeoutError:
            logger.warning(
                "route %r (uuid %r) timed out after %s s and was cancelled",
                route.name,
                request.uuid,
                timeout,
                extra={"route": route.name, "uuid": request.uuid, "client": self._peer()},
            )
            return encode_error(
                Status.GATEWAY_TIMEOUT, request.uuid, f"handler timed out after {timeout} s"
            )

    # Reports to the observer, when there is one

    async def _serve_observed(
        self, route: Route, request: Request, started: float, size: int
    ) -> None:
        """`_serve`, reported to the observer; used only when one is configured."""
        observer = self._observer
        assert observer is not None
        token = observer.request_started(route.name, request.headers, started)
        status: int | None = None  # stays None if cancelled before a reply exists
        try:
            # as `_serve` decides: an idempotent route runs once per key, a cancellation
            # the router did not cause is a 500, the request's bytes are freed
            try:
                if route.idempotent:
                    frame = await self._router.answer_once(
                        route, self.socket, request, lambda: self._answer(route, request)
                    )
                else:
                    frame = await self._answer(route, request)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise
                frame = self._foreign_cancellation(route, request)
            finally:
                self._release(size)
            status = status_of(frame)
            await self._write(frame, True)
        finally:
            observer.request_finished(token, route.name, status)

    def _answered(self, observer: Observer, frame: str, data: str | bytes, started: float) -> None:
        """Report a frame the protocol answered at once, under a bounded route label."""
        status = status_of(frame)
        if status == Status.OK:  # the only answer at once that is a success: PONG
            label = PING_LABEL
        elif status == Status.NOT_FOUND:
            label = UNKNOWN
        elif status == Status.TOO_MANY_REQUESTS:
            # A registered route's name, an unknown one, or a malformed frame (every frame
            # but PING is rate limited); parsed again only here, when metrics are on, rather
            # than carried beside every frame, and never past the size limit.
            try:
                label = parse_request(data, self._router.settings.max_message_bytes).route
            except ProtocolError:
                label = MALFORMED
            else:
                if label not in self._router.route_table:
                    label = UNKNOWN
        else:  # 400, 413: not a usable request
            label = MALFORMED
        observer.answered(label, status, started)

    def _dequeued(self, frame: str) -> None:
        """A queued push left the queue to be written."""
        self._protocol.push_dequeued()
        if self._observer is not None:
            self._observer.queued_push_bytes(-len(frame))

    def _pushes_dropped(self, frames: list[str]) -> None:
        """Queued pushes that will never be sent (the protocol has uncounted them)."""
        observer = self._observer
        if observer is not None and frames:
            observer.queued_push_bytes(-sum(len(frame) for frame in frames))
            observer.pushes_dropped(len(frames))

    # The writer: the only place a frame goes to the server

    async def _write(self, frame: str, is_reply: bool) -> None:
        """Hand `frame` to the server, or queue it behind the write in progress.

        Whoever finds the writer idle becomes it: it sends its frame, then everything that
        queued up behind it meanwhile, in order; so frames stay whole and the common case
        (nothing queued) costs no task switch.
        """
        if self._writing:
            self._protocol.buffered += len(frame)  # `hold()`: until the server takes it
            self._enqueue(frame, is_reply)
            return
        if self._lifecycle is not _OPEN:
            if is_reply:
                self._sent(is_reply, 0)
            elif self._observer is not None:
                self._observer.pushes_dropped(1)
            return
        self._writing = True
        send = self._send
        protocol = self._protocol
        try:
            while True:
                size = len(frame)
                protocol.buffered += size
                try:
                    await send({"type": "websocket.send", "text": frame})
                finally:
                    protocol.buffered -= size
                if is_reply and self._slot_waiter is None:
                    protocol.in_flight -= 1  # `_sent(True, size)`, inlined for the common case
                else:
                    self._sent(is_reply, size)
                out = self._out
                if not out:
                    break
                frame, is_reply = out.popleft()
                protocol.buffered -= len(frame)  # held again around its send, above
                if not is_reply:
                    self._dequeued(frame)
        except Exception as exc:
            self._write_failed(exc)
        finally:
            self._writing = False
            if self._out:  # only then is there more for `_release_writer` to do
                self._release_writer()

    def _admit_push(self, frame: str) -> bool:
        """Apply the push bounds to a new push; False when it is not to be sent (closing)."""
        action = self._protocol.push(self._writing, len(frame))
        if action is PushAction.SEND:
            return True
        if action is PushAction.DROP_OLDEST:
            self._drop_oldest_push()
            return True
        if action is PushAction.CLOSE:
            self._close_slow_consumer()
            if self._observer is not None:
                self._observer.pushes_dropped(1)  # this push too
            return False
        assert_never(action)

    def _push_written(self, size: int, task: asyncio.Task[None]) -> None:
        """A push write that had to wait is over: the writer is free (or the peer gone)."""
        self._protocol.buffered -= size
        if not task.cancelled():
            exc = task.exception()
            if isinstance(exc, Exception):
                self._write_failed(exc)
            elif exc is None:
                self._sent(False, size)
        self._release_writer()

    def _enqueue(self, frame: str, is_reply: bool) -> None:
        out = self._out
        if out is None:
            out = self._out = deque()
        out.append((frame, is_reply))
        if not is_reply:
            self._protocol.push_queued()
            if self._observer is not None:
                self._observer.queued_push_bytes(len(frame))

    def _write_failed(self, exc: Exception) -> None:
        # The peer is gone (uvicorn raises ClientDisconnected, an OSError): the receive
        # loop hears the disconnect and cleans up; nothing queued can be delivered.
        logger.debug("write failed, peer gone: %r", exc)
        if self._lifecycle is _OPEN:
            self._set_lifecycle(_CLOSING)
        self._drop_queue()

    def _release_writer(self) -> None:
        self._writing = False
        if self._out and self._lifecycle is _OPEN:
            # This writer was cancelled (its request timed out or was cancelled) with
            # frames queued behind it: hand them to a task so no reply is stranded.
            self._spawn(self._write_queued())

    async def _write_queued(self) -> None:
        out = self._out
        if out and not self._writing:
            frame, is_reply = out.popleft()
            self._protocol.buffered -= len(frame)
            if not is_reply:
                self._dequeued(frame)
            await self._write(frame, is_reply)

    def _sent(self, is_reply: bool, size: int) -> None:
        """A frame of `size` bytes left (or was dropped): a reply frees its slot, and any
        frame may let a paused receive loop read again."""
        if is_reply:
            self._protocol.in_flight -= 1  # `Protocol.reply_sent()`, inlined: once per reply
        elif self._observer is not None:
            self._observer.push_sent()
        if is_reply or size:
            waiter = self._slot_waiter
            if waiter is not None:
                self._slot_waiter = None
                if not waiter.done():
                    waiter.set_result(None)

    def _release(self, size: int) -> None:
        """Bytes held for a request are freed: a paused receive loop may read again."""
        self._protocol.buffered -= size
        waiter = self._slot_waiter
        if waiter is not None:
            self._slot_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _drop_queue(self) -> None:
        out = self._out
        dropped: list[str] = []
        while out:
            frame, is_reply = out.popleft()
            self._protocol.release(len(frame))
            if is_reply:
                self._sent(is_reply, len(frame))
            else:
                dropped.append(frame)
        self._protocol.queue_dropped()
        self._pushes_dropped(dropped)
        held = self._held
        while held:
            message = held.popleft()
            self._protocol.release(len(message.get("text") or message.get("bytes") or b""))

    async def _wait_for_slot(self, receive: Callable[[], Awaitable[dict[str, Any]]]) -> bool:
        """Wait until a reply or bytes are freed, reading frames ahead meanwhile; return True
        if the client left.

        Frames read ahead are held unparsed, in order, for their turn, as long as the
        protocol allows (`may_read_ahead`: as many as `max_in_flight`, within the byte
        budget). They are read only so that a client that leaves while every slot is held
        (by handlers that never return) is heard at once and its handlers cancelled. Past
        that, reading stops, so TCP backpressure still holds the rest.
        """
        protocol = self._protocol
        waiter = self._slot_waiter = self._loop.create_future()
        while True:
            ahead = self._ahead
            if ahead is None:
                held = self._held
                if not protocol.may_read_ahead(0 if held is None else len(held)):
                    await waiter
                    return False
                ahead = self._ahead = asyncio.ensure_future(receive())
            if not ahead.done():
                await asyncio.wait((waiter, ahead), return_when=asyncio.FIRST_COMPLETED)
            if waiter.done():
                return False
            if ahead.exception() is not None:
                self._slot_waiter = None
                return True  # the loop awaits `_ahead` and meets the error
            message = ahead.result()
            if message["type"] != "websocket.receive":
                # the client left: what was read ahead will never be answered
                self._slot_waiter = None
                held = self._held
                while held:
                    dropped = held.popleft()
                    protocol.release(len(dropped.get("text") or dropped.get("bytes") or b""))
                return True  # the loop reads the disconnect from `_ahead` next
            self._ahead = None
            if self._held is None:
                self._held = deque()
            self._held.append(message)
            protocol.hold(len(message.get("text") or message.get("bytes") or b""))
            protocol.last_seen = self._loop.time()  # the client is there: not idle

    def _drop_oldest_push(self) -> None:
        """Drop the oldest queued push (the protocol has already uncounted it)."""
        out = self._out
        assert out is not None
        for index, (frame, is_reply) in enumerate(out):
            if not is_reply:
                del out[index]
                self._protocol.release(len(frame))
                self._pushes_dropped([frame])
                break

    def _close_slow_consumer(self) -> None:
        """Drop the queued pushes and close with 1013; the protocol has uncounted them."""
        logger.warning(
            "slow consumer %s: pushes past max_queued_pushes (%d) or max_buffered_bytes (%d "
            "held), closing with 1013",
            self._peer(),
            self._router.settings.max_queued_pushes,
            self._protocol.buffered,
            extra={"client": self._peer()},
        )
        # Drop the queued pushes (replies stay queued) so memory is freed at once, then close.
        # In place: the writer in progress holds this same deque.
        out = self._out
        if out:
            replies = [item for item in out if item[1]]
            dropped = [frame for frame, is_reply in out if not is_reply]
            self._protocol.release(sum(len(frame) for frame in dropped))
            self._pushes_dropped(dropped)
            out.clear()
            out.extend(replies)
        if self._observer is not None:
            self._observer.slow_consumer_closed()
        if self._close_code is None:  # the close itself is sent by a task, later
            self._close_code = CloseCode.TRY_AGAIN_LATER
        # Closing starts now, not when the task below runs: later pushes are refused at once
        # instead of filling the queue again and spawning another close.
        self._set_lifecycle(_CLOSING)
        self._spawn(self._close_or_abort(CloseCode.TRY_AGAIN_LATER, "try again later"))

    async def _close_abusive(self) -> None:
        """The client kept sending past its rate limit: close with 1008, logged once.

        Awaited by the receive loop itself, which then ends: a task spawned for it would be
        cancelled by the loop's own cleanup before the close frame left.
        """
        if self._lifecycle is not _OPEN:
            return
        logger.warning(
            "closing %s with 1008: kept sending past its rate limit %s",
            self._peer(),
            self._router.settings.rate_limit,
            extra={"client": self._peer()},
        )
        await self._close_or_abort(CloseCode.POLICY_VIOLATION, "rate limit exceeded")

    async def _close_or_abort(self, code: int, reason: str) -> None:
        """Close with `code`; if the close frame cannot leave (the peer does not read),
        stop serving anyway so the server drops the socket."""
        if self._lifecycle is _OPEN:
            self._set_lifecycle(_CLOSING)
        try:
            async with asyncio.timeout(self._router.settings.close_timeout):
                await self._send_close(code, reason)
        except TimeoutError:
            pass
        self._abort()

    def _abort(self) -> None:
        """Stop the receive loop from outside; it returns normally."""
        if self._lifecycle is _CLOSED:
            return
        self._set_lifecycle(_CLOSED)
        task = self._main_task
        if task is not None and task is not asyncio.current_task(self._loop) and not task.done():
            task.cancel()

    def _check_idle(self) -> None:
        if self._lifecycle is not _OPEN:
            return
        wait = self._protocol.idle_wait(self._loop.time())
        if wait is None:
            logger.info(
                "closing %s: idle for %.0f s",
                self._peer(),
                self._router.settings.idle_timeout,
                extra={"client": self._peer()},
            )
            self._spawn(self._close_or_abort(CloseCode.GOING_AWAY, "idle timeout"))
        else:
            self._idle_handle = self._loop.call_later(wait, self._check_idle)

    def _spawn(self, coro: Any) -> None:
        self._track(self._loop.create_task(coro))

    async def _cleanup(self) -> None:
        if self._lifecycle is not _CLOSED:
            self._set_lifecycle(_CLOSED)
        if self._ahead is not None:
            self._ahead.cancel()  # the connection is over: nothing more will be read
            self._ahead = None
        if self._idle_handle is not None:
            self._idle_handle.cancel()
            self._idle_handle = None
        tasks = self._tasks
        current = asyncio.current_task(self._loop)
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
