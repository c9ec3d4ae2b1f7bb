"""`MessageData`: what `data_check`, `access` and `hydrate` receive as `message`.

It lives below `types.py` (whose hook aliases name it) and `envelope.py` (whose `Request` and
`Response` extend it), so neither imports the other back. `envelope` re-exports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["MessageData"]


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
