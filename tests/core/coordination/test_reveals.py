"""Commit–reveal on the coordinator (owm_core.coordination.reveals): results cannot be copied.

The attack of the finding: a lazy node learns a sibling's output hash and is paid without
working. Each test performs one way of trying it and checks that it fails with a clear error
and that the lazy node is never paid (SRS-SEC-11).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from owm_adapters.storage.memory import MemoryRepositories, memory_repositories
from owm_core.coordination.reveals import (
    RevealWindows,
    close_due_rounds,
    commit_result,
    due_cutoff,
    reveal_result,
)
from owm_core.coordination.tasks import (
    ProofOutcome,
    offer_of,
    plan_dispatch,
    submit_task,
    task_outcome,
)
from owm_core.errors import (
    Conflict,
    InvalidTransition,
    InvalidValue,
    PolicyViolation,
    RevealsNotOpen,
)
from owm_core.identity import envelopes
from owm_core.identity.envelopes import EnvelopeKind, TaskCommitment
from owm_core.identity.keys import Identity
from owm_core.market.tasks import (
    SettlementKind,
    TaskState,
    VerificationMode,
    VerificationPolicy,
)
from tests.core.coordination.test_coordination import MANIFEST, NOW, node_record, request
from tests.reveals import COORDINATOR_KEY_HEX, commitment_envelope, proof_envelope, salt_of

WINDOWS = RevealWindows(commit_window_s=60, reveal_window_s=30)
POLICY = VerificationPolicy(mode=VerificationMode.REDUNDANT, redundancy=3)
TRUTH = b'{"answer":42}'


def market(nodes: int, policy: VerificationPolicy = POLICY) -> tuple[
    MemoryRepositories, list[Identity], dict[str, str]
]:
    """A task dispatched to ``nodes`` nodes; ``node_id → replica id``."""
    repos = memory_repositories()
    who = [Identity.from_seed(os.urandom(32)) for _ in range(nodes)]
    for n in who:
        repos.nodes.add(node_record(n))
    replicas = submit_task(repos, request(), policy)
    offers = [offer_of(node_record(n), MANIFEST, ["inference"], 1_000) for n in who]
    assignments = plan_dispatch(repos, replicas, offers, NOW, 600)
    return repos, who, {a.node_id: a.task.task_id for a in assignments}


def commit(repos: MemoryRepositories, who: Identity, task_id: str, output: bytes,
           now: int = NOW) -> None:
    commit_result(repos, commitment_envelope(who, task_id, output, now), now, POLICY, WINDOWS,
                  audience=COORDINATOR_KEY_HEX)


def reveal(repos: MemoryRepositories, who: Identity, task_id: str, output: bytes,
           now: int = NOW, claimed: bytes | None = None) -> None:
    raw = proof_envelope(who, task_id, claimed if claimed is not None else output, now)
    reveal_result(repos, raw, salt_of(who.node_id, task_id), output, now, POLICY, b"s", WINDOWS,
                  audience=COORDINATOR_KEY_HEX)


def close_due(repos: MemoryRepositories, now: int, policy: VerificationPolicy, seed: bytes,
              windows: RevealWindows) -> list[ProofOutcome]:
    """The tick's closing over every round due by ``now``."""
    due = repos.commitments.rounds_started_by_after(due_cutoff(now, windows))
    return close_due_rounds(repos, due, now, policy, seed, windows)


def paid(repos: MemoryRepositories, replica: str) -> bool:
    task = repos.tasks.get(replica)
    return task is not None and task.state is TaskState.SETTLED


def test_a_reveal_before_every_replica_committed_is_refused_with_a_retry_hint() -> None:
    repos, (a, b, c), replica = market(3)
    commit(repos, a, replica[a.node_id], TRUTH)
    commit(repos, b, replica[b.node_id], TRUTH)

    with pytest.raises(RevealsNotOpen) as refused:
        reveal(repos, a, replica[a.node_id], TRUTH)

    assert refused.value.code == "reveals-not-open" and 0 < refused.value.retry_after_ms <= 250
    assert repos.tasks.get(replica[a.node_id]).state is TaskState.COMMITTED  # type: ignore[union-attr]
    commit(repos, c, replica[c.node_id], TRUTH)
    reveal(repos, a, replica[a.node_id], TRUTH)  # open now
    assert repos.tasks.get(replica[a.node_id]).state is TaskState.COMPLETED  # type: ignore[union-attr]


def test_a_reveal_without_output_bytes_is_refused_and_nothing_is_stored() -> None:
    repos, (a,), replica = market(1, VerificationPolicy(mode=VerificationMode.SPOT_CHECK,
                                                         spot_check_rate_ppm=0))
    policy = VerificationPolicy(mode=VerificationMode.SPOT_CHECK, spot_check_rate_ppm=0)
    rid = replica[a.node_id]
    commit_result(repos, commitment_envelope(a, rid, TRUTH, NOW), NOW, policy, WINDOWS,
                  audience=COORDINATOR_KEY_HEX)
    raw = proof_envelope(a, rid, TRUTH, NOW)

    with pytest.raises(InvalidValue) as refused:
        reveal_result(repos, raw, salt_of(a.node_id, rid), b"", NOW, policy, b"s", WINDOWS,
                      audience=COORDINATOR_KEY_HEX)

    assert refused.value.field == "output" and "required" in refused.value.reason
    assert repos.proofs.get(rid, a.node_id) is None
    assert repos.tasks.get(rid).state is TaskState.COMMITTED  # type: ignore[union-attr]


