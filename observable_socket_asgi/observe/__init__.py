"""Watching a running router: the observer interface, Prometheus metrics, OpenTelemetry tracing,
and the live view of `observable-socket top`.
"""
