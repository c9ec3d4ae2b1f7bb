"""The Python end of the wire: the asyncio client, and what it shares with the test client.

`_correlation` (which answer belongs to which request, the push buffer), `_state` (the
client's lifecycle), `_positions` (the last position per topic) and `_portal` (a loop on a
thread) need nothing beyond the core, so the in-process test client imports them without the
`client` extra. `Client` and `connect` need `websockets`: they are imported on first use,
as the `websockets` package does for its own names, and importing them without the extra
raises `ImportError` with the pip command.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..envelope import Push, push_from, response_from
from ..errors import ClientError, ConnectFailed, ConnectionClosed, RequestTimeout
from ._positions import Position
from ._state import ClientState

if TYPE_CHECKING:
    from ._client import Client, connect

__all__ = [
    "Client",
    "ClientState",
    "Position",
    "ClientError",
    "ConnectFailed",
    "ConnectionClosed",
    "Push",
    "RequestTimeout",
    "connect",
    "push_from",
    "response_from",
]

# the names that need `websockets`; importing `_client` here would make the test client
# (which shares `_correlation`, `_state` and `_portal`) depend on the `client` extra
_NEED_WEBSOCKETS = frozenset({"Client", "connect"})


def __getattr__(name: str) -> Any:
    if name in _NEED_WEBSOCKETS:
        from . import _client

        return getattr(_client, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
