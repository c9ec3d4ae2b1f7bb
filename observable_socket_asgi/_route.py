"""A registered route, decided once: its hooks, how its handler is called, its limits.

Everything here runs at registration, never per request: `inspect` reads each hook's arity
once (`_concurrency.arity_accepts`), plain functions are wrapped to run on the router's
thread pool, and the result is a frozen `Route` the pipeline only reads. Registration
mistakes raise `TypeError` or `ValueError` naming the route.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from ._concurrency import arity_accepts, ensure_async
from ._schema import Schema, route_schemas
from .options import check_positive, check_rate

__all__ = ["OPTION_KEYS", "CallMode", "Route", "build_route"]

AsyncFn = Callable[..., Awaitable[Any]]

#: the keys a route's `options` may hold
OPTION_KEYS = frozenset(
    {
        "data_check",
        "access",
        "hydrate",
        "dehydrate",
        "timeout",
        "rate_limit",
        "payload",
        "response",
        "idempotent",
    }
)


class CallMode(Enum):
    """How a route's handler is called; chosen from its signature at registration."""

    #: handler(value): hydrate's result, else `local` (even when empty).
    SINGLE = 1
    #: handler(ws, headers, payload), always.
    TRIPLE = 3
    #: the README's priority rule: hydrate > non-empty local > (ws, headers, payload).
    EITHER = 4


@dataclass(frozen=True, slots=True)
class Route:
    """A registered route: the handler and its hooks, ready to await."""

    name: str
    handler: AsyncFn
    call_mode: CallMode
    data_check: AsyncFn | None = None
    data_check_local: bool = False
    access: AsyncFn | None = None
    access_local: bool = False
    hydrate: AsyncFn | None = None
    dehydrate: AsyncFn | None = None
    #: seconds before the handler is cancelled and answered 504; None: no limit
    timeout: float | None = None
    #: (messages, per_seconds) for a bucket of this route's own; None: the router's bucket
    rate_limit: tuple[int, float] | None = None
    #: no data_check, access, hydrate or declared type, and a handler taking (ws, headers,
    #: payload): the pipeline calls it straight away (the common case, kept short)
    direct: bool = False
    #: run once per (identity, uuid) within the router's idempotency_ttl
    idempotent: bool = False
    #: the declared payload type: validated as the payload enters the pipeline
    payload_schema: Schema | None = None
    #: the declared 2xx response type: checked and serialised after dehydrate
    response_schema: Schema | None = None
    #: `direct`, and no dehydrate, timeout or idempotency: the request needs nothing but
    #: the handler's call and its reply, so one flag spares every other check per request
    plain: bool = False


def build_route(
    name: str,
    handler: Any,
    options: dict[str, Any],
    executor: concurrent.futures.ThreadPoolExecutor,
    default_timeout: float | None,
    max_validation_errors: int = 10,
) -> Route:
    """Check `handler` and `options` and return the frozen `Route` for `name`.

    Args:
        max_validation_errors: field errors kept in the 400 of a payload that does not fit
            the route's declared type.

    Raises:
        ValueError: an option key is unknown, or a timeout or rate limit is out of range.
        TypeError: a hook or the handler cannot take the arguments it will be given, or a
            declared type cannot be validated.
        ImportError: a type is declared and pydantic v2 is not installed.
    """
    _check_options(name, handler, options)
    data_check = options.get("data_check")
    access = options.get("access")
    hydrate = options.get("hydrate")
    dehydrate = options.get("dehydrate")
    timeout = options.get("timeout", default_timeout)
    rate_limit = options.get("rate_limit")
    idempotent = options.get("idempotent", False)
    check_positive(f"route {name!r}: timeout", timeout)
    check_rate(f"route {name!r}: rate_limit", rate_limit)
    payload_schema, response_schema = route_schemas(name, handler, options, max_validation_errors)
    data_check_local, access_local = _hook_forms(name, options)
    call_mode = _call_mode(name, handler, hydrate is not None)

    direct = (
        data_check is None
        and access is None
        and hydrate is None
        and payload_schema is None
        and response_schema is None
        and call_mode is not CallMode.SINGLE
    )
    return Route(
        name=name,
        handler=ensure_async(handler, executor),
        call_mode=call_mode,
        data_check=None if data_check is None else ensure_async(data_check, executor),
        data_check_local=data_check_local,
        access=None if access is None else ensure_async(access, executor),
        access_local=access_local,
        hydrate=None if hydrate is None else ensure_async(hydrate, executor),
        dehydrate=None if dehydrate is None else ensure_async(dehydrate, executor),
        timeout=timeout,
        rate_limit=rate_limit,
        direct=direct,
        idempotent=idempotent,
        payload_schema=payload_schema,
        response_schema=response_schema,
        plain=direct and dehydrate is None and timeout is None and not idempotent,
    )


