"""Anyone can check a reversal entry of the public slashing log against the maintainers'
statements behind it (docs/slashing.md, "Checking a reversal's statements"; SRS-STAKE-06,
SRS-SEC-14, SRS-LN-13): tampering with, dropping, re-signing or swapping a statement, or
changing the entry's hash, is found."""

from __future__ import annotations

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st

from owm_core.identity.envelopes import Envelope, EnvelopeKind, SlashingReversal, seal
from owm_core.identity.keys import Identity
from owm_core.nodes.tiers import Tier
from owm_core.stake.reversals import (
    ReversalCase,
    authorise,
    reversal_entry,
    statements_hash,
    statements_problem,
    verify_reversal_statements,
)
from owm_core.stake.slashing import (
    SlashingDecision,
    SlashingLogRecord,
    SlashingReason,
    SlashingReversalEntry,
    append_to_log,
    verify_log,
)
from tests.unbound import unbound

T0 = 1_800_000_000
COORDINATOR = Identity.from_seed(b"\x11" * 32)
KEY = COORDINATOR.public_key_hex
KEYS = [Identity.from_seed(bytes([0x60 + i]) * 32) for i in range(5)]
MAINTAINERS = KEYS[:3]
STRANGER = KEYS[4]
MAINTAINER_KEYS = frozenset(m.public_key_hex for m in MAINTAINERS)
NODE = Identity.from_seed(b"\x21" * 32).node_id
OTHER = Identity.from_seed(b"\x22" * 32).node_id


def statement(key: Identity, index: int = 0, node: str = NODE, nonce: int = 1) -> Envelope:
    body = SlashingReversal(log_index=index, node_id=node)
    return seal(key, EnvelopeKind.SLASHING_REVERSAL, body, bytes([nonce]) * 16, T0 + 50,
                audience=KEY)


def reversed_log(
    signers: list[Identity] | None = None,
    stored: list[Envelope] | None = None,
    configured: frozenset[str] = MAINTAINER_KEYS,
) -> tuple[list[SlashingLogRecord], tuple[Envelope, ...]]:
    """Entry 0 slashes NODE (tier 1: any two maintainers may reverse), entry 1 reverses it on
    the statements of ``signers`` (plus those ``stored``); with the statements behind entry 1."""
    decision = SlashingDecision(
        node_id=NODE, channel_id="ab" * 32 + ":0", tier=Tier.T1,
        reason=SlashingReason.FAKE_PROOF, evidence_hash="cd" * 32, decided_at=T0,
        supporters=("a", "b", "c"),
    )  # fmt: skip
    first = append_to_log(COORDINATOR, None, decision)
    case = ReversalCase(log=[first], maintainer_keys=configured, acknowledged_by=frozenset(),
                        coordinator_key=KEY)
    sent = [statement(k) for k in (signers or MAINTAINERS[:2])] + (stored or [])
    authorisation = authorise(case, 0, NODE, sent)
    entry = reversal_entry(COORDINATOR, first, authorisation, T0 + 100)
    return [first, entry], authorisation.statements


def reversal(log: list[SlashingLogRecord]) -> SlashingReversalEntry:
    entry = log[-1]
    assert isinstance(entry, SlashingReversalEntry)
    return entry


def test_the_statements_behind_a_reversal_check_out_against_its_entry() -> None:
    log, statements = reversed_log()
    entry = reversal(log)
    assert statements_hash(statements) == entry.statement_hash
    assert statements_problem(entry, statements, KEY) is None
    assert statements_problem(entry, statements, KEY, MAINTAINER_KEYS) is None
    assert verify_log(log, COORDINATOR.public_key_hex).ok
    assert verify_reversal_statements(log, {1: statements}, KEY, MAINTAINER_KEYS).ok


def test_statements_logged_before_envelopes_named_their_coordinator_still_back_the_entry() -> None:
    log, statements = reversed_log()
    entry = reversal(log)
    legacy = [unbound(s, next(k for k in KEYS if k.public_key_hex == s.signer)) for s in statements]
    relogged = attrs.evolve(entry, statement_hash=statements_hash(legacy))
    assert statements_problem(relogged, legacy, KEY, MAINTAINER_KEYS) is None
    elsewhere = Identity.from_seed(b"\x12" * 32).public_key_hex
    assert statements_problem(entry, statements, elsewhere) == (
        f"statement by {statements[0].signer[:16]}…: signature does not verify"
    )


def test_the_statements_the_coordinator_counts_are_exactly_the_ones_the_hash_covers() -> None:
    """Sent are also a second statement by each maintainer (counted once), a stranger's, one
    about another node and a forged one; the authorisation's statements (the ones the
    coordinator records with the entry and publishes) are one per maintainer and check out."""
    forged = attrs.evolve(statement(MAINTAINERS[0], nonce=9), signature="00" * 64)
    outsiders = [statement(STRANGER), forged, statement(MAINTAINERS[0], node=OTHER)]
    seconds = [statement(MAINTAINERS[1], nonce=7), statement(MAINTAINERS[0], nonce=8)]
    log, statements = reversed_log(stored=[*outsiders, *seconds])
    entry = reversal(log)
    assert [e.signer for e in statements] == list(entry.maintainers)
    assert not set(statements) & set(outsiders)
    assert statements_problem(entry, statements, KEY, MAINTAINER_KEYS) is None


