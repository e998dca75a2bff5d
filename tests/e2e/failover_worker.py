"""A coordinator process that takes payments on a replicated PostgreSQL, for the failover test.

``python -m tests.e2e.failover_worker DATA_DIR DATABASE_URL COUNT`` builds the coordinator
with ``build_coordinator`` (``[coordinator] database_url`` = DATABASE_URL, the embedded
Lightning ledger in DATA_DIR, FL off), sets up three nodes with channels from the treasury,
starts every worker (task market, payout outbox, slashing, ...), then settles COUNT tasks, one
every ``PACE_S`` — a settlement is what the market produces when a task's result is verified
— handing each to the payout dispatcher as the market's settlement listener does. It prints
``settled TASK_ID`` per task and ``paid`` once every reward is paid, then exits 0; 3 if that
takes longer than ``DEADLINE_S``. Writing a settlement is retried while the store is
unavailable, as a client retries a refused request.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import attrs

from owm_adapters.bootstrap.coordinator import build_coordinator
from owm_adapters.bootstrap.lightning import embedded_ledger
from owm_adapters.bootstrap.settings import CoordinatorSettings
from owm_core.errors import StoreUnavailable
from owm_core.market.tasks import Settlement, SettlementKind, Task, TaskRequest, TaskState
from owm_core.nodes.tiers import Tier
from owm_core.payments.records import PaymentState
from owm_core.ports.repositories import Repositories
from tests.e2e.payout_worker import seed_paid_nodes

NODES = ("n1", "n2", "n3")
PACE_S = 0.1
DEADLINE_S = 180.0
CHANNEL_SAT = 10_000_000


def price_of(index: int) -> int:
    """The price (and, at reliability 1.0 without stake bonus, the reward) of task ``index``."""
    return 10_000 + index


def task_of(index: int) -> tuple[str, str]:
    """Task ``index``'s id and the alias of the node that earned it."""
    return f"failover-{index}:0", NODES[index % len(NODES)]


def _until_stored(action: object, what: str) -> None:
    """Run ``action`` until the store takes it (a failover may be under way)."""
    while True:
        try:
            action()  # type: ignore[operator]
            return
        except StoreUnavailable as exc:
            print(f"retrying {what}: {exc.message}", flush=True)
            time.sleep(0.2)


def _seed_nodes(store: Repositories, settings: CoordinatorSettings) -> None:
    ledger = embedded_ledger(settings)
    treasury = ledger.add_node(settings.lightning.treasury_alias)
    seed_paid_nodes(store, ledger, treasury, NODES, int(time.time()), CHANNEL_SAT)


def _settle(store: Repositories, index: int) -> None:
    """Store task ``index`` as settled (once: a commit whose outcome was unknown is found)."""
    task_id, alias = task_of(index)
    if store.tasks.get(task_id) is not None:
        return
    request = TaskRequest(task_id, "inference", "owm.inference.text", 1, Tier.T1, 0, 0, False,
                          price_of(index))  # fmt: skip
    with store.atomic():
        store.tasks.add(Task(request))
        store.tasks.save(attrs.evolve(
            Task(request), state=TaskState.SETTLED, node_id=f"node-{alias}",
            price_msat=price_of(index),
        ))  # fmt: skip


def main(data_dir: Path, url: str, count: int) -> int:
    """Settle and pay ``count`` tasks through a bootstrap-built coordinator on ``url``."""
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # fmt: skip
    base = CoordinatorSettings()
    settings = attrs.evolve(
        base,
        coordinator=attrs.evolve(base.coordinator, data_dir=str(data_dir), database_url=url),
        fl=attrs.evolve(base.fl, enabled=False),
    )
    coordinator = build_coordinator(settings, payout_sweep_s=0.2)
    store = coordinator.store
    assert coordinator.payouts is not None
    _until_stored(lambda: _seed_nodes(store, settings), "the nodes")
    deadline = time.monotonic() + DEADLINE_S
    with coordinator.running():
        for index in range(count):
            _until_stored(lambda i=index: _settle(store, i), f"task {index}")
            task_id, alias = task_of(index)
            coordinator.payouts.on_settlement(
                Settlement(task_id, f"node-{alias}", SettlementKind.SETTLE, price_of(index))
            )
            print(f"settled {task_id}", flush=True)
            time.sleep(PACE_S)
        while time.monotonic() < deadline:
            try:
                if len(store.payments.with_state(PaymentState.SUCCEEDED)) >= count:
                    print("paid", flush=True)
                    return 0
            except StoreUnavailable:
                pass
            time.sleep(0.2)
    return 3


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])))
