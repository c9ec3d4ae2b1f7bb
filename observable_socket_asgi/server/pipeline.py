"""One request path: from a dispatched request to its reply frame, written.

`serve_request()` decides everything about a request the protocol dispatched: a plain
route's short path (the handler, then `reply()`), an idempotent route run once per key
through the runtime's idempotency cache, the full pipeline of hooks otherwise, a 504 past
the route's timeout, a 500 for a cancellation the router did not cause; then it frees the
request's bytes and hands the reply to the connection's one writer. `serve_observed()` is
the same call between the observer's `request_started` and `request_finished`: observation
wraps the path, it does not copy it.

The full pipeline, `run()`: [payload type] -> data_check -> access -> handler arguments ->
handler -> dehydrate -> [response type]. It awaits user code only and returns the encoded
reply frame. Every failure of user code ends here as a 500 logged with the route and uuid;
nothing of the exception reaches the wire. `asyncio.CancelledError` is not caught by
`run()`: a cancelled request has no reply.

A `BadRequest` (the client's mistake: a subscription past its limits, a malformed resume
position) is no failure: it is answered with its status and message, and logged as one
warning line without a traceback, repeats summarised, so a client cannot fill the log.

A payload that does not fit the route's type is answered 400 with the field errors only
once `access` (when the route has one) allows the request: asked with the payload as sent,
it refuses (or fails) and the answer is the 403, which says nothing of the route's fields.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from .._route import CallMode, Route
from .._schema import Invalid
from ..envelope import Envelope, Request, encode_error, encode_reply, parse_request
from ..errors import BadRequest, EncodeError, ProtocolError
from ..logs import peer
from ..observe._observe import MALFORMED, UNKNOWN, note_failure, status_of
from ..observe._observe import PING as PING_LABEL
from ..pubsub._idempotency import connection_identity, fingerprint, storage_key
from ..status import Status, is_success

if TYPE_CHECKING:
    from ..observe._observe import Observer
    from .runtime import Runtime

__all__ = [
    "Shell",
    "answer",
    "answer_once",
    "failure",
    "observe_answered",
    "reply",
    "run",
    "serve_observed",
    "serve_request",
]

logger = logging.getLogger("observable_socket_asgi.pipeline")

_INTERNAL = "internal server error"
# the keys of a handler's result (HandlerResult)
_RESULT_KEYS = frozenset(("status", "headers", "payload"))
_SINGLE = CallMode.SINGLE
_EITHER = CallMode.EITHER


class _BadResult(Exception):
    """A handler returned something that is not a result mapping."""


class Shell(Protocol):
    """What a request needs of the connection that read it: write its reply, freeing the
    request's bytes in the same call, or free them for a request that ends with none."""

    def request_done(self, nbytes: int) -> None: ...

    def write(self, frame: str, is_reply: bool, freed: int = 0) -> Awaitable[None]: ...


async def serve_request(
    runtime: Runtime, route: Route, ws: Any, request: Envelope, size: int, shell: Shell
) -> None:
    """Answer one dispatched request and write the reply.

    Never raises but CancelledError: a request cancelled by its connection's end (or a
    timeout of its own task) has no reply. `size` is the request frame's length, held in
    the connection's byte budget until the reply is handed to the writer (or the request
    ends with none). Returns None: a coroutine that returns a value ends in a StopIteration
    the receive loop's stepping would have to catch, once per request.
    """
    try:
        if route.plain:  # the common case: the handler and `reply()`, in this coroutine
            try:
                frame = reply(
                    request.uuid, await route.handler(ws, request.headers, request.payload)
                )
            except Exception as exc:
                frame = failure(route, ws, request.uuid, exc)
        elif route.idempotent:  # hooks see a `Request`, made here
            frame = await answer_once(runtime, route, ws, request.to_request())
        else:
            frame = await answer(route, ws, request.to_request())
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            shell.request_done(size)
            raise  # this request was cancelled (its connection ended): no reply
        # A cancellation the router did not cause: the handler awaited a future or task
        # someone else cancelled. It is the handler's failure, answered like any other;
        # not answering would hold this request's slot for ever.
        frame = _foreign_cancellation(route, ws, request.uuid)
    except BaseException:
        shell.request_done(size)  # no reply: the frame's bytes are freed all the same
        raise
    await shell.write(frame, True, size)


async def serve_observed(
    observer: Observer,
    started: float,
    runtime: Runtime,
    route: Route,
    ws: Any,
    request: Envelope,
    size: int,
    shell: Shell,
) -> None:
    """`serve_request()`, reported to `observer` (metrics, tracing) from `started` on."""
    token = observer.request_started(route.name, request.headers, started)
    watched = _Watched(shell)
    try:
        await serve_request(runtime, route, ws, request, size, watched)
    finally:
        observer.request_finished(token, route.name, watched.status)


