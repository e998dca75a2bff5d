"""deploy/prometheus: the scrape config and alert rules pass promtool's checks and unit tests,
and a real Prometheus (Debian's package) scrapes a running coordinator and node and evaluates
the rules over what it scraped."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from owm_adapters.node.health import HealthServer
from owm_adapters.node.metrics import NodeMetrics
from owm_server.metrics import CoordinatorMetrics
from tests.node.conftest import Network, network  # noqa: F401 - the coordinator fixture
from tests.node.test_daemon import Running, start, wait_for  # noqa: F401 - the daemon fixture
from tests.prometheus_checks import PROMTOOL

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
PROMETHEUS = shutil.which("prometheus")
ALERTS = {
    "OwmNodeOffline", "OwmStakeDegraded", "OwmPayoutBacklog", "OwmPaymentFailures",
    "OwmFlRoundStalled", "OwmSlashingEvent",
}
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool missing: scripts/test installs Debian's prometheus"
)


def promtool(*args: str) -> str:
    assert PROMTOOL is not None
    done = subprocess.run([PROMTOOL, *args], cwd=DEPLOY, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_the_rules_define_the_six_operator_alerts() -> None:
    rules = yaml.safe_load((DEPLOY / "rules.yml").read_text(encoding="utf-8"))
    names = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    assert names == ALERTS


@needs_promtool
def test_the_scrape_config_and_the_rules_pass_promtool_check() -> None:
    assert "SUCCESS" in promtool("check", "config", "prometheus.yml")
    assert "6 rules found" in promtool("check", "rules", "rules.yml")


@needs_promtool
def test_every_alert_fires_and_stays_quiet_as_its_unit_tests_expect() -> None:
    promtool("test", "rules", "rules_test.yml")
    tested = yaml.safe_load((DEPLOY / "rules_test.yml").read_text(encoding="utf-8"))
    covered = {t["alertname"] for case in tested["tests"] for t in case["alert_rule_test"]
               if t["exp_alerts"]}
    assert covered == ALERTS


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _api(port: int, path: str, **query: str) -> Any:
    url = f"http://127.0.0.1:{port}/api/v1/{path}?{urllib.parse.urlencode(query)}"
    with urllib.request.urlopen(url, timeout=10) as reply:
        body = json.loads(reply.read())
    assert body["status"] == "success", body
    return body["data"]


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[[list[tuple[str, int]]], int]]:
    processes: list[subprocess.Popen[bytes]] = []

    def _run(targets: list[tuple[str, int]]) -> int:
        assert PROMETHEUS is not None
        shutil.copy(DEPLOY / "rules.yml", tmp_path / "rules.yml")
        (tmp_path / "recorded.yml").write_text(yaml.safe_dump({"groups": [{
            "name": "test", "rules": [
                {"record": "owm:node_heartbeats_accepted:sum",
                 "expr": 'sum(owm_node_heartbeats_total{result="accepted"})'}]}]}))
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": ["rules.yml", "recorded.yml"],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
                for job, port in targets
            ],
        }
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = _free_port()
        processes.append(subprocess.Popen(
            [PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=(tmp_path / "prometheus.log").open("wb"),
        ))
        return port

    yield _run
    for process in processes:
        process.terminate()
        process.wait(20)


def _until(check: Callable[[], bool], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if check():
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError("Prometheus did not get there in time")
        time.sleep(0.5)


@pytest.mark.skipif(
    PROMETHEUS is None, reason="prometheus missing: scripts/test installs Debian's prometheus"
)
def test_a_real_prometheus_scrapes_a_coordinator_and_a_node_and_evaluates_the_rules(
    network: Network, start: Callable[..., Running], prometheus: Callable[..., int]  # noqa: F811
) -> None:
    node = start(network.node("n-scraped"))
    wait_for(lambda: node.daemon.ctx.counts.get("heartbeats_accepted", 0) >= 1)
    coordinator = CoordinatorMetrics()
    coordinator.bind(network.service)
    node_endpoint = HealthServer(0, node.daemon.health, NodeMetrics(node.daemon).render)
    node_endpoint.start()
    try:
        port = prometheus([("owm-coordinator", coordinator.serve("127.0.0.1:0")),
                           ("owm-node", node_endpoint.port)])

        def both_up() -> bool:
            up = _api(port, "query", query="up")["result"]
            return sorted((r["metric"]["job"], r["value"][1]) for r in up) == [
                ("owm-coordinator", "1"), ("owm-node", "1")]

        def recorded() -> bool:
            result = _api(port, "query", query="owm:node_heartbeats_accepted:sum")["result"]
            return bool(result) and float(result[0]["value"][1]) >= 1

        def rules_evaluated() -> bool:
            groups = _api(port, "rules")["groups"]
            rules = [r for g in groups for r in g["rules"]]
            return len(rules) == 7 and all(
                r["health"] == "ok" and not r["lastEvaluation"].startswith("0001") for r in rules)

        _until(both_up)
        _until(recorded)
        _until(rules_evaluated)
        stake = _api(port, "query", query="owm_stake_degraded_nodes")["result"]
        assert stake and stake[0]["value"][1] == "0"
        assert _api(port, "alerts")["alerts"] == []  # a healthy network raises nothing
    finally:
        node_endpoint.close()
        coordinator.close()
    assert node.halt() == 0
