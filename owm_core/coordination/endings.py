"""Every task ends: the replicas no node takes in time expire or are dropped, over the store.

The rule is :mod:`owm_core.market.endings` (SRS-COORD-02, SRS-PERF-07); this module applies it
to the stored replicas of each task, one transaction a task, so a coordinator restart in the
middle finds either the task as it was or the task ended, never half of it:

* :func:`end_stalled`: the market's tick, over a page of the replicas the store lists as
  waiting past their ``expires_at`` (the caller pages through them all, tick after tick);
* :func:`end_task`: one task, also ``overdue`` (past ``[funding] task_ttl_s``: every waiting
  replica counts as stalled), the escrow's backstop.

A spot check's re-execution that is dropped leaves its replica judged on its own in the same
transaction (:func:`~owm_core.coordination.reveals.judge_without_check`), so its node is paid
as for any settled task and the escrow can close.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import attrs

from owm_core.coordination.reveals import judge_without_check, skipping
from owm_core.coordination.tasks import ProofOutcome, siblings, task_id_of
from owm_core.errors import Conflict, DomainError
from owm_core.market.endings import plan_ending
from owm_core.market.tasks import Task, VerificationPolicy, abandon, expire
from owm_core.ports.stores import MarketStore


@attrs.frozen
class Ended:
    """What ending one task did: the replicas that ``expired`` (the task ended unrun), the
    ones ``dropped``, and the verdict a spot-checked replica got once its check was dropped."""

    task_id: str
    expired: tuple[Task, ...] = ()
    dropped: tuple[Task, ...] = ()
    outcome: ProofOutcome | None = None


def end_task(
    repositories: MarketStore,
    task_id: str,
    now: int,
    policy: VerificationPolicy,
    seed: bytes,
    *,
    overdue: bool = False,
) -> Ended | None:
    """Expire or drop the stalled replicas of ``task_id`` (:func:`~owm_core.market.endings.
    plan_ending`) in one transaction; None when nothing was due, or when another coordinator
    changed a replica meanwhile (the next call sees it as it is now)."""
    try:
        with repositories.atomic():
            repositories.commitments.lock_round(task_id)  # no verdict of it runs meanwhile
            replicas = {r.task_id: r for r in siblings(repositories, task_id)}
            ending = plan_ending(list(replicas.values()), now, overdue=overdue)
            if not ending:
                return None
            expired = tuple(_saved(repositories, replicas[i], expire) for i in ending.expire)
            dropped = tuple(_saved(repositories, replicas[i], abandon) for i in ending.drop)
            outcome = judge_without_check(repositories, task_id, policy, seed)
    except Conflict:
        return None
    return Ended(task_id, expired, dropped, outcome)


def _saved(repositories: MarketStore, replica: Task, step: Callable[[Task], Task]) -> Task:
    after = step(replica)
    repositories.tasks.save(after, expected_state=replica.state)
    return after


def end_stalled(
    repositories: MarketStore,
    stalled: Iterable[Task],
    now: int,
    policy: VerificationPolicy,
    seed: bytes,
    *,
    failed: Callable[[str, DomainError], None] | None = None,
) -> list[Ended]:
    """End the task of every replica in ``stalled`` (replicas the store listed as waiting past
    their ``expires_at``, SRS-PERF-07); what each ending did.

    With ``failed``, a task whose ending raises a DomainError is rolled back and handed to it
    with the error, and the other tasks still end (:func:`~owm_core.coordination.reveals.
    skipping`); without it, the error is raised."""
    ended: list[Ended] = []
    seen: set[str] = set()
    for replica in stalled:
        group = task_id_of(replica.task_id)
        if group in seen:
            continue
        seen.add(group)
        with skipping(group, failed):
            done = end_task(repositories, group, now, policy, seed)
            if done is not None:
                ended.append(done)
    return ended
