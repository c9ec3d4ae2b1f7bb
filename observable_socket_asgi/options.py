"""A router's options, in small frozen groups that check themselves when built.

`SocketRouter(...)` takes every option as a keyword (the original package's and the ones this
package added) and builds these groups once; every layer below reads the group it needs, handed
down in the server's runtime, never the router. Each group raises `ValueError` naming the
keyword a user wrote, so a mistake is reported where it was made: at import time.

    Settings            the per-connection limits and the handshake's rules (`router.settings`)
    HistoryOptions      pushes kept per topic for resume
    PresenceOptions     who is subscribed with presence info, and for how long
    IdempotencyOptions  answers kept for retried requests
    HttpPaths           the plain-HTTP paths served beside the socket
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Literal, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

    G = TypeVar("G", bound=DataclassInstance)

__all__ = [
    "HistoryOptions",
    "HttpPaths",
    "IdempotencyOptions",
    "PresenceOptions",
    "Settings",
    "check_positive",
    "check_rate",
    "group",
]


def group(cls: type[G], keywords: Mapping[str, Any], prefix: str = "") -> G:
    """Build the option group `cls` from the router's keywords, each named `prefix + field`.

    A field without a keyword keeps its default, so a group may grow a field before the
    router grows its keyword.
    """
    given = {f.name: prefix + f.name for f in fields(cls)}
    return cls(**{name: keywords[key] for name, key in given.items() if key in keywords})


def check_positive(name: str, value: float | None) -> None:
    """Raise ValueError unless `value` is None or a positive number of seconds."""
    if value is not None and not value > 0:
        raise ValueError(f"{name} must be a positive number of seconds or None, got {value!r}")


def check_rate(name: str, value: tuple[int, float] | None) -> None:
    """Raise ValueError unless `value` is None or `(messages >= 1, per_seconds > 0)`."""
    if value is None:
        return
    try:
        messages, seconds = value
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be (messages, per_seconds), got {value!r}") from None
    if not (isinstance(messages, int) and messages >= 1 and seconds > 0):
        raise ValueError(f"{name} must be (messages >= 1, per_seconds > 0), got {value!r}")


def check_at_least(name: str, value: int, least: int) -> None:
    """Raise ValueError unless `value` is an integer (not a bool) of at least `least`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"{name} must be an integer of at least {least}, got {value!r}")


def check_path(name: str, value: str | None, trailing_slash: bool = True) -> None:
    """Raise ValueError unless `value` is None or a path starting with '/' (and, unless
    `trailing_slash`, not ending with one: the root of a page's own files)."""
    if value is None:
        return
    if not isinstance(value, str) or not value.startswith("/"):
        raise ValueError(f"{name} must be a path starting with '/', got {value!r}")
    if not trailing_slash and value != "/" and value.endswith("/"):
        raise ValueError(
            f"{name} must be a path starting with '/' (no trailing '/'), got {value!r}"
        )


