"""The public API: names exported, and a core free of web frameworks."""

from __future__ import annotations

import subprocess
import sys

import pytest

import observable_socket_asgi
from tests.helpers import PROCESS_TIMEOUT

REQUIRED = {
    "SocketRouter",
    "Status",
    "Request",
    "Response",
    "MessageData",
    "Header",
    "Payload",
    "HandlerResult",
    "RouteOptions",
    "AccessCheck",
    "HydrateFunction",
    "DehydrateFunction",
    "Handler",
    "SocketAccess",
}


CORE_MODULES = [
    "_concurrency",
    "_responses",
    "options",
    "server.app",
    "server.handshake",
    "server.http",
    "server.runtime",
    "server.connection",
    "datastructures",
    "envelope",
    "errors",
    "server.pipeline",
    "server.routing",
    "status",
    "types",
]


def test_all_holds_the_original_public_names() -> None:
    """Every name the original package exported is in __all__."""
    assert REQUIRED <= set(observable_socket_asgi.__all__)


def test_every_name_in_all_exists() -> None:
    """Each name in __all__ can be imported, and none is listed twice."""
    names = observable_socket_asgi.__all__
    assert len(names) == len(set(names))
    for name in names:
        assert hasattr(observable_socket_asgi, name), name


def test_version_is_a_string() -> None:
    """The package carries its version."""
    assert isinstance(observable_socket_asgi.__version__, str)


def test_core_imports_no_web_framework() -> None:
    """Importing the core loads neither FastAPI, Starlette nor pydantic."""
    modules = ", ".join(f"observable_socket_asgi.{name}" for name in CORE_MODULES)
    code = (
        f"import sys, observable_socket_asgi, {modules}; "
        "bad = sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('fastapi', 'starlette', 'pydantic')); "
        "print(','.join(bad))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=PROCESS_TIMEOUT,
        check=True,
    )
    assert result.stdout.strip() == ""


def test_client_folder_exports_the_client_names() -> None:
    """`observable_socket_asgi.client` still gives every name the client module exported."""
    from observable_socket_asgi import client
    from observable_socket_asgi.client import _client

    assert set(_client.__all__) <= set(client.__all__)
    for name in _client.__all__:
        assert getattr(client, name) is getattr(_client, name), name
    with pytest.raises(AttributeError, match="nope"):
        _ = client.nope


def test_publishers_are_exported_without_importing_redis() -> None:
    """`Publisher` and `AsyncPublisher` are top-level names; redis-py loads on first use,
    not on import nor when a publisher is made."""
    code = (
        "import sys\n"
        "from observable_socket_asgi import AsyncPublisher, Publisher\n"
        "pub = Publisher('redis://127.0.0.1:1/0')\n"
        "print(AsyncPublisher.__name__, 'redis' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=PROCESS_TIMEOUT,
        check=True,
    )
    assert result.stdout.split() == ["AsyncPublisher", "False"]
    bare = subprocess.run(
        [sys.executable, "-c", "import sys, observable_socket_asgi; print('redis' in sys.modules)"],
        capture_output=True,
        text=True,
        timeout=PROCESS_TIMEOUT,
        check=True,
    )
    assert bare.stdout.strip() == "False"


def test_client_mistakes_are_top_level_names() -> None:
    """The client-mistake errors a handler may catch or raise are exported at the top level,
    as the same classes `errors` defines."""
    from observable_socket_asgi import errors

    for name in ("BadRequest", "InvalidPosition", "PresenceInfoTooLarge", "SubscriptionLimitError"):
        assert name in observable_socket_asgi.__all__
        exported = getattr(observable_socket_asgi, name)
        assert exported is getattr(errors, name)
        assert issubclass(exported, errors.BadRequest)
