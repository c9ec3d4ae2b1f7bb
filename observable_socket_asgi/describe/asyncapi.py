"""The AsyncAPI 3.0 document of a router, built from plain descriptions of its routes.

Pure: the input is `RouteDoc`s and `TopicDoc`s holding JSON Schemas already made (by
`_schema.json_schemas`, which shares one set of definitions), and the output a JSON-ready
dict. How the protocol maps onto AsyncAPI:

- one channel, `socket`: every message travels on the one WebSocket;
- each route is a `receive` operation (the server receives the request) whose `reply`
  points back at that channel and lists the success answer and the error answers the router
  itself may give for that route; the request and its answer are correlated by
  `$message.payload#/uuid`, and requests are told apart by a `const` route;
- each declared push topic is a `send` operation;
- the heartbeat (`PING` -> `PONG`) and the 404 for an unknown route are operations too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .._schema import PLACEHOLDER
from ..envelope import PING, PONG
from ..status import Status

__all__ = [
    "ASYNCAPI_VERSION",
    "CHANNEL",
    "ERROR_PAYLOAD",
    "FIELD_ERROR",
    "SCHEMA_REF",
    "RouteDoc",
    "TopicDoc",
    "build_document",
    "error_schemas",
    "identifier",
]

ASYNCAPI_VERSION = "3.0.0"
CHANNEL = "socket"
#: where shared definitions live; `_schema.json_schemas` is given the same template
SCHEMA_REF = "#/components/schemas/{model}"
#: names of the schemas of error answers, in `components.schemas`
ERROR_PAYLOAD = "SocketErrorPayload"
FIELD_ERROR = "SocketFieldError"

#: what each error status the router gives means, for the document's readers
ERROR_MEANINGS: dict[int, str] = {
    Status.BAD_REQUEST: "the payload does not fit the route's type (the answer lists the "
    "field errors), data_check returned false, or the frame is not a usable request",
    Status.FORBIDDEN: "the route's access hook returned false",
    Status.NOT_FOUND: "no route of that name",
    Status.PAYLOAD_TOO_LARGE: "the frame is larger than the server accepts",
    Status.TOO_MANY_REQUESTS: "over the connection's or the route's rate limit",
    Status.INTERNAL_SERVER_ERROR: "a hook or the handler failed, or its answer did not fit "
    "the declared response type",
    Status.GATEWAY_TIMEOUT: "the handler ran past its timeout and was cancelled",
}


@dataclass(frozen=True, slots=True)
class RouteDoc:
    """What the document says about one route.

    Attributes:
        request: JSON Schema of the request payload; None accepts any JSON.
        response: JSON Schema of the 2xx payload; None means any JSON.
        errors: the error statuses the router may answer for this route.
    """

    name: str
    summary: str | None = None
    description: str | None = None
    request: dict[str, Any] | None = None
    response: dict[str, Any] | None = None
    errors: tuple[int, ...] = (Status.INTERNAL_SERVER_ERROR,)


@dataclass(frozen=True, slots=True)
class TopicDoc:
    """A push topic: a name, or a pattern with `{placeholders}` (`"room:{room}"`)."""

    pattern: str
    payload: dict[str, Any] | None = None
    description: str | None = None


def identifier(name: str, taken: set[str]) -> str:
    """Return a key for `name` that AsyncAPI accepts (`[A-Za-z0-9._-]`), unique in `taken`."""
    base = re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_") or "route"
    key, n = base, 2
    while key in taken:
        key, n = f"{base}_{n}", n + 1
    taken.add(key)
    return key


def error_schemas() -> dict[str, dict[str, Any]]:
    """The schemas of every error answer's payload, keyed by their names."""
    return {
        FIELD_ERROR: {
            "title": FIELD_ERROR,
            "description": "One reason a payload does not fit its type.",
            "type": "object",
            "properties": {
                "loc": {
                    "description": "Where in the payload: keys and list indexes.",
                    "type": "array",
                    "items": {"type": ["string", "integer"]},
                },
                "msg": {"description": "What is wrong, for people.", "type": "string"},
                "type": {"description": "What is wrong, for programs.", "type": "string"},
            },
            "required": ["loc", "msg", "type"],
        },
        ERROR_PAYLOAD: {
            "title": ERROR_PAYLOAD,
            "description": "The payload of every error answer.",
            "type": "object",
            "properties": {
                "message": {"type": "string"},
                "errors": {
                    "description": "On a 400 for a payload that does not fit: the first "
                    "field errors found.",
                    "type": "array",
                    "items": {"$ref": SCHEMA_REF.format(model=FIELD_ERROR)},
                },
                "error_count": {
                    "description": "With `errors`: how many were found in all.",
                    "type": "integer",
                },
            },
            "required": ["message"],
        },
    }


