"""Optional dependencies: each part that needs an extra says which one when it is missing.

Each case runs in a fresh interpreter where the dependency is hidden (`sys.modules[name] =
None` makes its import fail), so the rest of the suite keeps its modules.
"""

from __future__ import annotations

import sys
import tomllib

import pytest

from tests.processes import ROOT, run_hidden


@pytest.mark.parametrize(
    ("hidden", "statement", "extra"),
    [
        (("websockets",), "from observable_socket_asgi.client import Client", "client"),
        (("websockets",), "from observable_socket_asgi.client import connect", "client"),
        (("redis",), "import observable_socket_asgi.pubsub.redis_backplane", "redis"),
        (("fastapi", "starlette"), "import fastapi_adapter", "fastapi"),
    ],
)
def test_import_without_its_extra_names_the_extra(
    hidden: tuple[str, ...], statement: str, extra: str
) -> None:
    """Importing a part whose dependency is missing raises ImportError with the pip command."""
    result = run_hidden(
        hidden,
        f"""
        try:
            {statement}
        except ImportError as exc:
            print(exc)
        else:
            raise SystemExit("imported")
        """,
    )
    assert result.returncode == 0, result.stderr
    assert f'pip install "observable-socket-asgi[{extra}]"' in result.stdout


def test_serve_without_uvicorn_names_the_extra() -> None:
    """`observable-socket serve` without uvicorn exits 2 and names the uvicorn extra."""
    result = run_hidden(
        ("uvicorn",),
        """
        from observable_socket_asgi.cli import main
        raise SystemExit(main(["serve", "examples.app:app"]))
        """,
    )
    assert result.returncode == 2, result.stderr
    assert 'pip install "observable-socket-asgi[uvicorn]"' in result.stderr


def test_call_without_websockets_names_the_client_extra() -> None:
    """`observable-socket call` without websockets exits 2 and names the client extra."""
    result = run_hidden(
        ("websockets",),
        """
        from observable_socket_asgi.cli import main
        raise SystemExit(main(["call", "ws://127.0.0.1:9/ws", "echo"]))
        """,
    )
    assert result.returncode == 2, result.stderr
    assert 'pip install "observable-socket-asgi[client]"' in result.stderr


def test_core_and_test_client_need_no_extra() -> None:
    """With no server, client, FastAPI or Redis installed, a router runs in the test client."""
    result = run_hidden(
        ("uvicorn", "websockets", "fastapi", "starlette", "redis"),
        """
        import asyncio
        from observable_socket_asgi import SocketRouter
        from observable_socket_asgi.testing import TestClient

        router = SocketRouter()

        @router.route("echo")
        async def echo(ws, headers, payload):
            return {"payload": payload}

        async def main():
            async with TestClient(router) as client:
                res = await client.request("echo", [1, 2])
                print(res.status, res.payload)

        asyncio.run(main())
        """,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["200", "[1,", "2]"]


def test_core_dependencies_are_only_orjson_and_asgiref() -> None:
    """The wheel's required dependencies are the two the core imports; the rest are extras."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = sorted(dep.split(">")[0].split("[")[0] for dep in project["dependencies"])
    assert names == ["asgiref", "orjson"]
    extras = project["optional-dependencies"]
    assert set(extras["standard"]) == set(extras["uvicorn"]) | set(extras["client"])
    assert {"uvicorn", "client", "standard", "fastapi", "redis", "test", "examples"} <= set(extras)


def test_wheel_metadata_names_license_authors_and_the_running_python() -> None:
    """License expression and file, authors, and a classifier for the Python running the suite."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]
    assert "MIT License" in (ROOT / "LICENSE").read_text()
    assert project["authors"] and project["urls"]
    running = "Programming Language :: Python :: {}.{}".format(*sys.version_info[:2])
    assert running in project["classifiers"]


def test_require_names_what_needs_which_extra() -> None:
    """The one import guard: a failed import in its block names the part, package and extra."""
    from observable_socket_asgi._extras import require

    with pytest.raises(ImportError, match=r"tracing needs no_such_pkg; .*\[otel\]") as caught:
        with require("otel", "tracing"):
            import no_such_pkg  # type: ignore[import-not-found]  # noqa: F401
    assert isinstance(caught.value.__cause__, ImportError)
