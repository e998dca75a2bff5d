"""Every task ends: what happens to the replicas of a task that no node takes in time.

A client's escrow is held until every replica of its task has ended (settled, forfeited or
expired, :mod:`owm_core.market.funding`), so a replica that waits for a node forever would
hold the client's money forever. This module is the rule that prevents it (SRS-COORD-02 task
dispatch, SRS-PERF-07 graceful degradation, SRS-LN-04 nodes paid out of the escrow):

* A **waiting** replica (submitted or timed out) carries ``expires_at``: ``[tasks]
  queue_timeout_s`` after it began to wait (its task's submission, its node's time-out, or a
  spot check's draw of the ``:check`` re-execution). Past it, it is **stalled**.
* A task with a stalled replica and no **live** one (assigned, committed, completed or being
  judged: some node holds it or delivered it) **expires**: every waiting replica expires
  (:func:`~owm_core.market.tasks.expire`): nobody is paid, nobody is penalised, the whole
  escrow is refunded.
* A task with a stalled replica and a live one **drops** the stalled replicas
  (:func:`~owm_core.market.tasks.abandon`: no node held them, nobody is paid or penalised for
  them), exactly as a replica nobody committed to is dropped when its round's commit window
  closes; the live replicas are then judged as the task was planned, by the existing rules:
  a redundant round's majority is taken over the replicas some node held, never fewer than
  ``redundancy_floor`` (:func:`~owm_core.market.redundancy.voters`), and a spot-checked
  replica whose re-execution no node took is judged on its own, as one whose checker never
  delivered. Nodes whose results win are paid as for any settled task; the rest of the escrow
  is refunded.

Applied with ``overdue`` (the task is past ``[funding] task_ttl_s``), every waiting replica
counts as stalled, whatever its ``expires_at``: the backstop for replicas stored without one.

So a task reaches an end state at most ``assignment_timeout_s + commit_window_s +
reveal_window_s + queue_timeout_s`` after a replica of it was last handed to a node
(:func:`end_bound_s`). :func:`plan_ending` is pure: it reads replicas and says which to end.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from owm_core.errors import InvalidValue
from owm_core.market.tasks import ASSIGNABLE_STATES, Task, TaskState

LIVE_STATES = frozenset(
    {
        TaskState.ASSIGNED, TaskState.COMMITTED, TaskState.COMPLETED, TaskState.VERIFIED,
        TaskState.FAILED,
    }
)
"""States of a replica some node holds or delivered, whose verdict is still to come."""


def _ids(value: Sequence[str]) -> tuple[str, ...]:
    return tuple(sorted(value))


@attrs.frozen
class Ending:
    """What to do with a task's waiting replicas now: ``expire`` them (the task ends, fully
    refunded) or ``drop`` them (the live replicas are judged without them); both empty while
    no replica is stalled."""

    expire: tuple[str, ...] = attrs.field(default=(), converter=_ids)
    drop: tuple[str, ...] = attrs.field(default=(), converter=_ids)

    def __bool__(self) -> bool:
        return bool(self.expire or self.drop)


def stalled(replica: Task, now: int, *, overdue: bool = False) -> bool:
    """Whether ``replica`` waits for a node past its ``expires_at`` (strictly, as the store's
    expiry query), or at all once its task is ``overdue``."""
    if replica.state not in ASSIGNABLE_STATES:
        return False
    if overdue:
        return True
    return replica.expires_at is not None and replica.expires_at < now


def plan_ending(replicas: Sequence[Task], now: int, *, overdue: bool = False) -> Ending:
    """Which of one task's ``replicas`` expire or are dropped at ``now`` (module docstring)."""
    if isinstance(now, bool) or not isinstance(now, int) or now < 0:
        raise InvalidValue("now", f"must be an integer ≥ 0, got {now!r}")
    late = [r.task_id for r in replicas if stalled(r, now, overdue=overdue)]
    if not late:
        return Ending()
    if any(r.state in LIVE_STATES for r in replicas):
        return Ending(drop=late)
    return Ending(expire=[r.task_id for r in replicas if r.state in ASSIGNABLE_STATES])


def end_bound_s(
    queue_timeout_s: int, assignment_timeout_s: int, commit_window_s: int, reveal_window_s: int
) -> int:
    """The longest a task goes on after a replica of it was last handed to a node (or after
    its submission, when none was): that node's time-out or its round's commit and reveal
    windows, then a queue time for whatever still waits (a timed-out replica, a spot check's
    re-execution) before it expires or is dropped."""
    return assignment_timeout_s + commit_window_s + reveal_window_s + queue_timeout_s
