"""Miners' FPPS credits: the same contract on the memory twin, SQLite and PostgreSQL, and
they survive a reopen (SRS-POOL-04/07)."""

from __future__ import annotations

import pytest

from owm_core.pool.fpps import FppsTerms, fresh_credit
from tests.adapters.storage import test_repositories_contract as contract
from tests.adapters.storage.test_repositories_contract import Backend

pytestmark = pytest.mark.timeout(120)

backend = contract.backend
sqlite_template = contract.sqlite_template

T0 = 1_800_000_000


def test_a_credit_with_its_carried_fraction_survives_a_reopen_and_is_replaced_in_place(
    backend: Backend,
) -> None:
    credits = backend.repos.miner_credits
    terms = FppsTerms(block_subsidy_sat=312_500_000, expected_fees_sat=0, network_difficulty=10**12)
    first, _ = fresh_credit("n" + "1" * 40, T0).add_share(terms, 3, T0)
    credits.put(first)
    assert backend.reopen().miner_credits.get(first.miner_id) == first
    second, msat = first.add_share(terms, 1, T0 + 5)
    credits.put(second)
    again = backend.reopen().miner_credits
    assert again.get(first.miner_id) == second
    assert (first.credited_msat, msat, second.credited_msat) == (0, 1, 1)  # 0.75 + 0.25 msat
    assert again.list() == [second]
    assert again.get("n" + "2" * 40) is None


def test_credits_list_by_miner_id_and_hold_regtest_sized_amounts(backend: Backend) -> None:
    credits = backend.repos.miner_credits
    for miner in ("nb", "na", "nc"):
        credits.put(fresh_credit(miner, T0))
    big = fresh_credit("nd", T0)
    credits.put(type(big)(big.miner_id, 10**18, "7/9", T0))
    assert [c.miner_id for c in backend.reopen().miner_credits.list()] == ["na", "nb", "nc", "nd"]
    assert backend.reopen().miner_credits.get("nd").credited_msat == 10**18  # type: ignore[union-attr]
    assert [c.miner_id for c in credits.list(limit=2)] == ["na", "nb"]
    assert [c.miner_id for c in credits.list(limit=2, after="nb")] == ["nc", "nd"]
    assert credits.list(after="nd") == []
