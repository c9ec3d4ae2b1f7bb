"""Registration: a route's shape is checked and decided once, with errors that name the route."""

from __future__ import annotations

from typing import Any

import pytest

from observable_socket_asgi import ConfigurationError, SocketRouter
from observable_socket_asgi.server.routing import CallMode


def handler3(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
    return {}


def handler1(value: Any) -> dict[str, Any]:
    return {}


@pytest.mark.parametrize("name", ["PING", "PONG"])
def test_reserved_names_refused(name: str) -> None:
    """PING and PONG belong to the heartbeat and cannot be user routes."""
    router = SocketRouter()
    with pytest.raises(ValueError, match=name):
        router.route(name)(handler3)


def test_duplicate_route_refused() -> None:
    """Registering a route twice is a ValueError naming it."""
    router = SocketRouter()
    router.route("math/sum")(handler3)
    with pytest.raises(ValueError, match="math/sum"):
        router.route("math/sum")(handler3)


def test_unknown_option_refused() -> None:
    """A misspelt option key is a ValueError naming the route and the key."""
    router = SocketRouter()
    with pytest.raises(ValueError, match=r"'r'.*datacheck"):
        router.route("r", {"datacheck": lambda m: True})(handler3)  # type: ignore[arg-type]
    assert issubclass(ConfigurationError, ValueError)


def test_bare_route_decorator_raises_naming_the_mistake() -> None:
    """`@router.route` without parentheses is a TypeError at import time, not a no-op."""
    router = SocketRouter()
    with pytest.raises(TypeError, match=r'write @router.route\("name"\) above .*handler3'):
        router.route(handler3)  # type: ignore[arg-type]
    assert router.routes == {}


@pytest.mark.parametrize("name", ["", None, 3])
def test_empty_or_non_string_name_refused(name: Any) -> None:
    """A route name must be a non-empty string."""
    with pytest.raises(ValueError):
        SocketRouter().add_route(name, handler3)


@pytest.mark.parametrize(
    ("option", "hook"),
    [
        ("data_check", lambda: True),
        ("data_check", lambda a, b, c: True),
        ("access", lambda a: True),
        ("access", lambda a, b, c, d: True),
        ("hydrate", lambda a: None),
        ("hydrate", lambda a, b, c: None),
        ("dehydrate", lambda: None),
        ("dehydrate", lambda a, b: None),
    ],
)
def test_impossible_hook_arity_refused(option: str, hook: Any) -> None:
    """A hook that cannot take the arguments it will be given is a TypeError naming the route."""
    router = SocketRouter()
    with pytest.raises(TypeError, match=rf"'r'.*{option}"):
        router.route("r", {option: hook})(handler3)  # type: ignore[arg-type]


def test_non_callable_hook_refused() -> None:
    """A hook that is not callable is a TypeError."""
    with pytest.raises(TypeError, match="'r'"):
        SocketRouter().route("r", {"access": 3})(handler3)  # type: ignore[arg-type]


def test_handler_with_impossible_arity_refused() -> None:
    """A handler taking neither one nor three arguments is refused."""
    with pytest.raises(TypeError, match="'r'"):
        SocketRouter().route("r")(lambda a, b: {})
    with pytest.raises(TypeError, match="'r'"):
        SocketRouter().route("r")(lambda: {})


def test_handler_taking_three_with_hydrate_refused() -> None:
    """With hydrate the handler gets one argument, so a three-argument handler is refused."""
    with pytest.raises(TypeError, match=r"'r'.*hydrate"):
        SocketRouter().route("r", {"hydrate": lambda ws, m: 1})(handler3)


def test_non_callable_handler_refused() -> None:
    """A handler must be callable."""
    with pytest.raises(TypeError, match="'r'"):
        SocketRouter().add_route("r", 3)  # type: ignore[arg-type]


def test_arity_decided_at_registration() -> None:
    """Whether data_check and access take `local` is stored on the frozen Route."""
    router = SocketRouter()
    route = router.add_route(
        "r",
        handler1,
        {"data_check": lambda m, local: True, "access": lambda ws, m: True},
    )
    assert route.data_check_local is True
    assert route.access_local is False
    assert route.call_mode == CallMode.SINGLE
    assert router.add_route("t", handler3).call_mode == CallMode.TRIPLE
    assert router.add_route("e", lambda *a: {}).call_mode == CallMode.EITHER
    with pytest.raises(AttributeError):
        route.name = "x"  # type: ignore[misc]


def test_routes_is_a_copy() -> None:
    """`router.routes` lists the routes and cannot be used to mutate the table."""
    router = SocketRouter()
    router.route("a")(handler3)
    routes = router.routes
    routes.clear()
    assert list(router.routes) == ["a"]


def test_decorator_returns_the_function() -> None:
    """The decorator leaves the function usable as written."""
    assert SocketRouter().route("a")(handler3) is handler3


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_in_flight": 0},
        {"max_message_bytes": 10},
        {"handler_timeout": 0},
        {"rate_limit": (0, 1.0)},
        {"rate_limit": (1, 0)},
        {"rate_limit": 5},
        {"slow_consumer": "ignore"},
        {"idle_timeout": -1},
        {"max_connections": 0},
        {"max_queued_pushes": 0},
    ],
)
def test_bad_router_options_refused(kwargs: dict[str, Any]) -> None:
    """A router option out of range is a ValueError at construction."""
    with pytest.raises(ValueError):
        SocketRouter(**kwargs)


def test_bad_route_timeout_refused() -> None:
    """A route's own timeout must be positive."""
    with pytest.raises(ValueError, match="'r'"):
        SocketRouter().route("r", {"timeout": 0})(handler3)


def _sum_router() -> SocketRouter:
    sub = SocketRouter()

    @sub.route("sum")
    async def total(ws: Any, headers: Any, payload: Any) -> Any:
        return {"payload": sum(payload)}

    return sub


def test_include_router_serves_routes_under_a_prefix() -> None:
    """include_router serves the other router's routes under prefix + name, on this backplane."""
    main, sub = SocketRouter(), _sum_router()
    main.include_router(sub, prefix="math/")
    assert main.routes["math/sum"].name == "math/sum"
    assert sub.backplane is main.backplane


def test_include_router_refuses_a_clash_and_changes_nothing() -> None:
    """A clashing name raises ValueError naming it, before anything is changed."""
    main, sub = SocketRouter(), _sum_router()

    @main.route("math/sum")
    async def mine(ws: Any, headers: Any, payload: Any) -> Any:
        return {}

    backplane = sub.backplane
    with pytest.raises(ValueError, match="math/sum"):
        main.include_router(sub, prefix="math/")
    assert sub.backplane is backplane
    assert main.routes["math/sum"].handler is mine
