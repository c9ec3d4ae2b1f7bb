"""Types for the typed-route tests, at module level so that string annotations resolve."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import BaseModel, Field
from typing_extensions import TypedDict


class SumIn(BaseModel):
    numbers: list[int]


class SumOut(TypedDict):
    sum: int


@dataclass
class Move:
    x: Annotated[int, Field(ge=0)]
    y: int


class Item(BaseModel):
    name: str
    tags: list[str] = []


class Order(BaseModel):
    """An order: shares Item with Basket, so the document holds Item once."""

    items: list[Item]
    note: str | None = None


class Basket(TypedDict):
    items: list[Item]
    total: int
