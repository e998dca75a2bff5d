"""The devnet's GitHub traffic, played against the coordinator's real webhook intake, bounty
desk and contribution flow over the embedded ledger: each round's bounty and contribution
reward are paid through the outbox, and the App's comments say so."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from owm_adapters.devnet.github_traffic import BOUNTY_SAT, REPOSITORY, GitHubTraffic
from owm_adapters.github.rest import GitHubRest
from owm_adapters.lightning.embedded import SimLedger
from owm_adapters.provenance.embedded import EmbeddedProvenance
from owm_adapters.services.bounty_book import BountyBook
from owm_adapters.services.github_app import GitHubApp
from owm_adapters.services.github_bounties import BountyDesk
from owm_adapters.services.github_contributions import ContributionFlow, ContributionPorts
from owm_adapters.services.payouts import LedgerInvoiceSource, PayoutDispatcher
from owm_adapters.storage.content import MemoryContentStore
from owm_adapters.storage.memory import memory_repositories
from owm_core.errors import DomainError
from owm_core.identity.keys import Identity
from tests.github_app_support import SECRET, credentials, standin
from tests.server.harness import StepClock


def test_two_rounds_pay_two_bounties_and_two_contribution_rewards(tmp_path: Path) -> None:
    clock = StepClock(1_800_000_000)
    repos = memory_repositories()
    ledger = SimLedger(tmp_path / "ln.sqlite3", clock=clock.now)
    treasury, contributor = ledger.add_node("treasury"), ledger.add_node("contributor")
    ledger.open_channel(treasury, contributor, 10_000_000)
    dispatcher = PayoutDispatcher(repos, ledger.lightning("treasury"), LedgerInvoiceSource(ledger),
                                  clock)  # fmt: skip
    stamping = EmbeddedProvenance(tmp_path / "ots", interval_s=1)
    with standin(clock.now) as server:
        server.add_repository(REPOSITORY, installation_id=1)
        port = GitHubRest(server.url, credentials(), clock)
        content = MemoryContentStore()
        ports = ContributionPorts(port, content, stamping, Identity.from_seed(b"\x45" * 32),
                                  dispatcher)  # fmt: skip
        app = GitHubApp(repos, clock, SECRET, port, content=content, handlers=[
            BountyDesk(repos, BountyBook(repos, clock, ledger.lightning("treasury")), dispatcher,
                       port),
            ContributionFlow(repos, clock, ports, 100),
        ])  # fmt: skip

        def post(headers: dict[str, str], raw: bytes) -> int:
            try:
                app.receive(headers["X-Hub-Signature-256"], headers["X-GitHub-Delivery"],
                            headers["X-GitHub-Event"], raw)
            except DomainError:
                return 400
            return 202

        traffic = GitHubTraffic(server, post, SECRET, contributor)
        traffic.round()
        account = traffic.round()
        dispatcher.sweep()
    stamping.stop()
    dispatcher.stop()
    assert account["rounds"] == 2 and account["deliveries_refused"] == 0
    paid_bounties = [b for b in repos.bounties.list(None) if b.status.value == "paid"]
    assert len(paid_bounties) == 2 and all(b.amount_sat == BOUNTY_SAT for b in paid_bounties)
    rewards = [repos.payments.for_task(f"contribution:{REPOSITORY}#{n}") for n in (2, 4)]
    assert all(len(r) == 1 and r[0].settled for r in rewards)
    with sqlite3.connect(ledger.path) as db:
        held = db.execute("SELECT SUM(balance_b_msat) FROM sim_ln_channels WHERE node_b = ?",
                          (contributor,)).fetchone()[0]
    assert held == 2 * BOUNTY_SAT * 1_000 + sum(r[0].amount_msat for r in rewards)
    assert any("payment hash" in c for c in account["comments"])