def _check_options(name: str, handler: Any, options: dict[str, Any]) -> None:
    """Refuse unknown option keys, a handler that is not callable, a non-bool `idempotent`."""
    unknown = set(options) - OPTION_KEYS
    if unknown:
        raise ValueError(
            f"route {name!r}: unknown option(s) {sorted(unknown)}; "
            f"expected some of {sorted(OPTION_KEYS)}"
        )
    if not callable(handler):
        raise TypeError(f"route {name!r}: handler must be callable, got {handler!r}")
    idempotent = options.get("idempotent", False)
    if type(idempotent) is not bool:
        raise TypeError(f"route {name!r}: idempotent must be True or False, got {idempotent!r}")


def _hook_forms(name: str, options: dict[str, Any]) -> tuple[bool, bool]:
    """Check each hook's arity once; whether `data_check` and `access` take `local`."""
    data_check_local = access_local = False
    if options.get("data_check") is not None:
        shape = "(message[, local])"
        data_check_local = _pick_arity(name, "data_check", options["data_check"], 2, 1, shape)
    if options.get("access") is not None:
        shape = "(ws, message[, local])"
        access_local = _pick_arity(name, "access", options["access"], 3, 2, shape)
    if options.get("hydrate") is not None:
        _require_arity(name, "hydrate", options["hydrate"], 2, "(ws, message)")
    if options.get("dehydrate") is not None:
        _require_arity(name, "dehydrate", options["dehydrate"], 1, "(payload)")
    return data_check_local, access_local


def _call_mode(name: str, handler: Any, hydrated: bool) -> CallMode:
    """How the handler is called, from the arguments it can take (read once)."""
    takes_one = arity_accepts(handler, 1)
    takes_three = arity_accepts(handler, 3)
    if takes_one and takes_three:
        return CallMode.EITHER
    if takes_one:
        return CallMode.SINGLE
    if takes_three:
        if hydrated:
            raise TypeError(
                f"route {name!r}: with a hydrate hook the handler is called with one "
                f"argument, but {_qualname(handler)} takes (ws, headers, payload)"
            )
        return CallMode.TRIPLE
    raise TypeError(
        f"route {name!r}: handler {_qualname(handler)} must take one argument "
        "(hydrated value or local) or three (ws, headers, payload)"
    )


def _pick_arity(route: str, hook: str, fn: Any, full: int, short: int, shape: str) -> bool:
    """True if `fn` takes the `local` argument too, False if it takes the short form."""
    if not callable(fn):
        raise TypeError(f"route {route!r}: {hook} must be callable, got {fn!r}")
    if arity_accepts(fn, full):
        return True
    if arity_accepts(fn, short):
        return False
    raise TypeError(f"route {route!r}: {hook} {_qualname(fn)} must take {shape}")


def _require_arity(route: str, hook: str, fn: Any, count: int, shape: str) -> None:
    if not callable(fn):
        raise TypeError(f"route {route!r}: {hook} must be callable, got {fn!r}")
    if not arity_accepts(fn, count):
        raise TypeError(f"route {route!r}: {hook} {_qualname(fn)} must take {shape}")


def _qualname(fn: Any) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)
