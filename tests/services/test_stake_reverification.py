"""The coordinator's periodic stake re-verification (SRS-STAKE-02/03): a stake whose re-check
fails on its own is logged and retried next pass, and holds back none of the stakes due after
it (the rule itself: ``owm_core.coordination.stakes.reverify_due_stakes``)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from owm_adapters.lightning.embedded import SimLedger
from owm_adapters.services.coordinator.market import Market
from owm_adapters.services.coordinator.registrar import Registrar
from owm_adapters.services.coordinator.shared import ServiceConfig
from owm_adapters.storage.memory import memory_repositories
from owm_core.stake.channel import StakeStatus
from tests.core.coordination.test_coordination import (
    NOW,
    PartlyFailingLightning,
    identity,
    ln_pubkey_of,
    register_with,
)
from tests.reveals import COORDINATOR_KEY_HEX
from tests.server.harness import StepClock, start_coordinator


def test_a_stake_that_fails_its_recheck_is_logged_once_and_the_pass_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    lightning = PartlyFailingLightning()
    repos = memory_repositories()
    first, second = identity(), identity()
    for who in (first, second):
        register_with(lightning, repos, who)
    lightning.capacity_sat = 10_000  # below the t1 minimum
    lightning.refused = {ln_pubkey_of(first)}
    clock = StepClock(NOW + 6 * 3600)
    registrar = Registrar(repos, lightning, clock, ServiceConfig(),  # type: ignore[arg-type]
                          coordinator_key=COORDINATOR_KEY_HEX)  # fmt: skip
    with caplog.at_level("WARNING", logger="owm_adapters.services.coordinator.registrar"):
        for _ in range(3):
            registrar.reverify_stakes()
    (line,) = caplog.records  # three passes, one line while the failure stays the same
    assert first.node_id in line.getMessage() and "does not parse" in line.getMessage()
    failed = repos.stakes.get(first.public_key_hex)
    degraded = repos.stakes.get(second.public_key_hex)
    assert failed is not None and failed.status is StakeStatus.ACTIVE
    assert degraded is not None and degraded.status is StakeStatus.DEGRADED


def test_a_long_stake_pass_holds_up_no_market_tick(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pass over thousands of nodes takes a while (bench/stake_recheck.py); the market's
    ticks (dispatch sweeps, time-outs, reveal windows) go on meanwhile."""
    in_pass, release, ticks = threading.Event(), threading.Event(), []
    tick = Market.tick

    def slow_pass(self: Registrar) -> list[object]:
        in_pass.set()
        release.wait(10)
        return []

    def counted_tick(self: Market, **options: bool) -> object:
        ticks.append(time.monotonic())
        return tick(self, **options)

    monkeypatch.setattr(Registrar, "reverify_stakes", slow_pass)
    monkeypatch.setattr(Market, "tick", counted_tick)
    coordinator = start_coordinator(
        memory_repositories(), SimLedger(tmp_path / "ln.sqlite3"), StepClock()
    )
    try:
        assert in_pass.wait(5)
        before = len(ticks)
        time.sleep(0.5)  # ten ticks of 0.05 s
        assert len(ticks) - before >= 3
    finally:
        release.set()
        coordinator.stop()


@pytest.mark.parametrize("lightning", ["embedded", "lnd"])
def test_the_stake_pass_bench_rechecks_every_node_and_ends_with_its_figures(
    lightning: str,
) -> None:
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "bench/stake_recheck.py", "--nodes", "30", "--lightning", lightning],
        cwd=root, env={**os.environ, "PYTHONPATH": str(root)}, capture_output=True, text=True,
        timeout=120, check=True,
    )  # fmt: skip
    figures = dict(pair.split("=") for pair in done.stdout.strip().splitlines()[-1].split())
    assert figures["nodes"] == "30" and figures["lightning"] == lightning
    assert float(figures["pass_s"]) > 0 and float(figures["period_share"]) < 1
