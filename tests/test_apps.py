"""Finding the app a command names as module:attribute, in-process."""

from __future__ import annotations

import re

import pytest

from observable_socket_asgi._apps import AppNotFound, import_app, load_router
from observable_socket_asgi.server.routing import SocketRouter


def test_a_router_is_found_through_dotted_attributes() -> None:
    """Dots after the colon reach into attributes; the router found is the module's own."""
    from tests import typed_app

    assert load_router("tests.typed_app:router") is typed_app.router
    assert isinstance(import_app("tests.typed_app:router"), SocketRouter)
    assert import_app("tests.typed_app:router.typescript") == typed_app.router.typescript


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nocolon", "expected module:attribute"),
        ("no_such_module_here:router", "cannot import 'no_such_module_here'"),
        ("tests.typed_app:nothing", "'tests.typed_app' has no attribute 'nothing'"),
        ("tests.typed_app:SumIn", "tests.typed_app:SumIn is ModelMetaclass, not a SocketRouter"),
    ],
)
def test_a_name_that_leads_nowhere_says_why(spec: str, message: str) -> None:
    """Each mistake raises AppNotFound (an ImportError, as for uvicorn) saying what it found."""
    with pytest.raises(AppNotFound, match=re.escape(message)) as info:
        load_router(spec)
    assert isinstance(info.value, ImportError)


def test_import_app_takes_any_attribute_but_a_missing_one() -> None:
    """import_app checks nothing about what it finds, only that it is there."""
    assert import_app("tests.typed_app:SumIn").__name__ == "SumIn"
    with pytest.raises(AppNotFound, match=re.escape("cannot import 'tests.typed_app:nothing'")):
        import_app("tests.typed_app:nothing")
