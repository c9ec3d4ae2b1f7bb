"""The wire format in one place: the envelopes, frames in, `Request` or `ProtocolError` out.

`Request` and `Response` are defined here (on `MessageData`, what hooks receive), with the
parser and the encoders of every frame the protocol knows (reply, error, PONG, push,
request); it re-exports `MessageData` and the aliases of the wire's values (`Header`,
`Payload`, `Uuid`) from `_message.py`. Nothing here awaits or sees ASGI, so every rule of the
wire contract can be tested with plain function calls. This is the module that reads frames
(with msgspec, which keeps integers of any size exact) and writes them (with orjson; an
integer orjson refuses goes through `_exact.py`): decoding errors become `ProtocolError`
(400) here, at the boundary, and nowhere else.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

import msgspec
import orjson

from ._exact import dumps_wide, parse_exact, widen
from ._message import Header, MessageData, Payload, Uuid
from ._scan import MAX_DEPTH, may_be_too_deep, scan_uuid, too_deep, utf8_size
from .errors import EncodeError, FrameTooLarge, ProtocolError
from .status import Status, is_success

__all__ = [
    "Envelope",
    "PING",
    "MessageData",
    "PONG",
    "RESERVED_ROUTES",
    "Push",
    "Request",
    "Response",
    "encode_error",
    "encode_pong",
    "encode_push",
    "encode_reply",
    "encode_request",
    "exact_json",
    "frame_size",
    "new_push_uuid",
    "parse_json",
    "parse_message",
    "parse_request",
    "push_from",
    "read_request",
    "response_from",
]

PING = "PING"
PONG = "PONG"
RESERVED_ROUTES = frozenset({PING, PONG})

_dumps = orjson.dumps
_loads = orjson.loads
_JSONDecodeError = orjson.JSONDecodeError
_JSONEncodeError = orjson.JSONEncodeError
_new_request = object.__new__
# frames are read with msgspec, which keeps integers past 64 bits exact (see `_exact.py`)
_decode = msgspec.json.decode

# Server-side uuids for pushes: a random per-process prefix and a counter. A client's own ids
# (uuid4 strings or small integers) cannot take this shape, so a push never carries the uuid
# of a request that is still waiting for its answer.
_PUSH_PREFIX = "srv-" + os.urandom(6).hex() + "-"
_push_counter = itertools.count(1)


# Envelopes

_MISSING: Any = object()


@dataclass(slots=True, init=False)
class Request(MessageData):
    """A parsed request envelope: `{"uuid", "route", "headers", "payload"}`.

    Accepts the original package's field names as well as the wire names:
    `Request(track_id=1, path="math/sum")` equals `Request(uuid=1, route="math/sum")`, and
    `.track_id` / `.path` read the same fields.
    """

    uuid: Uuid
    route: str

    def __init__(
        self,
        uuid: Uuid = _MISSING,
        route: str = _MISSING,
        headers: Header | None = None,
        payload: Payload = None,
        *,
        track_id: Uuid = _MISSING,
        path: str = _MISSING,
    ) -> None:
        # the parser always passes the wire names: only aliases take the slow path
        if uuid is _MISSING or track_id is not _MISSING:
            uuid = _pick("uuid", uuid, "track_id", track_id)
        if route is _MISSING or path is not _MISSING:
            route = _pick("route", route, "path", path)
        self.uuid = uuid
        self.route = route
        self.headers = {} if headers is None else headers
        self.payload = payload

    @property
    def track_id(self) -> Uuid:
        """The original package's name for `uuid`."""
        return self.uuid

    @property
    def path(self) -> str:
        """The original package's name for `route`."""
        return self.route

    def to_dict(self) -> dict[str, Any]:
        """The wire form of this request."""
        return {
            "uuid": self.uuid,
            "route": self.route,
            "headers": self.headers,
            "payload": self.payload,
        }


class _StatusFrame:
    """`ok` and `to_dict`, shared by the two frames a server sends: `Response` and `Push`.

    A mixin with no slots of its own, so each frame keeps its own dataclass layout (slots,
    frozenness); `_WIRE_FIELDS` names the wire fields in the order they are written.
    """

    __slots__ = ()
    _WIRE_FIELDS: ClassVar[tuple[str, ...]]
    status: int

    @property
    def ok(self) -> bool:
        """True for a 2xx status."""
        return is_success(self.status)

    def to_dict(self) -> dict[str, Any]:
        """The wire form of this frame."""
        return {name: getattr(self, name) for name in self._WIRE_FIELDS}


