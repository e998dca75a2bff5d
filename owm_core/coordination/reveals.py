"""Commit–reveal on the coordinator: a replica's result arrives in two signed phases.

A node that could read a sibling's output hash before sending its own would be paid without
working (SRS-SEC-11, data flow 3). So each assigned node first sends a signed
:class:`~owm_core.identity.envelopes.TaskCommitment` (the digest of
:func:`~owm_core.market.commit_reveal.commitment_digest`, no hash in the clear;
:func:`commit_result`), and only once every replica of its round has committed, or the
round's commit window has closed, its signed :class:`~owm_core.identity.envelopes.TaskProof`
with the salt and the output bytes, which are required (:func:`reveal_result`). The rules are
:class:`~owm_core.market.commit_reveal.CommitRound`'s; this module rebuilds a round from the
store at each call, so a coordinator restart mid-round loses nothing.

* A **round** is the set of replicas judged together: every replica of a redundant task, or one
  spot-checked replica (its ``:check`` re-execution is a round of its own).
* The **commit window** opens with the round's first commitment and lasts
  ``commit_window_s``; replicas nobody committed to when it closes are abandoned (no node is
  paid or penalised for them, :func:`~owm_core.market.tasks.abandon`).
* The **reveal window** opens with the reveals (the last commitment, or the commit window's
  close) and lasts ``reveal_window_s``; a committed replica that has not revealed by then is
  silent and fails like a wrong answer (:func:`~owm_core.market.tasks.fail_silent`).
* The **verdict** comes once no replica of the round is waiting for anything
  (:func:`advance_round`): majority of the revealed hashes (redundant) or the spot-check rule.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager

import attrs

from owm_core import fields
from owm_core.coordination.degradation import held, numbered, task_policy
from owm_core.coordination.tasks import (
    ProofOutcome,
    credit,
    replica_id,
    siblings,
    task_id_of,
)
from owm_core.coordination.wire import open_envelope
from owm_core.errors import (
    Conflict,
    DomainError,
    InvalidTransition,
    InvalidValue,
    NotFound,
    PolicyViolation,
    RevealsNotOpen,
    StoreUnavailable,
)
from owm_core.identity.envelopes import EnvelopeKind, TaskCommitment, TaskProof, open_body
from owm_core.market.commit_reveal import Commitment, CommitRound, RecordedCommitment, Reveal
from owm_core.market.redundancy import planned_policy, voters
from owm_core.market.tasks import (
    Settlement,
    Task,
    TaskState,
    Verdict,
    VerificationMode,
    VerificationPolicy,
    Verified,
    abandon,
    commit,
    complete,
    fail_silent,
    record_verdict,
    settle,
    spot_check_selected,
    submit,
    verify_outcome,
)
from owm_core.ports.stores import MarketStore

CHECK = "check"
REVEAL_RETRY_MS = 250
"""How long a node waits before it retries a reveal the commit phase still holds back."""
_WAITING = frozenset({TaskState.SUBMITTED, TaskState.TIMED_OUT})
_UNDECIDED = frozenset(
    {TaskState.SUBMITTED, TaskState.ASSIGNED, TaskState.TIMED_OUT, TaskState.COMMITTED}
)


@attrs.frozen
class RevealWindows:
    """How long a round's commit and reveal phases stay open (seconds, from ``[tasks]``)."""

    commit_window_s: int = attrs.field(default=600, validator=fields.integer(1, 86_400))
    reveal_window_s: int = attrs.field(default=120, validator=fields.integer(1, 86_400))
    check_wait_s: int = attrs.field(default=3_600, validator=fields.integer(minimum=1))
    """How long a spot check's re-execution waits for a node (``[tasks] queue_timeout_s``)
    before it is dropped and the replica judged on its own (:mod:`~owm_core.market.endings`)."""


@attrs.frozen
class CommitOutcome:
    """A stored commitment: the replica (now committed) and whether reveals are open."""

    task: Task
    reveals_open: bool
    retry_after_ms: int


def round_id_of(replica: str, policy: VerificationPolicy) -> str:
    """The round a replica belongs to: its task (redundant) or the replica itself (spot check)."""
    return task_id_of(replica) if policy.mode is VerificationMode.REDUNDANT else replica


