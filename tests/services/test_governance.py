"""The governance service: signed statements, roles, the log, and the treasury's PSBT flow."""

from __future__ import annotations

from pathlib import Path

import pytest
from embit.psbt import PSBT

from owm_adapters.treasury.wallet import sign_with_key
from owm_core.coordination.governance_log import verify_log
from owm_core.errors import (
    InvalidValue,
    PolicyViolation,
    RateLimited,
    ReplayRejected,
    RoleRequired,
    SignatureInvalid,
)
from owm_core.governance.proposals import ProposalStatus
from owm_core.identity.envelopes import Envelope
from owm_core.identity.keys import Identity
from tests.governance_keys import HOLDER_IDS, HOLDER_SECRETS, MAINTAINERS, STRANGER, statement
from tests.services.governance_world import (
    COORDINATOR,
    DAY,
    PAYEE,
    GovernanceWorld,
    governance_world,
)

ALICE = MAINTAINERS[0]


@pytest.fixture
def world(tmp_path: Path) -> GovernanceWorld:
    return governance_world(tmp_path)


def treasury_proposal(world: GovernanceWorld, amount: int = 20_000_000) -> str:
    receipt = world.act(
        ALICE, "propose", title="Pay the auditors", description="An audit of the treasury.",
        type="treasury", implementation_plan="Pay on delivery.", requested_sat=amount,
        payout_address=PAYEE,
    )  # fmt: skip
    return receipt.proposal.proposal_id


def accepted(world: GovernanceWorld, amount: int = 20_000_000, acks: int = 5) -> str:
    pid = treasury_proposal(world, amount)
    for holder in HOLDER_IDS[:acks]:
        world.act(holder, "ack", pid)
    world.clock.t += 14 * DAY
    world.act(ALICE, "close", pid, outcome="accepted")
    return pid


def test_a_large_treasury_proposal_goes_from_statement_to_broadcast_transaction(
    world: GovernanceWorld,
) -> None:
    pid = accepted(world)
    created = world.act(HOLDER_IDS[0], "psbt_create", pid)
    assert created.spend is not None
    unsigned = created.spend.psbt
    assert PSBT.from_base64(unsigned).tx.vout[0].value == 20_000_000
    for secret in HOLDER_SECRETS[1:4]:
        world.service.import_signed(pid, sign_with_key(unsigned, secret))
    done = world.act(MAINTAINERS[1], "execute", pid)
    assert done.proposal.status is ProposalStatus.EXECUTED
    txid = done.proposal.txid
    assert txid is not None and done.entry.detail["txid"] == txid
    assert world.store.proposals.get(pid).txid == txid  # type: ignore[union-attr]
    assert any(u.txid == txid for u in world.ledger.unspent(world.wallet.script_pubkey))
    log = world.service.log()
    assert [e.action for e in log] == (
        ["propose"] + ["ack"] * 5 + ["close", "psbt_create"] + ["psbt_sign"] * 3 + ["execute"]
    )
    assert verify_log(log, COORDINATOR.public_key_hex).ok


def test_a_psbt_waits_for_all_five_acknowledgements_above_a_tenth_of_a_bitcoin(
    world: GovernanceWorld,
) -> None:
    pid = accepted(world, acks=4)
    before = len(world.service.log())
    with pytest.raises(PolicyViolation, match="1 of 5 multisig holders have not acknowledged"):
        world.act(ALICE, "psbt_create", pid)
    assert world.service.spend(pid) is None
    assert len(world.service.log()) == before


def test_a_large_proposal_takes_fourteen_days_before_it_can_be_closed(
    world: GovernanceWorld,
) -> None:
    pid = treasury_proposal(world)
    world.clock.t += 7 * DAY
    with pytest.raises(Exception, match="runs until"):
        world.act(ALICE, "close", pid, outcome="accepted")
    assert world.store.proposals.get(pid).status is ProposalStatus.OPEN  # type: ignore[union-attr]


def test_two_holder_signatures_cannot_broadcast_a_spend_over_a_hundredth_of_a_bitcoin(
    world: GovernanceWorld,
) -> None:
    pid = accepted(world)
    unsigned = world.act(ALICE, "psbt_create", pid).spend.psbt  # type: ignore[union-attr]
    for secret in HOLDER_SECRETS[:2]:
        world.service.import_signed(pid, sign_with_key(unsigned, secret))
    with pytest.raises(PolicyViolation, match="2 of the 3"):
        world.act(ALICE, "execute", pid)
    assert world.store.proposals.get(pid).status is ProposalStatus.ACCEPTED  # type: ignore[union-attr]
    assert len(world.ledger.unspent(world.wallet.script_pubkey)) == 1