@dataclass(frozen=True, slots=True)
class Settings:
    """The per-connection limits and the handshake's rules; see `SocketRouter` for each.

    The connection, its protocol and the handshake read them here; `router.settings` is
    this object.
    """

    heartbeat: bool = True
    max_in_flight: int = 64
    max_message_bytes: int | None = 1024 * 1024
    max_queued_pushes: int = 1024
    slow_consumer: Literal["close", "drop_oldest"] = "close"
    close_timeout: float = 5.0
    handler_timeout: float | None = None
    rate_limit: tuple[int, float] | None = None
    handshake_timeout: float | None = 10.0
    idle_timeout: float | None = 120.0
    max_connections: int | None = None
    max_buffered_bytes: int = 4 * 1024 * 1024
    handshake_rate: tuple[int, float] | None = None
    retry_after: int = 5
    max_topics: int = 1024
    max_topic_bytes: int = 1024
    allowed_origins: tuple[str, ...] | None = None
    require_origin: bool = False
    max_validation_errors: int = 10

    def __post_init__(self) -> None:
        origins: Iterable[str] | None = self.allowed_origins
        if origins is not None and not isinstance(origins, tuple):
            # the keyword takes any iterable (a list, a set); the group keeps a tuple
            object.__setattr__(self, "allowed_origins", tuple(origins))
        check_at_least("max_in_flight", self.max_in_flight, 1)
        if self.max_message_bytes is not None:
            check_at_least("max_message_bytes", self.max_message_bytes, 64)
        check_at_least("max_queued_pushes", self.max_queued_pushes, 1)
        if self.slow_consumer not in ("close", "drop_oldest"):
            raise ValueError(
                f"slow_consumer must be 'close' or 'drop_oldest', got {self.slow_consumer!r}"
            )
        check_positive("handler_timeout", self.handler_timeout)
        check_positive("handshake_timeout", self.handshake_timeout)
        check_positive("close_timeout", self.close_timeout)
        check_positive("idle_timeout", self.idle_timeout)
        check_rate("rate_limit", self.rate_limit)
        if self.max_connections is not None:
            check_at_least("max_connections", self.max_connections, 1)
        check_rate("handshake_rate", self.handshake_rate)
        check_at_least("max_buffered_bytes", self.max_buffered_bytes, 1024)
        check_at_least("retry_after", self.retry_after, 1)
        check_at_least("max_topics", self.max_topics, 1)
        check_at_least("max_topic_bytes", self.max_topic_bytes, 1)
        check_at_least("max_validation_errors", self.max_validation_errors, 1)


@dataclass(frozen=True, slots=True)
class HistoryOptions:
    """Pushes kept per topic so that a client can resume (`history_*` keywords).

    `size` 0 (the default) keeps no history and puts no position on pushes.
    """

    size: int = 0
    ttl: float = 300.0
    max_bytes: int = 1024 * 1024
    max_topics: int = 10_000

    def __post_init__(self) -> None:
        check_at_least("history_size", self.size, 0)
        check_positive("history_ttl", self.ttl)
        check_at_least("history_max_bytes", self.max_bytes, 1)
        check_at_least("history_max_topics", self.max_topics, 1)

    @property
    def enabled(self) -> bool:
        """True when pushes are kept and carry their position."""
        return self.size > 0


@dataclass(frozen=True, slots=True)
class PresenceOptions:
    """Members of topics (`presence_*` keywords)."""

    ttl: float = 15.0
    events: bool = False
    max_info_bytes: int = 4096

    def __post_init__(self) -> None:
        check_positive("presence_ttl", self.ttl)
        check_at_least("presence_max_info_bytes", self.max_info_bytes, 2)


@dataclass(frozen=True, slots=True)
class IdempotencyOptions:
    """Answers of idempotent routes kept for retries (`idempotency_*` keywords).

    `identity` is `fn(ws) -> str | None`: whose answers a retry may receive; None: the user
    that `access_logic` put in `scope["user"]`, else the connection.
    """

    ttl: float = 300.0
    max_entries: int = 10_000
    max_bytes: int = 16 * 1024 * 1024
    identity: Callable[[Any], str | None] | None = None

    def __post_init__(self) -> None:
        check_positive("idempotency_ttl", self.ttl)
        check_at_least("idempotency_max_entries", self.max_entries, 1)
        check_at_least("idempotency_max_bytes", self.max_bytes, 1)
        if self.identity is not None and not callable(self.identity):
            raise TypeError(f"idempotency_identity must be callable, got {self.identity!r}")


@dataclass(frozen=True, slots=True)
class HttpPaths:
    """The plain-HTTP paths answered beside the socket; None: not served (426, as without)."""

    metrics_url: str | None = None
    asyncapi_url: str | None = None
    explorer_url: str | None = None

    def __post_init__(self) -> None:
        check_path("metrics_url", self.metrics_url)
        check_path("asyncapi_url", self.asyncapi_url)
        check_path("explorer_url", self.explorer_url, trailing_slash=False)