def _round_replicas(repositories: MarketStore, round_id: str) -> list[Task]:
    if ":" in round_id:  # a spot-checked replica is a round of its own
        task = repositories.tasks.get(round_id)
        return [] if task is None else [task]
    return siblings(repositories, round_id)


def _round(
    round_id: str, replicas: Sequence[Task], records: Sequence[RecordedCommitment], now: int,
    windows: RevealWindows,
) -> CommitRound:
    """The :class:`CommitRound` the store describes (abandoned replicas are out of it)."""
    assignments = {r.task_id: r.node_id for r in replicas if r.node_id}
    first = min((rec.committed_at for rec in records), default=now)
    return CommitRound(
        task_id=round_id,
        assignments=assignments,
        commit_deadline=first + windows.commit_window_s,
        commitments={
            rec.commitment.replica_id: rec.commitment.digest
            for rec in records
            if assignments.get(rec.commitment.replica_id) == rec.commitment.node_id
        },
        revealed={
            r.task_id: r.output_hash
            for r in replicas
            if r.state is TaskState.COMPLETED and r.output_hash and r.node_id
        },
        waiting=sum(1 for r in replicas if r.state in _WAITING),
    )


def _reveals_opened_at(
    rnd: CommitRound, records: Sequence[RecordedCommitment], replicas: Sequence[Task]
) -> int:
    """When reveals opened (or will open at the latest): the last commitment if every replica
    committed before the commit window closed, else the window's close."""
    every = len(rnd.commitments) == len(rnd.assignments) == len(replicas)
    if every and not rnd.waiting:
        last = max((rec.committed_at for rec in records), default=rnd.commit_deadline)
        return min(last, rnd.commit_deadline)
    return rnd.commit_deadline


def commit_result(
    repositories: MarketStore,
    raw: bytes,
    now: int,
    policy: VerificationPolicy,
    windows: RevealWindows,
    *,
    audience: str,
) -> CommitOutcome:
    """Store the assigned node's signed commitment for its replica (phase one), signed for
    this coordinator (``audience``, its public key: SRS-SEC-03).

    Only the node the replica is assigned to may commit, once, before its assignment deadline
    and while the round's commit window is open (InvalidTransition otherwise); the same
    commitment sent again (a retry) is answered as before, another one is a Conflict. A digest
    equal to a sibling's is a copied commitment and refused (PolicyViolation): it could never
    be opened by this node anyway, since the digest binds the replica and the node ids.
    """
    envelope = open_envelope(raw, EnvelopeKind.TASK_COMMITMENT, "commitment_envelope", audience)
    body = open_body(envelope)
    assert isinstance(body, TaskCommitment)
    node_id = envelope.signer_node_id
    task = repositories.tasks.get(body.task_id)
    if task is None:
        raise NotFound(f"no task {body.task_id}")
    round_id = round_id_of(task.task_id, task_policy(repositories, task.task_id, policy))
    records = repositories.commitments.for_round(round_id)
    mine = Commitment(task.task_id, node_id, body.commitment)
    replicas = _round_replicas(repositories, round_id)
    if any(rec.commitment == mine for rec in records) and task.node_id == node_id:
        rnd = _round(round_id, replicas, records, now, windows)
        return _commit_outcome(task, rnd, now)
    if task.state is not TaskState.ASSIGNED or task.node_id != node_id:
        raise InvalidTransition(f"task {task.task_id} is not assigned to this node")
    if any(rec.commitment.digest == body.commitment for rec in records):
        raise PolicyViolation(f"the commitment for {task.task_id} copies another replica's")
    rnd = _round(round_id, replicas, records, now, windows).commit(mine, now)
    committed = commit(task, now)
    with repositories.atomic():
        repositories.commitments.lock_round(round_id)
        repositories.commitments.add(RecordedCommitment(round_id, mine, now))
        repositories.tasks.save(committed, expected_state=TaskState.ASSIGNED)
    return _commit_outcome(committed, rnd, now)


