"""One served WebSocket, the I/O shell around `_protocol.Protocol`: reads, the writer, tasks.

The connection's `Protocol` (no I/O) owns every count, byte and queue and decides what to
do with each frame and push; this module feeds it events and carries its answers out (it
never assigns the protocol's attributes): it reads frames, starts requests
(`pipeline.serve_request`), hands frames to the server, answers the idle clocks
(`server/_idle.py`), closes, and owns the connection's life. User code sees the `Socket`
it builds (`server/socket.py`); the topics see this object through their `Subscriber` names
(`closed`, `member_id`, `push_nowait`, `send_frame`, `on_close`).

Rules of a connection's life (`Lifecycle`; this module alone changes it, through
`_set_lifecycle`, which logs each move at debug and refuses any move back):

    OPEN      requests are read, served concurrently, answered; pushes are sent.
    CLOSING   `close()` was called, the client left, or a limit closed it: nothing more is
              read or written; in-flight requests are cancelled and awaited.
    CLOSED    `run()` has returned, or is returning; nothing of the connection is left running.

Concurrency: each request starts at once, inside the receive loop's task, in a context of
its own; most finish there without suspending, and no task is made for them. A request
that suspends keeps that task to its end, so `current_task()`, `asyncio.timeout()` and
`TaskGroup` in it see one task from start to end, and the reading goes on in a new task
running the same loop (`_serve_suspended`). The task the server started the connection in
returns only once the connection has ended. While the protocol says `paused()`, the loop
reads frames ahead only to hear a client that leaves (the protocol holds them), then stops
reading: TCP backpressure, not memory, absorbs a client that sends faster than it reads.
Every frame leaves through `write`, the one writer (or, for a push that finds it idle, the
same steps in `push_each`): whoever finds it idle writes, others leave their frame in the
protocol's queue, so frames are whole and never interleaved, and the common case costs no
task switch. A push the server takes at once is never held, so the protocol never sees it.

Tasks nobody awaits: the receive loops started when a request suspended (held in `_tasks`;
once they hand the reading on they finish their request, cancelled and awaited by `_cleanup`;
the pipeline logs its failures), the task finishing a push whose send had to
wait (`_push_written` takes its failure for a lost peer), and the close and queue-draining
tasks `_tasks.spawn` starts (held likewise; their failures are the peer's absence).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from time import perf_counter
from typing import TYPE_CHECKING, Any, cast

from .._concurrency import DONE, Continuation, Tracked
from .._protocol import Protocol, PushAction, Queued
from ..errors import ConnectionClosed
from ..logs import peer
from ..pubsub.presence import member_id
from ..status import CloseCode
from ._idle import IdleClocks, idle_clocks
from ._pushing import Pushes, finish_push, pushes_for
from .pipeline import observe_answered, serve_observed, serve_request
from .socket import Lifecycle, Socket

if TYPE_CHECKING:
    from .._route import Route
    from ..envelope import Envelope
    from ..observe._observe import Observer
    from ..pubsub.subscriber import Subscriber
    from ..types import ASGIReceiveCallable, ASGISendCallable
    from .runtime import Runtime

__all__ = ["Connection", "ConnectionClosed", "Lifecycle"]

logger = logging.getLogger("observable_socket_asgi.connection")

# Module constants: the per-frame path compares with `is`, without an attribute lookup.
_OPEN, _CLOSING, _CLOSED = Lifecycle.OPEN, Lifecycle.CLOSING, Lifecycle.CLOSED
_copy_context = contextvars.copy_context


class Connection:
    """The server's side of one WebSocket: the I/O shell user code never sees.

    Args:
        runtime: what the router hands down: limits, routes, topics, observer.
        scope, receive, send: the connection's ASGI scope and callables.
    """

    __slots__ = (
        "_ahead",
        "_close_code",
        "_closers",
        "_closing",
        "_ended",
        "_host",
        "_host_request",
        "_idle",
        "_idle_key",
        "_lifecycle",
        "_loop",
        "_main_task",
        "_observer",
        "_protocol",
        "_pushes",
        "_receive",
        "_runtime",
        "_send",
        "_slot_waiter",
        "_tracked",
        "scope",
        "socket",
        "ws",
    )

    def __init__(
        self,
        runtime: Runtime,
        scope: Any,
        receive: ASGIReceiveCallable,
        send: ASGISendCallable,
    ) -> None:
        #: the ASGI scope, shared with middleware and the user's socket
        self.scope = scope
        self._runtime = runtime
        self._receive = receive
        # asgiref types `websocket.send` with both `bytes` and `text`; servers read either, and
        # the writer sends `text` alone. Typed loosely once here, not per frame.
        self._send = cast("Callable[[dict[str, Any]], Awaitable[None]]", send)
        # what writes a push that finds the writer idle: a generator resumed once per push
        # (`_pushing.pushes_for`), made by the first push and again after a send failed or
        # was cancelled; a connection that is never pushed to never pays for one
        self._pushes: Pushes | None = None
        self._loop = asyncio.get_running_loop()
        # where the connection is in its life; changed only through `_set_lifecycle`
        self._lifecycle = _OPEN
        # the rules and every count, byte and queue of this connection
        self._protocol = Protocol(runtime.settings, runtime.routes, self._loop.time())
        # a future the receive loop awaits while the protocol says it is paused
        self._slot_waiter: asyncio.Future[None] | None = None
        # the one receive() the loop keeps pending while paused, so that a client that
        # leaves is noticed (and its requests cancelled) even while no slot is free
        self._ahead: asyncio.Task[dict[str, Any]] | None = None
        # requests that suspended, and the close and queue-draining tasks started here
        # (`_tasks`); made on first use: most connections never keep a task
        self._tracked: Tracked | None = None
        # the task reading frames now, which `_abort()` cancels
        self._main_task: asyncio.Task[Any] | None = None
        # the task the server awaits `run()` in; while it finishes a request of its own (the
        # reading handed on), `_host_request` is set once that request is over, and `_ended`
        # once the connection is: made only for a request that suspends in that task
        self._host: asyncio.Task[Any] | None = None
        self._host_request: asyncio.Future[None] | None = None
        self._ended: asyncio.Future[None] | None = None
        # the bucket of the loop's idle clocks this connection waits in (`server/_idle.py`)
        self._idle: IdleClocks | None = None
        self._idle_key: int | None = None
        # the router's observer (metrics, tracing); None: nothing watches, nothing extra runs
        self._observer = runtime.observer
        # the first close code sent or received; reported when the connection ends
        self._close_code: int | None = None
        # the task sending a close frame the connection decided on (slow consumer, idle):
        # bounded by close_timeout, so `_cleanup` lets it finish instead of cancelling it
        self._closing: asyncio.Task[None] | None = None
        # run (sync, no arguments) once the connection is closed: the topics' cleanups;
        # made on first use
        self._closers: list[Callable[[], None]] | None = None
        #: what user code sees of this connection
        self.socket = Socket(self, runtime.settings, runtime.topics)
        make_ws = runtime.make_ws
        #: what hooks and handlers receive as `ws`: the socket, or the adapter's object
        self.ws: Any = self.socket if make_ws is None else make_ws(self.socket)

    # Public API: state

    @property
    def lifecycle(self) -> Lifecycle:
        """Where the connection is in its life."""
        return self._lifecycle

    @property
    def close_code(self) -> int | None:
        """The first close code sent or received; None while open, or if none was exchanged."""
        return self._close_code

    @property
    def closed(self) -> bool:
        """True once the connection is closing or closed: pushes are refused."""
        return self._lifecycle is not _OPEN

    @property
    def member_id(self) -> str:
        """This connection's presence member id, the same for all its topics."""
        return member_id(self)

    def on_close(self, callback: Callable[[], None]) -> None:
        """Run `callback` (sync, once) when the connection is closed; a failure is logged."""
        if self._closers is None:
            self._closers = []
        self._closers.append(callback)

    # Public API: pushes (what the topics and the user's socket call)

    async def send_frame(self, frame: str) -> None:
        """Send an already encoded push frame, queued behind a busy writer within the push
        bounds (past them the slow-consumer policy applies).

        Raises:
            ConnectionClosed: the connection is closing or closed.
        """
        if self._lifecycle is not _OPEN:
            raise ConnectionClosed("connection is closed")
        await self.write(frame, False)

    def send_frame_nowait(self, frame: str) -> asyncio.Task[None] | None:
        """`push_nowait` for one frame."""
        return self.push_nowait({"type": "websocket.send", "text": frame})

    def push_nowait(self, message: dict[str, Any]) -> asyncio.Task[None] | None:
        """Send a push without awaiting it (a `websocket.send` message, only read); a closed
        connection skips it. Returns the task finishing a send that had to wait, else None.

        With the writer idle the frame goes to the server at once, in the caller's task;
        with the writer busy it queues under the push bounds and slow-consumer policy.
        """
        waiting = Connection.push_each((self,), message)
        return waiting[0] if waiting else None

    @staticmethod
    def push_each(
        subscribers: Iterable[Subscriber], message: dict[str, Any]
    ) -> list[asyncio.Task[None]]:
        """`push_nowait(message)` for each of `subscribers` in turn, in one call: what a
        publish does with each slice of a topic's subscribers, sharing one message (servers
        only read it). One loop here instead of a method call per subscriber is the fan-out's
        saving; a subscriber that is not one of these connections gets its own `push_nowait`.

        Returns:
            The tasks finishing the sends that had to wait (usually none).
        """
        waiting: list[asyncio.Task[None]] = []
        done, open_, connection = DONE, _OPEN, Connection  # locals: read once per subscriber
        for conn in subscribers:
            if type(conn) is not connection:
                task = conn.push_nowait(message)
                if task is not None:
                    waiting.append(task)
                continue
            if conn._lifecycle is not open_:
                continue
            protocol = conn._protocol
            if protocol.writing:  # the bounds apply only behind a busy writer
                conn._queue_push(message["text"])
                continue
            # The server's send, stepped here in the publisher's task by the connection's
            # push writer (`_pushing`): it runs no user code (no context copy or task swap
            # needed) and mostly finishes at once; only a send that has to wait takes the
            # writer and holds the frame's bytes (in the budget). A failed send ended the
            # writer: the next push makes a new one.
            pushes = conn._pushes
            if pushes is None:
                pushes = conn._pushes = pushes_for(conn._send)
            try:
                yielded = pushes.send(message)
            except Exception as exc:
                conn._pushes = None
                conn._write_failed(exc)
                continue
            if yielded is done:
                if conn._observer is not None:
                    conn._observer.push_sent()
                if protocol.out:
                    conn._release_writer()
                continue
            waiting.append(conn._push_waits(len(message["text"]), pushes, yielded))
        return waiting

    async def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Close the connection; in-flight requests are cancelled. Idempotent."""
        if self._lifecycle is not _OPEN:
            return
        self._set_lifecycle(_CLOSING)
        await self._send_close(code, reason)

    # Public API: what a request calls (`pipeline.Shell`)

    def request_done(self, nbytes: int) -> None:
        """A request's reply is built (or it was cancelled): its bytes are freed, so a
        paused receive loop may read again."""
        self._protocol.request_done(nbytes)
        if self._slot_waiter is not None:
            self._resume_reading()

    async def write(self, frame: str, is_reply: bool, freed: int = 0) -> None:
        """Hand `frame` to the server, or leave it in the protocol's queue behind the write
        in progress. Whoever finds the writer idle becomes it: it sends its frame, then what
        the protocol queued meanwhile, in order; the common case costs no task switch. A
        reply passes its request's `freed` bytes, which the protocol stops holding in the
        same event (`request_done()` is for a request that ends with no reply)."""
        protocol = self._protocol
        if protocol.writing:
            if is_reply:
                protocol.queue_reply(frame, freed)
                if freed and self._slot_waiter is not None:
                    self._resume_reading()
            else:
                self._queue_push(frame)
            return
        if self._lifecycle is not _OPEN:
            self._not_written(is_reply, freed)
            return
        send = self._send
        observer = self._observer
        size = len(frame)
        protocol.write_started(size, freed)
        if freed and self._slot_waiter is not None:
            self._resume_reading()
        try:
            while True:
                try:
                    await send({"type": "websocket.send", "text": frame})
                except BaseException:
                    protocol.write_stopped(size)
                    raise
                queued = protocol.write_done(size, is_reply)
                if self._slot_waiter is not None:
                    self._resume_reading()
                if observer is not None:
                    _report_written(observer, is_reply, queued)
                if queued is None:
                    return
                frame, is_reply = queued
                size = len(frame)
        except Exception as exc:
            self._write_failed(exc)
        finally:
            if protocol.out and not protocol.writing:  # a cancelled writer left frames
                self._release_writer()

    # The receive loop

    def run(self) -> Coroutine[Any, Any, None]:
        """Serve the connection until the client leaves or it is closed: once done, every
        request task it started is cancelled and awaited, and `on_close` callbacks have run.

        It starts the clocks and returns the receive loop for the caller to await at once: a
        coroutine awaiting it would be one more step on every wake-up of the task."""
        loop = self._loop
        self._protocol.serving_started(loop.time())
        idle_timeout = self._runtime.settings.idle_timeout
        if idle_timeout is not None:
            clocks = self._idle = idle_clocks(loop, idle_timeout)
            self._idle_key = clocks.watch(self, loop.time() + idle_timeout, loop)
        return self._receive_loop()

    async def _receive_loop(self) -> None:
        """Read frames and feed them to the protocol until the client leaves or a close;
        then end everything the connection started. A request that suspends ends the loop
        in this task, which finishes that request while a new task reads on."""
        protocol = self._protocol
        receive = cast("Callable[[], Awaitable[dict[str, Any]]]", self._receive)
        loop = self._loop
        # what `_abort()` cancels (with the loop passed, 3.11 makes no getpid() call)
        self._main_task = current = asyncio.current_task(loop)
        if self._host is None:
            self._host = current
        runtime = self._runtime
        ws = self.ws
        observer = self._observer
        frame_read = protocol.frame_read
        now = loop.time
        started = 0.0
        message: Mapping[str, Any] | None
        suspended: tuple[Any, Any, contextvars.Context] | None = None
        # the last frame's objects; let go before each wait, so that an idle connection
        # keeps nothing of its last request (its frame, request, coroutine: ~0.6 KiB)
        data: str | bytes | None = None
        decision: tuple[Route, Envelope] | str | None = None
        request: Envelope | None = None
        coro: Coroutine[Any, Any, None] | None = None
        steps: Any = None
        context: contextvars.Context | None = None
        try:
            while self._lifecycle is _OPEN:
                # `protocol.paused()`, inlined: it is asked once per frame
                while (
                    protocol.in_flight >= protocol.max_in_flight
                    or protocol.buffered >= protocol.max_buffered_bytes
                ):
                    if await self._wait_for_slot(receive):
                        break  # the client left: `_ahead` holds its disconnect
                message = protocol.next_held() if protocol.held else None
                if message is None:
                    data = decision = request = coro = steps = context = None
                    ahead, self._ahead = self._ahead, None
                    message = await (receive() if ahead is None else ahead)
                mtype = message["type"]
                if mtype == "websocket.receive":
                    data = message.get("text")
                    if data is None:
                        data = message.get("bytes") or b""
                    if observer is not None:
                        started = perf_counter()
                    decision = frame_read(data, now())
                    if isinstance(decision, str):  # answered at once: 413, 400, PONG, 404, 429
                        await self._answer_at_once(decision, data, started)
                        continue
                    route, request = decision
                    if observer is None:
                        coro = serve_request(runtime, route, ws, request, len(data), self)
                    else:
                        coro = serve_observed(
                            observer, started, runtime, route, ws, request, len(data), self
                        )
                    # The first step, here, in a context of its own (contextvars a handler
                    # sets never reach the next request); see DONE for the stepping.
                    context = _copy_context()
                    steps = coro.__await__()
                    yielded = context.run(next, steps, DONE)
                    if yielded is not DONE:
                        suspended = (steps, yielded, context)
                        break
                elif mtype == "websocket.disconnect":
                    if self._close_code is None:
                        self._close_code = message.get("code", CloseCode.NORMAL_CLOSURE)
                    break
        except asyncio.CancelledError:
            if not self._aborted():
                raise
        finally:
            if suspended is None:
                await self._cleanup()
        if suspended is not None:
            await self._serve_suspended(*suspended)

    async def _serve_suspended(
        self, steps: Any, yielded: Any, context: contextvars.Context
    ) -> None:
        """Finish, in this task, a request that suspended in its first step, after handing
        the reading on to a new task running `_receive_loop`.

        A receive loop's task the connection started is held in `_tasks` already: it ends
        with its request, and `_cleanup` cancels and awaits it like any. The server's own
        task must not return before the connection has ended: `_cleanup` cancels its
        request and waits for `_host_request`, not for the task, which then waits for
        `_ended`. A cancellation from outside (a server shutting down) stops the reading
        too, and is raised once everything is cleaned up.
        """
        loop = self._loop
        self._tasks.spawn(self._receive_loop())
        task = asyncio.current_task(loop)
        if task is not self._host:
            await Continuation(steps, yielded, context)
            return
        assert task is not None
        done = self._host_request = loop.create_future()
        ended = self._ended
        if ended is None:
            ended = self._ended = loop.create_future()
        try:
            await Continuation(steps, yielded, context)
        except asyncio.CancelledError:
            if self._lifecycle is not _CLOSED:  # not `_cleanup`'s: the server's
                self._stop_reading()
                await asyncio.shield(ended)
                raise
            task.uncancel()
        finally:
            self._host_request = None
            done.set_result(None)
        await ended

    def _stop_reading(self) -> None:
        """Cancel the task reading frames (not this one): it cleans up and sets `_ended`."""
        reader = self._main_task
        if reader is not None and reader is not asyncio.current_task(self._loop):
            reader.cancel()

    def _answer_at_once(self, frame: str, data: str | bytes, started: float) -> Awaitable[None]:
        """Write what the protocol answered at once; close an abusive client.

        With nothing to do after the write (no observer, a client within its limits) this is
        the writer's own coroutine: a heartbeat's PONG, what every idle connection sends once
        a minute, costs no coroutine of its own.
        """
        if self._observer is None and not self._protocol.abusive:
            return self.write(frame, True)
        return self._answer_then(frame, data, started)

    async def _answer_then(self, frame: str, data: str | bytes, started: float) -> None:
        """`_answer_at_once` with an observer to tell or an abusive client to close."""
        await self.write(frame, True)
        if self._observer is not None:
            observe_answered(self._observer, self._runtime, frame, data, started)
        if self._protocol.abusive:
            await self._close_abusive()

    def _aborted(self) -> bool:
        """Whether the cancellation being handled is `_abort()`'s, which stops a connection
        whose peer does not read: then it is taken back and the loop returns normally. Any
        other (a server shutdown's timeout) is not ours to swallow."""
        if self._lifecycle is not _CLOSED:
            return False
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
        return True

    async def _wait_for_slot(self, receive: Callable[[], Awaitable[dict[str, Any]]]) -> bool:
        """Wait until a reply or bytes are freed, reading frames ahead meanwhile; return True
        if the client left.

        Frames read ahead go to the protocol to hold, unparsed, in order, as long as it
        allows (`may_read_ahead`). They are read only so that a client that leaves while
        every slot is held (by handlers that never return) is heard at once and its
        handlers cancelled. Past that, reading stops, so TCP backpressure still holds the
        rest.
        """
        protocol = self._protocol
        waiter = self._slot_waiter = self._loop.create_future()
        while True:
            ahead = self._ahead
            if ahead is None:
                if not protocol.may_read_ahead():
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
                protocol.drop_held()
                return True  # the loop reads the disconnect from `_ahead` next
            self._ahead = None
            protocol.read_ahead(message, self._loop.time())

    def _resume_reading(self) -> None:
        """Wake a paused receive loop: it asks the protocol again whether to read."""
        waiter = self._slot_waiter
        if waiter is not None:
            self._slot_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    @property
    def _tasks(self) -> Tracked:
        """The tasks this connection holds until they are done, made on first use."""
        tracked = self._tracked
        if tracked is None:
            tracked = self._tracked = Tracked(self._loop)
        return tracked

    # Private methods: the lifecycle

    def _set_lifecycle(self, new: Lifecycle) -> None:
        """Move to `new`, which must be a later state: a connection never reopens."""
        old = self._lifecycle
        if new <= old:
            raise RuntimeError(f"connection cannot go from {old.name} to {new.name}")
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("connection %s: %s -> %s", self._peer(), old.name, new.name)
        self._lifecycle = new

    async def _send_close(self, code: int, reason: str) -> None:
        """Send the close frame: the only place one goes to the server."""
        if self._close_code is None:
            self._close_code = code
        try:
            await self._send({"type": "websocket.close", "code": code, "reason": reason})
        except Exception:  # the peer is already gone: nothing to tell it
            logger.debug("close(%s) after the peer left", code)

    async def _close_or_abort(self, code: int, reason: str) -> None:
        """Close with `code`; if the close frame cannot leave (the peer does not read),
        stop serving anyway so the server drops the socket."""
        if self._lifecycle is _OPEN:
            self._set_lifecycle(_CLOSING)
        try:
            async with asyncio.timeout(self._runtime.settings.close_timeout):
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
            self._runtime.settings.rate_limit,
            extra={"client": self._peer()},
        )
        await self._close_or_abort(CloseCode.POLICY_VIOLATION, "rate limit exceeded")

    def _close_slow_consumer(self) -> None:
        """The protocol dropped the queued pushes of a slow consumer: close with 1013."""
        settings = self._runtime.settings
        logger.warning(
            "slow consumer %s: pushes past max_queued_pushes (%d) or max_buffered_bytes (%d "
            "held), closing with 1013",
            self._peer(),
            settings.max_queued_pushes,
            self._protocol.buffered,
            extra={"client": self._peer()},
        )
        if self._observer is not None:
            self._observer.slow_consumer_closed()
        if self._close_code is None:  # the close itself is sent by a task, later
            self._close_code = CloseCode.TRY_AGAIN_LATER
        # Closing starts now, not when the task below runs: later pushes are refused at once
        # instead of filling the queue again and spawning another close.
        self._set_lifecycle(_CLOSING)
        self._closing = self._loop.create_task(
            self._close_or_abort(CloseCode.TRY_AGAIN_LATER, "try again later")
        )

    def idle_due(self) -> None:
        """The idle clocks ask again: close a connection idle for `idle_timeout`, else
        watch again until its new deadline."""
        self._idle_key = None
        if self._lifecycle is not _OPEN:
            return
        timeout = self._runtime.settings.idle_timeout
        assert timeout is not None
        loop = self._loop
        now = loop.time()
        wait = self._protocol.idle_wait(now)
        if wait is None:
            logger.info(
                "closing %s: idle for %.0f s",
                self._peer(),
                timeout,
                extra={"client": self._peer()},
            )
            self._closing = loop.create_task(
                self._close_or_abort(CloseCode.GOING_AWAY, "idle timeout")
            )
        else:
            assert self._idle is not None
            self._idle_key = self._idle.watch(self, now + wait, loop)

    async def _cleanup(self) -> None:
        """End everything the connection started; then run the `on_close` callbacks."""
        if self._lifecycle is not _CLOSED:
            self._set_lifecycle(_CLOSED)
        if self._ahead is not None:
            self._ahead.cancel()  # the connection is over: nothing more will be read
            self._ahead = None
        key = self._idle_key
        if key is not None:
            self._idle_key = None
            assert self._idle is not None
            self._idle.forget(self, key)
        # Every request still running is cancelled at once, before anything is awaited: a
        # reply written from here on would have nowhere to go.
        host_request = self._host_request
        if host_request is not None and self._host is not None:
            self._host.cancel()  # the server's task finishing a request (`_serve_suspended`)
        if self._tracked is not None:
            await self._tracked.cancel_all()
        if host_request is not None:
            await asyncio.shield(host_request)
        closing = self._closing
        if closing is not None and closing is not asyncio.current_task(self._loop):
            # a close frame on its way: let it go (close_timeout bounds it), so that the
            # client learns why; then nothing is left running
            if self._runtime.settings.close_timeout is None:
                closing.cancel()
            await asyncio.wait((closing,))
        self._drop_queue()
        closers, self._closers = self._closers, None
        for callback in closers or ():
            try:
                callback()
            except Exception:
                logger.exception("on_close callback %r failed", callback)
        if self._ended is not None and not self._ended.done():
            self._ended.set_result(None)

    # Private methods: the writer's side

    def _queue_push(self, frame: str) -> None:
        """A push found the writer busy: the protocol queues it, or applies the policy."""
        action, dropped = self._protocol.push(frame)
        observer = self._observer
        if action is PushAction.CLOSE:
            self._pushes_dropped(dropped)
            if observer is not None:
                observer.pushes_dropped(1)  # this push too
            self._close_slow_consumer()
            return
        if observer is not None:
            observer.queued_push_bytes(len(frame))
        if dropped:
            self._pushes_dropped(dropped)

    def _push_waits(self, size: int, pushes: Pushes, yielded: Any) -> asyncio.Task[None]:
        """A push's send has to wait: it takes the writer and holds its bytes until the task
        finishing it is done."""
        self._protocol.write_started(size)
        task = finish_push(pushes, yielded, self._loop)
        task.add_done_callback(functools.partial(self._push_written, size))
        return task

    def _not_written(self, is_reply: bool, freed: int) -> None:
        """A frame reached a closed connection: a reply frees its slot and its request's
        `freed` bytes, a push is dropped."""
        if is_reply:
            self._protocol.reply_sent(freed)
            self._resume_reading()
        elif self._observer is not None:
            self._observer.pushes_dropped(1)

    def _push_written(self, size: int, task: asyncio.Task[None]) -> None:
        """A push write that had to wait is over: the writer is free (or the peer gone)."""
        self._protocol.write_stopped(size)
        if task.cancelled():
            self._pushes = None  # the cancellation ended it
        else:
            exc = task.exception()
            if isinstance(exc, Exception):
                self._pushes = None
                self._write_failed(exc)
            elif exc is None:
                if self._observer is not None:
                    self._observer.push_sent()
                self._resume_reading()
        self._release_writer()

    def _write_failed(self, exc: Exception) -> None:
        # The peer is gone (uvicorn raises ClientDisconnected, an OSError): the receive
        # loop hears the disconnect and cleans up; nothing queued can be delivered.
        logger.debug("write failed, peer gone: %r", exc)
        if self._lifecycle is _OPEN:
            self._set_lifecycle(_CLOSING)
        self._drop_queue()

    def _release_writer(self) -> None:
        """The writer stopped with frames queued (its request timed out or was cancelled):
        hand them to a task so that no reply is stranded."""
        if self._protocol.out and self._lifecycle is _OPEN:
            self._tasks.spawn(self._write_queued())

    async def _write_queued(self) -> None:
        if self._protocol.writing:
            return  # a writer took over meanwhile; it drains the queue
        queued = self._protocol.take_queued()
        if queued is not None:
            frame, is_reply = queued
            if not is_reply and self._observer is not None:
                self._observer.queued_push_bytes(-len(frame))
            await self.write(frame, is_reply)

    def _drop_queue(self) -> None:
        """Nothing waiting will be written: replies free their slots, pushes are dropped."""
        replies, pushes = self._protocol.drop_queue()
        if replies:
            self._resume_reading()
        self._pushes_dropped(pushes)

    def _pushes_dropped(self, frames: list[str]) -> None:
        """Queued pushes that will never be sent (the protocol has dropped them)."""
        observer = self._observer
        if observer is not None and frames:
            observer.queued_push_bytes(-sum(len(frame) for frame in frames))
            observer.pushes_dropped(len(frames))

    def _peer(self) -> str:
        """The client's address for log lines, `"host:port"` (only built when logging)."""
        return peer(self.scope.get("client"))


def _report_written(observer: Observer, is_reply: bool, queued: Queued | None) -> None:
    """Tell the observer a frame left, and that the next one (if a push) left the queue."""
    if not is_reply:
        observer.push_sent()
    if queued is not None and not queued[1]:
        observer.queued_push_bytes(-len(queued[0]))
