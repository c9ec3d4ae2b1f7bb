"""A pytest plugin, registered on install, that runs `async def` tests marked for it.

Mark a test `@pytest.mark.observable_socket` (or a module with `pytestmark`) and pytest runs
it on a fresh asyncio event loop, so `async with TestClient(app)` works under plain pytest
with no other plugin. Only marked tests are taken: an unmarked `async def` test is left to
whichever async plugin the project uses (pytest-asyncio, anyio), so the two never fight.
Plain `def` tests need nothing: `with TestClient(app) as client` blocks.
"""

from __future__ import annotations

import asyncio
import inspect

import pytest

MARKER = "observable_socket"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}: run this async def test on a fresh asyncio event loop "
        "(observable-socket-asgi's pytest plugin)",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run a marked coroutine test to completion with `asyncio.run`."""
    test = pyfuncitem.obj
    if pyfuncitem.get_closest_marker(MARKER) is None or not inspect.iscoroutinefunction(test):
        return None
    # the fixtures the test asks for by name, as pytest's own call would pass them
    names = inspect.signature(test).parameters
    kwargs = {name: pyfuncitem.funcargs[name] for name in names if name in pyfuncitem.funcargs}
    asyncio.run(test(**kwargs))
    return True
