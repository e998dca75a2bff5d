"""Every task ends (owm_core.market.endings): replicas no node takes in time expire with their
task, or are dropped while a sibling runs, so no escrow is held forever (SRS-COORD-02,
SRS-PERF-07)."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from owm_core.errors import InvalidValue
from owm_core.market.endings import LIVE_STATES, Ending, end_bound_s, plan_ending, stalled
from owm_core.market.tasks import (
    ASSIGNABLE_STATES,
    TERMINAL_STATES,
    Task,
    TaskRequest,
    TaskState,
    abandon,
    expire,
)
from owm_core.nodes.tiers import Tier

NOW = 1_800_000_000
REQUEST = TaskRequest(
    task_id="job:0", task_type="inference", input_schema_id="s", input_schema_version=1,
    min_tier=Tier.T1, min_vram_mb=0, min_ram_mb=0, gpu_required=False, max_price_msat=10_000,
)


def replica(index: int | str, state: TaskState, expires_at: int | None = None) -> Task:
    node = "node-x" if state not in ASSIGNABLE_STATES | {TaskState.EXPIRED} else None
    request = attrs.evolve(REQUEST, task_id=f"job:{index}")
    return Task(request, state=state, node_id=node, expires_at=expires_at)


replica_states = st.sampled_from(list(TaskState))
expiries = st.one_of(st.none(), st.integers(NOW - 100, NOW + 100))
tasks = st.lists(st.tuples(replica_states, expiries), min_size=1, max_size=6).map(
    lambda rows: [replica(i, state, when) for i, (state, when) in enumerate(rows)]
)


def applied(replicas: list[Task], ending: Ending) -> list[Task]:
    """The replicas after the ending, as the store would hold them."""
    after = []
    for r in replicas:
        if r.task_id in ending.expire:
            after.append(expire(r))
        elif r.task_id in ending.drop:
            after.append(abandon(r))
        else:
            after.append(r)
    return after


@given(replicas=tasks, now=st.integers(NOW - 200, NOW + 200), overdue=st.booleans())
def test_only_stalled_waiting_replicas_are_ended_and_a_task_with_nothing_live_ends_whole(
    replicas: list[Task], now: int, overdue: bool
) -> None:
    ending = plan_ending(replicas, now, overdue=overdue)
    by_id = {r.task_id: r for r in replicas}
    assert not set(ending.expire) & set(ending.drop)
    for rid in (*ending.expire, *ending.drop):
        assert by_id[rid].state in ASSIGNABLE_STATES  # never a live or an ended replica
    late = {r.task_id for r in replicas if stalled(r, now, overdue=overdue)}
    assert late <= set(ending.expire) | set(ending.drop)  # no stalled replica is left waiting
    live = any(r.state in LIVE_STATES for r in replicas)
    assert not (ending.expire and live)  # a live replica's task is judged, not expired
    after = applied(replicas, ending)  # every move is one the lifecycle allows
    if late and not live:
        assert all(r.state in TERMINAL_STATES for r in after)  # the task ended, all refunded
    if overdue:
        assert not any(r.state in ASSIGNABLE_STATES for r in after)
    assert plan_ending(after, now, overdue=overdue) == Ending()  # applied once, done


def test_a_replica_is_stalled_only_strictly_after_its_expiry() -> None:
    waiting = replica(0, TaskState.SUBMITTED, NOW)
    assert not stalled(waiting, NOW)
    assert stalled(waiting, NOW + 1)
    assert not stalled(replica(0, TaskState.SUBMITTED), NOW + 10**6)  # no expiry: not by time
    assert stalled(replica(0, TaskState.SUBMITTED), NOW, overdue=True)
    assert not stalled(replica(0, TaskState.COMPLETED, NOW - 1), NOW, overdue=True)


def test_a_spot_check_no_node_took_is_dropped_while_its_replica_waits_for_the_verdict() -> None:
    main = replica(0, TaskState.COMPLETED, NOW - 500)
    check = replica("check", TaskState.SUBMITTED, NOW - 1)
    assert plan_ending([main, check], NOW) == Ending(drop=["job:check"])


def test_a_started_task_whose_node_timed_out_expires_whole_once_its_other_replicas_stall() -> None:
    timed_out = replica(0, TaskState.TIMED_OUT, NOW + 3_000)  # waits again since its time-out
    never_taken = replica(1, TaskState.SUBMITTED, NOW - 1)
    dropped = replica(2, TaskState.FORFEITED)
    assert plan_ending([timed_out, never_taken, dropped], NOW) == Ending(
        expire=["job:0", "job:1"]
    )


def test_now_must_be_a_time() -> None:
    with pytest.raises(InvalidValue, match="now"):
        plan_ending([replica(0, TaskState.SUBMITTED)], -1)


def test_the_bound_adds_the_time_out_the_windows_and_a_queue_time() -> None:
    assert end_bound_s(3_600, 600, 600, 120) == 4_920
