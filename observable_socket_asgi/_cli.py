"""The command line: `call` a route, `listen` to pushes, `serve` a router with uvicorn.

Exit status: 0 for a 2xx answer (or a listen ended by Ctrl-C), 1 for any other status,
2 for a usage error (bad JSON payload, bad `-H`) or a missing extra, 3 when the connection
is refused or closed, 4 when no answer arrives within `--timeout`.

`call` and `listen` need the `client` extra (websockets), `serve` the `uvicorn` extra; each
is imported only by the command that needs it, so one extra is enough for its commands.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from .errors import ConnectFailed, ConnectionClosed, RequestTimeout

__all__ = ["EXIT_CLOSED", "EXIT_NOT_OK", "EXIT_OK", "EXIT_TIMEOUT", "EXIT_USAGE", "main"]

EXIT_OK = 0
EXIT_NOT_OK = 1
EXIT_USAGE = 2
EXIT_CLOSED = 3
EXIT_TIMEOUT = 4


class _UsageError(Exception):
    pass


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with `argv` (sys.argv[1:] by default); return the exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "call":
            return asyncio.run(_call(args))
        if args.command == "listen":
            return asyncio.run(_listen(args))
        return _serve(args)
    except (_UsageError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ConnectFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CLOSED
    except KeyboardInterrupt:
        return EXIT_OK if args.command != "call" else 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="observable-socket",
        description="Talk to an ObservableSocket server, or serve a router.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    call = commands.add_parser(
        "call",
        help="send one request and print its answer as JSON",
        description="Send one request and print its answer. Exit status: 0 for 2xx, 1 for "
        "another status, 2 for a usage error, 3 if the connection is refused or closed, "
        "4 on timeout.",
    )
    call.add_argument("url", help="ws:// or wss:// URL")
    call.add_argument("route", help="route name, e.g. math/sum")
    call.add_argument("payload", nargs="?", default="null", help="JSON payload (default null)")
    _common(call)
    call.add_argument("--timeout", type=float, default=10.0, help="seconds to wait (default 10)")

    listen = commands.add_parser(
        "listen",
        help="print pushes as JSON lines until interrupted",
        description="Print every push as one JSON line, reconnecting when allowed, until Ctrl-C.",
    )
    listen.add_argument("url", help="ws:// or wss:// URL")
    _common(listen)

    serve = commands.add_parser("serve", help="run a router with uvicorn")
    serve.add_argument("app", help="module:attribute of the SocketRouter (or any ASGI app)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--reload", action="store_true", help="restart when code changes")
    serve.add_argument("--log-level", default="info")
    return parser


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-H",
        "--header",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a message header merged into every message (repeatable)",
    )
    parser.add_argument(
        "--handshake-header",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an HTTP header of the WebSocket handshake (repeatable)",
    )


def _pairs(items: list[str], option: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise _UsageError(f"{option} expects KEY=VALUE, got {item!r}")
        pairs[key] = value
    return pairs


def _options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {"headers": _pairs(args.header, "-H")}
    handshake = _pairs(args.handshake_header, "--handshake-header")
    if handshake:
        options["additional_headers"] = handshake
    return options


def _dump(obj: Any, out: TextIO, pretty: bool) -> None:
    out.write(json.dumps(obj, indent=2 if pretty else None, ensure_ascii=False) + "\n")
    out.flush()


async def _call(args: argparse.Namespace) -> int:
    try:
        payload = json.loads(args.payload)
    except ValueError as exc:
        raise _UsageError(f"PAYLOAD_JSON is not valid JSON: {exc}") from None
    options = _options(args)
    from .client import connect

    async with connect(
        args.url, reconnect=False, heartbeat_interval=None, timeout=args.timeout, **options
    ) as sock:
        try:
            res = await sock.request(args.route, payload)
        except RequestTimeout as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_TIMEOUT
        except ConnectionClosed as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_CLOSED
    _dump(res.to_dict(), sys.stdout, sys.stdout.isatty())
    return EXIT_OK if res.ok else EXIT_NOT_OK


async def _listen(args: argparse.Namespace) -> int:
    options = _options(args)
    from .client import connect

    async with connect(args.url, **options) as sock:
        async for push in sock.pushes():
            _dump(push.to_dict(), sys.stdout, False)
        print(
            f"error: connection closed (code {sock.close_code}, {sock.close_reason!r})",
            file=sys.stderr,
        )
    return EXIT_CLOSED


def _serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn
    except ImportError as exc:
        raise ImportError(
            'serve needs uvicorn; install the extra: pip install "observable-socket-asgi[uvicorn]"'
        ) from exc

    if ":" not in args.app:
        raise _UsageError(f"expected module:attribute, got {args.app!r}")
    # `uvicorn module:app` imports from the working directory; do the same for the script.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    uvicorn.run(
        args.app, host=args.host, port=args.port, reload=args.reload, log_level=args.log_level
    )
    return EXIT_OK
