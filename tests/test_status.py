"""Status and close codes: the wire values the JS client knows by name."""

from __future__ import annotations

from observable_socket_asgi import CloseCode, Status, is_success

# The JS client's `StatusCodes` enum, copied value for value.
JS_STATUS_CODES = {
    "OK": 200,
    "CREATED": 201,
    "ACCEPTED": 202,
    "NO_CONTENT": 204,
    "BAD_REQUEST": 400,
    "UNAUTHORIZED": 401,
    "PENDING": 402,
    "FORBIDDEN": 403,
    "NOT_FOUND": 404,
    "METHOD_NOT_ALLOWED": 405,
    "NOT_ACCEPTABLE": 406,
    "REQUEST_TIMEOUT": 408,
    "CONFLICT": 409,
    "GONE": 410,
    "LENGTH_REQUIRED": 411,
    "PRECONDITION_FAILED": 412,
    "PAYLOAD_TOO_LARGE": 413,
    "URI_TOO_LONG": 414,
    "UNSUPPORTED_MEDIA_TYPE": 415,
    "RANGE_NOT_SATISFIABLE": 416,
    "EXPECTATION_FAILED": 417,
    "TOO_MANY_REQUESTS": 429,
    "INTERNAL_SERVER_ERROR": 500,
    "NOT_IMPLEMENTED": 501,
    "BAD_GATEWAY": 502,
    "SERVICE_UNAVAILABLE": 503,
    "GATEWAY_TIMEOUT": 504,
    "HTTP_VERSION_NOT_SUPPORTED": 505,
}


def test_status_matches_js_status_codes_exactly() -> None:
    """Status has exactly the JS client's names and values, no more, no fewer."""
    assert {s.name: s.value for s in Status} == JS_STATUS_CODES


def test_status_is_an_int() -> None:
    """A Status compares equal to its integer, so handlers may return either."""
    ok: int = Status.OK
    assert ok == 200
    assert isinstance(Status.NOT_FOUND, int)


def test_close_codes() -> None:
    """Close codes carry the RFC 6455 values the JS client reacts to."""
    codes = {code.name: int(code) for code in CloseCode}
    assert (
        codes.items()
        >= {
            "NORMAL_CLOSURE": 1000,
            "GOING_AWAY": 1001,
            "POLICY_VIOLATION": 1008,
            "INTERNAL_ERROR": 1011,
            "SERVICE_RESTART": 1012,
        }.items()
    )


def test_is_success_is_2xx() -> None:
    """Success means 200 <= status < 300, as the JS client decides it."""
    assert is_success(200) and is_success(204) and is_success(299)
    assert not is_success(199) and not is_success(300) and not is_success(404)
