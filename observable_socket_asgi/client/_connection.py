"""The socket's owner: the handshake, reading, the heartbeat, reconnection, and the state.

`ReconnectingSocket` is the client's lower half (`Client` in `_client.py` builds the request
API on it). It alone moves the client's state (`_state.py`, one setter: `_set_state`) and
derives from it what waiters need: `request()` callers wait on `_ready`, set while the
state is OPEN and once it is CLOSING or CLOSED. One task, the runner, owns the socket: it
reads frames and hands them to the pure `Correlator`, runs the heartbeat beside it, and when
the socket closes fails the pending requests and reconnects with backoff (`_backoff.py`)
unless the close code, the options or `close()` say not to.
"""

from __future__ import annotations

import asyncio
import logging
import urllib.parse
import uuid as uuid_module
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from typing import Any, Self

try:
    import websockets
    from websockets.asyncio.client import ClientConnection
    from websockets.protocol import State
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    from .._extras import install_command

    command = install_command("client")
    raise ImportError(f"the client needs websockets; install the extra: {command}") from exc

from .._backoff import backoff, may_reconnect, parse_retry_after, retry_delay
from ..envelope import PING, Push, encode_request
from ..errors import ConnectFailed, ConnectionClosed, ProtocolError
from ._callbacks import TaskSet
from ._correlation import (
    Answer,
    Correlator,
    Dropped,
    Pending,
    Pong,
    Pushed,
    fail_pending,
    report_failed_send,
)
from ._state import ClientState, StateMachine

__all__ = ["ReconnectingSocket", "logger"]

logger = logging.getLogger("observable_socket_asgi.client")


