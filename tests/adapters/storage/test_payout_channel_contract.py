"""The treasury's payout-channel openings: the in-memory twin, SQLite and PostgreSQL keep the
latest opening per node and add up the capacity opened since a time alike (SRS-LN-03).

Uses the repository contract's fixtures (``backend``, ``repos``), imported: each test's
``repos`` argument names that fixture (hence F811 off in this file).
"""
# ruff: noqa: F811

from __future__ import annotations

import attrs

from owm_core.payments.payout_channels import PayoutChannelOpening
from owm_core.ports.repositories import Repositories
from tests.adapters.storage.test_repositories_contract import (  # noqa: F401 (fixtures)
    backend,
    repos,
    sqlite_template,
)

T0 = 1_800_000_000


def test_the_latest_opening_per_node_replaces_the_earlier_one(repos: Repositories) -> None:
    openings = repos.payout_channels
    assert openings.get("node-a") is None
    first = PayoutChannelOpening("node-a", 500_000, T0)
    openings.put(first)
    assert openings.get("node-a") == first
    accepted = attrs.evolve(first, channel_point="ab" * 32 + ":1")
    openings.put(accepted)
    assert openings.get("node-a") == accepted
    later = PayoutChannelOpening("node-a", 300_000, T0 + 86_400)
    openings.put(later)
    assert openings.get("node-a") == later


def test_the_capacity_opened_since_a_time_counts_each_nodes_latest_opening(
    repos: Repositories,
) -> None:
    openings = repos.payout_channels
    assert openings.opened_since(0) == 0
    openings.put(PayoutChannelOpening("node-a", 500_000, T0))
    openings.put(PayoutChannelOpening("node-b", 200_000, T0 + 10))
    openings.put(PayoutChannelOpening("node-c", 2**40, T0 + 20))
    assert openings.opened_since(T0) == 700_000 + 2**40
    assert openings.opened_since(T0 + 1) == 200_000 + 2**40
    assert openings.opened_since(T0 + 21) == 0