def _commit_outcome(task: Task, rnd: CommitRound, now: int) -> CommitOutcome:
    is_open = rnd.reveals_open(now)
    wait_ms = 0 if is_open else min(REVEAL_RETRY_MS, (rnd.commit_deadline - now) * 1000)
    return CommitOutcome(task, is_open, wait_ms)


def reveal_result(
    repositories: MarketStore,
    raw: bytes,
    salt: bytes,
    output: bytes,
    now: int,
    policy: VerificationPolicy,
    seed: bytes,
    windows: RevealWindows,
    *,
    audience: str,
) -> ProofOutcome:
    """Accept a replica's reveal (phase two): its signed proof (signed for this coordinator,
    ``audience``: SRS-SEC-03), the salt and the output bytes.

    The output is required (InvalidValue(``output``) when empty) and must hash to the proof's
    ``output_hash``; the salt and hash must open the node's own commitment (PolicyViolation);
    before the round's reveals open it is :class:`~owm_core.errors.RevealsNotOpen` (retry),
    after the reveal window InvalidTransition. Proof, output and completion are one atomic
    write, committed before this returns; then the round is judged if nothing else is
    awaited. The same proof sent again (a retry) returns the current state.
    """
    envelope = open_envelope(raw, EnvelopeKind.TASK_PROOF, "proof_envelope", audience)
    proof = open_body(envelope)
    assert isinstance(proof, TaskProof)
    node_id = envelope.signer_node_id
    if not isinstance(output, bytes) or not output:
        raise InvalidValue("output", "is required: a reveal carries the output bytes")
    task = repositories.tasks.get(proof.task_id)
    if task is None:
        raise NotFound(f"no task {proof.task_id}")
    stored = repositories.proofs.get(proof.task_id, node_id)
    if stored is not None:
        if stored.signature == envelope.signature:
            return ProofOutcome(task)
        raise Conflict(f"node already sent a different proof for {proof.task_id}")
    if task.node_id != node_id or task.state not in {TaskState.ASSIGNED, TaskState.COMMITTED}:
        raise InvalidTransition(f"task {proof.task_id} is not assigned to this node")
    if task.state is TaskState.ASSIGNED:
        raise InvalidTransition(f"task {proof.task_id}: commit first, then reveal")
    round_id = round_id_of(task.task_id, task_policy(repositories, task.task_id, policy))
    records = repositories.commitments.for_round(round_id)
    replicas = _round_replicas(repositories, round_id)
    rnd = _round(round_id, replicas, records, now, windows)
    if not rnd.reveals_open(now):
        wait_ms = min(REVEAL_RETRY_MS, max(1, (rnd.commit_deadline - now) * 1000))
        raise RevealsNotOpen(f"task {proof.task_id}: other replicas have not committed", wait_ms)
    if now > _reveals_opened_at(rnd, records, replicas) + windows.reveal_window_s:
        raise InvalidTransition(f"task {proof.task_id}: the reveal window has closed")
    rnd.reveal(Reveal(task.task_id, node_id, proof.output_hash, salt, output), now)
    done = complete(task, proof.output_hash, now)
    with repositories.atomic():
        repositories.commitments.lock_round(round_id)  # the last reveal sees the others
        repositories.proofs.add(envelope)
        repositories.task_outputs.put(proof.task_id, output)
        repositories.tasks.save(done, expected_state=TaskState.COMMITTED)
        judged = advance_round(repositories, round_id, now, policy, seed, windows)
    if judged is None:
        return ProofOutcome(done)
    current = repositories.tasks.get(done.task_id) or done
    return attrs.evolve(judged, task=current)


def due_cutoff(now: int, windows: RevealWindows) -> int:
    """The rounds whose first commitment arrived at or before this may have a window that has
    passed by ``now``: the ones :func:`close_due_rounds` is handed."""
    return now - min(windows.commit_window_s, windows.reveal_window_s)