def test_a_result_sent_without_a_commitment_is_refused() -> None:
    repos, (a, _b, _c), replica = market(3)
    with pytest.raises(InvalidTransition, match="commit first"):
        reveal(repos, a, replica[a.node_id], TRUTH)
    assert repos.proofs.get(replica[a.node_id], a.node_id) is None


def test_a_copied_commitment_is_refused_and_the_copier_is_never_paid() -> None:
    repos, (a, b, lazy), replica = market(3)
    commit(repos, a, replica[a.node_id], TRUTH)
    (stored,) = [r for r in repos.commitments.for_round("job")]
    copied = envelopes.to_bytes(envelopes.seal(
        lazy, EnvelopeKind.TASK_COMMITMENT,
        TaskCommitment(task_id=replica[lazy.node_id], commitment=stored.commitment.digest),
        os.urandom(16), NOW, audience=COORDINATOR_KEY_HEX,
    ))

    with pytest.raises(PolicyViolation, match="copies"):
        commit_result(repos, copied, NOW, POLICY, WINDOWS, audience=COORDINATOR_KEY_HEX)

    commit(repos, b, replica[b.node_id], TRUTH)
    close_due(repos, NOW + WINDOWS.commit_window_s, POLICY, b"s", WINDOWS)
    for who in (a, b):
        reveal(repos, who, replica[who.node_id], TRUTH, now=NOW + WINDOWS.commit_window_s)
    assert paid(repos, replica[a.node_id]) and paid(repos, replica[b.node_id])
    assert not paid(repos, replica[lazy.node_id])
    assert repos.tasks.get(replica[lazy.node_id]).state is TaskState.FORFEITED  # type: ignore[union-attr]


def test_a_lazy_node_that_learns_the_hash_after_committing_cannot_open_its_commitment() -> None:
    repos, (a, b, lazy), replica = market(3)
    commit(repos, a, replica[a.node_id], TRUTH)
    commit(repos, b, replica[b.node_id], TRUTH)
    commit(repos, lazy, replica[lazy.node_id], b"a guess")  # committed before any reveal
    reveal(repos, a, replica[a.node_id], TRUTH)

    with pytest.raises(PolicyViolation, match="does not open"):
        reveal(repos, lazy, replica[lazy.node_id], TRUTH)  # the revealed truth, copied

    reveal(repos, b, replica[b.node_id], TRUTH)
    judged = close_due(repos, NOW + WINDOWS.reveal_window_s + 1, POLICY, b"s", WINDOWS)
    kinds = {s.node_id: s.kind for o in judged for s in o.settlements}
    assert kinds == {a.node_id: SettlementKind.SETTLE, b.node_id: SettlementKind.SETTLE,
                     lazy.node_id: SettlementKind.FORFEIT}


def test_knowing_the_hash_without_the_bytes_gets_a_node_nothing() -> None:
    repos, (a, b, lazy), replica = market(3)
    for who in (a, b, lazy):  # the lazy node even commits to the right hash (a leak)
        commit(repos, who, replica[who.node_id], TRUTH)

    with pytest.raises(InvalidValue) as refused:
        reveal(repos, lazy, replica[lazy.node_id], b"made up", claimed=TRUTH)

    assert refused.value.field == "output"
    assert repos.task_outputs.get(replica[lazy.node_id]) is None


def test_a_silent_node_forfeits_when_the_reveal_window_closes_and_the_others_are_judged() -> None:
    repos, (a, b, silent), replica = market(3)
    for who in (a, b, silent):
        commit(repos, who, replica[who.node_id], TRUTH)
    reveal(repos, a, replica[a.node_id], TRUTH)
    reveal(repos, b, replica[b.node_id], TRUTH)
    assert close_due(repos, NOW + WINDOWS.reveal_window_s, POLICY, b"s", WINDOWS) == []

    (judged,) = close_due(repos, NOW + WINDOWS.reveal_window_s + 1, POLICY, b"s", WINDOWS)

    kinds = {s.node_id: s.kind for s in judged.settlements}
    assert kinds[silent.node_id] is SettlementKind.FORFEIT
    assert kinds[a.node_id] is kinds[b.node_id] is SettlementKind.SETTLE
    assert list(repos.commitments.for_round("job")) == []
    with pytest.raises(InvalidTransition):  # too late now
        reveal(repos, silent, replica[silent.node_id], TRUTH, now=NOW + 100)