def test_only_maintainers_extend_and_close_and_only_holders_acknowledge(
    world: GovernanceWorld,
) -> None:
    pid = treasury_proposal(world)
    with pytest.raises(RoleRequired, match="maintainer"):
        world.act(HOLDER_IDS[0], "extend", pid, deadline_at=world.clock.t + 20 * DAY)
    with pytest.raises(RoleRequired, match="holder"):
        world.act(ALICE, "ack", pid)
    extended = world.act(ALICE, "extend", pid, deadline_at=world.clock.t + 21 * DAY)
    assert extended.proposal.comment_deadline_at == world.clock.t + 21 * DAY
    with pytest.raises(PolicyViolation, match="21 days"):
        world.act(ALICE, "extend", pid, deadline_at=world.clock.t + 22 * DAY)


def test_a_stranger_who_is_no_registered_node_cannot_sign_statements(
    world: GovernanceWorld,
) -> None:
    with pytest.raises(RoleRequired, match="registered node"):
        world.act(STRANGER, "propose", title="t", description="d", type="policy",
                  implementation_plan="p")  # fmt: skip
    assert world.service.log() == []


def test_a_replayed_statement_is_refused_and_logged_once(world: GovernanceWorld) -> None:
    pid = treasury_proposal(world)
    ack = statement(HOLDER_IDS[0], "ack", pid, world.clock.t)
    world.service.submit(ack)
    with pytest.raises(ReplayRejected, match="accepted before"):
        world.service.submit(ack)
    assert [e.action for e in world.service.log()] == ["propose", "ack"]


def test_a_statement_addressed_to_another_coordinator_is_refused_and_not_logged(
    world: GovernanceWorld,
) -> None:
    """A statement read from another network's public log, replayed while fresh, is not
    taken here (SRS-SEC-03)."""
    pid = treasury_proposal(world)
    testnet = Identity.from_seed(b"\x34" * 32).public_key_hex
    with pytest.raises(InvalidValue, match="addressed to coordinator") as refused:
        world.service.submit(statement(HOLDER_IDS[0], "ack", pid, world.clock.t, to=testnet))
    assert refused.value.field == "body.coordinator"
    assert [e.action for e in world.service.log()] == ["propose"]


def test_a_stale_or_forged_statement_is_refused(world: GovernanceWorld) -> None:
    pid = treasury_proposal(world)
    old = statement(HOLDER_IDS[0], "ack", pid, world.clock.t - 3_600)
    with pytest.raises(ReplayRejected, match="more than 300 s"):
        world.service.submit(old)
    fresh = statement(HOLDER_IDS[0], "ack", pid, world.clock.t)
    forged = Envelope(**{**fresh.unsigned(), "signer": HOLDER_IDS[1].public_key_hex,
                         "signature": fresh.signature})  # fmt: skip
    with pytest.raises(SignatureInvalid):
        world.service.submit(forged)
    assert len(world.service.log()) == 1


def test_bad_arguments_are_refused_naming_the_field(world: GovernanceWorld) -> None:
    with pytest.raises(InvalidValue) as refused:
        world.act(ALICE, "propose", title="t", description="d", type="treasury",
                  implementation_plan="p", requested_sat=5,
                  payout_address="bc1notanaddress1234")  # fmt: skip
    assert refused.value.field == "args.payout_address"
    with pytest.raises(InvalidValue) as refused:
        world.act(ALICE, "propose", title="", description="d", type="policy",
                  implementation_plan="p")  # fmt: skip
    assert refused.value.field == "args.title"
    with pytest.raises(InvalidValue) as refused:
        world.act(ALICE, "propose", title="t", description="d", type="policy",
                  implementation_plan="p", colour="red")  # fmt: skip
    assert refused.value.field == "args.colour"


def test_each_signer_is_rate_limited(tmp_path: Path) -> None:
    world = governance_world(tmp_path, per_signer=2)
    pid = treasury_proposal(world)
    world.act(ALICE, "comment", pid, text="first")
    with pytest.raises(RateLimited):
        world.act(ALICE, "comment", pid, text="second")
    world.act(MAINTAINERS[1], "comment", pid, text="another maintainer is not limited")
