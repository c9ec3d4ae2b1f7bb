"""Properties: the parser never raises anything but ProtocolError, and no frame gets two answers."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from observable_socket_asgi import ProtocolError, Request, SocketRouter
from observable_socket_asgi.envelope import parse_request
from tests.helpers import conversation, echo_router, request

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()  # beyond 64 bits too: orjson reads those as floats
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)

# objects that look like requests more often than chance would make them
request_like = st.fixed_dictionaries(
    {},
    optional={
        "uuid": json_values | st.integers() | st.text(max_size=8),
        "track_id": json_values,
        "route": json_values | st.sampled_from(["echo", "PING", "PONG", "nope", ""]),
        "path": json_values,
        "headers": json_values | st.dictionaries(st.text(max_size=4), json_values, max_size=3),
        "payload": json_values,
        "status": json_values,
    },
)


def dumps(value: Any) -> str:
    """Encode with the standard library, which (unlike orjson) writes integers of any size."""
    return json.dumps(value, ensure_ascii=False)


any_text = st.text(st.characters(exclude_categories=()))  # surrogates included


def parse_or_protocol_error(data: str | bytes, max_bytes: int | None = None) -> None:
    try:
        request_ = parse_request(data, max_bytes)
    except ProtocolError as exc:
        assert exc.status in (400, 413)
        assert exc.uuid is None or type(exc.uuid) in (str, int)
        orjson.dumps(exc.uuid)  # whatever uuid it carries can be echoed
    else:
        assert isinstance(request_, Request)
        assert type(request_.uuid) in (str, int)
        assert type(request_.route) is str
        assert type(request_.headers) is dict


@SETTINGS
@given(any_text, st.none() | st.integers(min_value=64, max_value=512))
def test_arbitrary_text_never_raises_but_protocol_error(data: str, max_bytes: int | None) -> None:
    """Any text frame parses to a Request or raises ProtocolError, nothing else."""
    parse_or_protocol_error(data, max_bytes)


@SETTINGS
@given(st.binary())
def test_arbitrary_bytes_never_raise_but_protocol_error(data: bytes) -> None:
    """Any binary frame parses to a Request or raises ProtocolError, nothing else."""
    parse_or_protocol_error(data)


@SETTINGS
@given(json_values | request_like, st.booleans())
def test_arbitrary_json_never_raises_but_protocol_error(value: Any, as_bytes: bool) -> None:
    """Any JSON value, as text or bytes, parses to a Request or raises ProtocolError."""
    data = dumps(value)
    parse_or_protocol_error(data.encode() if as_bytes else data)


def _router() -> SocketRouter:
    return echo_router(max_message_bytes=256)


ROUTER = _router()


def _usable_uuid(frame: str) -> Any:
    try:
        return parse_request(frame).uuid
    except ProtocolError as exc:
        return exc.uuid


frames = st.lists(
    any_text | json_values.map(dumps) | request_like.map(dumps),
    max_size=8,
)


@SETTINGS
@given(frames)
def test_each_frame_gets_at_most_one_answer(sent: list[str]) -> None:
    """Over a real conversation every frame is answered once at most, and the connection lives."""

    async def converse() -> list[dict[str, Any]]:
        async with conversation(ROUTER) as conv:
            for frame in sent:
                await conv.send(frame)
            # every route here answers without suspending, so answers come in order and the
            # sentinel's answer comes last
            await conv.send(request("echo", uuid="sentinel-0"))
            replies: list[dict[str, Any]] = []
            while True:
                reply = await conv.reply()
                if reply["uuid"] == "sentinel-0":
                    return replies
                replies.append(reply)

    replies = asyncio.run(converse())
    assert len(replies) == len(sent)  # none dropped either: an error is an answer too
    expected = Counter(_usable_uuid(frame) for frame in sent)
    got = Counter(reply["uuid"] for reply in replies)
    for uuid, count in got.items():
        assert count <= expected[uuid], (uuid, sent, replies)
