"""_typescript: declarations from JSON Schema, checked by hand and compiled by `tsc --strict`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from observable_socket_asgi.describe._typescript import render, ts_type
from observable_socket_asgi.describe.asyncapi import RouteDoc, TopicDoc
from tests import npm
from tests.typed_docs import MESSAGE_TS, sample_schemas


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({}, "unknown"),
        (None, "unknown"),
        ({"type": "integer"}, "number"),
        ({"type": "string", "format": "date-time"}, "string"),
        ({"type": ["string", "null"]}, "string | null"),
        ({"const": "a"}, '"a"'),
        ({"enum": ["a", 1, None]}, '"a" | 1 | null'),
        ({"type": "array", "items": {"type": "integer"}}, "number[]"),
        (
            {"type": "array", "items": {"anyOf": [{"type": "integer"}, {"type": "null"}]}},
            "(number | null)[]",
        ),
        (
            {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}]},
            "[number, string]",
        ),
        ({"$ref": "#/components/schemas/Sum-Input"}, "Sum_Input"),
        ({"type": "object"}, "{ [key: string]: unknown }"),
        (
            {"type": "object", "additionalProperties": {"type": "integer"}},
            "{ [key: string]: number }",
        ),
        ({"anyOf": [{"type": "integer"}, {}]}, "unknown"),
        ({"allOf": [{"$ref": "#/x/A"}, {"$ref": "#/x/B"}]}, "A & B"),
    ],
)
def test_ts_type(schema: Any, expected: str) -> None:
    """Each JSON Schema construct maps to the TypeScript type that says the same."""
    assert ts_type(schema, {}) == expected


def test_object_properties_and_optional_keys() -> None:
    """Required properties are plain, others optional, odd keys quoted."""
    schema = {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b-c": {"type": "string"}},
        "required": ["a"],
    }
    assert ts_type(schema, {}) == '{\n  a: number;\n  "b-c"?: string;\n}'


def generated() -> str:
    by_key, definitions = sample_schemas(("maybe", "validation", list[int] | None))
    routes = [
        RouteDoc(
            "math/sum",
            summary="Add numbers.",
            request=by_key[("sum", "validation")],
            response=by_key[("sum", "serialization")],
        ),
        RouteDoc("game/move", request=by_key[("move", "validation")]),
        RouteDoc(
            "shop/order",
            request=by_key[("order", "validation")],
            response=by_key[("order", "serialization")],
        ),
        RouteDoc("maybe", request=by_key[("maybe", "validation")]),
        RouteDoc("echo"),
    ]
    topics = [TopicDoc("room:{room}", by_key[("sum", "serialization")], "room members get it")]
    return render(routes, topics, definitions, title="Sample")


def test_render_declares_interfaces_and_maps() -> None:
    """Each model is an interface; Routes and Topics map names to payload types."""
    text = generated()
    assert "export interface SumIn {\n  numbers: number[];\n}" in text
    assert "export interface Order {" in text and "items: Item[];" in text
    assert "note?: string | null;" in text
    assert '"math/sum": { request: SumIn; response: SumOut };' in text
    assert '"game/move": { request: Move; response: unknown };' in text
    assert "maybe: { request: number[] | null; response: unknown };" in text
    assert "echo: { request: unknown; response: unknown };" in text
    assert '"room:{room}": SumOut;' in text
    assert "export interface ErrorPayload {" in text


USAGE = (
    'import type { ErrorPayload, Routes, RouteName, Topics } from "./api";\n\n'
    + MESSAGE_TS
    + """
type Request<R extends RouteName> = Message<Routes[R]["request"]>;

function send<R extends RouteName>(route: R, payload: Routes[R]["request"]): Request<R> {
  return { uuid: "1", route, headers: {}, payload, status: 200 };
}

export const ok: Message<Routes["math/sum"]["request"]> = send("math/sum", { numbers: [1, 2] });
export const move = send("game/move", { x: 1, y: 2 });
export const order = send("shop/order", { items: [{ name: "tea" }], note: null });
export const total: number = ({ sum: 3 } satisfies Routes["math/sum"]["response"]).sum;
export const room: Topics["room:{room}"] = { sum: 1 };
export const error: ErrorPayload = {
  message: "invalid payload",
  errors: [{ loc: ["numbers", 0], msg: "Input should be a valid integer", type: "int_parsing" }],
  error_count: 1,
};

// @ts-expect-error: numbers must be numbers
export const wrong: Message<Routes["math/sum"]["request"]> = send("math/sum", { numbers: ["1"] });
// @ts-expect-error: a move needs y
export const half = send("game/move", { x: 1 });
// @ts-expect-error: no such route
export const missing = send("no/such/route", null);
"""
)


def test_generated_typescript_compiles_strictly(tmp_path: Path) -> None:
    """tsc --strict accepts the declarations and a usage file whose wrong payloads it rejects."""
    (tmp_path / "api.ts").write_text(generated())
    (tmp_path / "usage.ts").write_text(USAGE)
    result = npm.tsc(tmp_path / "api.ts", tmp_path / "usage.ts")
    assert result.returncode == 0, result.stdout + result.stderr


def test_tsc_rejects_a_wrong_payload(tmp_path: Path) -> None:
    """The check is real: without the expect-error comment the wrong payload fails to compile."""
    (tmp_path / "api.ts").write_text(generated())
    (tmp_path / "usage.ts").write_text(USAGE.replace("// @ts-expect-error: numbers", "// numbers"))
    result = npm.tsc(tmp_path / "api.ts", tmp_path / "usage.ts")
    assert result.returncode != 0
    assert "usage.ts(30," in result.stdout and "not assignable to type 'number'" in result.stdout
