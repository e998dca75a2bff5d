"""Commit–reveal: a replica's result cannot be copied, revealed early or altered."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from owm_core.errors import Conflict, DomainError, InvalidTransition, InvalidValue, PolicyViolation
from owm_core.market.commit_reveal import (
    Commitment,
    CommitRound,
    Reveal,
    commitment_digest,
)

T0 = 1_700_000_000
DEADLINE = T0 + 600
ASSIGNMENTS = {"task-1/r0": "node-a", "task-1/r1": "node-b", "task-1/r2": "node-c"}

outputs = st.binary(min_size=0, max_size=256)
salts = st.binary(min_size=16, max_size=64)


def h(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sealed(replica: str, output: bytes, salt: bytes) -> tuple[Commitment, Reveal]:
    node = ASSIGNMENTS[replica]
    reveal = Reveal(replica, node, h(output), salt, output)
    return Commitment(replica, node, commitment_digest(replica, node, h(output), salt)), reveal


def all_committed(out: dict[str, bytes], salt: bytes) -> tuple[CommitRound, dict[str, Reveal]]:
    phase = CommitRound("task-1", ASSIGNMENTS, DEADLINE)
    reveals = {}
    for replica in ASSIGNMENTS:
        commitment, reveals[replica] = sealed(replica, out[replica], salt)
        phase = phase.commit(commitment, T0)
    return phase, reveals


def test_honest_replicas_reveal_and_their_results_feed_verification() -> None:
    phase, reveals = all_committed({r: b"42" for r in ASSIGNMENTS}, b"s" * 16)
    for reveal in reveals.values():
        phase = phase.reveal(reveal, T0 + 1)
    assert phase.revealed_results() == {n: h(b"42") for n in ASSIGNMENTS.values()}
    assert list(phase.silent_nodes()) == []


@given(output=outputs, salt=salts)
def test_reveals_before_the_commit_phase_closes_are_refused(output: bytes, salt: bytes) -> None:
    phase = CommitRound("task-1", ASSIGNMENTS, DEADLINE)
    commitment, reveal = sealed("task-1/r0", output, salt)
    phase = phase.commit(commitment, T0)
    with pytest.raises(InvalidTransition):
        phase.reveal(reveal, DEADLINE - 1)
    assert phase.reveal(reveal, DEADLINE).revealed_results() == {"node-a": h(output)}


def test_a_commitment_after_the_window_or_a_second_one_is_refused() -> None:
    phase = CommitRound("task-1", ASSIGNMENTS, DEADLINE)
    commitment, _ = sealed("task-1/r0", b"x", b"s" * 16)
    with pytest.raises(InvalidTransition):
        phase.commit(commitment, DEADLINE)
    phase = phase.commit(commitment, T0)
    with pytest.raises(Conflict):
        phase.commit(commitment, T0)


def test_only_the_assigned_node_commits_or_reveals_for_a_replica() -> None:
    phase = CommitRound("task-1", ASSIGNMENTS, DEADLINE)
    with pytest.raises(PolicyViolation):
        phase.commit(Commitment("task-1/r0", "node-b", "0" * 64), T0)
    with pytest.raises(InvalidValue):
        phase.commit(Commitment("task-9/r0", "node-a", "0" * 64), T0)


@given(honest=outputs, lazy=outputs, salt_a=salts, salt_b=salts)
@settings(max_examples=200)
def test_a_node_that_copies_a_siblings_commitment_cannot_reveal_it(
    honest: bytes, lazy: bytes, salt_a: bytes, salt_b: bytes
) -> None:
    phase = CommitRound("task-1", ASSIGNMENTS, DEADLINE)
    mine, revealed = sealed("task-1/r0", honest, salt_a)
    phase = phase.commit(mine, T0)
    phase = phase.commit(Commitment("task-1/r1", "node-b", mine.digest), T0)
    phase = phase.reveal(revealed, DEADLINE)
    # Even with the sibling's opening (hash, salt, bytes) in hand, the copy opens nothing.
    for output, salt in ((honest, salt_a), (lazy, salt_b)):
        with pytest.raises(PolicyViolation):
            phase.reveal(Reveal("task-1/r1", "node-b", h(output), salt, output), DEADLINE)


@given(honest=outputs, lazy=outputs, salt=salts)
@settings(max_examples=200)
def test_a_node_that_copies_a_siblings_output_hash_cannot_back_it_with_bytes(
    honest: bytes, lazy: bytes, salt: bytes
) -> None:
    assume(h(honest) != h(lazy))
    phase = CommitRound("task-1", ASSIGNMENTS, DEADLINE)
    phase = phase.commit(sealed("task-1/r0", honest, salt)[0], T0)
    copied = Commitment(
        "task-1/r1", "node-b", commitment_digest("task-1/r1", "node-b", h(honest), salt)
    )
    phase = phase.commit(copied, T0)
    with pytest.raises(InvalidValue) as err:
        phase.reveal(Reveal("task-1/r1", "node-b", h(honest), salt, lazy), DEADLINE)
    assert err.value.field == "output"


@given(output=outputs.filter(bool), salt=salts, data=st.data())
@settings(max_examples=200)
def test_any_bit_flip_in_the_output_or_the_salt_fails_the_reveal(
    output: bytes, salt: bytes, data: st.DataObject
) -> None:
    phase, _ = all_committed({r: output for r in ASSIGNMENTS}, salt)
    bit = data.draw(st.integers(0, 8 * len(output) - 1))
    flipped_output = bytearray(output)
    flipped_output[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(DomainError):
        phase.reveal(
            Reveal("task-1/r0", "node-a", h(output), salt, bytes(flipped_output)), DEADLINE
        )
    bit = data.draw(st.integers(0, 8 * len(salt) - 1))
    flipped_salt = bytearray(salt)
    flipped_salt[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(PolicyViolation):
        phase.reveal(
            Reveal("task-1/r0", "node-a", h(output), bytes(flipped_salt), output), DEADLINE
        )


def test_a_replica_that_never_committed_cannot_reveal_and_stays_silent() -> None:
    phase = CommitRound("task-1", ASSIGNMENTS, DEADLINE)
    phase = phase.commit(sealed("task-1/r0", b"x", b"s" * 16)[0], T0)
    with pytest.raises(InvalidTransition):
        phase.reveal(sealed("task-1/r1", b"x", b"s" * 16)[1], DEADLINE)
    assert list(phase.silent_nodes()) == ["node-a", "node-b", "node-c"]


def test_a_short_salt_is_refused() -> None:
    with pytest.raises(InvalidValue):
        Reveal("r", "n", h(b""), b"short", b"")