class _Watched:
    """A shell that notes the status of the reply written through it, for the observer."""

    __slots__ = ("_shell", "status")

    def __init__(self, shell: Shell) -> None:
        self._shell = shell
        #: the reply's status; stays None if the request is cancelled before a reply exists
        self.status: int | None = None

    def request_done(self, nbytes: int) -> None:
        self._shell.request_done(nbytes)

    def write(self, frame: str, is_reply: bool, freed: int = 0) -> Awaitable[None]:
        self.status = status_of(frame)
        return self._shell.write(frame, is_reply, freed)


async def answer(route: Route, ws: Any, request: Request) -> str:
    """The reply frame of one request through the full pipeline, a 504 past the route's
    timeout."""
    timeout = route.timeout
    if timeout is None:
        return await run(route, ws, request)
    try:
        async with asyncio.timeout(timeout):
            return await run(route, ws, request)
    except TimeoutError:
        logger.warning(
            "route %r (uuid %r) timed out after %s s and was cancelled",
            route.name,
            request.uuid,
            timeout,
            extra=_context(route, ws, request.uuid),
        )
        return encode_error(
            Status.GATEWAY_TIMEOUT, request.uuid, f"handler timed out after {timeout} s"
        )


async def answer_once(runtime: Runtime, route: Route, ws: Any, request: Request) -> str:
    """The answer to a request on an idempotent route: computed once per (identity, route,
    uuid) within the idempotency TTL, in a task the connection's end does not cancel."""
    idempotency = runtime.idempotency
    assert idempotency is not None, "an idempotent route needs the runtime's idempotency"
    try:
        identity = runtime.identity(ws)
    except Exception:
        logger.exception("idempotency_identity raised: keyed to the connection")
        identity = None
    if identity is None:
        identity = connection_identity(ws)
    key = storage_key(str(identity), route.name, request.uuid)
    await runtime.topics.start()  # the store may live on the backplane's server
    return await idempotency.run(
        key, fingerprint(request.payload), request.uuid, lambda: answer(route, ws, request)
    )


def observe_answered(
    observer: Observer, runtime: Runtime, frame: str, data: str | bytes, started: float
) -> None:
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
            label = parse_request(data, runtime.settings.max_message_bytes).route
        except ProtocolError:
            label = MALFORMED
        else:
            if label not in runtime.routes:
                label = UNKNOWN
    else:  # 400, 413: not a usable request
        label = MALFORMED
    observer.answered(label, status, started)


def _foreign_cancellation(route: Route, ws: Any, uuid: Any) -> str:
    logger.error(
        "route %r (uuid %r) raised CancelledError the router did not cause (it awaited "
        "something cancelled elsewhere); answered 500",
        route.name,
        uuid,
        exc_info=True,
        extra=_context(route, ws, uuid),
    )
    return encode_error(Status.INTERNAL_SERVER_ERROR, uuid, _INTERNAL)


async def run(route: Route, ws: Any, request: Request) -> str:
    """Serve one request through `route`'s hooks and handler; return the reply frame."""
    uuid = request.uuid
    try:
        if route.direct:  # no data_check, access or hydrate: straight to the handler
            result = await route.handler(ws, request.headers, request.payload)
        else:
            schema = route.payload_schema
            if schema is not None:  # first: every hook sees the validated value
                try:
                    request.payload = schema.validate(request.payload)
                except Invalid as exc:
                    if route.access is not None and not await _allowed_as_sent(route, ws, request):
                        return encode_error(
                            Status.FORBIDDEN, uuid, f"access denied to route {route.name}"
                        )
                    return encode_reply(
                        uuid,
                        Status.BAD_REQUEST,
                        {},
                        {
                            "message": "invalid payload",
                            "errors": exc.errors,
                            "error_count": exc.count,
                        },
                    )
            local: dict[str, Any] = {}
            check = route.data_check
            if check is not None:
                ok = await (check(request, local) if route.data_check_local else check(request))
                if not ok:
                    return encode_error(
                        Status.BAD_REQUEST, uuid, f"data check failed for route {route.name}"
                    )
            access = route.access
            if access is not None:
                ok = await (
                    access(ws, request, local) if route.access_local else access(ws, request)
                )
                if not ok:
                    return encode_error(
                        Status.FORBIDDEN, uuid, f"access denied to route {route.name}"
                    )
            if route.hydrate is not None:
                result = await route.handler(await route.hydrate(ws, request))
            elif route.call_mode is _SINGLE or (route.call_mode is _EITHER and local):
                result = await route.handler(local)
            else:
                result = await route.handler(ws, request.headers, request.payload)

        status, headers, payload = _unpack(result)
        if route.dehydrate is not None and is_success(status):
            payload = await route.dehydrate(payload)
        if route.response_schema is not None and is_success(status):
            payload = route.response_schema.serialise(payload)
        return encode_reply(uuid, status, headers, payload)
    except Exception as exc:
        return failure(route, ws, uuid, exc)


