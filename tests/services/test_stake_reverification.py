"""The coordinator's periodic stake re-verification (SRS-STAKE-02/03): a stake whose re-check
fails on its own is logged and retried next pass, and holds back none of the stakes due after
it (the rule itself: ``owm_core.coordination.stakes.reverify_due_stakes``)."""

from __future__ import annotations

import pytest

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
from tests.server.harness import StepClock


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