def build_document(
    routes: Sequence[RouteDoc],
    topics: Sequence[TopicDoc] = (),
    definitions: dict[str, Any] | None = None,
    *,
    title: str,
    version: str,
    description: str | None = None,
    address: str | None = None,
    heartbeat: bool = True,
) -> dict[str, Any]:
    """Return the AsyncAPI 3.0 document for `routes` and `topics`.

    Args:
        definitions: the shared schema definitions the route schemas refer to
            (as `#/components/schemas/<name>`).
        address: the socket's path (`"/ws"`), when known; left out it means any path.
        heartbeat: document the `PING` -> `PONG` exchange.
    """
    parts = _Parts()
    error_keys = _add_errors(parts, routes)
    for route in routes:
        _add_route(parts, route, error_keys)
    _add_unknown_route(parts, [r.name for r in routes], error_keys[Status.NOT_FOUND])
    if heartbeat:
        _add_heartbeat(parts)
    for topic in topics:
        _add_topic(parts, topic)

    schemas = dict(definitions or {})
    for name, schema in error_schemas().items():
        schemas.setdefault(name, schema)
    info: dict[str, Any] = {"title": title, "version": version}
    if description:
        info["description"] = description
    channel: dict[str, Any] = {
        "title": "ObservableSocket",
        "description": "The one WebSocket: requests, their answers (correlated by uuid) "
        "and pushes share it.",
        "messages": parts.messages,
    }
    if address is not None:
        channel["address"] = address
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": info,
        "defaultContentType": "application/json",
        "channels": {CHANNEL: channel},
        "operations": parts.operations,
        "components": {
            "schemas": schemas,
            "correlationIds": {
                "uuid": {
                    "description": "A request and its answer carry the same uuid.",
                    "location": "$message.payload#/uuid",
                }
            },
        },
    }


# Private functions


class _Parts:
    """The messages and operations of one document, keyed by identifiers unique within it."""

    __slots__ = ("messages", "operations", "taken")

    def __init__(self) -> None:
        self.taken: set[str] = set()
        self.messages: dict[str, Any] = {}
        self.operations: dict[str, Any] = {}

    def key(self, name: str) -> str:
        return identifier(name, self.taken)


def _add_errors(parts: _Parts, routes: Sequence[RouteDoc]) -> dict[int, str]:
    """One message per error status any route (or an unknown route) may get; their keys."""
    error_keys: dict[int, str] = {}
    for status in sorted({s for r in routes for s in r.errors} | {Status.NOT_FOUND}):
        key = parts.key(f"error_{int(status)}")
        error_keys[status] = key
        parts.messages[key] = _error_message(status)
    return error_keys


def _add_route(parts: _Parts, route: RouteDoc, error_keys: dict[int, str]) -> None:
    key = parts.key(route.name)
    request_key = parts.key(f"{key}.request")
    response_key = parts.key(f"{key}.response")
    parts.messages[request_key] = _request_message(route)
    parts.messages[response_key] = _response_message(route)
    replies = [response_key] + [error_keys[s] for s in sorted(route.errors)]
    parts.operations[key] = _receive(
        route.name, route.summary, route.description, request_key, replies
    )


def _add_unknown_route(parts: _Parts, names: list[str], not_found_key: str) -> None:
    key = parts.key("unknown_route")
    parts.messages[key] = {
        "name": "unknown route",
        "summary": "A request for a route the server does not have.",
        "correlationId": {"$ref": "#/components/correlationIds/uuid"},
        "payload": _envelope(
            {"type": "string", "not": {"enum": [*names, PING, PONG]}}, None, request=True
        ),
    }
    parts.operations[key] = _receive(
        None, "Any other route is answered 404.", None, key, [not_found_key]
    )


def _add_heartbeat(parts: _Parts) -> None:
    ping_key, pong_key = parts.key("ping"), parts.key("pong")
    parts.messages[ping_key] = {
        "name": PING,
        "summary": "The client's heartbeat; answered at once, even while handlers run.",
        "correlationId": {"$ref": "#/components/correlationIds/uuid"},
        "payload": _envelope({"const": PING}, None, request=True),
    }
    parts.messages[pong_key] = {
        "name": PONG,
        "summary": "The heartbeat's answer: the PING's uuid and route PONG.",
        "correlationId": {"$ref": "#/components/correlationIds/uuid"},
        "payload": _object(
            {
                "uuid": _UUID,
                "route": {"const": PONG},
                "status": {"const": int(Status.OK)},
                "headers": {"type": "object"},
                "payload": {"type": "null"},
            },
            ["uuid", "route", "status", "headers", "payload"],
        ),
    }
    parts.operations[parts.key("heartbeat")] = _receive(
        PING, "Heartbeat: PING is answered PONG.", None, ping_key, [pong_key]
    )


