"""GET /metrics on the node's loopback endpoint: tasks, earnings, heartbeats, task-worker time,
FL uploads, in the Prometheus text format (SRS-NODE-08)."""

from __future__ import annotations

from collections.abc import Callable

from owm_adapters.node.health import HealthServer
from owm_adapters.node.metrics import NodeMetrics
from tests.node.conftest import Network
from tests.node.test_daemon import Running, start, wait_for  # noqa: F401 - the daemon fixture
from tests.prometheus_checks import samples, scrape, value


def test_a_node_that_ran_a_task_exports_its_tasks_earnings_heartbeats_and_worker_time(
    network: Network, start: Callable[..., Running]  # noqa: F811
) -> None:
    node = start(network.node("n-metrics"))
    wait_for(lambda: node.daemon.state == "serving")
    network.submit("job-m", b'{"prompt": "count me"}')
    wait_for(lambda: node.daemon.log.earnings().credited_tasks == 1)
    wait_for(lambda: node.daemon.ctx.counts.get("heartbeats_accepted", 0) >= 1)
    server = HealthServer(0, node.daemon.health, NodeMetrics(node.daemon).render)
    server.start()
    try:
        exported = samples(scrape(f"http://127.0.0.1:{server.port}/metrics"))
    finally:
        server.close()
    row = node.daemon.log.get("job-m:0")
    assert row is not None
    price = row.price_msat
    assert value(exported, "owm_node_tasks_total", state="proved") == 1
    assert value(exported, "owm_node_earnings_msat", status="credited") == price > 0
    assert value(exported, "owm_node_heartbeats_total", result="accepted") >= 1
    assert value(exported, "owm_node_task_worker_seconds_total") > 0
    assert value(exported, "owm_node_fl_uploads_total", result="delivered") == 0
    assert value(exported, "owm_node_state", state="serving") == 1
    assert value(exported, "owm_node_state", state="draining") == 0
    assert value(exported, "owm_node_coordinator_connected") == 1
    assert "process_resident_memory_bytes" in exported
    assert node.halt() == 0

