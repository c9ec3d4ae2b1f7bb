"""The route pipeline: [payload type] -> data_check -> access -> handler arguments -> handler
-> dehydrate -> [response type].

`run()` awaits user code only and returns the encoded reply frame: the value is built here
and written by exactly one place, the connection's writer. Every failure of user code ends
here as a 500 logged with the route and uuid; nothing of the exception reaches the wire.
`asyncio.CancelledError` is not caught: a cancelled request has no reply.

A route with nothing but a handler (`Route.plain`) needs only `reply()` and `failure()`: the
connection calls those two itself around the handler, one coroutine fewer per request.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from .._route import CallMode, Route
from .._schema import Invalid
from ..envelope import Request, encode_error, encode_reply
from ..errors import EncodeError
from ..logs import peer
from ..observe._observe import note_failure
from ..status import Status, is_success

__all__ = ["failure", "reply", "run"]

logger = logging.getLogger("observable_socket_asgi.pipeline")

_INTERNAL = "internal server error"
# the keys of a handler's result (HandlerResult)
_RESULT_KEYS = frozenset(("status", "headers", "payload"))
_SINGLE = CallMode.SINGLE
_EITHER = CallMode.EITHER


class _BadResult(Exception):
    """A handler returned something that is not a result mapping."""


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
    """
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
