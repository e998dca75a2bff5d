"""A coordinator's payment side as its own process, for the SIGKILL tests (test_payout_crash).

``python -m tests.e2e.payout_worker DIR`` opens the SQLite store and the embedded ledger in DIR,
sets up (idempotently) a treasury, three nodes with channels and six settled tasks, then runs
the dispatcher until every reward is paid, and exits 0. With ``OWM_TEST_CRASH_AT=NAME[:N]`` it
SIGKILLs itself the N-th time (default 1st) the dispatcher reaches checkpoint NAME.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import attrs

from owm_adapters.clock import SystemClock
from owm_adapters.lightning.embedded import SimLedger
from owm_adapters.services.payouts import LedgerInvoiceSource, PayoutDispatcher
from owm_adapters.storage.sql import open_repositories
from owm_core.market.tasks import Task, TaskRequest, TaskState
from owm_core.nodes.registry import LnNodeUri, Node
from owm_core.nodes.tiers import Tier
from owm_core.payments.records import PaymentState
from owm_core.ports.repositories import Repositories

NODES = ("n1", "n2", "n3")
TASKS = {f"job-{i}:0": (NODES[i % 3], 10_000 + 1_000 * i) for i in range(6)}
"""task id → (node alias, price msat); every node's reliability is 1.0, so reward = price."""


def _crash_hook(spec: str) -> object:
    name, _, nth = spec.partition(":")
    remaining = [int(nth or 1)]

    def checkpoint(point: str) -> None:
        if name and point == name:
            remaining[0] -= 1
            if remaining[0] == 0:
                os.kill(os.getpid(), signal.SIGKILL)

    return checkpoint


def seed_paid_nodes(
    repositories: Repositories, ledger: SimLedger, treasury: str, aliases: tuple[str, ...],
    now: int, channel_sat: int,
) -> None:
    """Register ``node-<alias>`` for each alias (reliability 1.0), each with a Lightning node
    in ``ledger`` and a channel from the treasury; idempotent."""
    for alias in aliases:
        ln = ledger.add_node(alias)
        if not ledger.channels_of(treasury, ln):
            ledger.open_channel(treasury, ln, channel_sat)
        if repositories.nodes.get(f"node-{alias}") is None:
            repositories.nodes.add(Node(
                node_id=f"node-{alias}", public_key=(alias.encode().hex() * 32)[:64],
                ln_node_uri=LnNodeUri(ln, "127.0.0.1", 9735), tier=Tier.T1, vram_mb=0,
                ram_mb=1, bandwidth_mbps=1, registered_at=now, last_heartbeat=now,
                reliability_ppm=1_000_000,
            ))


def main(directory: Path, crash_at: str = "") -> int:
    """Pay every reward of the fixed world in ``directory``; 0 once all are paid."""
    repositories = open_repositories(f"sqlite:///{directory / 'coordinator.sqlite3'}")
    ledger = SimLedger(directory / "lightning.sqlite3")
    treasury = ledger.add_node("treasury")
    clock = SystemClock()
    now = clock.now()
    seed_paid_nodes(repositories, ledger, treasury, NODES, now, 1_000_000)
    for task_id, (alias, price) in TASKS.items():
        if repositories.tasks.get(task_id) is None:
            request = TaskRequest(task_id, "inference", "owm.inference.text", 1, Tier.T1, 0, 0,
                                  False, price)
            with repositories.atomic():
                repositories.tasks.add(Task(request))
                repositories.tasks.save(attrs.evolve(
                    Task(request), state=TaskState.SETTLED, node_id=f"node-{alias}",
                    price_msat=price))
    dispatcher = PayoutDispatcher(
        repositories, ledger.lightning("treasury"), LedgerInvoiceSource(ledger), clock,
        checkpoint=_crash_hook(crash_at),  # type: ignore[arg-type]
    )
    dispatcher.reconcile()
    for _ in range(20):
        dispatcher.sweep()
        paid = repositories.payments.with_state(PaymentState.SUCCEEDED)
        if len(paid) == len(TASKS):
            repositories.close()
            return 0
    repositories.close()
    return 3


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), os.environ.get("OWM_TEST_CRASH_AT", "")))
