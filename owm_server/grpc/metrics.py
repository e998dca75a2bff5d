"""Per-RPC request counts and latency histograms: a server interceptor (SRS-PERF-04/09).

``owm_grpc_server_handled_total{method, code}`` counts every finished RPC by its full method
name (``/owm.coordinator.v1.Coordinator/Heartbeat``: a closed set, so cardinality is bounded)
and final status code; ``owm_grpc_server_handling_seconds{method}`` records how long each took
(for a stream: until it ended). It sits outside :class:`~owm_server.grpc.limits.StreamLimiter`,
so refused streams are counted too.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram

LATENCY_BUCKETS_S = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0)


class RpcMetrics(grpc.ServerInterceptor):  # type: ignore[misc]
    """Counts and times every RPC into ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.handled = Counter(
            "owm_grpc_server_handled", "RPCs finished, by method and status code",
            ["method", "code"], registry=registry,
        )
        self.latency = Histogram(
            "owm_grpc_server_handling_seconds", "Time from an RPC's start to its end, by method",
            ["method"], buckets=LATENCY_BUCKETS_S, registry=registry,
        )

    def intercept_service(
        self, continuation: Callable[[Any], Any], handler_call_details: Any
    ) -> Any:
        """Wrap whichever behaviour the handler has."""
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = str(handler_call_details.method)
        if handler.response_streaming:
            kind = "stream_stream" if handler.request_streaming else "unary_stream"
            return handler._replace(**{kind: self._streamed(method, getattr(handler, kind))})
        kind = "stream_unary" if handler.request_streaming else "unary_unary"
        return handler._replace(**{kind: self._single(method, getattr(handler, kind))})

    def _single(self, method: str, behavior: Callable[..., Any]) -> Callable[..., Any]:
        def timed(request: Any, context: grpc.ServicerContext) -> Any:
            started = time.perf_counter()
            failed = True
            try:
                reply = behavior(request, context)
                failed = False
                return reply
            finally:
                self._done(method, context, started, failed)

        return timed

    def _streamed(self, method: str, behavior: Callable[..., Any]) -> Callable[..., Any]:
        def timed(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            started = time.perf_counter()
            failed = True
            try:
                yield from behavior(request, context)
                failed = False
            finally:
                self._done(method, context, started, failed)

        return timed

    def _done(
        self, method: str, context: grpc.ServicerContext, started: float, failed: bool
    ) -> None:
        code = context.code()
        if code is None:
            code = grpc.StatusCode.UNKNOWN if failed else grpc.StatusCode.OK
        name = code.name if isinstance(code, grpc.StatusCode) else str(code)
        self.handled.labels(method, name).inc()
        self.latency.labels(method).observe(time.perf_counter() - started)


__all__ = ["LATENCY_BUCKETS_S", "RpcMetrics"]
