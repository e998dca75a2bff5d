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

from owm_server.grpc.interceptor import BehaviourInterceptor

LATENCY_BUCKETS_S = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0)


class RpcMetrics(BehaviourInterceptor):
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

    def wrap(self, kind: str, method: str, behavior: Callable[..., Any]) -> Callable[..., Any]:
        """Time and count every RPC, whichever its kind."""
        if kind.endswith("_stream"):
            return self._streamed(method, behavior)
        return self._single(method, behavior)

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
