"""The sans-I/O envelope: every parse rule of the wire contract, with plain function calls."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from observable_socket_asgi import EncodeError, FrameTooLarge, ProtocolError, Request, Response
from observable_socket_asgi.envelope import (
    encode_error,
    encode_pong,
    encode_push,
    encode_reply,
    new_push_uuid,
    parse_request,
)
from tests.helpers import JS_FRAME, JS_PING


def frame(**fields: Any) -> str:
    return orjson.dumps(fields).decode()


def error_of(data: str | bytes, max_bytes: int | None = None) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        parse_request(data, max_bytes)
    return info.value


# uuid and route


@pytest.mark.parametrize("uuid", ["a5e4e2e8-35c2-4b34-b40b-71faaf341206", 7, 0, -3, ""])
def test_uuid_echoed_with_its_type(uuid: Any) -> None:
    """A string or integer uuid comes back unchanged, same JSON type."""
    request = parse_request(frame(uuid=uuid, route="r"))
    assert request.uuid == uuid
    assert type(request.uuid) is type(uuid)


def test_track_id_alias() -> None:
    """`track_id` is accepted for `uuid`, as the original package spelled it."""
    assert parse_request(frame(track_id=5, route="r")).uuid == 5


def test_path_alias() -> None:
    """`path` is accepted for `route`."""
    assert parse_request(frame(uuid=1, path="math/sum")).route == "math/sum"


@pytest.mark.parametrize("uuid", [True, False, 1.5, [1], {"a": 1}])
def test_bad_uuid_type_is_400(uuid: Any) -> None:
    """A bool, float, list or object uuid is a 400 with no uuid to echo."""
    exc = error_of(frame(uuid=uuid, route="r"))
    assert exc.status == 400
    assert exc.uuid is None
    assert "uuid" in exc.message


def test_missing_uuid_is_400() -> None:
    """A request without a uuid cannot be correlated: 400, uuid null."""
    exc = error_of(frame(route="r"))
    assert (exc.status, exc.uuid) == (400, None)


def test_missing_route_is_400_with_uuid() -> None:
    """A request without a route is a 400 that echoes the request's uuid."""
    exc = error_of(frame(uuid="u1"))
    assert (exc.status, exc.uuid) == (400, "u1")
    assert "route" in exc.message


@pytest.mark.parametrize("route", [1, True, [], {}])
def test_route_not_a_string_is_400(route: Any) -> None:
    """A route that is not a string is a 400 that echoes the uuid."""
    exc = error_of(frame(uuid=3, route=route))
    assert (exc.status, exc.uuid) == (400, 3)


# headers and payload


def test_headers_absent_or_null_become_empty_dict() -> None:
    """Absent or null headers reach hooks as {}."""
    assert parse_request(frame(uuid=1, route="r")).headers == {}
    assert parse_request(frame(uuid=1, route="r", headers=None)).headers == {}


@pytest.mark.parametrize("headers", [[1], "x", 3, True])
def test_headers_not_object_is_400(headers: Any) -> None:
    """Headers that are not an object (or null) are a 400 with the uuid."""
    exc = error_of(frame(uuid=9, route="r", headers=headers))
    assert (exc.status, exc.uuid) == (400, 9)


@pytest.mark.parametrize("payload", [0, False, "", [], {}, 0.0])
def test_falsy_payloads_preserved(payload: Any) -> None:
    """Falsy payloads reach the handler exactly as sent (the old package turned them into {})."""
    request = parse_request(frame(uuid=1, route="r", payload=payload))
    assert request.payload == payload
    assert type(request.payload) is type(payload)


def test_absent_payload_is_none() -> None:
    """An absent payload is None."""
    assert parse_request(frame(uuid=1, route="r")).payload is None


def test_status_and_extra_fields_ignored() -> None:
    """The JS client's `status` and any unknown field are ignored."""
    request = parse_request(frame(uuid=1, route="r", status=500, extra={"x": 1}))
    assert request == Request(1, "r", {}, None)


def test_js_client_frames() -> None:
    """The frames the unmodified JS client sends parse as the contract says."""
    request = parse_request(JS_FRAME)
    assert request.uuid == "a5e4e2e8-35c2-4b34-b40b-71faaf341206"
    assert (request.route, request.headers, request.payload) == (
        "math/sum",
        {"token": "abc"},
        [1, 2, 3, 4],
    )
    ping = parse_request(JS_PING)
    assert (ping.route, ping.payload) == ("PING", {})


# bytes and malformed frames


def test_binary_utf8_frame() -> None:
    """A binary frame holding UTF-8 JSON parses like a text frame."""
    request = parse_request(frame(uuid="é", route="r", payload="ünï").encode())
    assert (request.uuid, request.payload) == ("é", "ünï")


def test_invalid_utf8_bytes_is_400() -> None:
    """Bytes that are not UTF-8 are a 400 with the uuid read before them, never a crash."""
    exc = error_of(b'{"uuid": 1, "route": "\xff\xfe"}')
    assert (exc.status, exc.uuid) == (400, 1)
    assert error_of(b'{"route": "\xff\xfe"}').uuid is None


@pytest.mark.parametrize("data", ["", "not json", "{", '{"uuid": [1,}', "\x00"])
def test_not_json_is_400(data: str) -> None:
    """Text that is not JSON is a 400 with uuid null."""
    exc = error_of(data)
    assert (exc.status, exc.uuid) == (400, None)


def test_not_json_with_a_readable_uuid_is_400_with_it() -> None:
    """Broken JSON whose uuid can be read from its start is answered with that uuid."""
    assert error_of('{"uuid": 1,}').uuid == 1
    assert error_of('{"track_id": "t", "route": "x", ').uuid == "t"


