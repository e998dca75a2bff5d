"""The governance log and treasury spend repositories: memory, SQLite and PostgreSQL alike."""

from __future__ import annotations

import attrs
import pytest
import sqlalchemy

from owm_core.coordination.governance_log import GovernanceLogEntry, append_to_log, verify_log
from owm_core.errors import Conflict
from owm_core.governance.proposals import ProposalType, submit_proposal
from owm_core.governance.treasury import TreasurySpend
from owm_core.identity.keys import Identity
from tests.adapters.storage import test_repositories_contract as contract
from tests.adapters.storage.test_repositories_contract import Backend
from tests.governance_keys import HOLDER_IDS, statement

pytestmark = pytest.mark.timeout(120)

backend = contract.backend
sqlite_template = contract.sqlite_template
sql_repos = contract.sql_repos

T0 = 1_800_000_000
COORDINATOR = Identity.from_seed(b"\x33" * 32)


def entry(previous: GovernanceLogEntry | None, i: int, signed: bool = True) -> GovernanceLogEntry:
    envelope = statement(HOLDER_IDS[i % 5], "ack", "prop_1", T0 + i) if signed else None
    actor = HOLDER_IDS[i % 5].public_key_hex if signed else "api:alice"
    return append_to_log(
        COORDINATOR, previous, action="ack", proposal_id="prop_1", actor=actor,
        statement=envelope, detail={"i": i}, at=T0 + i,
    )  # fmt: skip


def test_the_log_survives_a_reopen_and_still_verifies(backend: Backend) -> None:
    log = backend.repos.governance_log
    first = entry(None, 0)
    log.append(first)
    second = entry(first, 1, signed=False)
    log.append(second)
    again = backend.reopen().governance_log
    assert again.entries() == [first, second]
    assert again.latest() == second
    assert again.entries(1, 5) == [second]
    assert again.has_statement(first.statement_hash() or "")
    assert verify_log(again.entries(), COORDINATOR.public_key_hex).ok


def test_an_entry_off_the_chain_or_a_logged_statement_again_is_a_conflict(
    backend: Backend,
) -> None:
    log = backend.repos.governance_log
    first = entry(None, 0)
    log.append(first)
    with pytest.raises(Conflict):
        log.append(entry(None, 1))
    replay = append_to_log(
        COORDINATOR, first, action="ack", proposal_id="prop_1", actor=first.actor,
        statement=None, detail={}, at=T0 + 1,
    )  # fmt: skip
    with pytest.raises(Conflict, match="replay"):
        log.append(attrs.evolve(replay, statement=first.statement))
    assert log.entries() == [first]


def test_a_spend_is_replaced_until_it_is_broadcast(backend: Backend) -> None:
    spends = backend.repos.treasury_spends
    spend = TreasurySpend(proposal_id="prop_1", psbt="cHNidP8B", created_at=T0)
    spends.save(spend)
    signed = TreasurySpend("prop_1", "cHNidP8BAA==", frozenset({"02" + "a" * 64}), None, T0)
    spends.save(signed)
    assert backend.reopen().treasury_spends.get("prop_1") == signed
    done = TreasurySpend("prop_1", "cHNidP8BAA==", signed.signers, "b" * 64, T0)
    spends.save(done)
    with pytest.raises(Conflict, match="broadcast"):
        spends.save(spend)
    assert spends.get("prop_1") == done
    assert spends.get("prop_2") is None


def test_a_treasury_proposal_keeps_its_payout_address(backend: Backend) -> None:
    proposal = submit_proposal(
        proposal_id="prop_1", author="a", title="t", description="d",
        proposal_type=ProposalType.TREASURY, implementation_plan="p", now=T0,
        requested_sat=5, payout_address="bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080",
    )  # fmt: skip
    backend.repos.proposals.add(proposal)
    assert backend.reopen().proposals.get("prop_1") == proposal


def test_the_sql_log_refuses_update_and_delete_in_the_database(
    sql_repos: contract.SqlRepositories,
) -> None:
    sql_repos.governance_log.append(entry(None, 0))
    engine = sql_repos.database.engine
    for sql in ("UPDATE governance_log SET entry_index = 7", "DELETE FROM governance_log"):
        with pytest.raises(sqlalchemy.exc.DBAPIError), engine.begin() as conn:
            conn.execute(sqlalchemy.text(sql))
    assert len(sql_repos.governance_log.entries()) == 1