def test_a_maintainers_other_statement_in_place_of_the_counted_one_is_found() -> None:
    """Why the coordinator records which statements it counted: the same maintainer's other
    statement about the same entry verifies, but does not hash to ``statement_hash``."""
    log, statements = reversed_log()
    entry = reversal(log)
    other = statement(MAINTAINERS[0], nonce=2)
    swapped = [other if e.signer == other.signer else e for e in statements]
    assert swapped != list(statements)
    problem = statements_problem(entry, swapped, KEY, MAINTAINER_KEYS)
    assert problem == "the statements do not hash to the entry's statement_hash"


@settings(max_examples=30, deadline=None)
@given(
    victim=st.integers(0, 1),
    field=st.sampled_from(["nonce", "issued_at", "body", "signer", "signature"]),
)
def test_tampering_with_any_statement_is_found(victim: int, field: str) -> None:
    log, statements = reversed_log()
    entry = reversal(log)
    original = statements[victim]
    changed = {
        "nonce": "ff" * 16,
        "issued_at": original.issued_at + 1,
        "body": {**original.body, "log_index": 1},
        "signer": STRANGER.public_key_hex,
        "signature": "ab" * 64,
    }[field]
    tampered = list(statements)
    tampered[victim] = attrs.evolve(original, **{field: changed})
    problem = statements_problem(entry, tampered, KEY, MAINTAINER_KEYS)
    assert problem is not None and "signature does not verify" in problem
    result = verify_reversal_statements(log, {1: tampered}, KEY)
    assert not result.ok and result.index == 1


@given(victim=st.integers(0, 1))
def test_dropping_a_statement_is_found(victim: int) -> None:
    log, statements = reversed_log()
    left = [s for i, s in enumerate(statements) if i != victim]
    problem = statements_problem(reversal(log), left, KEY)
    assert problem is not None and "signers are not the entry's maintainers" in problem
    assert statements_problem(reversal(log), [], KEY) is not None


@given(
    victim=st.integers(0, 1),
    signer=st.sampled_from([MAINTAINERS[2], STRANGER]),
    renamed=st.booleans(),
)
def test_a_statement_by_another_key_is_found(victim: int, signer: Identity, renamed: bool) -> None:
    """Swapping one statement for a valid one by another key (a third maintainer, a stranger)
    fails on the signers; naming another node instead fails on what it names."""
    log, statements = reversed_log()
    swapped = list(statements)
    swapped[victim] = statement(signer, node=OTHER if renamed else NODE)
    problem = statements_problem(reversal(log), swapped, KEY, MAINTAINER_KEYS)
    assert problem is not None
    expected = "is not a slashing_reversal of entry 0" if renamed else "signers are not"
    assert expected in problem


def test_the_same_statement_twice_instead_of_two_maintainers_is_found() -> None:
    log, statements = reversed_log()
    problem = statements_problem(reversal(log), [statements[0], statements[0]], KEY)
    assert problem is not None and "signers are not the entry's maintainers" in problem


@given(statement_hash=st.text("0123456789abcdef", min_size=64, max_size=64))
def test_an_entry_whose_statement_hash_was_changed_fails(statement_hash: str) -> None:
    log, statements = reversed_log()
    entry = reversal(log)
    if statement_hash == entry.statement_hash:
        return
    changed = attrs.evolve(entry, statement_hash=statement_hash)
    problem = statements_problem(changed, statements, KEY)
    assert problem == "the statements do not hash to the entry's statement_hash"


def test_signers_outside_the_given_maintainer_set_fail_only_when_the_set_is_given() -> None:
    """A coordinator that counted a stranger's key is caught by whoever knows the maintainers;
    without that set the verifier only knows the signers are the ones the entry names."""
    rogue = MAINTAINER_KEYS | {STRANGER.public_key_hex}
    log, statements = reversed_log([MAINTAINERS[0], STRANGER], configured=rogue)
    entry = reversal(log)
    assert statements_problem(entry, statements, KEY) is None
    assert statements_problem(entry, statements, KEY, rogue) is None
    problem = statements_problem(entry, statements, KEY, MAINTAINER_KEYS)
    assert problem == f"statement signer {STRANGER.public_key_hex} is not a maintainer key"


def test_a_reversal_without_its_statements_fails_naming_the_entry() -> None:
    log, _statements = reversed_log()
    result = verify_reversal_statements(log, {}, KEY)
    assert (result.ok, result.index, result.problem) == (
        False, 1, "its statements are not available",
    )