@pytest.mark.parametrize("data", ["[]", "1", '"s"', "null", "true", "[{}]"])
def test_not_object_is_400(data: str) -> None:
    """JSON that is not an object is a 400 naming what arrived."""
    exc = error_of(data)
    assert (exc.status, exc.uuid) == (400, None)
    assert "object" in exc.message


def test_deep_nesting_is_400() -> None:
    """Deeply nested JSON is refused with 400, not a RecursionError."""
    deep = '{"uuid": 1, "route": "r", "payload": ' + "[" * 5000 + "]" * 5000 + "}"
    exc = error_of(deep)
    assert exc.status == 400


# size limit


def test_oversized_frame_is_413_with_uuid() -> None:
    """A frame over the limit raises FrameTooLarge (413) carrying the uuid when parseable."""
    data = frame(uuid="big", route="r", payload="x" * 500)
    exc = error_of(data, max_bytes=100)
    assert isinstance(exc, FrameTooLarge)
    assert (exc.status, exc.uuid) == (413, "big")


def test_oversized_unparseable_frame_is_413_without_uuid() -> None:
    """An oversized frame that is not JSON gets 413 with uuid null."""
    exc = error_of("x" * 500, max_bytes=100)
    assert isinstance(exc, FrameTooLarge)
    assert (exc.status, exc.uuid) == (413, None)


def test_size_counts_utf8_bytes() -> None:
    """The limit is in bytes: 40 four-byte characters exceed 100 bytes."""
    data = frame(uuid=1, route="r", payload="😀" * 40)
    assert len(data) < 100
    assert error_of(data, max_bytes=100).status == 413
    assert error_of(data.encode(), max_bytes=100).status == 413


def test_frame_at_limit_is_served() -> None:
    """A frame exactly at the limit is parsed."""
    data = frame(uuid=1, route="r", payload="x" * 100)
    assert parse_request(data, max_bytes=len(data)).payload == "x" * 100


# encoding


def test_encode_reply_keeps_uuid_type_and_status_int() -> None:
    """Replies carry uuid, status, headers and payload; a Status is written as an int."""
    from observable_socket_asgi import Status

    assert orjson.loads(encode_reply(1, Status.CREATED, {}, [0])) == {
        "uuid": 1,
        "status": 201,
        "headers": {},
        "payload": [0],
    }


def test_encode_reply_unencodable_raises_encode_error() -> None:
    """A payload JSON cannot express raises EncodeError, a TypeError."""
    with pytest.raises(EncodeError):
        encode_reply(1, 200, {}, {1, 2})
    assert issubclass(EncodeError, TypeError)


def test_encode_error_and_pong() -> None:
    """Errors use the lowercase `message` key; PONG carries route PONG and payload null."""
    assert orjson.loads(encode_error(404, "u", "route not found: x")) == {
        "uuid": "u",
        "status": 404,
        "headers": {},
        "payload": {"message": "route not found: x"},
    }
    assert orjson.loads(encode_pong(3)) == {
        "uuid": 3,
        "route": "PONG",
        "status": 200,
        "headers": {},
        "payload": None,
    }


@pytest.mark.parametrize("uuid", ["abc", 'q"\\\n', "\u00e9\u2028", "", 0, -(2**63), 2**64 - 1])
def test_pong_bytes_are_the_envelope_dict_encoded(uuid: str | int) -> None:
    """A PONG is byte for byte the envelope dict encoded in wire order, whatever its uuid."""
    frame: dict[str, Any] = {
        "uuid": uuid,
        "route": "PONG",
        "status": 200,
        "headers": {},
        "payload": None,
    }
    assert encode_pong(uuid) == orjson.dumps(frame).decode()


def test_push_uuids_are_fresh_strings() -> None:
    """Every push gets a new server uuid that a client id cannot collide with."""
    first = orjson.loads(encode_push("news", {"a": 1}))
    second = orjson.loads(encode_push("news", None, {"h": 1}, 201))
    assert first["uuid"] != second["uuid"]
    assert isinstance(first["uuid"], str) and first["uuid"].startswith("srv-")
    assert (second["route"], second["status"], second["headers"]) == ("news", 201, {"h": 1})
    assert new_push_uuid() != new_push_uuid()


# envelopes


def test_request_accepts_original_field_names() -> None:
    """Request(track_id=, path=) equals Request(uuid=, route=) and reads back both names."""
    a = Request(track_id=1, path="math/sum", payload=[1])
    b = Request(uuid=1, route="math/sum", payload=[1])
    assert a == b
    assert (a.track_id, a.path, a.headers) == (1, "math/sum", {})
    assert a.to_dict() == {"uuid": 1, "route": "math/sum", "headers": {}, "payload": [1]}


def test_request_refuses_both_or_neither_name() -> None:
    """Giving both a name and its alias, or neither, is a TypeError."""
    with pytest.raises(TypeError):
        Request(uuid=1, track_id=1, route="r")
    with pytest.raises(TypeError):
        Request(route="r")


def test_response_accepts_track_id() -> None:
    """Response(track_id=) equals Response(uuid=); ok is True only for 2xx."""
    a = Response(track_id="u", status=201, payload=0)
    assert a == Response(uuid="u", status=201, payload=0)
    assert a.track_id == "u" and a.ok and a.headers == {}
    assert not Response(uuid=None, status=404).ok
    assert a.to_dict() == {"uuid": "u", "status": 201, "headers": {}, "payload": 0}


def test_envelopes_are_slotted() -> None:
    """Request and Response are slotted dataclasses: no per-instance __dict__."""
    assert not hasattr(Request(1, "r"), "__dict__")
    assert not hasattr(Response(1), "__dict__")