@dataclass(slots=True, init=False)
class Response(MessageData, _StatusFrame):
    """A response envelope: `{"uuid", "status", "headers", "payload"}`.

    Accepts `track_id` for `uuid`, like `Request`.
    """

    _WIRE_FIELDS: ClassVar[tuple[str, ...]] = ("uuid", "status", "headers", "payload")
    uuid: Uuid | None
    status: int

    def __init__(
        self,
        uuid: Uuid | None = _MISSING,
        status: int = 200,
        headers: Header | None = None,
        payload: Payload = None,
        *,
        track_id: Uuid | None = _MISSING,
    ) -> None:
        self.uuid = _pick("uuid", uuid, "track_id", track_id)
        self.status = status
        self.headers = {} if headers is None else headers
        self.payload = payload

    @property
    def track_id(self) -> Uuid | None:
        """The original package's name for `uuid`."""
        return self.uuid


def _pick(name: str, value: Any, alias: str, alias_value: Any) -> Any:
    if value is _MISSING:
        if alias_value is _MISSING:
            raise TypeError(f"missing required argument: {name!r} (or {alias!r})")
        return alias_value
    if alias_value is not _MISSING:
        raise TypeError(f"give {name!r} or {alias!r}, not both")
    return value


# Frames


def frame_size(data: str | bytes) -> int:
    """Return the size of a frame in bytes; a `str` is encoded in bounded chunks."""
    return utf8_size(data)


_TOO_DEEP = f"frame nests deeper than {MAX_DEPTH} levels of arrays and objects"
# an integer uuid is a correlation id, not data: it must fit 64 bits, signed or not, as
# `scan_uuid` reads it from a frame that cannot be parsed
_UUID_INTS = range(-(2**63), 2**64)
# msgspec bounds an int to int64 only: an unsigned one past that takes the checked path
_UUID_RANGE = msgspec.Meta(ge=-(2**63), le=2**63 - 1)


class Envelope(msgspec.Struct, gc=False):
    """A request frame as the server reads it (`read_request()`): what the request path
    carries from the protocol to the reply.

    User code never sees it: a handler gets its headers and payload, a hook a `Request`
    made from it (`to_request()`). So it can be what msgspec decodes the usual frame into
    and checks in one pass, a struct that costs far less to make and free than a
    `Request`, once per frame. Not tracked by the cyclic GC: it holds decoded JSON only
    and nothing outside the request path refers to it.
    """

    uuid: Annotated[int, _UUID_RANGE] | str
    route: str
    headers: dict[str, Any] = msgspec.field(default_factory=dict)
    payload: Any = None

    def to_request(self) -> Request:
        """The `Request` hooks receive: the same uuid, route, headers and payload."""
        # Request.__init__ also resolves the original package's aliases; the parser has done
        # that already, so the slots are filled directly.
        request = _new_request(Request)
        request.uuid = self.uuid
        request.route = self.route
        request.headers = self.headers
        request.payload = self.payload
        return request


# The usual frame (a string or 64-bit integer uuid, a string route, object headers or none,
# any payload) is read and checked by msgspec alone. Anything else, an alias of the original
# package (`track_id`, `path`), a field missing, null or of another type, a number JSON
# cannot carry, goes through `_read_checked()`, which says what is wrong.
_read_envelope = msgspec.json.Decoder(Envelope).decode


def read_request(data: str | bytes, max_bytes: int | None = None) -> Envelope:
    """Read one request frame: `parse_request()` for the server's request path, without
    the `Request` (`Envelope.to_request()` makes it where a hook needs it).

    Raises:
        FrameTooLarge, ProtocolError: as `parse_request()`.
    """
    # A code point is 1 to 4 UTF-8 bytes: only frames in the uncertain band pay for an encode;
    # a refusal reads the uuid from a small prefix, so 200 MiB costs what 2 MiB does.
    if max_bytes is not None and len(data) * 4 > max_bytes:
        size = utf8_size(data)
        if size > max_bytes:
            raise FrameTooLarge(size, max_bytes, scan_uuid(data))
    # nesting past MAX_DEPTH takes more brackets than that: a short frame skips the count
    if len(data) <= MAX_DEPTH or not may_be_too_deep(data):
        try:
            return _read_envelope(data)
        except (ValueError, RecursionError):  # msgspec's errors: explained below
            pass
    return _read_checked(data)


def parse_request(data: str | bytes, max_bytes: int | None = None) -> Request:
    """Parse one frame into a `Request`.

    Args:
        data: the frame's text, or its bytes for a binary frame (UTF-8 JSON).
        max_bytes: the largest frame served, in bytes; None for no limit.

    Returns:
        The request, with `headers` a dict (`{}` when absent or null) and `payload` exactly
        as sent (`None` when absent).

    Raises:
        FrameTooLarge: the frame is over `max_bytes` (413, with the uuid when it can be read).
        ProtocolError: the frame is not a JSON object with a usable uuid and route, or nests
            deeper than `MAX_DEPTH` levels (400). Its uuid is read from the frame's first
            characters when the frame cannot be parsed (a lone surrogate escape).
    """
    return read_request(data, max_bytes).to_request()


