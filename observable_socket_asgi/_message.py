"""`MessageData`, what `data_check`, `access` and `hydrate` receive as `message`, and the
aliases of the wire's values (`Header`, `Payload`, `Uuid`).

They live below `types.py` (whose hook aliases name them) and `envelope.py` (whose `Request`
and `Response` extend `MessageData`), so neither imports the other. Both re-export them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Header", "MessageData", "Payload", "Uuid"]

Header = dict[str, Any]
"""A message's headers: a JSON object."""

Payload = Any
"""A message's payload: any JSON value (falsy values reach the handler as sent)."""

Uuid = str | int
"""A correlation id: the JS client sends strings, the original README's examples integers."""


@dataclass(slots=True, init=False)
class MessageData:
    """What `data_check`, `access` and `hydrate` receive as `message`.

    `headers` is always a dict (`{}` when the request had none) and `payload` is exactly what
    the client sent (`None` when absent).
    """

    headers: dict[str, Any]
    payload: Any

    def __init__(self, headers: dict[str, Any] | None = None, payload: Any = None) -> None:
        self.headers = {} if headers is None else headers
        self.payload = payload

    def get_data(self) -> dict[str, Any]:
        """Return `{"headers", "payload"}`, as the original package's `MessageData` did."""
        return {"headers": self.headers, "payload": self.payload}
