"""Wire codes: response statuses and WebSocket close codes.

`Status` mirrors the ObservableSocket JS client's `StatusCodes` enum value for value, so a
status the server sends is one the client has a name for. Both are `IntEnum`s: orjson writes
them as plain integers and user code may compare them with ints.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["CloseCode", "Status", "is_success"]


class Status(IntEnum):
    """Response status codes, identical to the JS client's `StatusCodes`."""

    OK = 200
    CREATED = 201
    ACCEPTED = 202
    NO_CONTENT = 204

    BAD_REQUEST = 400
    UNAUTHORIZED = 401
    PENDING = 402
    FORBIDDEN = 403
    NOT_FOUND = 404
    METHOD_NOT_ALLOWED = 405
    NOT_ACCEPTABLE = 406
    REQUEST_TIMEOUT = 408
    CONFLICT = 409
    GONE = 410
    LENGTH_REQUIRED = 411
    PRECONDITION_FAILED = 412
    PAYLOAD_TOO_LARGE = 413
    URI_TOO_LONG = 414
    UNSUPPORTED_MEDIA_TYPE = 415
    RANGE_NOT_SATISFIABLE = 416
    EXPECTATION_FAILED = 417
    TOO_MANY_REQUESTS = 429

    INTERNAL_SERVER_ERROR = 500
    NOT_IMPLEMENTED = 501
    BAD_GATEWAY = 502
    SERVICE_UNAVAILABLE = 503
    GATEWAY_TIMEOUT = 504
    HTTP_VERSION_NOT_SUPPORTED = 505


class CloseCode(IntEnum):
    """WebSocket close codes the router uses (RFC 6455, section 7.4.1)."""

    NORMAL_CLOSURE = 1000
    GOING_AWAY = 1001
    POLICY_VIOLATION = 1008
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013


def is_success(status: int) -> bool:
    """Return True for a 2xx status: the JS client's notion of success, and dehydrate's gate."""
    return 200 <= status < 300
