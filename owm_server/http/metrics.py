"""Per-route request counts and latency histograms of the HTTP API: an ASGI middleware.

The ``route`` label is the matched route's template (``/v1/tasks/{task_id}``), rebuilt from the
request path and the path parameters the router found, never the raw path — an attacker asking
for a million task ids adds no series (cardinality stays bounded by the route table); a path no
route matches is ``unmatched``. ``owm_http_requests_total{method, route, status}`` and
``owm_http_request_duration_seconds{method, route}``. WebSockets are not timed.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.routing import Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
UNMATCHED = "unmatched"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class HttpMetrics:
    """The HTTP families in ``registry``; :class:`RouteMetrics` feeds them."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "owm_http_requests", "HTTP requests answered, by method, route template and status",
            ["method", "route", "status"], registry=registry,
        )
        self.latency = Histogram(
            "owm_http_request_duration_seconds",
            "Time to answer an HTTP request, by method and route template",
            ["method", "route"], buckets=LATENCY_BUCKETS_S, registry=registry,
        )


def route_template(scope: Scope, status: int) -> str:
    """The matched route's template: the path with each path parameter put back as ``{name}``;
    ``unmatched`` when no route matched (no endpoint, or only a mount's router did, or a 404
    without path parameters) or a parameter spans segments."""
    endpoint = scope.get("endpoint")
    params: dict[str, Any] = scope.get("path_params") or {}
    if endpoint is None or isinstance(endpoint, Router) or (status == 404 and not params):
        return UNMATCHED
    by_value = {str(v): k for k, v in params.items()}
    parts = [f"{{{by_value[p]}}}" if p in by_value else p for p in scope["path"].split("/")]
    if sum(p.startswith("{") for p in parts) < len(params):
        return UNMATCHED
    return "/".join(parts)


class RouteMetrics:
    """ASGI middleware counting and timing every HTTP request into ``metrics``."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def observed(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, observed)
        finally:
            method = scope["method"] if scope["method"] in _METHODS else "OTHER"
            route = route_template(scope, status[0])
            self.metrics.requests.labels(method, route, str(status[0])).inc()
            self.metrics.latency.labels(method, route).observe(time.perf_counter() - started)


__all__ = ["HttpMetrics", "RouteMetrics", "route_template"]
