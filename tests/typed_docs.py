"""The typed-route models as JSON Schemas, and the client's message type in TypeScript.

Shared by the AsyncAPI, TypeScript and typed-route tests, which document and compile the
same sample models.
"""

from __future__ import annotations

from typing import Any

from observable_socket_asgi._schema import Mode, Schema, json_schemas
from observable_socket_asgi.describe.asyncapi import SCHEMA_REF
from tests.typed_types import Basket, Move, Order, SumIn, SumOut


def sample_schemas(
    *extra: tuple[str, Mode, Any],
) -> tuple[dict[tuple[str, Mode], dict[str, Any]], dict[str, Any]]:
    """`json_schemas` of the sample models, keyed by `(name, mode)`, plus `extra`
    `(name, mode, type)` entries; returns `(by_key, definitions)`."""
    entries: list[tuple[str, Mode, Any]] = [
        ("sum", "validation", SumIn),
        ("sum", "serialization", SumOut),
        ("move", "validation", Move),
        ("order", "validation", Order),
        ("order", "serialization", Basket),
        *extra,
    ]
    return json_schemas(
        [(name, mode, Schema.build(tp, 10, "t")) for name, mode, tp in entries], SCHEMA_REF
    )


#: The ObservableSocket client's message, generic in its payload, as a TypeScript user writes it.
MESSAGE_TS = """\
// The ObservableSocket client's message: generic in its payload.
interface Message<T> {
  uuid: string;
  route: string;
  headers: { [key: string]: unknown };
  payload: T;
  status: number;
}
"""
