"""Prometheus metrics of the coordinator: registry size, heartbeats, dispatch latency, tasks.

:class:`CoordinatorMetrics` is the service's :class:`CoordinatorObserver` (heartbeat counters,
dispatch latency histogram) and a collector that asks the service, at scrape time, for the
registry size by status and the replicas by task state (cached for ``state_max_age_s``, as
counting reads the store). Each instance owns its own
``CollectorRegistry`` so that several coordinators (tests) can run in one process.
Exposition is prometheus-client's standard text format on ``metrics_listen``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from owm_adapters.coordinator_service import CoordinatorService
from owm_adapters.settings import ConfigError

DISPATCH_BUCKETS_S = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class _StateCollector(Collector):
    """Registry size and task states, read from the store at most every ``max_age_s``."""

    def __init__(self, metrics: CoordinatorMetrics, max_age_s: float) -> None:
        self.metrics = metrics
        self.max_age_s = max_age_s
        self._cached: tuple[float, dict[str, int], dict[str, int]] | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        service = self.metrics.service
        if service is None:
            return
        now = time.monotonic()
        if self._cached is None or now - self._cached[0] >= self.max_age_s:
            self._cached = (now, service.registry_counts(), service.task_counts())
        _, registry, task_states = self._cached
        nodes = GaugeMetricFamily(
            "owm_registry_nodes", "Registered nodes by status (SRS-COORD-01)", labels=["status"]
        )
        for status, count in registry.items():
            nodes.add_metric([status], count)
        yield nodes
        tasks = GaugeMetricFamily(
            "owm_tasks", "Task replicas by state (seed 003)", labels=["state"]
        )
        for state, count in task_states.items():
            tasks.add_metric([state], count)
        yield tasks


class CoordinatorMetrics:
    """The coordinator's metrics; pass it as the service's observer, then :meth:`bind`."""

    def __init__(self, state_max_age_s: float = 5.0) -> None:
        self.registry = CollectorRegistry()
        self.service: CoordinatorService | None = None
        self.heartbeats = Counter(
            "owm_heartbeats_accepted",
            "Verified heartbeats (rate() gives heartbeats/s, SRS-PERF-04)",
            registry=self.registry,
        )
        self.rejected = Counter(
            "owm_heartbeats_rejected", "Refused heartbeats", registry=self.registry
        )
        self.dispatch = Histogram(
            "owm_dispatch_latency_seconds",
            "Time from a task becoming assignable to its push to a node (SRS-PERF-09)",
            buckets=DISPATCH_BUCKETS_S,
            registry=self.registry,
        )
        self.registry.register(_StateCollector(self, state_max_age_s))
        self._http: Any = None

    def bind(self, service: CoordinatorService) -> None:
        """Report on ``service`` (registry size, task states) and observe its events."""
        self.service = service
        service.observer = self

    def heartbeats_accepted(self, count: int) -> None:
        """Count verified heartbeats."""
        self.heartbeats.inc(count)

    def heartbeats_rejected(self, count: int) -> None:
        """Count refused heartbeats."""
        self.rejected.inc(count)

    def task_dispatched(self, latency_s: float) -> None:
        """Record one dispatch latency."""
        self.dispatch.observe(latency_s)

    def serve(self, listen: str) -> int:
        """Expose ``/metrics`` on ``host:port`` (port 0: any free port); return the port."""
        host, _, port = listen.rpartition(":")
        try:
            server, _thread = start_http_server(
                int(port), addr=host or "127.0.0.1", registry=self.registry
            )
        except (OSError, ValueError):
            raise ConfigError(
                f"cannot serve metrics on {listen!r}: address in use or invalid"
            ) from None
        self._http = server
        return int(server.server_port)

    def close(self) -> None:
        """Stop the HTTP endpoint."""
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
