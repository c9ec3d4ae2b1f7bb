"""OpenTelemetry tracing: a span per request, continuing the trace its sender started.

Install with `pip install "observable-socket-asgi[otel]"` (`opentelemetry-api` only; the
application configures the SDK and its exporter as usual). `SocketRouter(tracing=True)`
builds one `Tracing` observer; nothing here is imported unless a router or a client asks
for tracing.

A span is started for each request that reaches a registered route's hooks and handler,
named after the route, of kind SERVER, with the RPC conventions' attributes:
`rpc.system` (and its newer name `rpc.system.name`) = `observable_socket`, `rpc.method`
= the route, `rpc.response.status_code` = the reply's status. A 5xx reply, a handler's
exception (recorded on the span) or a timeout sets the span's status to ERROR.

Its parent is read from the message's `headers` with the globally configured propagator
(W3C Trace Context by default: `traceparent`, `tracestate`), so a browser that puts a
`traceparent` in the JS client's `globalHeaders` or in one message's headers sees its
request continue on the server. Without one, the parent is whatever span is current where
the connection is served (an ASGI instrumentation's), else the span is a root.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._extras import require
from ._observe import Observer, reset_failure_sink, set_failure_sink

with require("otel", "tracing"):
    from opentelemetry import context as otel_context
    from opentelemetry import propagate, trace
    from opentelemetry.propagators.textmap import Getter
    from opentelemetry.trace import SpanKind, StatusCode


__all__ = ["RPC_SYSTEM", "Tracing", "inject"]

#: the `rpc.system` of every span
RPC_SYSTEM = "observable_socket"


class _HeaderGetter(Getter[Mapping[str, Any]]):
    """Reads propagation fields from message headers; values that are not strings are ignored
    (headers are any JSON, and a propagator expects text)."""

    def get(self, carrier: Mapping[str, Any], key: str) -> list[str] | None:
        value = carrier.get(key)
        return [value] if isinstance(value, str) else None

    def keys(self, carrier: Mapping[str, Any]) -> list[str]:
        return [key for key, value in carrier.items() if isinstance(value, str)]


_GETTER = _HeaderGetter()


class Tracing(Observer):
    """Starts and ends a span per request.

    Args:
        tracer_provider: where spans go; None: the global one (`trace.set_tracer_provider`).
    """

    def __init__(self, tracer_provider: Any = None) -> None:
        self.tracer = trace.get_tracer("observable_socket_asgi", tracer_provider=tracer_provider)

    def request_started(self, route: str, headers: Mapping[str, Any], started: float) -> Any:
        parent = propagate.extract(headers, getter=_GETTER) if headers else None
        span = self.tracer.start_span(
            route,
            context=parent,
            kind=SpanKind.SERVER,
            attributes={
                "rpc.system": RPC_SYSTEM,
                "rpc.system.name": RPC_SYSTEM,
                "rpc.method": route,
            },
        )
        # The request runs in a context of its own (its task's copy), so what is attached
        # here is seen by the handler and detached before the request ends.
        observation = _Observation(span)
        observation.context_token = otel_context.attach(trace.set_span_in_context(span, parent))
        observation.sink_token = set_failure_sink(observation.failed)
        return observation

    def request_finished(self, token: Any, route: str, status: int | None) -> None:
        observation: _Observation = token
        reset_failure_sink(observation.sink_token)
        otel_context.detach(observation.context_token)
        span = observation.span
        if status is None:  # the connection closed first: no reply, not a server error
            span.set_attribute("observable_socket.cancelled", True)
            span.end()
            return
        span.set_attribute("rpc.response.status_code", str(status))
        if status >= 500:
            span.set_status(StatusCode.ERROR, f"status {status}")
            if not observation.error:
                span.set_attribute("error.type", str(status))
        span.end()


class _Observation:
    """One request's span, and what to undo when it ends."""

    __slots__ = ("context_token", "error", "sink_token", "span")

    def __init__(self, span: Any) -> None:
        self.span = span
        self.error = False
        self.context_token: Any = None
        self.sink_token: Any = None

    def failed(self, exc: BaseException) -> None:
        self.error = True
        self.span.record_exception(exc)
        self.span.set_attribute("error.type", type(exc).__qualname__)


def inject(headers: dict[str, Any]) -> dict[str, Any]:
    """Add the current trace context (`traceparent`, ...) to `headers`; return them.

    Nothing is added when no span is current.
    """
    propagate.inject(headers)
    return headers
