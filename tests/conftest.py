"""Suite-wide set-up: async tests without plugins, asyncio debug mode, shared fixtures."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import signal
import sys
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers import WS_IMPLEMENTATIONS, Server, refusing_port, running
from tests.redis_servers import redis_server  # noqa: F401 (a fixture, for every test file)
from tests.redis_topologies import redis_cluster, redis_sentinels  # noqa: F401 (fixtures)


def pytest_configure(config: pytest.Config) -> None:
    """Give SIGINT back its default action when the suite was started with it ignored.

    A shell runs a background job (`pytest &`, as scripts/test-pythons runs one per Python)
    with SIGINT ignored, and every process started from it inherits that: Python then
    installs no KeyboardInterrupt handler, and the tests that stop a CLI or a server with
    Ctrl-C would wait on a process that never hears it.
    """
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


#: why tests were skipped in this run, and how many each reason skipped
_skipped: Counter[str] = Counter()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Count each skip under its reason (a missing redis-server, nginx, node...)."""
    if report.skipped and isinstance(report.longrepr, tuple):
        _skipped[report.longrepr[2].removeprefix("Skipped: ")] += 1


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Append the skip reasons to $OBSERVABLE_SOCKET_SUMMARY, where scripts/test gathers what
    did not run on this machine for its closing summary."""
    summary = os.environ.get("OBSERVABLE_SOCKET_SUMMARY")
    if summary and _skipped:
        python = "{}.{}".format(*sys.version_info[:2])
        with open(summary, "a", encoding="utf-8") as file:
            for reason, count in sorted(_skipped.items()):
                file.write(f"Python {python}: {count} test(s) skipped: {reason}\n")


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run `async def` tests on a fresh event loop in debug mode."""
    if inspect.iscoroutinefunction(pyfuncitem.obj):
        funcargs = pyfuncitem.funcargs
        names = pyfuncitem._fixtureinfo.argnames
        kwargs = {name: funcargs[name] for name in names}
        asyncio.run(pyfuncitem.obj(**kwargs), debug=True)
        return True
    return None


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A loopback port where connections are refused for the whole test (see refusing_port)."""
    with refusing_port() as port:
        yield port


@pytest.fixture(params=WS_IMPLEMENTATIONS)
def ws_impl(request: pytest.FixtureRequest) -> str:
    """Each of uvicorn's WebSocket implementations."""
    return str(request.param)


@pytest.fixture
def serve(ws_impl: str) -> Iterator[Any]:
    """`serve(app, **uvicorn_options)` starts a real uvicorn server; stopped after the test
    (every one of them, even when stopping another fails)."""
    with contextlib.ExitStack() as stack:

        def start(app: Any, **options: Any) -> Server:
            return stack.enter_context(running(app, ws=ws_impl, **options))

        yield start