def _read_checked(data: str | bytes) -> Envelope:
    """`read_request()` for a frame msgspec did not take as it is: every rule checked in
    turn, so that a refusal names what is wrong."""
    obj = parse_message(data)
    uuid: Any = obj.get("uuid")
    if uuid is None:
        uuid = obj.get("track_id")
    uuid_type = type(uuid)
    if uuid_type is not str and (uuid_type is not int or uuid not in _UUID_INTS):
        if uuid is None:
            raise ProtocolError("request has no uuid (expected a string or an integer)")
        if uuid_type is int:
            raise ProtocolError("uuid must be a string or an integer of at most 64 bits")
        raise ProtocolError(f"uuid must be a string or an integer, got {_json_type(uuid)}")

    route = obj.get("route")
    if route is None:
        route = obj.get("path")
    if type(route) is not str:
        raise _bad_field("route", route, "a string", uuid)

    if len(data) > MAX_DEPTH and may_be_too_deep(data) and too_deep(obj):
        raise ProtocolError(_TOO_DEEP, uuid=uuid)

    headers = obj.get("headers")
    if headers is None:
        headers = {}
    elif type(headers) is not dict:
        raise _bad_field("headers", headers, "an object or null", uuid)
    return Envelope(uuid, route, headers, obj.get("payload"))


def _bad_field(name: str, value: Any, expected: str, uuid: Uuid | None) -> ProtocolError:
    """The 400 of a request whose `name` is missing or of the wrong type (off the hot path)."""
    if value is None:
        return ProtocolError(f"request has no {name} (expected {expected})", uuid=uuid)
    return ProtocolError(f"{name} must be {expected}, got {_json_type(value)}", uuid=uuid)


def encode_reply(uuid: Uuid | None, status: int, headers: Header, payload: Payload) -> str:
    """Encode a response frame.

    Raises:
        EncodeError: the headers or payload hold something JSON cannot express.
    """
    frame = {"uuid": uuid, "status": status, "headers": headers, "payload": payload}
    try:
        return _dumps(frame).decode()
    except _JSONEncodeError as exc:
        return dumps_wide(frame, exc)


def encode_error(status: int, uuid: Uuid | None, message: str) -> str:
    """Encode an error reply: `{"message": ...}` is the payload, as the original README shows."""
    frame = {"uuid": uuid, "status": status, "headers": {}, "payload": {"message": message}}
    try:
        return _dumps(frame).decode()
    except _JSONEncodeError as exc:
        return dumps_wide(frame, exc)


# A PONG is the same frame but for its uuid: encoded around it, it costs a third of the dict's
# encode (every idle connection sends one PING a minute). Same bytes as `encode_pong`'s dict.
_PONG_HEAD = '{"uuid":'
_PONG_TAIL = ',"route":"PONG","status":200,"headers":{},"payload":null}'


def encode_pong(uuid: Uuid) -> str:
    """Encode the heartbeat answer; the JS client recognises it by `route == "PONG"`."""
    try:
        return _PONG_HEAD + _dumps(uuid).decode() + _PONG_TAIL
    except _JSONEncodeError:  # a lone surrogate in a string uuid: the dict's way, below
        pass
    frame: dict[str, Any] = {
        "uuid": uuid,
        "route": PONG,
        "status": Status.OK,
        "headers": {},
        "payload": None,
    }
    try:
        return _dumps(frame).decode()
    except _JSONEncodeError as exc:
        return dumps_wide(frame, exc)


def new_push_uuid() -> str:
    """Return a fresh server-side uuid for a push."""
    return _PUSH_PREFIX + str(next(_push_counter))


def encode_push(
    route: str,
    payload: Payload,
    headers: Header | None = None,
    status: int = Status.OK,
    uuid: Uuid | None = None,
) -> str:
    """Encode a message the server sends unasked (a push); encoded once, sendable to many.

    Raises:
        EncodeError: the headers or payload hold something JSON cannot express.
    """
    frame = {
        "uuid": new_push_uuid() if uuid is None else uuid,
        "route": route,
        "status": status,
        "headers": {} if headers is None else headers,
        "payload": payload,
    }
    try:
        return _dumps(frame).decode()
    except _JSONEncodeError as exc:
        return dumps_wide(frame, exc)


def encode_request(uuid: Uuid, route: str, headers: Header, payload: Payload) -> str:
    """Encode a request frame as the JS client sends it (`status` 200 included); for clients.

    Raises:
        EncodeError: the headers or payload hold something JSON cannot express.
    """
    frame = {"uuid": uuid, "route": route, "headers": headers, "payload": payload, "status": 200}
    try:
        return _dumps(frame).decode()
    except _JSONEncodeError as exc:
        return dumps_wide(frame, exc)


