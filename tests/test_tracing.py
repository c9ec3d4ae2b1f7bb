"""Tracing: a span per request with the RPC attributes, parented by the message's traceparent."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import connect

pytest.importorskip("opentelemetry.sdk")

from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode

from observable_socket_asgi import SocketRouter
from observable_socket_asgi.observe._observe import note_failure
from observable_socket_asgi.observe.tracing import Tracing, inject
from observable_socket_asgi.testing import TestClient
from tests.helpers import TIMEOUT, request, running
from tests.otel_helpers import PARENT_ID, TRACE_ID, TRACEPARENT, memory_provider


def test_span_continues_the_messages_trace() -> None:
    """A traceparent in the headers becomes the span's parent; the span is current meanwhile."""
    provider, exporter = memory_provider()
    tracing = Tracing(provider)

    async def request() -> None:
        token = tracing.request_started("math/sum", {"traceparent": TRACEPARENT}, 0.0)
        current = trace.get_current_span().get_span_context()
        assert current.trace_id == TRACE_ID
        tracing.request_finished(token, "math/sum", 200)

    asyncio.run(request())
    (span,) = exporter.get_finished_spans()
    assert span.name == "math/sum"
    assert span.kind is SpanKind.SERVER
    assert span.context.trace_id == TRACE_ID
    assert span.parent is not None and span.parent.span_id == PARENT_ID
    assert span.parent.is_remote
    assert span.attributes is not None
    assert span.attributes["rpc.system"] == "observable_socket"
    assert span.attributes["rpc.method"] == "math/sum"
    assert span.attributes["rpc.response.status_code"] == "200"
    assert span.status.status_code is StatusCode.UNSET
    assert trace.get_current_span() is trace.INVALID_SPAN  # detached again


@pytest.mark.parametrize(
    "headers",
    [{}, {"traceparent": "not a traceparent"}, {"traceparent": 12}, {"traceparent": None}],
)
def test_without_a_usable_traceparent_the_span_is_a_root(headers: dict[str, Any]) -> None:
    """No traceparent, a malformed one or a non-string one: a new trace, no error."""
    provider, exporter = memory_provider()
    tracing = Tracing(provider)
    tracing.request_finished(tracing.request_started("r", headers, 0.0), "r", 404)
    (span,) = exporter.get_finished_spans()
    assert span.parent is None
    assert span.status.status_code is StatusCode.UNSET  # a 4xx is the client's error


def test_handler_exception_is_recorded() -> None:
    """A failure noted during the request is recorded on its span, which ends as an error."""
    provider, exporter = memory_provider()
    tracing = Tracing(provider)
    token = tracing.request_started("boom", {}, 0.0)
    note_failure(ZeroDivisionError("division by zero"))
    tracing.request_finished(token, "boom", 500)
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None and span.attributes["error.type"] == "ZeroDivisionError"
    (event,) = span.events
    assert event.name == "exception"
    assert event.attributes is not None
    assert event.attributes["exception.type"] == "ZeroDivisionError"
    # The sink is reset: a later failure outside any request goes nowhere.
    note_failure(RuntimeError("later"))
    assert len(exporter.get_finished_spans()) == 1


def test_timeout_status_is_an_error_without_exception() -> None:
    """A 504 (timeout) marks the span an error, its type the status."""
    provider, exporter = memory_provider()
    tracing = Tracing(provider)
    tracing.request_finished(tracing.request_started("slow", {}, 0.0), "slow", 504)
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None and span.attributes["error.type"] == "504"


def test_inject_adds_the_current_traceparent() -> None:
    """inject() writes the current span's context as a W3C traceparent, and nothing without one."""
    provider, _ = memory_provider()
    assert inject({}) == {}
    with provider.get_tracer("t").start_as_current_span("client") as span:
        headers = inject({"token": "abc"})
    ctx = span.get_span_context()
    assert headers["token"] == "abc"
    flags = int(ctx.trace_flags)
    assert headers["traceparent"] == f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{flags:02x}"


# Through a real router and uvicorn


def traced_router(provider: Any, **options: Any) -> SocketRouter:
    router = SocketRouter(tracing=provider, **options)
    tracer = provider.get_tracer("handler")

    @router.route("work")
    async def work(ws: Any, headers: Any, payload: Any) -> Any:
        with tracer.start_as_current_span("inside"):
            await asyncio.sleep(0)
        return {"payload": payload}

    @router.route("boom")
    async def boom(ws: Any, headers: Any, payload: Any) -> Any:
        raise KeyError("missing")

    return router


async def test_traceparent_sent_by_a_client_is_the_spans_parent() -> None:
    """Over real uvicorn: a raw client's traceparent parents the route's span, and a span the
    handler opens is a child of the route's span."""
    provider, exporter = memory_provider()
    router = traced_router(provider)
    with running(router) as server:
        async with asyncio.timeout(TIMEOUT), connect(server.url, compression=None) as ws:
            await ws.send(request("work", 1, headers={"traceparent": TRACEPARENT}))
            assert orjson.loads(await ws.recv())["status"] == 200
            await ws.send(request("boom", 2))
            assert orjson.loads(await ws.recv())["status"] == 500
            await ws.send(request("nope", 3))
            assert orjson.loads(await ws.recv())["status"] == 404
    spans = {span.name: span for span in exporter.get_finished_spans()}
    assert set(spans) == {"work", "inside", "boom"}  # no span for an unknown route
    work, inside, boom = spans["work"], spans["inside"], spans["boom"]
    assert work.context.trace_id == TRACE_ID
    assert work.parent is not None and work.parent.span_id == PARENT_ID
    assert inside.parent is not None and inside.parent.span_id == work.context.span_id
    assert boom.parent is None
    assert boom.status.status_code is StatusCode.ERROR
    assert boom.attributes is not None and boom.attributes["error.type"] == "KeyError"
    assert [event.name for event in boom.events] == ["exception"]


async def test_python_client_sends_the_current_trace() -> None:
    """The client with tracing=True carries the caller's span to the server's span."""
    from observable_socket_asgi.client import connect as client_connect

    provider, exporter = memory_provider()
    router = traced_router(provider)
    with running(router) as server:
        async with client_connect(server.url, tracing=True, heartbeat_interval=None) as sock:
            with provider.get_tracer("caller").start_as_current_span("caller") as caller:
                assert (await sock.request("work", 5)).status == 200
            assert (await sock.request("work", 6)).status == 200  # no current span: a root
    works = [span for span in exporter.get_finished_spans() if span.name == "work"]
    assert len(works) == 2
    first, second = works
    assert first.context.trace_id == caller.get_span_context().trace_id
    assert first.parent is not None
    assert first.parent.span_id == caller.get_span_context().span_id
    assert second.parent is None


async def test_metrics_and_tracing_together() -> None:
    """Both on: the span is recorded and the request counted."""
    from tests.metrics_helpers import Scrape

    provider, exporter = memory_provider()
    router = traced_router(provider, metrics_url="/metrics")
    async with TestClient(router) as client:
        assert (await client.request("work", 1, headers={"traceparent": TRACEPARENT})).ok
    assert {span.name for span in exporter.get_finished_spans()} == {"work", "inside"}
    assert router.metrics is not None
    s = Scrape(router.metrics.exposition()[0].decode())
    assert s.value("requests_total", route="work", status=200) == 1
