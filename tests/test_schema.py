"""_schema: declared types validated and serialised by pydantic, errors in the wire shape."""

from __future__ import annotations

import functools
import subprocess
import sys
from typing import Annotated, Any

import pytest
from pydantic import BaseModel, Field

from observable_socket_asgi._schema import (
    MAX_LOC_ITEMS,
    MAX_LOC_TEXT,
    MAX_MSG_TEXT,
    Invalid,
    Schema,
    annotated_payload_type,
    declares_type,
    json_schemas,
)
from tests.typed_types import Basket, Move, Order, SumIn, SumOut


def build(tp: Any, max_errors: int = 10) -> Schema:
    return Schema.build(tp, max_errors, "route 't'")


def test_model_payload_becomes_the_model() -> None:
    """A pydantic model validates a dict into an instance."""
    value = build(SumIn).validate({"numbers": [1, "2"]})
    assert isinstance(value, SumIn) and value.numbers == [1, 2]


def test_dataclass_typeddict_and_plain_types() -> None:
    """Dataclasses, TypedDicts, plain generics and unions validate as pydantic does."""
    move = build(Move).validate({"x": 1, "y": 2})
    assert isinstance(move, Move) and (move.x, move.y) == (1, 2)
    assert build(SumOut).validate({"sum": 3}) == {"sum": 3}
    assert build(list[int]).validate([1, 2]) == [1, 2]
    assert build(str | None).validate(None) is None
    assert build(Annotated[int, Field(gt=0)]).validate(5) == 5


def test_errors_have_the_wire_shape() -> None:
    """Each error is exactly {"loc", "msg", "type"}, with the path into the payload."""
    with pytest.raises(Invalid) as info:
        build(Move).validate({"x": -1})
    errors = info.value.errors
    assert info.value.count == 2
    assert [set(e) for e in errors] == [{"loc", "msg", "type"}] * 2
    by_loc = {tuple(e["loc"]): e for e in errors}
    assert by_loc[("x",)]["type"] == "greater_than_equal"
    assert by_loc[("y",)]["type"] == "missing"
    assert "0" in by_loc[("x",)]["msg"]


def test_list_indexes_stay_integers() -> None:
    """A list index in loc is a JSON number, a key a string."""
    with pytest.raises(Invalid) as info:
        build(SumIn).validate({"numbers": [1, "x"]})
    assert info.value.errors == [
        {
            "loc": ["numbers", 1],
            "msg": "Input should be a valid integer, unable to parse string as an integer",
            "type": "int_parsing",
        }
    ]


def test_errors_are_bounded_in_count_and_size() -> None:
    """Thousands of errors report the first few and the total; long texts are clipped."""
    with pytest.raises(Invalid) as info:
        build(list[int], max_errors=3).validate(["x"] * 1000)
    assert len(info.value.errors) == 3 and info.value.count == 1000

    long_key = "k" * 500
    deep: Any = 1
    for _ in range(40):
        deep = {long_key: deep}
    nested: Any = dict[str, Any]
    for _ in range(39):
        nested = dict[str, nested]
    schema = build(dict[str, nested], max_errors=1)
    with pytest.raises(Invalid) as info:
        schema.validate(deep)
    (error,) = info.value.errors
    assert len(error["loc"]) <= MAX_LOC_ITEMS
    assert all(len(str(p)) <= MAX_LOC_TEXT for p in error["loc"])
    assert len(error["msg"]) <= MAX_MSG_TEXT


def test_serialise_dumps_models_and_drops_extra_keys() -> None:
    """A response type turns a model into JSON data and drops what the type does not declare."""
    assert build(SumIn).serialise(SumIn(numbers=[1])) == {"numbers": [1]}
    assert build(SumIn).serialise({"numbers": ["2"]}) == {"numbers": [2]}
    assert build(SumOut).serialise({"sum": 1, "secret": "x"}) == {"sum": 1}
    with pytest.raises(Invalid) as info:
        build(SumOut).serialise({"total": 1})
    assert info.value.errors[0]["loc"] == ["sum"]


def test_undeclared_types_stay_untyped() -> None:
    """No annotation, Any and object declare nothing."""
    assert not declares_type(None)
    assert not declares_type(Any)
    assert not declares_type(object)
    assert declares_type(int)


async def _three(ws: Any, headers: Any, payload: SumIn) -> None: ...


async def _any(ws: Any, headers: Any, payload: Any) -> None: ...


async def _bare(ws, headers, payload): ...  # type: ignore[no-untyped-def]


async def _one(value: SumIn) -> None: ...


async def _unresolvable(ws: Any, headers: Any, payload: NoSuchType) -> None: ...  # type: ignore[name-defined]  # noqa: F821


def test_annotation_of_the_payload_parameter() -> None:
    """The third parameter's annotation is the type, resolved from the handler's module."""
    assert annotated_payload_type(_three, "route 't'") is SumIn
    assert annotated_payload_type(functools.partial(_three), "route 't'") is SumIn
    assert annotated_payload_type(_any, "route 't'") is None
    assert annotated_payload_type(_bare, "route 't'") is None
    assert annotated_payload_type(_one, "route 't'") is None  # a hydrated value, not a payload


def test_unresolvable_annotation_names_the_route() -> None:
    """A string annotation that cannot be resolved fails at registration and says what to do."""
    with pytest.raises(TypeError, match=r"route 't'.*NoSuchType.*options=\{'payload'"):
        annotated_payload_type(_unresolvable, "route 't'")


def test_a_type_pydantic_cannot_handle_fails_at_registration() -> None:
    """An arbitrary class is refused when the route is built, not per request."""

    class Opaque:
        pass

    with pytest.raises(TypeError, match=r"route 't'.*cannot validate"):
        build(Opaque)


def test_json_schemas_share_definitions() -> None:
    """Two types using the same model refer to one definition."""
    schemas, definitions = json_schemas(
        [
            ("order", "validation", build(Order)),
            ("basket", "serialization", build(Basket)),
            ("numbers", "validation", build(list[int])),
        ],
        "#/components/schemas/{model}",
    )
    assert schemas[("order", "validation")] == {"$ref": "#/components/schemas/Order"}
    assert schemas[("numbers", "validation")] == {"type": "array", "items": {"type": "integer"}}
    assert set(definitions) >= {"Order", "Basket"}
    item_refs = [k for k in definitions if k.startswith("Item")]
    assert item_refs  # Item is defined, and referred to by both
    assert "#/components/schemas/Item" in str(definitions["Order"])
    assert json_schemas([], "#/{model}") == ({}, {})


def test_missing_pydantic_says_how_to_install() -> None:
    """Without pydantic, declaring a type fails with the extra to install."""
    code = (
        "import sys; sys.modules['pydantic'] = None\n"
        "from observable_socket_asgi._schema import Schema\n"
        "try:\n"
        "    Schema.build(int, 10, \"route 'x'\")\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    from observable_socket_asgi._extras import install_command

    assert "route 'x'" in out and install_command("schema") in out


class _Cyclic(BaseModel):
    child: _Cyclic | None = None


def test_recursive_models() -> None:
    """A self-referencing model validates and has a schema that refers to itself."""
    value = build(_Cyclic).validate({"child": {"child": None}})
    assert isinstance(value.child, _Cyclic)
    _, definitions = json_schemas([("c", "validation", build(_Cyclic))], "#/d/{model}")
    assert "#/d/_Cyclic" in str(definitions["_Cyclic"])