def exact_json(value: Any, sort_keys: bool = False) -> bytes:
    """`value` as JSON bytes the way frames are written: integers of any size exactly (for
    digests of a payload, such as the idempotency fingerprint).

    Raises:
        EncodeError: `value` holds something JSON cannot express.
    """
    option = orjson.OPT_SORT_KEYS if sort_keys else 0
    try:
        return _dumps(value, option=option)
    except _JSONEncodeError as exc:
        try:
            return _dumps(widen(value), option=option)
        except (_JSONEncodeError, ValueError):
            raise EncodeError(str(exc)) from None


def parse_message(data: str | bytes) -> dict[str, Any]:
    """Decode a frame into its JSON object: a request the server reads (`parse_request`
    goes on to check its fields), or a reply, a PONG or a push a client reads.

    Raises:
        ProtocolError: the frame is not one JSON object.
    """
    try:
        obj = _decode(data)
    except (ValueError, RecursionError) as exc:  # msgspec.DecodeError, UnicodeEncodeError
        raise _refused(data, exc) from None
    if type(obj) is not dict:
        raise ProtocolError(f"expected a JSON object, got {_json_type(obj)}")
    return obj


def parse_json(text: str | bytes) -> Any:
    """Parse JSON text the way the router reads a frame: integers of any size exactly.

    For what a person types (the command line's payloads): `NaN`, `Infinity` and a number
    past a double's range (`1e400`) are refused, where the standard library would accept
    them and a frame would then carry `null`.

    Raises:
        ProtocolError: the text is not JSON, or holds a number JSON cannot carry; the
            message names where.
    """
    try:
        value = parse_exact(text)
        dumps_wide(value, None)  # what a frame can carry: no lone surrogate in a string
    except ProtocolError:
        raise
    except (ValueError, RecursionError, EncodeError) as exc:
        raise ProtocolError(f"not valid JSON: {exc}") from None
    return value


# Frames the decoder refused


def _refused(data: str | bytes, exc: Exception) -> ProtocolError:
    """The 400 for a frame msgspec refused, with the uuid read from its first characters.

    A number out of range is named by where it is (a second, exact read by the standard
    library finds it); other causes are worded from orjson's verdict, which names a lone
    surrogate, the usual one.
    """
    uuid = scan_uuid(data)
    if isinstance(exc, RecursionError):
        return ProtocolError(
            f"frame nests deeper than {MAX_DEPTH} levels of arrays and objects", uuid=uuid
        )
    if "out of range" in str(exc):
        try:
            parse_exact(data)
        except ProtocolError as named:
            named.uuid = uuid if named.uuid is None else named.uuid
            return named
        except (ValueError, RecursionError):
            pass
    try:
        _loads(data)
    except _JSONDecodeError as verdict:
        return ProtocolError(_decode_problem(verdict), uuid=uuid)
    return ProtocolError("frame is not valid JSON (expected one UTF-8 JSON object)", uuid=uuid)


def _decode_problem(exc: ValueError) -> str:
    """The 400's message for a frame orjson refused; names a lone surrogate, the usual cause."""
    if "surrogate" in str(exc):
        return (
            "frame is not valid JSON: it holds a lone UTF-16 surrogate (\\ud800-\\udfff), "
            "which is not Unicode text"
        )
    return "frame is not valid JSON (expected one UTF-8 JSON object)"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


# Frames from the server, as a client reads them: replies and pushes
#
# A client must not refuse what a server sends, so these decoders are lenient: a field of the
# wrong type takes the protocol's default instead of raising.


@dataclass(frozen=True, slots=True)
class Push(_StatusFrame):
    """A message the server sent unasked: `{"uuid", "route", "status", "headers", "payload"}`."""

    _WIRE_FIELDS: ClassVar[tuple[str, ...]] = ("uuid", "route", "status", "headers", "payload")
    route: str | None
    payload: Payload
    headers: Header
    status: int = Status.OK
    uuid: Uuid | None = None


def response_from(obj: Mapping[str, Any]) -> Response:
    """Build a `Response` from a decoded reply; absent fields take the protocol's defaults."""
    status = obj.get("status")
    headers = obj.get("headers")
    return Response(
        obj.get("uuid"),
        status if type(status) is int else Status.OK,
        headers if type(headers) is dict else {},
        obj.get("payload"),
    )


def push_from(obj: Mapping[str, Any]) -> Push:
    """Build a `Push` from a decoded message."""
    status = obj.get("status")
    headers = obj.get("headers")
    route = obj.get("route")
    uuid = obj.get("uuid")
    return Push(
        route if type(route) is str else None,
        obj.get("payload"),
        headers if type(headers) is dict else {},
        status if type(status) is int else Status.OK,
        uuid if type(uuid) is str or type(uuid) is int else None,
    )
