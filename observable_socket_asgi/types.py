"""Type aliases and the dict shapes users write; nothing here runs.

Dict shapes that users write by hand stay dicts (`HandlerResult`, `RouteOptions`). The
envelopes the router builds (`Request`, `Response`) are classes of the wire format and live
in `envelope.py`; `MessageData`, which the hook aliases below name, lives in `_message.py`
beneath both, so neither imports the other. Nothing here imports a web framework:
`ws` is typed `Any` where the object depends on how the router is mounted (the core
`Connection`, or Starlette's `WebSocket` through the adapter).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypedDict

from asgiref.typing import (
    ASGIReceiveCallable,
    ASGIReceiveEvent,
    ASGISendCallable,
    ASGISendEvent,
    Scope,
    WebSocketScope,
)

from ._message import Header, MessageData, Payload, Uuid

__all__ = [
    "ASGIReceiveCallable",
    "ASGIReceiveEvent",
    "ASGISendCallable",
    "ASGISendEvent",
    "AccessCheck",
    "DataCheck",
    "DehydrateFunction",
    "FormatCheck",
    "Handler",
    "HandlerResult",
    "Header",
    "HydrateFunction",
    "Payload",
    "RouteOptions",
    "Scope",
    "SocketAccess",
    "Uuid",
    "WebSocketScope",
]


class HandlerResult(TypedDict, total=False):
    """What a handler returns; every key is optional (status defaults to 200)."""

    status: int
    headers: Header | None
    payload: Payload


DataCheck = (
    Callable[["MessageData", dict[str, Any]], Awaitable[bool] | bool]
    | Callable[["MessageData"], Awaitable[bool] | bool]
)
"""`data_check(message[, local]) -> bool`: early validation; False answers 400, and raising
`BadRequest("why")` answers 400 with that reason."""

FormatCheck = DataCheck
"""The original package's name for `DataCheck`."""

AccessCheck = (
    Callable[[Any, "MessageData", dict[str, Any]], Awaitable[bool] | bool]
    | Callable[[Any, "MessageData"], Awaitable[bool] | bool]
)
"""`access(ws, message[, local]) -> bool`: authorisation; False answers 403."""

HydrateFunction = Callable[[Any, "MessageData"], Any]
"""`hydrate(ws, message) -> value`: its return value is the handler's single argument."""

DehydrateFunction = Callable[[Any], Any]
"""`dehydrate(payload) -> payload`: reshapes a 2xx payload before it is sent."""

Handler = Callable[..., Any]
"""`handler(value)` or `handler(ws, headers, payload)`, returning a `HandlerResult`."""

SocketAccess = Callable[[Any], Awaitable[bool] | bool]
"""`access_logic(ws) -> bool`: decides whether a connection is served (False closes it 1008)."""


class RouteOptions(TypedDict, total=False):
    """The `options` of `@router.route(name, options=...)`.

    `timeout` (seconds) overrides the router's `handler_timeout` for this route, and
    `rate_limit` (`(messages, per_seconds)`) counts this route's requests in a bucket of its own.
    `payload` and `response` declare types (anything pydantic v2's `TypeAdapter` accepts):
    the payload is validated as it enters the pipeline (400 with field errors), a 2xx
    response payload is checked and serialised after `dehydrate` (500 when it does not fit).
    `idempotent` runs the route once per uuid (and identity) within the router's
    `idempotency_ttl`, answering retries with the first answer.
    """

    data_check: DataCheck | None
    access: AccessCheck | None
    hydrate: HydrateFunction | None
    dehydrate: DehydrateFunction | None
    timeout: float | None
    rate_limit: tuple[int, float] | None
    idempotent: bool
    payload: Any
    response: Any


ScopeMapping = Mapping[str, Any]
