"""The command line: `call` a route, `listen` to pushes, `serve` a router with uvicorn,
print a router's `asyncapi` document or its `typescript` declarations, `top` to watch one.

Exit status: 0 for a 2xx answer (or a listen ended by Ctrl-C), 1 for any other status
(for `listen`, a `--call` answered with one), 2 for a usage error (bad JSON payload, bad
`-H`) or a missing extra, 3 when the connection is refused or closed, 4 when no answer
arrives within `--timeout`. `top --count N` exits 0 if its last scrape succeeded, else 3.

`call` prints the answer on stdout; `listen` prints one JSON line per push on stdout and
everything else (connected, the answers to its `--call`s, why it stopped) on stderr, so its
stdout can be piped as is.

`call` and `listen` need the `client` extra (websockets), `serve` the `uvicorn` extra; each
is imported only by the command that needs it, so one extra is enough for its commands.
`asyncapi` and `typescript` need no extra beyond what the router itself imports (`schema`
for typed routes); `top` needs the `metrics` extra (prometheus_client's parser).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from typing import Any, Protocol, TextIO

from ._apps import import_app as _import_app
from ._apps import load_router as _load_router
from .envelope import PING, PONG, parse_json
from .errors import ConnectFailed, ConnectionClosed, ProtocolError, RequestTimeout

__all__ = ["EXIT_CLOSED", "EXIT_NOT_OK", "EXIT_OK", "EXIT_TIMEOUT", "EXIT_USAGE", "main"]

EXIT_OK = 0
EXIT_NOT_OK = 1
EXIT_USAGE = 2
EXIT_CLOSED = 3
EXIT_TIMEOUT = 4


class _Commands(Protocol):
    """The group `add_subparsers()` returns, as the command builders use it (argparse names
    its class privately)."""

    def add_parser(
        self, name: str, *, help: str | None = ..., description: str | None = ...
    ) -> argparse.ArgumentParser: ...


class _UsageError(Exception):
    pass


class _Action(argparse.Action):
    """An option that files its value itself: argparse's hook, typed once for both below."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        self.take(parser, namespace, values)

    def take(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any
    ) -> None:
        """File `values` in `namespace`; report a mistake with `parser.error`."""
        raise NotImplementedError


class _CallAction(_Action):
    """`--call ROUTE`: a request `listen` makes on every connection, in order."""

    def take(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any
    ) -> None:
        calls: list[list[Any]] = list(getattr(namespace, self.dest) or [])
        calls.append([values, None])
        setattr(namespace, self.dest, calls)


