"""Graceful degradation rules (owm_core.market.redundancy, SRS-PERF-07): how many replicas a
task runs on with the nodes at hand, over how many votes it is judged, what may be dropped,
how often a lone replica is re-executed, and that no plan pays more than its escrow holds."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from owm_core.coordination.tasks import replicas_funded
from owm_core.errors import InvalidValue
from owm_core.market.redundancy import (
    ReplicaPlan,
    payable_replicas,
    plan_replicas,
    planned_policy,
    sheddable,
    voters,
)
from owm_core.market.tasks import (
    PPM,
    VerificationMode,
    VerificationPolicy,
    Verified,
    settlements_for,
    spot_check_selected,
    verify_outcome,
)


@st.composite
def policies(draw: st.DrawFn, mode: VerificationMode | None = None) -> VerificationPolicy:
    redundancy = draw(st.integers(1, 9))
    return VerificationPolicy(
        mode=mode or draw(st.sampled_from(VerificationMode)),
        redundancy=redundancy,
        redundancy_floor=draw(st.integers(1, redundancy)),
        spot_check_rate_ppm=draw(st.integers(0, PPM)),
    )


@given(policy=policies(VerificationMode.REDUNDANT), eligible=st.integers(0, 20))
def test_a_redundant_plan_never_goes_below_the_floor_nor_above_redundancy_or_the_nodes(
    policy: VerificationPolicy, eligible: int
) -> None:
    plan = plan_replicas(policy, eligible)
    assert 1 <= plan.count <= policy.redundancy
    if plan.spot_checked:
        assert plan.count == 1
        assert min(policy.redundancy, eligible) < max(2, policy.redundancy_floor)
    elif policy.redundancy > 1:
        assert policy.redundancy_floor <= plan.count <= eligible  # never above the nodes
        assert plan.count == min(policy.redundancy, eligible)  # as many as fit, no fewer
    # A task always has a replica: with no eligible node it waits for one.
    assert plan.count <= max(1, eligible)


@given(policy=policies(VerificationMode.REDUNDANT), eligible=st.integers(0, 20))
def test_more_eligible_nodes_never_mean_fewer_replicas(
    policy: VerificationPolicy, eligible: int
) -> None:
    assert plan_replicas(policy, eligible).count <= plan_replicas(policy, eligible + 1).count


def test_a_three_node_network_that_loses_one_runs_on_two_and_on_one_spot_checked_below() -> None:
    policy = VerificationPolicy(redundancy=3)  # floor 2 by default
    assert policy.redundancy_floor == 2
    assert plan_replicas(policy, 3) == ReplicaPlan(3)
    assert plan_replicas(policy, 2) == ReplicaPlan(2)
    assert plan_replicas(policy, 1) == ReplicaPlan(1, spot_checked=True)
    assert plan_replicas(policy, 0) == ReplicaPlan(1, spot_checked=True)
    strict = VerificationPolicy(redundancy=5, redundancy_floor=4)
    assert plan_replicas(strict, 3) == ReplicaPlan(1, spot_checked=True)  # below the floor
    assert plan_replicas(VerificationPolicy(redundancy=1), 0) == ReplicaPlan(1)  # no check asked


def test_a_floor_above_redundancy_or_below_one_is_refused_naming_the_field() -> None:
    for floor in (0, 4):
        with pytest.raises(InvalidValue) as refused:
            VerificationPolicy(redundancy=3, redundancy_floor=floor)
        assert refused.value.field == "redundancy_floor"
    with pytest.raises(InvalidValue):
        plan_replicas(VerificationPolicy(), -1)
    with pytest.raises(InvalidValue):
        ReplicaPlan(2, spot_checked=True)


@given(policy=policies(), eligible=st.integers(0, 20))
def test_no_plan_pays_more_replicas_than_the_escrow_is_funded_for(
    policy: VerificationPolicy, eligible: int
) -> None:
    plan = plan_replicas(policy, eligible)
    assert payable_replicas(plan) <= replicas_funded(policy) or (
        policy.mode is VerificationMode.REDUNDANT and policy.redundancy == 1
    )


@given(
    policy=policies(VerificationMode.REDUNDANT),
    eligible=st.integers(0, 20),
    price=st.integers(1, 10**9),
    hashes=st.lists(st.sampled_from(["a" * 64, "b" * 64]), min_size=1, max_size=9),
)
def test_money_is_conserved_whatever_the_plan_pays_only_agreeing_replicas_at_their_price(
    policy: VerificationPolicy, eligible: int, price: int, hashes: list[str]
) -> None:
    plan = plan_replicas(policy, eligible)
    judged = planned_policy(policy, plan.count)
    results = {f"n{i}": h for i, h in enumerate(hashes[: plan.count])}
    if judged.mode is VerificationMode.SPOT_CHECK:
        results = dict(list(results.items())[:1])
        verdict = verify_outcome(
            judged, "t", results, seed=b"s", reference_output_hash=next(iter(results.values()))
        )
    else:
        verdict = verify_outcome(judged, "t", results, seed=b"s")
    paid = sum(s.amount_msat for s in settlements_for("t", verdict, price))
    escrow = replicas_funded(policy) * price
    assert 0 <= paid <= escrow  # the remainder (escrow - paid) is refunded, never created
    if isinstance(verdict, Verified):
        assert paid == price * len(verdict.paid_node_ids)


@given(policy=policies(VerificationMode.REDUNDANT), replicas=st.integers(2, 9),
       held=st.integers(0, 9))
def test_a_round_is_judged_over_at_least_the_floor_and_at_most_its_replicas(
    policy: VerificationPolicy, replicas: int, held: int
) -> None:
    planned = planned_policy(policy, replicas)
    assert planned.mode is VerificationMode.REDUNDANT and planned.redundancy == replicas
    count = voters(planned, held)
    assert planned.redundancy_floor <= count <= replicas
    assert count == max(planned.redundancy_floor, min(held, replicas))


def test_one_replica_of_a_redundant_policy_is_judged_as_a_spot_check() -> None:
    assert planned_policy(VerificationPolicy(redundancy=3), 1).mode is VerificationMode.SPOT_CHECK
    assert planned_policy(VerificationPolicy(redundancy=1), 1).mode is VerificationMode.REDUNDANT
    spot = VerificationPolicy(mode=VerificationMode.SPOT_CHECK)
    assert planned_policy(spot, 1).mode is VerificationMode.SPOT_CHECK


@given(policy=policies(VerificationMode.REDUNDANT), alive=st.integers(0, 9),
       stuck=st.integers(0, 9))
def test_shedding_never_leaves_a_task_below_the_floor_nor_drops_more_than_are_stuck(
    policy: VerificationPolicy, alive: int, stuck: int
) -> None:
    dropped = sheddable(policy, alive, stuck)
    assert 0 <= dropped <= stuck
    assert dropped == 0 or alive - dropped >= policy.redundancy_floor


def test_spot_checked_tasks_are_never_shed() -> None:
    assert sheddable(VerificationPolicy(mode=VerificationMode.SPOT_CHECK), 5, 5) == 0


@given(rate=st.integers(0, PPM), higher=st.integers(0, PPM), task_id=st.text(min_size=1),
       seed=st.binary(min_size=1, max_size=32))
def test_a_task_drawn_for_a_spot_check_at_one_rate_is_drawn_at_every_higher_rate(
    rate: int, higher: int, task_id: str, seed: bytes
) -> None:
    low, high = sorted((rate, higher))
    if spot_check_selected(VerificationPolicy(spot_check_rate_ppm=low), task_id, seed):
        assert spot_check_selected(VerificationPolicy(spot_check_rate_ppm=high), task_id, seed)
    assert not spot_check_selected(VerificationPolicy(spot_check_rate_ppm=0), task_id, seed)
    assert spot_check_selected(VerificationPolicy(spot_check_rate_ppm=PPM), task_id, seed)


@pytest.mark.parametrize("rate_ppm", [10_000, 100_000, 500_000])
def test_the_share_of_tasks_spot_checked_stays_within_binomial_bounds_of_the_rate(
    rate_ppm: int,
) -> None:
    n = 20_000
    policy = VerificationPolicy(spot_check_rate_ppm=rate_ppm)
    drawn = sum(spot_check_selected(policy, f"task-{i}", b"coordinator-seed") for i in range(n))
    p = rate_ppm / PPM
    sigma = (n * p * (1 - p)) ** 0.5
    assert abs(drawn - n * p) <= 5 * sigma  # a 5-sigma band: fails by chance ~1 in 10^6
