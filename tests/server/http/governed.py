"""A coordinator API with governance roles and a funded devnet treasury, for API and CLI tests."""

from __future__ import annotations

from pathlib import Path

from owm_adapters.bootstrap.api import build_api
from owm_adapters.bootstrap.coordinator import build_coordinator
from owm_adapters.bootstrap.settings import CoordinatorSettings, GovernanceSection
from owm_adapters.lightning.embedded import SimLedger
from owm_adapters.services.api import ApiConfig, ApiServices
from owm_adapters.storage.memory import memory_repositories
from owm_core.ports.clock import Clock
from tests.governance_keys import COORDINATOR, HOLDERS, MAINTAINERS

PAYEE = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"


def governance_section(tmp_path: Path, per_hour: int = 20) -> GovernanceSection:
    """Two maintainers, five holders, an embedded ledger funded with 1 BTC."""
    return GovernanceSection(
        maintainer_keys=tuple(m.public_key_hex for m in MAINTAINERS),
        holder_statement_keys=tuple(h.statement_key for h in HOLDERS),
        holder_multisig_keys=tuple(h.multisig_key for h in HOLDERS),
        ledger_path=str(tmp_path / "treasury.sqlite3"),
        devnet_funding_sat=100_000_000, statements_per_hour=per_hour,
    )  # fmt: skip


def governed_services(tmp_path: Path, clock: Clock, per_hour: int = 20) -> ApiServices:
    """The API services of a coordinator with :func:`governance_section`, whose key is the
    one statements are addressed to by default (``tests.governance_keys.COORDINATOR``)."""
    ledger = SimLedger(tmp_path / "ln.sqlite3", clock=clock.now)
    settings = CoordinatorSettings(governance=governance_section(tmp_path, per_hour))
    coordinator = build_coordinator(
        settings, store=memory_repositories(), treasury=ledger.lightning(ledger.add_node("t")),
        clock=clock, slashing=False, coordinator_key=COORDINATOR,
    )  # fmt: skip
    return build_api(coordinator, l402_secret=b"\x11" * 32,
                     config=ApiConfig(cache_ttl_ms=0)).services  # fmt: skip
