"""Payouts a payee was paid before a test starts, stored as the sweeps number them."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from owm_core.payments.records import PaymentState, RewardPayment
from owm_core.ports.repositories import Repositories


def settled_payouts(
    repos: Repositories, ids: Callable[[int], tuple[str, str]], count: int, amount_msat: int,
    at: int, node_id: str = "payee",
) -> list[RewardPayment]:
    """Store ``count`` settled payouts of ``amount_msat``, the ``n``-th under ``ids(n)``."""
    stored = []
    for n in range(count):
        payment_id, task_id = ids(n)
        stored.append(repos.payments.upsert(RewardPayment(
            payment_id=payment_id, task_id=task_id, node_id=node_id, amount_msat=amount_msat,
            payment_hash=hashlib.sha256(payment_id.encode()).hexdigest(), created_at=at,
            updated_at=at, state=PaymentState.SUCCEEDED, attempts=1,
        )))  # fmt: skip
    return stored
