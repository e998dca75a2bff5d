"""A coordinator's governance with a treasury on an embedded ledger, for service tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs

from owm_adapters.chain.local_ledger import LocalLedger
from owm_adapters.services.governance import GovernanceConfig, GovernanceService, Receipt
from owm_adapters.services.treasury import TreasuryDesk
from owm_adapters.storage.memory import memory_repositories
from owm_adapters.treasury.wallet import MultisigWallet
from owm_core.access.ratelimit import RateLimit
from owm_core.identity.keys import Identity
from owm_core.ports.repositories import Repositories
from tests.governance_keys import COORDINATOR, HOLDERS, ROLES, statement

T0 = 1_800_000_000
DAY = 86_400
PAYEE = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"


@attrs.define
class Clock:
    t: int = T0

    def now(self) -> int:
        return self.t

    def monotonic_ms(self) -> int:
        return self.t * 1000


@attrs.define
class GovernanceWorld:
    service: GovernanceService
    store: Repositories
    clock: Clock
    ledger: LocalLedger
    wallet: MultisigWallet

    def act(self, who: Identity, action: str, proposal_id: str = "", **args: Any) -> Receipt:
        """Sign and submit a statement now."""
        return self.service.submit(statement(who, action, proposal_id, self.clock.t, **args))


def governance_world(
    tmp_path: Path, store: Repositories | None = None, per_signer: int = 1_000,
    shared: bool = False,
) -> GovernanceWorld:
    store = store if store is not None else memory_repositories()
    clock = Clock()
    wallet = MultisigWallet(HOLDERS, "regtest")
    ledger = LocalLedger(tmp_path / "ledger.sqlite3")
    ledger.fund(wallet.script_pubkey, 100_000_000)
    desk = TreasuryDesk(wallet, ledger, store, fee_rate_sat_vb=2)
    config = GovernanceConfig(statements_per_signer=RateLimit(limit=per_signer, window_s=3_600))
    service = GovernanceService(store, clock, COORDINATOR, ROLES, desk, config, shared=shared)
    return GovernanceWorld(service, store, clock, ledger, wallet)
