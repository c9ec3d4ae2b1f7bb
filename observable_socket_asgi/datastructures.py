"""Read-only views of the handshake that mirror Starlette's names.

Handlers written against Starlette's `WebSocket` read `ws.headers["x"]`, `ws.query_params`,
`ws.cookies`, `ws.client.host` and `ws.state.user`; these classes give the core `Connection`
the same surface without importing Starlette. Each view is built lazily on first use, so an
idle connection that never looks at its headers pays nothing for them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from http.cookies import _unquote
from typing import Any, NamedTuple
from urllib.parse import parse_qsl

__all__ = ["Address", "Headers", "QueryParams", "ScopeViews", "State", "parse_cookies"]


class Address(NamedTuple):
    """The peer's address, as Starlette's `ws.client`."""

    host: str
    port: int


class Headers(Mapping[str, str]):
    """Case-insensitive, read-only handshake headers; `getlist()` returns repeated ones."""

    __slots__ = ("_list",)

    def __init__(self, raw: list[tuple[bytes, bytes]] | None = None) -> None:
        self._list = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in raw or ()]

    def __getitem__(self, key: str) -> str:
        key = key.lower()
        for name, value in self._list:
            if name == key:
                return value
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and any(name == key.lower() for name, _ in self._list)

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(name for name, _ in self._list))

    def __len__(self) -> int:
        return len(dict.fromkeys(name for name, _ in self._list))

    def getlist(self, key: str) -> list[str]:
        """Every value of a header that was sent more than once."""
        key = key.lower()
        return [value for name, value in self._list if name == key]

    def raw(self) -> list[tuple[str, str]]:
        """The headers as sent, lower-cased names, repeats kept."""
        return list(self._list)

    def __repr__(self) -> str:
        return f"Headers({self._list!r})"


class QueryParams(Mapping[str, str]):
    """The query string as a read-only mapping; the last value of a repeated key wins."""

    __slots__ = ("_dict", "_list")

    def __init__(self, query_string: bytes | str = b"") -> None:
        if isinstance(query_string, bytes):
            query_string = query_string.decode("latin-1")
        self._list = parse_qsl(query_string, keep_blank_values=True)
        self._dict = dict(self._list)

    def __getitem__(self, key: str) -> str:
        return self._dict[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._dict)

    def __len__(self) -> int:
        return len(self._dict)

    def getlist(self, key: str) -> list[str]:
        """Every value of a repeated key, in order."""
        return [value for name, value in self._list if name == key]

    def __repr__(self) -> str:
        return f"QueryParams({self._list!r})"


class State:
    """Attribute access to `scope["state"]`, as Starlette's `ws.state`."""

    __slots__ = ("_state",)

    def __init__(self, state: dict[str, Any]) -> None:
        object.__setattr__(self, "_state", state)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._state[name]
        except KeyError:
            raise AttributeError(f"'State' object has no attribute {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        self._state[name] = value

    def __delattr__(self, name: str) -> None:
        del self._state[name]


def parse_cookies(header: str) -> dict[str, str]:
    """Parse a `Cookie` header the way browsers send it (and Starlette reads it)."""
    cookies: dict[str, str] = {}
    for chunk in header.split(";"):
        key, sep, value = chunk.partition("=")
        if not sep:
            key, value = "", key
        key, value = key.strip(), value.strip()
        if key or value:
            cookies[key] = _unquote(value)
    return cookies


class ScopeViews:
    """The handshake seen through a WebSocket scope, with Starlette's names.

    The base of the core `Connection`, like Starlette's `HTTPConnection` under its
    `WebSocket`: `scope`, `headers`, `query_params`, `cookies`, `client`, `state`, `path`.
    Nothing here does I/O.
    """

    __slots__ = ("_cookies", "_headers", "_query_params", "_state", "scope")

    def __init__(self, scope: Any) -> None:
        #: the ASGI scope, shared with middleware (a `user` or `db` put there is seen here)
        self.scope = scope
        # lazily built views of the handshake
        self._headers: Headers | None = None
        self._query_params: QueryParams | None = None
        self._cookies: dict[str, str] | None = None
        self._state: State | None = None

    @property
    def headers(self) -> Headers:
        """The handshake's headers, case-insensitive."""
        if self._headers is None:
            self._headers = Headers(self.scope.get("headers"))
        return self._headers

    @property
    def query_params(self) -> QueryParams:
        """The handshake URL's query string."""
        if self._query_params is None:
            self._query_params = QueryParams(self.scope.get("query_string", b""))
        return self._query_params

    @property
    def cookies(self) -> dict[str, str]:
        """The handshake's cookies."""
        if self._cookies is None:
            self._cookies = parse_cookies(self.headers.get("cookie", ""))
        return self._cookies

    @property
    def client(self) -> Address | None:
        """The peer's `(host, port)`, when the server knows it."""
        client = self.scope.get("client")
        return None if client is None else Address(*client)

    @property
    def path(self) -> str:
        """The request path of the handshake."""
        return str(self.scope.get("path", ""))

    @property
    def state(self) -> State:
        """Attribute access to `scope["state"]` (lifespan state, per-connection data)."""
        if self._state is None:
            self._state = State(self.scope.setdefault("state", {}))
        return self._state