def close_due_rounds(
    repositories: MarketStore,
    round_ids: Iterable[str],
    now: int,
    policy: VerificationPolicy,
    seed: bytes,
    windows: RevealWindows,
    *,
    failed: Callable[[str, DomainError], None] | None = None,
) -> list[ProofOutcome]:
    """Close the windows of ``round_ids`` (rounds started by :func:`due_cutoff`) that have
    passed and judge the rounds they complete (the tick).

    Each round closes in a transaction of its own. With ``failed``, a round that raises a
    DomainError is rolled back and handed to it with the error, and the other rounds still
    close, so one round that keeps failing never keeps the rest from being judged
    (:func:`skipping`); without it, the error is raised."""
    judged = []
    for round_id in round_ids:
        with skipping(round_id, failed):
            with repositories.atomic():
                repositories.commitments.lock_round(round_id)
                outcome = advance_round(repositories, round_id, now, policy, seed, windows)
            if outcome is not None:
                judged.append(outcome)
    return judged


@contextmanager
def skipping(row_id: str, failed: Callable[[str, DomainError], None] | None) -> Iterator[None]:
    """Hand a DomainError the block raises for ``row_id`` to ``failed`` instead of raising it
    (raised as ever without ``failed``): one row of a sweep whose store rows keep failing is
    skipped, the sweep goes on to the next. StoreUnavailable is raised all the same: an outage
    fails every row alike, and trying each (each call retrying its connection) would only hold
    the sweep up; the next sweep retries them all."""
    try:
        yield
    except StoreUnavailable:
        raise
    except DomainError as exc:
        if failed is None:
            raise
        failed(row_id, exc)


def advance_round(
    repositories: MarketStore,
    round_id: str,
    now: int,
    policy: VerificationPolicy,
    seed: bytes,
    windows: RevealWindows,
) -> ProofOutcome | None:
    """Apply the round's closed windows, then judge it if no replica awaits anything.

    After the commit window, replicas without a commitment are abandoned; after the reveal
    window, committed replicas that never revealed fail (silent). Returns the verdict's
    outcome, or None while the round goes on. Call inside ``repositories.atomic()``.
    """
    records = repositories.commitments.for_round(round_id)
    replicas = _round_replicas(repositories, round_id)
    if not records or not replicas:
        repositories.commitments.delete_round(round_id)
        return None
    rnd = _round(round_id, replicas, records, now, windows)
    reveals_open = rnd.reveals_open(now)
    silence = now > _reveals_opened_at(rnd, records, replicas) + windows.reveal_window_s
    current = []
    for replica in replicas:
        after = replica
        uncommitted = replica.task_id not in rnd.commitments
        if reveals_open and uncommitted and replica.state in _WAITING | {TaskState.ASSIGNED}:
            after = abandon(replica)
        elif silence and replica.state is TaskState.COMMITTED:
            after = fail_silent(replica)
        if after is not replica:
            repositories.tasks.save(after, expected_state=replica.state)
        current.append(after)
    if any(r.state in _UNDECIDED for r in current):
        return None
    if any(r.state not in {TaskState.COMPLETED, TaskState.FAILED, TaskState.FORFEITED}
           for r in current):
        repositories.commitments.delete_round(round_id)  # judged already
        return None
    judged_under = _round_policy(round_id, current, policy)
    outcome = _judge(
        repositories, round_id, current, judged_under, seed, now + windows.check_wait_s
    )
    repositories.commitments.delete_round(round_id)
    return outcome


def _round_policy(
    round_id: str, replicas: Sequence[Task], policy: VerificationPolicy
) -> VerificationPolicy:
    """The policy a round is judged under: a spot check for a one-replica round, else
    redundant over the voters (:func:`~owm_core.market.redundancy.voters`), SRS-PERF-07."""
    if ":" in round_id:
        return attrs.evolve(policy, mode=VerificationMode.SPOT_CHECK)
    planned = planned_policy(policy, max(1, len(numbered(replicas))))
    if planned.mode is not VerificationMode.REDUNDANT:
        return planned
    count = voters(planned, sum(1 for r in replicas if held(r)))
    floor = min(planned.redundancy_floor, count)
    return attrs.evolve(planned, redundancy=count, redundancy_floor=floor)


