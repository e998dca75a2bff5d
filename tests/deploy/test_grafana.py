"""deploy/grafana: the dashboards are valid JSON and every panel queries metrics the coordinator
and the node really export (a renamed metric breaks this test, not a dashboard in production)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

from owm_adapters.bootstrap.pool import pool_from
from owm_adapters.chain.local_chain import LocalChain
from owm_adapters.clock import SystemClock
from owm_adapters.node.metrics import NodeMetrics
from owm_adapters.storage.memory import memory_repositories
from owm_server.metrics import CoordinatorMetrics
from tests.adapters.bootstrap.test_pool_bootstrap import settings_in
from tests.node.conftest import Network, network  # noqa: F401 - the coordinator fixture
from tests.node.test_daemon import Running, start, wait_for  # noqa: F401 - the daemon fixture

GRAFANA = Path(__file__).resolve().parents[2] / "deploy" / "grafana"
DASHBOARDS = {"network", "payments", "fl", "stake", "api", "pool"}
_SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum")}
_TOKEN = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def _exported(registries: list[object]) -> set[str]:
    names = {"up"}  # Prometheus's own per-target series
    for registry in registries:
        for family in registry.collect():  # type: ignore[attr-defined]
            names.add(family.name)
            names.update(family.name + s for s in _SUFFIXES.get(family.type, ()))
            names.update(sample.name for sample in family.samples)
    return names


def test_the_dashboards_are_valid_json_with_unique_ids_and_prometheus_queries() -> None:
    assert {p.stem for p in GRAFANA.glob("*.json")} == DASHBOARDS
    uids = set()
    for path in GRAFANA.glob("*.json"):
        board = json.loads(path.read_text(encoding="utf-8"))
        uids.add(board["uid"])
        assert board["panels"], path.name
        ids = [panel["id"] for panel in board["panels"]]
        assert len(ids) == len(set(ids)), path.name
        for panel in board["panels"]:
            assert panel["targets"] and all(t["expr"] for t in panel["targets"]), panel["title"]
    assert len(uids) == len(DASHBOARDS)


def test_every_panel_queries_metrics_the_coordinator_and_the_node_export(
    network: Network, start: Callable[..., Running], tmp_path: Path  # noqa: F811
) -> None:
    node = start(network.node("n-dash"))
    wait_for(lambda: node.daemon.state == "serving")
    coordinator = CoordinatorMetrics(state_max_age_s=0)
    coordinator.bind(network.service)
    pool = pool_from(settings_in(tmp_path), memory_repositories(), SystemClock(), tmp_path,
                     chain=LocalChain(tmp_path / "chain.db"))  # fmt: skip
    assert pool is not None
    coordinator.bind_pool(pool)
    exported = _exported([coordinator.registry, NodeMetrics(node.daemon).registry])
    for path in GRAFANA.glob("*.json"):
        for panel in json.loads(path.read_text(encoding="utf-8"))["panels"]:
            for target in panel["targets"]:
                expr = re.sub(r'"[^"]*"|\[[^\]]*\]', "", target["expr"])  # drop values, ranges
                metrics = {t for t in _TOKEN.findall(expr)
                           if t == "up" or t.startswith(("owm_", "process_"))}
                assert metrics, f"{path.name}: {panel['title']} queries no metric"
                unknown = metrics - exported
                assert not unknown, f"{path.name}: {panel['title']} queries {unknown}"
    assert node.halt() == 0