def test_replicas_nobody_committed_to_are_abandoned_when_the_commit_window_closes() -> None:
    repos, (a, b), replica = market(2)  # the third replica never finds a node
    commit(repos, a, replica[a.node_id], TRUTH)
    commit(repos, b, replica[b.node_id], TRUTH)
    with pytest.raises(RevealsNotOpen):
        reveal(repos, a, replica[a.node_id], TRUTH)
    late = NOW + WINDOWS.commit_window_s

    close_due(repos, late, POLICY, b"s", WINDOWS)
    reveal(repos, a, replica[a.node_id], TRUTH, now=late)
    reveal(repos, b, replica[b.node_id], TRUTH, now=late)

    states = sorted(r.state.value for r in repos.tasks.with_state(TaskState.SETTLED, 10))
    assert states == ["settled", "settled"]
    (abandoned,) = repos.tasks.with_state(TaskState.FORFEITED, 10)
    assert abandoned.node_id is None
    assert task_outcome([repos.tasks.get(f"job:{i}") for i in range(3)]) == "verified"  # type: ignore[misc]


def test_a_commitment_after_the_commit_window_closed_is_refused() -> None:
    repos, (a, b, _c), replica = market(3)
    commit(repos, a, replica[a.node_id], TRUTH)
    with pytest.raises(InvalidTransition, match="closed"):
        commit(repos, b, replica[b.node_id], TRUTH, now=NOW + WINDOWS.commit_window_s)


def test_the_same_commitment_again_is_a_retry_and_another_is_a_conflict() -> None:
    repos, (a, _b, _c), replica = market(3)
    raw = commitment_envelope(a, replica[a.node_id], TRUTH, NOW)
    first = commit_result(repos, raw, NOW, POLICY, WINDOWS, audience=COORDINATOR_KEY_HEX)
    again = commit_result(repos, raw, NOW, POLICY, WINDOWS, audience=COORDINATOR_KEY_HEX)
    assert first.task == again.task and not again.reveals_open
    with pytest.raises((Conflict, InvalidTransition)):
        commit(repos, a, replica[a.node_id], b"something else")


def test_only_the_assigned_node_may_commit_a_replica() -> None:
    repos, (a, b, _c), replica = market(3)
    with pytest.raises(InvalidTransition, match="not assigned"):
        commit(repos, b, replica[a.node_id], TRUTH)


LONG = RevealWindows(commit_window_s=60, reveal_window_s=120)
LAZY = st.sampled_from(["copy-commitment", "guess", "hash-without-bytes", "silent"])


@given(
    honest=st.integers(0, 5),
    lazy=st.lists(LAZY, min_size=1, max_size=4),
)
@settings(max_examples=60, deadline=None)
def test_a_lazy_node_is_never_paid(honest: int, lazy: list[str]) -> None:
    nodes = honest + len(lazy)
    policy = VerificationPolicy(mode=VerificationMode.REDUNDANT, redundancy=nodes)
    repos, who, replica = market(nodes, policy)
    good, bad = who[:honest], list(zip(who[honest:], lazy, strict=True))

    def attempt(use_case: Callable[..., object], *args: object) -> None:
        with contextlib.suppress(InvalidValue, InvalidTransition, PolicyViolation, Conflict):
            use_case(*args, audience=COORDINATOR_KEY_HEX)

    for n in good:
        raw = commitment_envelope(n, replica[n.node_id], TRUTH, NOW)
        commit_result(repos, raw, NOW, policy, LONG, audience=COORDINATOR_KEY_HEX)
    for n, how in bad:
        rid = replica[n.node_id]
        if how == "copy-commitment":  # a sibling's digest, from a leak
            if not good:
                continue  # nothing to copy: the lazy node sends nothing
            digest = repos.commitments.for_round("job")[0].commitment.digest
            body = TaskCommitment(task_id=rid, commitment=digest)
            raw = envelopes.to_bytes(envelopes.seal(
                n, EnvelopeKind.TASK_COMMITMENT, body, os.urandom(16), NOW,
                audience=COORDINATOR_KEY_HEX))
        else:  # a guess, or the right hash from a leak (without the bytes)
            guess = hashlib.sha256(rid.encode()).digest() if how == "guess" else TRUTH
            raw = commitment_envelope(n, rid, guess, NOW)
        attempt(commit_result, repos, raw, NOW, policy, LONG)
    opened = NOW + LONG.commit_window_s
    close_due(repos, opened, policy, b"s", LONG)
    for n in good:
        rid = replica[n.node_id]
        raw = proof_envelope(n, rid, TRUTH, opened)
        attempt(reveal_result, repos, raw, salt_of(n.node_id, rid), TRUTH, opened, policy,
                b"s", LONG)
    for n, how in bad:
        if how == "silent":
            continue
        rid = replica[n.node_id]
        output = b"" if how == "hash-without-bytes" else TRUTH  # copies the revealed truth
        raw = proof_envelope(n, rid, TRUTH, opened)
        attempt(reveal_result, repos, raw, salt_of(n.node_id, rid), output, opened, policy,
                b"s", LONG)
    close_due(repos, opened + LONG.reveal_window_s + 1, policy, b"s", LONG)

    for n, _how in bad:
        assert not paid(repos, replica[n.node_id])
    if 2 * honest > nodes:
        assert all(paid(repos, replica[n.node_id]) for n in good)