def _add_topic(parts: _Parts, topic: TopicDoc) -> None:
    key = parts.key(f"push_{topic.pattern}")
    parts.messages[key] = _push_message(topic)
    operation: dict[str, Any] = {
        "action": "send",
        "channel": {"$ref": f"#/channels/{CHANNEL}"},
        "title": f"push {topic.pattern}",
        "summary": f"Pushed to the connections subscribed to {topic.pattern}.",
        "messages": [_message_ref(key)],
    }
    if topic.description:
        operation["description"] = topic.description
    parts.operations[key] = operation


_UUID: dict[str, Any] = {
    "description": "Correlation id: echoed unchanged, same JSON type.",
    "type": ["string", "integer"],
}
_HEADERS: dict[str, Any] = {"description": "Message headers.", "type": "object"}


def _object(properties: dict[str, Any], required: Iterable[str]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(required)}


def _envelope(route: dict[str, Any], payload: dict[str, Any] | None, *, request: bool) -> Any:
    properties: dict[str, Any] = {
        "uuid": _UUID,
        "route": route,
        "headers": {**_HEADERS, "type": ["object", "null"]},
        "payload": payload if payload is not None else {},
    }
    if request:
        properties["status"] = {"description": "Sent by the JS client; ignored.", "type": "integer"}
    return _object(properties, ["uuid", "route"])


def _message_ref(key: str) -> dict[str, str]:
    return {"$ref": f"#/channels/{CHANNEL}/messages/{key}"}


def _receive(
    route: str | None,
    summary: str | None,
    description: str | None,
    request_key: str,
    reply_keys: Sequence[str],
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "action": "receive",
        "channel": {"$ref": f"#/channels/{CHANNEL}"},
    }
    if route is not None:
        operation["title"] = route
    if summary:
        operation["summary"] = summary
    if description:
        operation["description"] = description
    operation["messages"] = [_message_ref(request_key)]
    operation["reply"] = {
        "channel": {"$ref": f"#/channels/{CHANNEL}"},
        "messages": [_message_ref(key) for key in reply_keys],
    }
    return operation


def _request_message(route: RouteDoc) -> dict[str, Any]:
    return {
        "name": route.name,
        "title": f"{route.name} request",
        "correlationId": {"$ref": "#/components/correlationIds/uuid"},
        "payload": _envelope({"const": route.name}, route.request, request=True),
    }


def _response_message(route: RouteDoc) -> dict[str, Any]:
    payload = route.response if route.response is not None else {}
    return {
        "name": f"{route.name} response",
        "title": f"{route.name} answer (2xx)",
        "correlationId": {"$ref": "#/components/correlationIds/uuid"},
        "payload": _object(
            {
                "uuid": _UUID,
                "status": {"type": "integer", "minimum": 200, "maximum": 299},
                "headers": _HEADERS,
                "payload": payload,
            },
            ["uuid", "status", "headers", "payload"],
        ),
    }


def _error_message(status: int) -> dict[str, Any]:
    return {
        "name": f"error {int(status)}",
        "title": f"{int(status)} {Status(status).name.replace('_', ' ').lower()}",
        "summary": ERROR_MEANINGS.get(status, "an error answer"),
        "correlationId": {"$ref": "#/components/correlationIds/uuid"},
        "payload": _object(
            {
                "uuid": {**_UUID, "type": ["string", "integer", "null"]},
                "status": {"const": int(status)},
                "headers": _HEADERS,
                "payload": {"$ref": SCHEMA_REF.format(model=ERROR_PAYLOAD)},
            },
            ["uuid", "status", "headers", "payload"],
        ),
    }


def _ecma_pattern(pattern: str) -> str:
    # Python's re.escape escapes characters (`-`, `:`...) that a JavaScript regex with the
    # `u` flag (how JSON Schema validators compile `pattern`) refuses to see escaped.
    parts = PLACEHOLDER.split(pattern)
    escaped = [re.sub(r"([.^$*+?()[\]{}|\\/])", r"\\\1", part) for part in parts]
    return "^" + ".+".join(escaped) + "$"


def _push_message(topic: TopicDoc) -> dict[str, Any]:
    route: dict[str, Any]
    if PLACEHOLDER.search(topic.pattern):
        route = {"type": "string", "pattern": _ecma_pattern(topic.pattern)}
    else:
        route = {"const": topic.pattern}
    message: dict[str, Any] = {
        "name": topic.pattern,
        "title": f"push {topic.pattern}",
        "payload": _object(
            {
                "uuid": {"description": "A server id, never a request's.", "type": "string"},
                "route": route,
                "status": {"type": "integer"},
                "headers": _HEADERS,
                "payload": topic.payload if topic.payload is not None else {},
            },
            ["uuid", "route", "status", "headers", "payload"],
        ),
    }
    if topic.description:
        message["summary"] = topic.description
    return message
