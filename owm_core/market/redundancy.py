"""Graceful degradation: how many replicas a task runs with the nodes at hand (SRS-PERF-07).

A network that loses a node must keep dispatching, paying and answering (data flow 3), so the
number of replicas a task runs on follows the nodes that can take it, within the operator's
bounds (:class:`~owm_core.market.tasks.VerificationPolicy`: ``redundancy``,
``redundancy_floor``, ``spot_check_rate_ppm``):

* **Eligible nodes** are the registered nodes that could take the task now: online, not
  suspended (a slashed node is suspended) and with the hardware it asks for
  (:func:`owm_core.market.admission.eligible_nodes`).
* **The plan** (:func:`plan_replicas`), fixed at submission: under redundant verification a
  task runs on ``min(redundancy, eligible)`` replicas, never fewer than ``redundancy_floor``;
  with fewer eligible nodes than the floor (or than two: a lone replica is never trusted
  unchecked unless configured so) it runs on **one** replica that is spot-checked.
  Under spot-check verification it always runs on one spot-checked replica. A configured
  redundancy of 1 means one replica accepted as it is (the operator chose no check). The plan
  never asks for more replicas than eligible nodes, except that a task always has at least
  one replica, which waits for a node when none is eligible.
* **A spot check** is defined as follows. The single replica commits and reveals like any
  other. Whether it is checked is drawn from the coordinator's secret seed and the task id
  (:func:`~owm_core.market.tasks.spot_check_selected`: probability ``spot_check_rate_ppm`` /
  10⁶, unpredictable to the node). A task not drawn is verified on its one result and paid. A
  drawn task gets a second replica, ``<task>:check``, which a *different* node re-executes
  when one can take it; until that re-execution's verdict the task stays pending: its output
  is not released and nobody is paid (the reward is held). Equal hashes pay both nodes; a
  different hash fails the first node (forfeit, and a fake-proof slashing signal); a checker
  that never delivers, or that no node took within the queue time
  (:mod:`owm_core.market.endings`), leaves the first result judged on its own.
* **Voters** (:func:`voters`): a redundant round's majority is taken over the replicas some
  node held (silence of a node that took a replica counts against every hash, as before), but
  never over fewer than the floor; a replica no node ever took does not vote.
* **Shedding** (:func:`sheddable`): a task planned when more nodes were eligible may lose
  them (a node slashed, gone offline). A waiting replica that no node can take (connected, or
  registered and online and so able to reconnect) while its siblings already run is dropped,
  down to the floor and never below it, so the round is judged over the replicas that can
  exist instead of waiting for its commit window.

Money: a task's escrow is funded for :func:`~owm_core.coordination.tasks.replicas_funded`
replicas (``redundancy``, or two under spot checks); every plan pays at most
:func:`payable_replicas` of them, never more, and the escrow's remainder is refunded.
"""

from __future__ import annotations

import attrs

from owm_core import fields
from owm_core.errors import InvalidValue
from owm_core.market.tasks import VerificationMode, VerificationPolicy


@attrs.frozen
class ReplicaPlan:
    """How a submitted task is verified: on ``count`` replicas, or one spot-checked replica."""

    count: int = attrs.field(validator=fields.integer(1, 101))
    spot_checked: bool = False

    def __attrs_post_init__(self) -> None:
        if self.spot_checked and self.count != 1:
            raise InvalidValue("count", "a spot-checked task runs on exactly one replica")


def plan_replicas(policy: VerificationPolicy, eligible: int) -> ReplicaPlan:
    """The replicas a task runs on when ``eligible`` nodes could take it (module docstring)."""
    if isinstance(eligible, bool) or not isinstance(eligible, int) or eligible < 0:
        raise InvalidValue("eligible", f"must be an integer ≥ 0, got {eligible!r}")
    if policy.mode is VerificationMode.SPOT_CHECK:
        return ReplicaPlan(1, spot_checked=True)
    if policy.redundancy == 1:
        return ReplicaPlan(1)
    count = min(policy.redundancy, eligible)
    if count < max(2, policy.redundancy_floor):
        return ReplicaPlan(1, spot_checked=True)
    return ReplicaPlan(count)


def planned_policy(policy: VerificationPolicy, replicas: int) -> VerificationPolicy:
    """The policy a task stored with ``replicas`` numbered replicas is judged under.

    One replica under a redundancy above one was degraded to a spot check; otherwise the
    task is redundant over its replicas (or spot-checked when that is the configured mode).
    """
    if policy.mode is VerificationMode.SPOT_CHECK or (replicas == 1 and policy.redundancy > 1):
        return attrs.evolve(policy, mode=VerificationMode.SPOT_CHECK)
    count = max(1, replicas)
    return attrs.evolve(
        policy, redundancy=count, redundancy_floor=min(policy.redundancy_floor, count)
    )


def voters(policy: VerificationPolicy, held: int) -> int:
    """Over how many votes a redundant round's majority is taken: the ``held`` replicas (some
    node took them), never fewer than the floor nor more than the task's replicas."""
    return max(policy.redundancy_floor, min(held, policy.redundancy))


def sheddable(policy: VerificationPolicy, replicas: int, unplaceable: int) -> int:
    """How many of ``unplaceable`` waiting replicas of a running redundant task (``replicas``
    not yet dropped) may be dropped: as many as keep at least the floor, never more."""
    if policy.mode is not VerificationMode.REDUNDANT:
        return 0
    return max(0, min(unplaceable, replicas - policy.redundancy_floor))


def payable_replicas(plan: ReplicaPlan) -> int:
    """The most replicas a plan may pay: its replicas, or two for a spot check (the replica
    and its re-execution)."""
    return 2 if plan.spot_checked else plan.count
