"""The typed router of the issue that asked for typed routes, for the CLI and server tests."""

from __future__ import annotations

from typing import Any

from observable_socket_asgi import SocketRouter, Status
from tests.typed_types import Move, SumIn, SumOut

router = SocketRouter(asyncapi_url="/asyncapi.json")


@router.route("math/sum", options={"payload": SumIn, "response": SumOut})
async def sum_handler(ws: Any, headers: Any, payload: SumIn) -> dict[str, Any]:
    """Add numbers."""
    return {"status": Status.OK, "payload": {"sum": sum(payload.numbers)}}


@router.route("game/move")
async def move(ws: Any, headers: Any, payload: Move) -> dict[str, Any]:
    return {"payload": {"ok": True}}


router.push_topic("room:{room}", payload=SumOut, description="what a room member receives")
