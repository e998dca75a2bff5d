"""Prometheus metrics of the coordinator: registry size, heartbeats, dispatch latency, tasks,
per-RPC and per-route request counts and latencies (:attr:`CoordinatorMetrics.rpc`, the gRPC
interceptor; :attr:`CoordinatorMetrics.http`, fed by the HTTP middleware) and the process
(CPU, memory, open files).

:class:`CoordinatorMetrics` is the service's :class:`CoordinatorObserver` (heartbeat counters,
dispatch latency histogram) and a collector that asks the service, at scrape time, for the
registry size by status and the replicas by task state (cached for ``state_max_age_s``, as
counting reads the store). Each instance owns its own
``CollectorRegistry`` so that several coordinators (tests) can run in one process.
Exposition is prometheus-client's standard text format on ``metrics_listen``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from owm_adapters.bootstrap.pool import PoolWorker
from owm_adapters.bootstrap.settings import ConfigError
from owm_adapters.services.coordinator.service import CoordinatorService
from owm_server.grpc.metrics import RpcMetrics
from owm_server.http.metrics import HttpMetrics

_Figures = TypeVar("_Figures")

DISPATCH_BUCKETS_S = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def _state_counts(service: CoordinatorService) -> tuple[dict[str, int], dict[str, int]]:
    return service.registry_counts(), service.task_counts()


def _state_families(
    counts: tuple[dict[str, int], dict[str, int]],
) -> Iterator[GaugeMetricFamily]:
    registry, task_states = counts
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


SLASHING_WINDOW_S = 7 * 24 * 3600


def stake_figures(service: CoordinatorService) -> dict[str, int]:
    """The stake manager's figures (SRS-STAKE-09): active channels, sats staked by live
    (active or degraded) stakes, slashing-log entries of the last 7 days, degraded nodes; two
    aggregate reads of the store, whatever the number of nodes."""
    repositories = service.repositories
    tally = repositories.stakes.tally()
    return {
        "active_channels": tally.active_channels,
        "staked_sat": tally.staked_sat,
        "slashing_events_7d": repositories.slashing_log.slashings_since(
            service.clock.now() - SLASHING_WINDOW_S
        ),
        "degraded_nodes": tally.degraded_nodes,
    }


_STAKE_HELP = {
    "active_channels": "Stake channels of active nodes (SRS-STAKE-09)",
    "staked_sat": "Total sats staked by active and degraded nodes (SRS-STAKE-09)",
    "slashing_events_7d": "Slashing log entries in the last 7 days (SRS-STAKE-09)",
    "degraded_nodes": "Nodes whose stake is degraded (SRS-STAKE-02/09)",
}


def _stake_families(figures: dict[str, int]) -> Iterator[GaugeMetricFamily]:
    for name, value in figures.items():
        yield GaugeMetricFamily(f"owm_stake_{name}", _STAKE_HELP[name], value=value)


def _payment_counts(service: CoordinatorService) -> dict[str, int]:
    from owm_adapters.services.payouts import payment_counts

    return payment_counts(service.repositories.payments)


def _payment_families(counts: dict[str, int]) -> Iterator[GaugeMetricFamily]:
    payments = GaugeMetricFamily(
        "owm_payments",
        "Reward and bounty payments by outbox state (SRS-LN-04/05/08)",
        labels=["state"],
    )
    for state, count in counts.items():
        payments.add_metric([state], count)
    yield payments


def fl_figures(service: CoordinatorService) -> dict[str, dict[str, int] | int]:
    """FL rounds by state (latest 1,000) and the age of the oldest open round (0: none), which
    the "FL round stalled" alert watches (SRS-COORD-03)."""
    from owm_core.fl.rounds import RoundState

    now = service.clock.now()
    rounds = service.repositories.fl_rounds.rounds(limit=1000)
    states = {state.value: 0 for state in RoundState}
    for fl_round in rounds:
        states[fl_round.state.value] += 1
    open_since = [r.started_at for r in rounds if r.state is RoundState.OPEN]
    return {"states": states, "open_age_s": max(0, now - min(open_since)) if open_since else 0}


def _fl_families(figures: dict[str, dict[str, int] | int]) -> Iterator[GaugeMetricFamily]:
    states, age = figures["states"], figures["open_age_s"]
    assert isinstance(states, dict) and isinstance(age, int)
    rounds = GaugeMetricFamily(
        "owm_fl_rounds", "FL rounds by state, of the latest 1,000 (SRS-COORD-03)", labels=["state"]
    )
    for state, count in states.items():
        rounds.add_metric([state], count)
    yield rounds
    yield GaugeMetricFamily(
        "owm_fl_open_round_age_seconds", "Age of the oldest open FL round (0: none open)",
        value=age,
    )


class _PoolCollector(Collector):
    """The pool's counts (:class:`~owm_adapters.bootstrap.pool.PoolFigures`), read in memory at
    each scrape."""

    def __init__(self, pool: PoolWorker) -> None:
        self.pool = pool

    def collect(self) -> Iterator[Metric]:
        figures = self.pool.figures()
        yield CounterMetricFamily("owm_pool_shares_accepted", "Shares the pool accepted",
                                  value=figures.accepted)  # fmt: skip
        yield _counted("owm_pool_shares_rejected", "Shares the pool rejected, by error code "
                       "(SRS-POOL-06)", "code", figures.rejected)  # fmt: skip
        yield CounterMetricFamily("owm_pool_blocks_found", "Blocks the pool's miners found",
                                  value=figures.blocks)  # fmt: skip
        yield GaugeMetricFamily("owm_pool_connections", "Miner connections open",
                                value=figures.connections)  # fmt: skip
        yield GaugeMetricFamily(
            "owm_pool_backlogged_connections", "Miner connections with sends waiting on them",
            value=figures.backlogged,
        )
        yield _counted("owm_pool_connections_refused", "Miner connections refused or closed, "
                       "by reason", "reason", figures.refused)  # fmt: skip
        yield GaugeMetricFamily("owm_pool_share_difficulty", "The lowest share difficulty",
                                value=figures.share_difficulty)  # fmt: skip


def _counted(name: str, text: str, label: str, counts: dict[str, int]) -> CounterMetricFamily:
    """A counter with one series per ``label`` value in ``counts``."""
    family = CounterMetricFamily(name, text, labels=[label])
    for key, count in sorted(counts.items()):
        family.add_metric([key], count)
    return family


class _StoreCollector(Collector, Generic[_Figures]):
    """Gauges computed from the store, read at most every ``max_age_s`` (reads cost queries)."""

    def __init__(
        self,
        metrics: CoordinatorMetrics,
        max_age_s: float,
        read: Callable[[CoordinatorService], _Figures],
        render: Callable[[_Figures], Iterator[GaugeMetricFamily]],
    ) -> None:
        self.metrics = metrics
        self.max_age_s = max_age_s
        self.read = read
        self.render = render
        self._cached: tuple[float, _Figures] | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        service = self.metrics.service
        if service is None:
            return
        now = time.monotonic()
        if self._cached is None or now - self._cached[0] >= self.max_age_s:
            self._cached = (now, self.read(service))
        yield from self.render(self._cached[1])


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
        self.registry.register(
            _StoreCollector(self, state_max_age_s, _state_counts, _state_families)
        )
        self.registry.register(
            _StoreCollector(self, state_max_age_s, _payment_counts, _payment_families)
        )
        self.registry.register(
            _StoreCollector(self, state_max_age_s, stake_figures, _stake_families)
        )
        self.registry.register(
            _StoreCollector(self, state_max_age_s, fl_figures, _fl_families)
        )
        self.rpc = RpcMetrics(self.registry)
        self.http = HttpMetrics(self.registry)
        ProcessCollector(registry=self.registry)
        self._http: Any = None

    def bind(self, service: CoordinatorService) -> None:
        """Report on ``service`` (registry size, task states) and observe its events."""
        self.service = service
        service.observer = self

    def bind_pool(self, pool: PoolWorker) -> None:
        """Report on the coordinator's mining pool too (SRS-POOL-06/09)."""
        self.registry.register(_PoolCollector(pool))

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