def reply(uuid: Any, result: Any) -> str:
    """The reply frame for a handler's `result`, on a route with no dehydrate and no declared
    response type.

    Raises:
        Exception: the result is not a valid `HandlerResult`, or not JSON-serialisable; what
            `failure()` turns into the 500.
    """
    # `{"payload": ...}`, the usual result, needs none of `_unpack`'s checks
    if type(result) is dict and len(result) == 1 and "payload" in result:
        return encode_reply(uuid, 200, {}, result["payload"])
    status, headers, payload = _unpack(result)
    return encode_reply(uuid, status, headers, payload)


def failure(route: Route, ws: Any, uuid: Any, exc: Exception) -> str:
    """The 500 reply to a request whose user code failed (or whose result is unusable),
    logged once with the route, the uuid and the cause; the exception never reaches the wire.
    A `BadRequest` is answered with its own status and message instead.
    """
    if isinstance(exc, BadRequest):
        _mistakes.note(route.name, uuid, exc)
        return encode_error(exc.status, uuid, str(exc))
    if isinstance(exc, Invalid):
        logger.error(
            "route %r (uuid %r): response does not fit its declared type: %s", route.name, uuid, exc
        )
    elif isinstance(exc, _BadResult):
        logger.error(
            "route %r (uuid %r): %s", route.name, uuid, exc, extra=_context(route, ws, uuid)
        )
    elif isinstance(exc, EncodeError):
        logger.error(
            "route %r (uuid %r): reply is not JSON-serialisable: %s",
            route.name,
            uuid,
            exc,
            extra=_context(route, ws, uuid),
        )
    else:
        logger.error(
            "route %r (uuid %r) raised",
            route.name,
            uuid,
            exc_info=exc,
            extra=_context(route, ws, uuid),
        )
        note_failure(exc)  # to the request's span, when tracing
    return encode_error(Status.INTERNAL_SERVER_ERROR, uuid, _INTERNAL)


async def _allowed_as_sent(route: Route, ws: Any, request: Request) -> bool:
    """`access` asked about a request whose payload does not fit its type (it sees the
    payload as sent); one that fails on that payload refuses it."""
    access = route.access
    assert access is not None
    try:
        return bool(await (access(ws, request, {}) if route.access_local else access(ws, request)))
    except Exception:
        logger.debug("route %r: access failed on a payload that does not fit", route.name)
        return False


class _Mistakes:
    """One warning per route and kind of client mistake per `interval` seconds: the first
    at once, the next one after the interval with the count of those in between."""

    def __init__(self, interval: float = 60.0) -> None:
        self.interval = interval
        # (route, exception class) -> (when the last line was logged, mistakes since)
        self._seen: dict[tuple[str, type[BaseException]], tuple[float, int]] = {}

    def note(self, route: str, uuid: Any, exc: BadRequest) -> None:
        key = (route, type(exc))
        now = time.monotonic()
        logged, since = self._seen.get(key, (now - self.interval, 0))
        if now - logged < self.interval:
            self._seen[key] = (logged, since + 1)
            return
        self._seen[key] = (now, 0)
        more = f" ({since} more since the last line)" if since else ""
        logger.warning(
            "route %r (uuid %r): answered %d, the client's mistake: %s: %s%s",
            route,
            uuid,
            exc.status,
            type(exc).__name__,
            exc,
            more,
        )


_mistakes = _Mistakes()


def _context(route: Route, ws: Any, uuid: Any) -> dict[str, Any]:
    """The `extra` fields of a record about a request (see `logs.py`)."""
    return {"route": route.name, "uuid": uuid, "client": peer(getattr(ws, "client", None))}


def _unpack(result: Any) -> tuple[int, Any, Any]:
    if type(result) is not dict and not isinstance(result, Mapping):
        raise _BadResult(
            f"handler returned {type(result).__name__}, expected a mapping "
            "like {'status': 200, 'headers': {}, 'payload': ...}"
        )
    for key in result:
        if key not in _RESULT_KEYS:
            # {"sum": 10} would otherwise answer 200 with a null payload, and say nothing
            unknown = sorted(repr(k) for k in result if k not in _RESULT_KEYS)
            raise _BadResult(
                f"handler returned the key(s) {', '.join(unknown)}; a result has only "
                "'status', 'headers' and 'payload' (put the data under 'payload')"
            )
    status = result.get("status", 200)
    if type(status) is not int:  # Status members and other int subclasses, None, junk
        if status is None:
            status = 200
        elif not isinstance(status, int) or isinstance(status, bool):
            raise _BadResult(f"handler returned status {status!r}, expected an integer")
    if not 100 <= status <= 599:
        raise _BadResult(f"handler returned status {status}, expected 100-599")
    headers = result.get("headers")
    if headers is None:
        headers = {}
    elif not isinstance(headers, dict):
        raise _BadResult(
            f"handler returned headers of type {type(headers).__name__}, expected a dict"
        )
    return status, headers, result.get("payload")
