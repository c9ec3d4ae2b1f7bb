"""Optional dependencies: each part that needs an extra says which one when it is missing.

Each case runs in a fresh interpreter where the dependency is hidden (`sys.modules[name] =
None` makes its import fail), so the rest of the suite keeps its modules.
"""

from __future__ import annotations

import shlex
import sys
import tomllib
from typing import Any

import pytest

from observable_socket_asgi._extras import install_command, requirement
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
    """Importing a part whose dependency is missing raises ImportError with the pip command
    that installs its extra from where this copy came from."""
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
    assert install_command(extra) in result.stdout


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
    assert install_command("uvicorn") in result.stderr


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
    assert install_command("client") in result.stderr


@pytest.mark.parametrize(
    ("direct_url", "expected"),
    [
        (None, ["observable-socket-asgi[client]"]),
        (
            {"url": "file:///home/me/observable-socket-asgi", "dir_info": {"editable": True}},
            ["-e", "/home/me/observable-socket-asgi[client]"],
        ),
        (
            {"url": "file:///home/me/my%20clone", "dir_info": {}},
            ["/home/me/my clone[client]"],
        ),
        (
            {
                "url": "https://example.com/me/observable-socket-asgi.git",
                "vcs_info": {"vcs": "git", "commit_id": "0123abc", "requested_revision": "main"},
            },
            [
                "observable-socket-asgi[client] @ "
                "git+https://example.com/me/observable-socket-asgi.git@main"
            ],
        ),
        (
            {"url": "https://example.com/x.git", "vcs_info": {"vcs": "git", "commit_id": "0123"}},
            ["observable-socket-asgi[client] @ git+https://example.com/x.git@0123"],
        ),
        (
            {
                "url": "file:///tmp/dist/observable_socket_asgi-0.1.0-py3-none-any.whl",
                "archive_info": {},
            },
            [
                "observable-socket-asgi[client] @ "
                "file:///tmp/dist/observable_socket_asgi-0.1.0-py3-none-any.whl"
            ],
        ),
    ],
    ids=["index", "editable", "directory", "vcs", "vcs-commit", "wheel"],
)
def test_the_install_command_names_where_the_package_came_from(
    direct_url: dict[str, Any] | None, expected: list[str]
) -> None:
    """From an index: the name; from a path, a VCS URL or a file: that same source, so the
    command works before the package is published."""
    assert list(requirement("client", direct_url)) == expected


def test_the_install_command_here_installs_this_clone_into_this_python() -> None:
    """The suite runs on an editable install of this clone: the command says so, with the
    running interpreter's pip."""
    command = install_command("redis")
    assert command.startswith(shlex.join([sys.executable, "-m", "pip", "install", "-e"]))
    assert command.endswith(shlex.quote(f"{ROOT}[redis]"))


def test_top_without_prometheus_client_names_the_metrics_extra() -> None:
    """`observable-socket top` without prometheus_client exits 2 and names the metrics extra,
    not a bare "No module named"."""
    result = run_hidden(
        ("prometheus_client",),
        """
        from observable_socket_asgi.cli import main
        raise SystemExit(main(["top", "http://127.0.0.1:9/metrics", "--count", "1"]))
        """,
    )
    assert result.returncode == 2, result.stderr
    assert install_command("metrics") in result.stderr


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


def test_core_dependencies_are_only_what_the_core_imports() -> None:
    """The wheel's required dependencies are the three the core imports (msgspec reads frames
    with integers of any size exact, orjson writes them); the rest are extras."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = sorted(dep.split(">")[0].split("[")[0] for dep in project["dependencies"])
    assert names == ["asgiref", "msgspec", "orjson"]
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
