"""The node's Prometheus metrics, served as ``GET http://127.0.0.1:8080/metrics`` (SRS-NODE-08).

Read at scrape time from what the daemon already keeps: the task log (tasks by state, task-worker
time, earnings by payment status — durable, so the counters survive restarts) and the context's
event counters (heartbeats, FL uploads — since the process started) and its state. Names follow
the Prometheus conventions: base units (seconds), ``msat`` for money as everywhere in OWM,
``_total`` on counters; ``promtool check metrics`` accepts the exposition (tested).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from owm_adapters.node.context import NodeState
from owm_adapters.pool.proxy import RelayCounts

if TYPE_CHECKING:
    from owm_adapters.node.daemon import NodeDaemon

class NodeCollector(Collector):
    """The ``owm_node_*`` families of one daemon."""

    def __init__(self, daemon: NodeDaemon) -> None:
        self.daemon = daemon

    def collect(self) -> Iterator[Metric]:
        daemon = self.daemon
        ctx = daemon.ctx
        with ctx.lock:
            counts = dict(ctx.counts)
            running = len(ctx.current)
        state = GaugeMetricFamily(
            "owm_node_state", "1 for the daemon's current state (SRS-NODE-08)", labels=["state"]
        )
        for each in NodeState:
            state.add_metric([each.value], 1.0 if ctx.state is each else 0.0)
        yield state
        yield GaugeMetricFamily(
            "owm_node_coordinator_connected", "1 while the coordinator answers", value=ctx.connected
        )
        yield GaugeMetricFamily("owm_node_tasks_running", "Tasks executing now", value=running)
        totals = daemon.log.state_totals()
        tasks = CounterMetricFamily(
            "owm_node_tasks", "Tasks received, by their state in the task log", labels=["state"]
        )
        for name, (count, _ms) in sorted(totals.items()):
            tasks.add_metric([name], count)
        yield tasks
        yield CounterMetricFamily(
            "owm_node_task_worker_seconds",
            "Time the task worker spent executing tasks",
            value=sum(ms for _count, ms in totals.values()) / 1000,
        )
        yield from _earnings(daemon)
        yield from _events(counts)


def _earnings(daemon: NodeDaemon) -> Iterator[Metric]:
    earned = daemon.log.earnings()
    family = GaugeMetricFamily(
        "owm_node_earnings_msat",
        "Task prices by payment status: credited, awaiting verification, forfeited",
        labels=["status"],
    )
    family.add_metric(["credited"], earned.credited_msat)
    family.add_metric(["pending"], earned.pending_msat)
    family.add_metric(["forfeited"], earned.forfeited_msat)
    yield family


def _events(counts: dict[str, int]) -> Iterator[Metric]:
    heartbeats = CounterMetricFamily(
        "owm_node_heartbeats", "Heartbeats sent, by outcome (SRS-NODE-04)", labels=["result"]
    )
    heartbeats.add_metric(["accepted"], counts.get("heartbeats_accepted", 0))
    heartbeats.add_metric(["failed"], counts.get("heartbeats_failed", 0))
    yield heartbeats
    uploads = CounterMetricFamily(
        "owm_node_fl_uploads", "Federated-learning updates uploaded, by outcome", labels=["result"]
    )
    uploads.add_metric(["delivered"], counts.get("fl_uploads_delivered", 0))
    uploads.add_metric(["failed"], counts.get("fl_uploads_failed", 0))
    yield uploads


class ProxyCollector(Collector):
    """The ``owm_node_mining_proxy_*`` families: what the miners behind the node's mining login
    proxy (``[mining] proxy_listen``) did since it started."""

    def __init__(self, counts: RelayCounts) -> None:
        self.counts = counts

    def collect(self) -> Iterator[Metric]:
        miners, accepted, rejected = self.counts.now()
        yield GaugeMetricFamily("owm_node_mining_proxy_miners",
                                "Miners connected through the mining login proxy", value=miners)
        yield CounterMetricFamily("owm_node_mining_proxy_shares_accepted",
                                  "Their shares the pool accepted", value=accepted)
        family = CounterMetricFamily("owm_node_mining_proxy_shares_rejected",
                                     "Their shares the pool rejected, by code", labels=["code"])
        for code, count in sorted(rejected.items()):
            family.add_metric([code], count)
        yield family


class NodeMetrics:
    """A registry holding the node's families, its mining proxy's when it runs one, and the
    process metrics; :meth:`render` is the ``/metrics`` body."""

    def __init__(self, daemon: NodeDaemon, proxy: RelayCounts | None = None) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(NodeCollector(daemon))
        if proxy is not None:
            self.registry.register(ProxyCollector(proxy))
        ProcessCollector(registry=self.registry)

    def render(self) -> bytes:
        """The text exposition format (version 0.0.4)."""
        return bytes(generate_latest(self.registry))


__all__ = ["NodeCollector", "NodeMetrics", "ProxyCollector"]