class ReconnectingSocket(ABC):
    """A socket to `url` that is reopened when lost, with the client's state.

    Args:
        url: the `ws://` or `wss://` URL.
        headers: the global message headers (the heartbeat's PINGs carry them too).
        heartbeat: `(interval, timeout)` in seconds; interval None disables the heartbeat.
        reconnect: reopen a lost connection (never after close codes 1008 and 1011).
        max_attempts: reconnection attempts before giving up; None tries forever.
        delays: `(initial, max, factor)` of the backoff between attempts.
        connect_options: for `websockets.asyncio.client.connect`.
    """

    def __init__(
        self,
        url: str,
        headers: Mapping[str, Any] | None,
        heartbeat: tuple[float | None, float],
        reconnect: bool,
        max_attempts: int | None,
        delays: tuple[float, float, float],
        connect_options: dict[str, Any],
    ) -> None:
        interval, timeout = heartbeat
        if interval is not None and not interval > 0:
            raise ValueError(f"heartbeat_interval must be positive or None, got {interval}")
        if not timeout > 0:
            raise ValueError(f"heartbeat_timeout must be positive, got {timeout}")
        if max_attempts is not None and max_attempts < 0:
            raise ValueError(f"max_attempts must be >= 0 or None, got {max_attempts}")
        self.url = url
        self.headers: dict[str, Any] = dict(headers or {})
        self.heartbeat_interval, self.heartbeat_timeout = interval, timeout
        self.reconnect = reconnect
        self.max_attempts = max_attempts
        self._backoff = delays
        self._connect_options = connect_options
        # the lifecycle: changed only by _set_state
        self._machine = StateMachine(url, logger)
        # the pure part: pending requests by uuid, what a frame is
        self._protocol: Correlator[Pending] = Correlator()
        # derived from the state by _set_state: set while OPEN and once CLOSING or CLOSED
        self._ready = asyncio.Event()
        # the open socket while OPEN (and while the close handshake of a lost one runs)
        self._ws: ClientConnection | None = None
        # the task that owns the socket: reads it, runs the heartbeat, reconnects
        self._runner: asyncio.Task[None] | None = None
        # the first close() call's completion, which later calls wait for
        self._close_done: asyncio.Future[None] | None = None
        # why the client is CLOSED (or CLOSING): what requests raise from then on
        self._ending: ConnectionClosed | None = None
        # Reconnection state that outlives a short-lived connection: the delay generator and
        # the attempts made since the last connection that stayed up for backoff_max seconds.
        self._delays: Iterator[float] | None = None
        self._attempts = 0
        # the PONG the heartbeat waits for
        self._pong: asyncio.Future[None] | None = None
        # why the current socket was given up by this side (heartbeat), if it was
        self._dropped_reason: str | None = None
        # callbacks and the other tasks nobody awaits, cancelled by close()
        self._tasks = TaskSet(logger)
        #: the last close code the server sent (or 1006), for callers that want it
        self.close_code: int | None = None
        self.close_reason: str = ""

    # Public API

    @property
    def state(self) -> ClientState:
        """Where the client is in its life: CONNECTING, OPEN, RECONNECTING, CLOSING, CLOSED."""
        return self._machine.state

    @property
    def connected(self) -> bool:
        """True while a socket is open."""
        return self._machine.state is ClientState.OPEN

    @property
    def closed(self) -> bool:
        """True once the client is closed for good (by `close()`, 1008/1011, or giving up)."""
        return self._machine.state >= ClientState.CLOSING

    async def connect(self) -> Self:
        """Open the first connection.

        Raises:
            ConnectFailed: the handshake failed (refused, unreachable, rejected, timed out);
                the client is then CLOSED.
            ConnectionClosed: `close()` was called during the handshake.
            RuntimeError: the client is not new (already connected, or closed).
        """
        state = self._machine.state
        if state is not ClientState.CONNECTING:
            raise RuntimeError(f"this client is already connected ({state.name})")
        try:
            ws = await self._open()
        except ConnectFailed as exc:
            self._end(ConnectionClosed(str(exc), code=None))
            raise
        error = self._ending
        if error is not None:
            # close() came during the handshake: this socket is not wanted
            await ws.close()
            raise ConnectionClosed(error.reason, code=error.code)
        self._attach(ws)
        self._runner = asyncio.get_running_loop().create_task(self._run(ws))
        return self

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
            if self._machine.state < ClientState.CLOSING:
                self._ending = ConnectionClosed("client closed", code=1000)
                self._set_state(ClientState.CLOSING)
            ws = self._ws
            if ws is not None:
                fail_pending(self._protocol, 1000, "client closed")
                await ws.close()
                self._ws = None
            runner = self._runner
            if runner is not None and runner is not asyncio.current_task():
                runner.cancel()
                await asyncio.gather(runner, return_exceptions=True)
            await self._tasks.cancel()
            if self._machine.state is ClientState.CLOSING:
                self._set_state(ClientState.CLOSED)
        finally:
            self._close_done.set_result(None)

    # Private methods: what the client above provides

    @abstractmethod
    def _pushed(self, push: Push) -> None:
        """Deliver a push (the client's callback or buffer)."""
        raise NotImplementedError

    @abstractmethod
    def _opened(self, reconnected: bool) -> None:
        """Run what follows a handshake: on_open, and resubscribing after a reconnect."""
        raise NotImplementedError

    @abstractmethod
    def _wake_pushes(self) -> None:
        """Wake the `pushes()` reader: a push came, or the client is closing."""
        raise NotImplementedError

    # Private methods: the state

    def _set_state(self, state: ClientState) -> None:
        """Move to `state` (logged; an impossible move raises) and wake those who wait on it."""
        self._machine.move(state)
        if state is ClientState.OPEN or state >= ClientState.CLOSING:
            self._ready.set()  # request() waiters re-check the state
        else:
            self._ready.clear()
        if state >= ClientState.CLOSING:
            self._wake_pushes()

    def _end(self, error: ConnectionClosed) -> None:
        """Close for good, for `error`: it is what requests raise from now on."""
        if self._machine.state < ClientState.CLOSING:
            self._ending = error
            self._set_state(ClientState.CLOSED)

    # Private methods: sending

    async def _wait_open(self, route: str) -> ClientConnection:
        while True:
            error = self._ending
            if error is not None:
                raise ConnectionClosed(error.reason, code=error.code, route=route)
            ws = self._ws
            if ws is not None and self._machine.state is ClientState.OPEN:
                return ws
            await self._ready.wait()

    async def _send_frame(self, ws: ClientConnection, frame: str, pending: Pending) -> None:
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
                f"cannot connect to {self.url}: {_describe(exc, self.url)}", status, retry_after
            ) from exc

    def _attach(self, ws: ClientConnection) -> None:
        reconnected = self._machine.state is ClientState.RECONNECTING
        self._ws = ws
        self._dropped_reason = None
        self._set_state(ClientState.OPEN)
        self._opened(reconnected)

    async def _run(self, ws: ClientConnection) -> None:
        """Own the socket: read it, beat the heart, reconnect. Never raises; logs failures.

        On return (the client is closed for good) nothing it started is still running.
        """
        loop = asyncio.get_running_loop()
        try:
            while True:
                opened_at = loop.time()
                code, reason = await self._serve(ws)
                if loop.time() - opened_at >= self._backoff[1]:
                    self._delays = None  # it was a healthy connection: start afresh
                    self._attempts = 0
                self._ws = None
                self.close_code, self.close_reason = code, reason
                fail_pending(self._protocol, code, reason)
                if self._machine.state is ClientState.CLOSING:
                    return
                if not self.reconnect or not may_reconnect(code):
                    logger.info(
                        "connection to %s closed (%s %r): not reconnecting", self.url, code, reason
                    )
                    self._end(ConnectionClosed(reason, code=code))
                    return
                logger.info("connection to %s closed (%s %r): reconnecting", self.url, code, reason)
                self._set_state(ClientState.RECONNECTING)
                new_ws = await self._reconnect()
                if new_ws is None:
                    gave_up = f"{reason or 'closed'}; gave up reconnecting"
                    self._end(ConnectionClosed(gave_up, code=code))
                    return
                ws = new_ws
                self._attach(ws)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("client connection to %s failed", self.url)
            fail_pending(self._protocol, 1006, "client failure")
            self._end(ConnectionClosed("client failure", code=1006))
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
                fail_pending(self._protocol, 1006, reason)
                self._tasks.spawn(ws.close(1001, "heartbeat timeout"))
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

    # Private methods: incoming frames

    def _dispatch(self, data: str | bytes) -> None:
        try:
            incoming = self._protocol.receive(data)
        except ProtocolError as exc:
            logger.warning("dropped a frame from %s: %s", self.url, exc.message)
            return
        if isinstance(incoming, Answer):
            incoming.waiter.answer(incoming.response)
        elif isinstance(incoming, Pushed):
            self._pushed(incoming.push)
        elif isinstance(incoming, Pong):
            pong = self._pong
            if pong is not None and not pong.done():
                pong.set_result(None)
        elif isinstance(incoming, Dropped):
            # nobody waits for it; but a send() that failed must not fail silently
            report_failed_send(logger, incoming)


def _describe(exc: BaseException, url: str) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "timed out during the handshake"
    if isinstance(exc, websockets.InvalidStatus):
        status = exc.response.status_code
        said = f"the server answered HTTP {status} instead of a WebSocket"
        if status in (403, 404):
            # what a framework's router (Starlette, FastAPI, Litestar...) or the server answers
            # a handshake at a path with no WebSocket route: the usual cause is a wrong path
            path = urllib.parse.urlsplit(url).path or "/"
            return (
                f"{said}: check the path: the server refused the handshake "
                f"(no WebSocket route at {path}?)"
            )
        return said
    return str(exc) or type(exc).__name__
