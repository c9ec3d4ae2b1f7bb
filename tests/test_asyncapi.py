"""asyncapi: the AsyncAPI 3.0 document, checked by hand and by the AsyncAPI project's parser."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from observable_socket_asgi._schema import topic_regex
from observable_socket_asgi.describe.asyncapi import (
    RouteDoc,
    TopicDoc,
    build_document,
    identifier,
)
from tests import npm
from tests.typed_docs import sample_schemas
from tests.typed_types import SumOut


def sample() -> dict[str, Any]:
    """A document with typed and untyped routes, shared models and two push topics."""

    by_key, definitions = sample_schemas(("room", "serialization", SumOut))
    routes = [
        RouteDoc(
            "math/sum",
            summary="Add numbers.",
            request=by_key[("sum", "validation")],
            response=by_key[("sum", "serialization")],
            errors=(400, 413, 500),
        ),
        RouteDoc("game/move", request=by_key[("move", "validation")], errors=(400, 403, 500, 504)),
        RouteDoc(
            "shop/order",
            request=by_key[("order", "validation")],
            response=by_key[("order", "serialization")],
            errors=(400, 429, 500),
        ),
        RouteDoc("echo"),
    ]
    topics = [
        TopicDoc("room:{room}", by_key[("room", "serialization")], "what a room member receives"),
        TopicDoc("news"),
    ]
    return build_document(
        routes, topics, definitions, title="Sample", version="1.2.3", address="/ws"
    )


def ref(doc: dict[str, Any], pointer: str) -> Any:
    assert pointer.startswith("#/")
    node: Any = doc
    for part in pointer[2:].split("/"):
        node = node[part]
    return node


def test_shape_of_a_route_operation() -> None:
    """A route is a receive operation on the one channel, replying on it, correlated by uuid."""
    doc = sample()
    assert doc["asyncapi"] == "3.0.0"
    assert doc["info"] == {"title": "Sample", "version": "1.2.3"}
    assert list(doc["channels"]) == ["socket"]
    assert doc["channels"]["socket"]["address"] == "/ws"
    op = doc["operations"]["math_sum"]
    assert op["action"] == "receive"
    assert op["channel"] == {"$ref": "#/channels/socket"}
    assert op["reply"]["channel"] == {"$ref": "#/channels/socket"}
    request = ref(doc, op["messages"][0]["$ref"])
    assert request["payload"]["properties"]["route"] == {"const": "math/sum"}
    assert request["payload"]["properties"]["payload"] == {"$ref": "#/components/schemas/SumIn"}
    correlation = ref(doc, request["correlationId"]["$ref"])
    assert correlation["location"] == "$message.payload#/uuid"
    replies = [ref(doc, r["$ref"]) for r in op["reply"]["messages"]]
    assert replies[0]["payload"]["properties"]["payload"] == {"$ref": "#/components/schemas/SumOut"}
    statuses = [r["payload"]["properties"]["status"].get("const") for r in replies[1:]]
    assert statuses == [400, 413, 500]


def test_error_answers_carry_the_error_payload() -> None:
    """Every error answer's payload is the shared error schema, with the field errors."""
    doc = sample()
    op = doc["operations"]["game_move"]
    replies = [ref(doc, r["$ref"]) for r in op["reply"]["messages"]]
    assert [r["payload"]["properties"]["status"].get("const") for r in replies[1:]] == [
        400,
        403,
        500,
        504,
    ]
    error = ref(doc, replies[1]["payload"]["properties"]["payload"]["$ref"])
    assert error["required"] == ["message"]
    field = ref(doc, error["properties"]["errors"]["items"]["$ref"])
    assert field["required"] == ["loc", "msg", "type"]


def test_untyped_route_takes_any_json() -> None:
    """An untyped route's payloads are `{}` (any JSON)."""
    doc = sample()
    op = doc["operations"]["echo"]
    request = ref(doc, op["messages"][0]["$ref"])
    assert request["payload"]["properties"]["payload"] == {}
    assert ref(doc, op["reply"]["messages"][0]["$ref"])["payload"]["properties"]["payload"] == {}


def test_shared_models_are_defined_once() -> None:
    """Order and Basket both refer to one Item definition."""
    schemas = sample()["components"]["schemas"]
    assert "Item" in schemas
    assert "#/components/schemas/Item" in json.dumps(schemas["Order"])
    assert "#/components/schemas/Item" in json.dumps(schemas["Basket"])


def test_push_topics_are_send_operations() -> None:
    """A topic pattern becomes a send operation whose route matches the pattern."""
    doc = sample()
    sends = {k: v for k, v in doc["operations"].items() if v["action"] == "send"}
    assert len(sends) == 2
    room = next(v for v in sends.values() if "room" in v["title"])
    assert room["description"] == "what a room member receives"
    message = ref(doc, room["messages"][0]["$ref"])
    assert message["payload"]["properties"]["route"] == {"type": "string", "pattern": "^room:.+$"}
    assert message["payload"]["properties"]["payload"] == {"$ref": "#/components/schemas/SumOut"}


def test_heartbeat_and_unknown_routes_are_documented() -> None:
    """PING is answered PONG, and any other route name 404."""
    doc = sample()
    heartbeat = doc["operations"]["heartbeat"]
    pong = ref(doc, heartbeat["reply"]["messages"][0]["$ref"])
    assert pong["payload"]["properties"]["route"] == {"const": "PONG"}
    unknown = doc["operations"]["unknown_route"]
    request = ref(doc, unknown["messages"][0]["$ref"])
    assert "math/sum" in request["payload"]["properties"]["route"]["not"]["enum"]
    (answer,) = [ref(doc, r["$ref"]) for r in unknown["reply"]["messages"]]
    assert answer["payload"]["properties"]["status"] == {"const": 404}


def test_identifiers_are_unique_and_safe() -> None:
    """Route names become keys AsyncAPI accepts, without collisions."""
    taken: set[str] = set()
    assert identifier("math/sum", taken) == "math_sum"
    assert identifier("math.sum", taken) == "math_sum_2"
    assert identifier("///", taken) == "route"


def test_topic_regex() -> None:
    """`{name}` stands for one or more characters; the rest is literal."""
    regex = topic_regex("room:{room}.v1")
    assert regex.fullmatch("room:42.v1")
    assert not regex.fullmatch("room:.v1")
    assert not regex.fullmatch("room:42xv1")


def test_the_asyncapi_parser_accepts_the_document(tmp_path: Path) -> None:
    """The AsyncAPI project's own parser reports no error for the document."""
    path = tmp_path / "asyncapi.json"
    path.write_text(json.dumps(sample()))
    result = npm.validate_asyncapi(path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert '"ok":true' in result.stdout


def test_the_asyncapi_parser_can_fail(tmp_path: Path) -> None:
    """The check is real: a reply naming a message the channel does not have is refused."""
    doc = sample()
    doc["operations"]["math_sum"]["reply"]["messages"].append(
        {"$ref": "#/channels/socket/messages/no_such_message"}
    )
    del doc["info"]["version"]
    path = tmp_path / "asyncapi.json"
    path.write_text(json.dumps(doc))
    result = npm.validate_asyncapi(path)
    assert result.returncode == 1, result.stdout + result.stderr


@pytest.mark.parametrize("heartbeat", [True, False])
def test_document_without_routes(heartbeat: bool) -> None:
    """A router with no routes still has a valid skeleton."""
    doc = build_document([], title="t", version="1", heartbeat=heartbeat)
    assert "unknown_route" in doc["operations"]
    assert ("heartbeat" in doc["operations"]) is heartbeat
    assert "address" not in doc["channels"]["socket"]