def _judge(
    repositories: MarketStore,
    round_id: str,
    replicas: Sequence[Task],
    policy: VerificationPolicy,
    seed: bytes,
    check_expires_at: int,
) -> ProofOutcome | None:
    revealed = [r for r in replicas if r.state is TaskState.COMPLETED]
    silent = [r for r in replicas if r.state is TaskState.FAILED]
    if policy.mode is VerificationMode.REDUNDANT:
        results = {r.node_id: r.output_hash for r in revealed if r.node_id and r.output_hash}
        verdict = verify_outcome(policy, round_id, results, seed=seed)
        judged = [(r, record_verdict(r, verdict)) for r in revealed]
        return _settle(repositories, [*judged, *((r, r) for r in silent)], verdict, replicas[0])
    (replica,) = replicas
    group = task_id_of(replica.task_id)
    if replica.task_id.endswith(":" + CHECK):
        return _judge_checked(repositories, group, replica, policy, seed)
    if replica.state is not TaskState.COMPLETED:  # silent (forfeits) or abandoned (nothing)
        return _settle(repositories, [(r, r) for r in silent], None, replica)
    assert replica.node_id and replica.output_hash
    if spot_check_selected(policy, group, seed):
        checker = attrs.evolve(
            submit(
                attrs.evolve(replica.request, task_id=replica_id(group, CHECK)),
                check_expires_at,
            ),
            tried_node_ids=(replica.node_id,),
        )
        repositories.tasks.add(checker)
        return None
    verdict = verify_outcome(policy, group, {replica.node_id: replica.output_hash}, seed=seed)
    return _settle(
        repositories, [(replica, record_verdict(replica, verdict))], verdict, replica
    )


def judge_without_check(
    repositories: MarketStore, group: str, policy: VerificationPolicy, seed: bytes
) -> ProofOutcome | None:
    """Judge the spot-checked replica of ``group`` on its own once its re-execution was
    dropped (no node took it in time, :mod:`owm_core.market.endings`): as one whose checker
    never delivered, SRS-PERF-07. None unless the check was dropped and the replica waits."""
    check = repositories.tasks.get(replica_id(group, CHECK))
    if check is None or check.state is not TaskState.FORFEITED:
        return None
    spot = attrs.evolve(policy, mode=VerificationMode.SPOT_CHECK)
    return _judge_checked(repositories, group, check, spot, seed)


def _judge_checked(
    repositories: MarketStore,
    group: str,
    check: Task,
    policy: VerificationPolicy,
    seed: bytes,
) -> ProofOutcome | None:
    """The spot check's re-execution is in: judge the main replica against it.

    A checker that never revealed (or was abandoned) leaves the main replica unchecked: it is
    judged on its own, as if it had not been drawn, and the silent checker forfeits.
    """
    main = repositories.tasks.get(replica_id(group, 0))
    if main is None or main.state is not TaskState.COMPLETED:
        return None
    assert main.node_id and main.output_hash
    if check.state is TaskState.COMPLETED:
        verdict = verify_outcome(
            policy, group, {main.node_id: main.output_hash}, seed=seed,
            reference_output_hash=check.output_hash,
        )
        trusted = Verified(check.output_hash or "", [check.node_id or ""])
        pairs = [(main, record_verdict(main, verdict)), (check, record_verdict(check, trusted))]
        return _settle(repositories, pairs, verdict, main)
    verdict = Verified(main.output_hash, [main.node_id])
    pairs = [(main, record_verdict(main, verdict))]
    if check.state is TaskState.FAILED:
        pairs.append((check, check))
    return _settle(repositories, pairs, verdict, main)


def _settle(
    repositories: MarketStore,
    judged: Sequence[tuple[Task, Task]],
    verdict: Verdict | None,
    fallback: Task,
) -> ProofOutcome:
    """Settle each judged replica (``after`` is verified or failed), credit its node, and say
    what happened; ``fallback`` is the outcome's replica when nothing was left to settle."""
    settlements: list[Settlement] = []
    last = fallback
    for before, after in judged:
        final, settlement = settle(after)
        repositories.tasks.save(final, expected_state=before.state)
        settlements.append(settlement)
        credit(repositories, settlement)
        last = final
    return ProofOutcome(last, tuple(settlements), verdict)