class _PayloadAction(_Action):
    """`--payload JSON`: the payload of the `--call` just before it."""

    def take(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any
    ) -> None:
        calls = getattr(namespace, "calls", None)
        if not calls or calls[-1][1] is not None:
            parser.error("--payload must follow the --call it belongs to (one per --call)")
        try:
            parse_json(values)  # checked now, kept as JSON text
        except ProtocolError as exc:
            parser.error(f"--payload: {exc}")
        calls[-1][1] = values


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with `argv` (sys.argv[1:] by default); return the exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "call":
            return asyncio.run(_call(args))
        if args.command == "listen":
            return asyncio.run(_listen(args))
        if args.command == "asyncapi":
            return _asyncapi(args)
        if args.command == "typescript":
            return _typescript(args)
        if args.command == "top":
            return _top(args)
        return _serve(args)
    except (_UsageError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ConnectFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CLOSED
    except KeyboardInterrupt:
        return EXIT_OK if args.command != "call" else 130


def _root_parser() -> tuple[argparse.ArgumentParser, _Commands]:
    """The program's parser, and the group its commands are added to."""
    parser = argparse.ArgumentParser(
        prog="observable-socket",
        description="Talk to an ObservableSocket server, or serve a router.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    return parser, commands


def _add_call(commands: _Commands) -> None:
    """`call URL ROUTE [PAYLOAD]`: one request, its answer printed."""
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


def _add_listen(commands: _Commands) -> None:
    """`listen URL [--call ROUTE [--payload JSON]]...`: pushes printed as JSON lines."""
    listen = commands.add_parser(
        "listen",
        help="print pushes as JSON lines until interrupted",
        description="Print every push as one JSON line, reconnecting when allowed, until "
        "Ctrl-C. On every connection it first makes the --call requests, in order (to "
        "subscribe to something), then says on stderr that it is listening.",
    )
    listen.add_argument("url", help="ws:// or wss:// URL")
    listen.add_argument(
        "--call",
        dest="calls",
        action=_CallAction,
        metavar="ROUTE",
        help="a request to make on every connection before listening (repeatable)",
    )
    listen.add_argument(
        "--payload",
        action=_PayloadAction,
        metavar="JSON",
        help="the JSON payload of the --call before it (default null)",
    )
    _common(listen)
    listen.add_argument(
        "--timeout", type=float, default=10.0, help="seconds each --call may take (default 10)"
    )


def _add_serve(commands: _Commands) -> None:
    """`serve MODULE:ATTRIBUTE`: the router under uvicorn."""
    serve = commands.add_parser("serve", help="run a router with uvicorn")
    serve.add_argument("app", help="module:attribute of the SocketRouter (or any ASGI app)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--reload", action="store_true", help="restart when code changes")
    serve.add_argument("--log-level", default="info", help="for uvicorn and the router")
    serve.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="text lines with time and level, or one JSON object per line (default text)",
    )
    serve.add_argument(
        "--ws-max-size",
        type=int,
        default=None,
        metavar="BYTES",
        help="the largest WebSocket message uvicorn reads (default: twice the router's "
        "max_message_bytes; larger messages are closed 1009 by uvicorn before the router "
        "sees them, smaller ones over the limit are answered 413)",
    )


def _add_asyncapi(commands: _Commands) -> None:
    """`asyncapi MODULE:ATTRIBUTE`: the router's AsyncAPI document."""
    asyncapi = commands.add_parser(
        "asyncapi",
        help="print a router's AsyncAPI 3.0 document as JSON",
        description="Import module:attribute (a SocketRouter) and print its AsyncAPI 3.0 "
        "document: every route, its payload and response types and error answers, and the "
        "declared push topics.",
    )
    asyncapi.add_argument("app", help="module:attribute of the SocketRouter")
    asyncapi.add_argument("--title", default="ObservableSocket API", help="info.title")
    asyncapi.add_argument("--api-version", default="0.1.0", help="info.version (default 0.1.0)")
    asyncapi.add_argument("--address", default=None, help="the socket's path, e.g. /ws")
    asyncapi.add_argument("-o", "--output", default=None, help="write to this file")


def _add_typescript(commands: _Commands) -> None:
    """`typescript MODULE:ATTRIBUTE`: the router's TypeScript declarations."""
    typescript = commands.add_parser(
        "typescript",
        help="print TypeScript declarations of a router's payload types",
        description="Import module:attribute (a SocketRouter) and print TypeScript "
        "declarations: an interface per model, and the Routes and Topics maps.",
    )
    typescript.add_argument("app", help="module:attribute of the SocketRouter")
    typescript.add_argument("-o", "--output", default=None, help="write to this file")


def _parser() -> argparse.ArgumentParser:
    """The whole command line: every command's parser, `top` last."""
    parser, commands = _root_parser()
    for add in (_add_call, _add_listen, _add_serve, _add_asyncapi, _add_typescript):
        add(commands)
    top = commands.add_parser(
        "top",
        help="a live view of a router's metrics",
        description="Scrape a router's metrics_url every interval and show connections, "
        "requests per second and p50/p99 per route, in-flight, queued pushes and the "
        "backplane. Needs prometheus_client (the metrics extra).",
    )
    top.add_argument("url", help="http:// URL of the router's metrics_url")
    top.add_argument("--interval", type=float, default=1.0, help="seconds between screens")
    top.add_argument("--count", type=int, default=None, help="stop after this many screens")
    top.add_argument("--timeout", type=float, default=5.0, help="seconds per scrape (default 5)")
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
        payload = parse_json(args.payload)
    except ProtocolError as exc:
        raise _UsageError(f"PAYLOAD_JSON: {exc}") from None
    options = _options(args)
    from .client._client import connect

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
    answer = res.to_dict()
    if args.route == PING:
        # the heartbeat's answer is the PONG frame: show it as the server sent it
        answer = {"uuid": res.uuid, "route": PONG, **answer}
    _dump(answer, sys.stdout, sys.stdout.isatty())
    return EXIT_OK if res.ok else EXIT_NOT_OK


async def _listen(args: argparse.Namespace) -> int:
    options = _options(args)
    calls: list[tuple[str, Any]] = [
        (route, None if payload is None else parse_json(payload))
        for route, payload in args.calls or []
    ]
    from .client._client import Client, connect

    # why listening stopped when a --call failed (the exit status is then 1)
    failed: list[str] = []
    opened = 0

    async def on_open(sock: Client) -> None:
        nonlocal opened
        opened += 1
        for route, payload in calls:
            try:
                res = await sock.request(route, payload)
            except (RequestTimeout, ConnectionClosed) as exc:
                # a connection lost meanwhile: the next on_open makes the calls again
                print(f"error: --call {route}: {exc}", file=sys.stderr, flush=True)
                return
            line = json.dumps(res.to_dict(), ensure_ascii=False)
            print(f"called {route}: {line}", file=sys.stderr, flush=True)
            if not res.ok:
                failed.append(f"--call {route} was answered {res.status}")
                await sock.close()
                return
        again = "re" if opened > 1 else ""
        print(
            f"{again}connected to {args.url}; listening for pushes (Ctrl-C to stop)",
            file=sys.stderr,
            flush=True,
        )

    async with connect(args.url, on_open=on_open, timeout=args.timeout, **options) as sock:
        async for push in sock.pushes():
            _dump(push.to_dict(), sys.stdout, False)
        if failed:
            print(f"error: {failed[0]}", file=sys.stderr)
            return EXIT_NOT_OK
        print(
            f"error: connection closed (code {sock.close_code}, {sock.close_reason!r})",
            file=sys.stderr,
        )
    return EXIT_CLOSED


def _write(text: str, output: str | None) -> None:
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    with open(output, "w", encoding="utf-8") as file:
        file.write(text)


def _asyncapi(args: argparse.Namespace) -> int:
    router = _load_router(args.app)
    document = router.asyncapi(title=args.title, version=args.api_version, address=args.address)
    _write(json.dumps(document, indent=2, ensure_ascii=False) + "\n", args.output)
    return EXIT_OK


def _typescript(args: argparse.Namespace) -> int:
    _write(_load_router(args.app).typescript(), args.output)
    return EXIT_OK


def _top(args: argparse.Namespace) -> int:
    import time
    import urllib.request

    from .observe import _top

    if args.interval <= 0:
        raise _UsageError(f"--interval must be positive, got {args.interval}")
    if not args.url.startswith(("http://", "https://")):
        raise _UsageError(f"expected an http:// or https:// URL, got {args.url!r}")
    clear = "\x1b[H\x1b[2J" if sys.stdout.isatty() else ""
    previous: _top.Snapshot | None = None
    shown = 0
    ok = False
    while args.count is None or shown < args.count:
        if shown:
            time.sleep(args.interval)
        try:
            with urllib.request.urlopen(args.url, timeout=args.timeout) as answer:
                text = answer.read().decode("utf-8")
            current = _top.parse(text, time.monotonic())
        except (OSError, ValueError) as exc:
            screen = f"observable-socket top  {args.url}\ncannot read the metrics: {exc}\n"
            ok = False
        else:
            screen = _top.render(previous, current, args.url)
            previous = current
            ok = True
        sys.stdout.write(clear + screen + ("" if clear else "\n"))
        sys.stdout.flush()
        shown += 1
    return EXIT_OK if ok else EXIT_CLOSED


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
    from .logs import logging_config

    ws_max_size = args.ws_max_size
    if ws_max_size is None:
        ws_max_size = ws_max_size_for(_import_app(args.app))
    options: dict[str, Any] = {} if ws_max_size is None else {"ws_max_size": ws_max_size}
    uvicorn.run(
        args.app,
        host=args.host,
        port=args.port,
        reload=args.reload,
        log_level=args.log_level,
        # uvicorn's lines and the router's in one format, with time and level
        log_config=logging_config(args.log_level, format=args.log_format),
        **options,
    )
    return EXIT_OK


def ws_max_size_for(app: Any) -> int | None:
    """uvicorn's `ws_max_size` for `app`: twice a router's `max_message_bytes`, else None.

    uvicorn reads a whole message before the router sees it, up to `ws_max_size` (16 MiB by
    default), so that setting, not the router's limit, bounds what one message can cost.
    Twice the limit keeps a polite 413 (with the request's uuid) for messages somewhat over
    it, and lets uvicorn close with 1009 anything larger.
    """
    from .server.routing import SocketRouter

    if isinstance(app, SocketRouter) and app.max_message_bytes is not None:
        return 2 * app.max_message_bytes
    return None
