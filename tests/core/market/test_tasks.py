"""Task market: matching, negotiated prices, verification, settlement and the task lifecycle."""

from __future__ import annotations

import hashlib
from collections import Counter

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from owm_core.errors import InvalidTransition, InvalidValue, NoMatch
from owm_core.market import tasks as market
from owm_core.market.tasks import (
    Failed,
    Match,
    NodeOffer,
    SettlementKind,
    Task,
    TaskRequest,
    TaskState,
    VerificationMode,
    VerificationPolicy,
    Verified,
)
from owm_core.nodes.tiers import Tier

RANK = {Tier.T1: 1, Tier.T2: 2, Tier.T3: 3}
T0 = 1_700_000_000


def h(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def request(**changes: object) -> TaskRequest:
    base = TaskRequest(
        task_id="task-1",
        task_type="inference",
        input_schema_id="text-prompt",
        input_schema_version=1,
        min_tier=Tier.T2,
        min_vram_mb=8_000,
        min_ram_mb=16_000,
        gpu_required=True,
        max_price_msat=10_000,
    )
    return attrs.evolve(base, **changes)  # type: ignore[arg-type]


def offer(node_id: str, **changes: object) -> NodeOffer:
    base = NodeOffer(
        node_id=node_id,
        capabilities=frozenset({"inference"}),
        tier=Tier.T2,
        has_gpu=True,
        vram_mb=24_000,
        ram_mb=64_000,
        ask_msat=4_000,
        reliability_ppm=990_000,
    )
    return attrs.evolve(base, **changes)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- matching


def test_the_cheapest_ask_wins_whatever_the_reliability() -> None:
    offers = [offer("a", ask_msat=5_000), offer("b", reliability_ppm=100_000)]
    assert [m.node_id for m in market.match(request(), offers)] == ["b", "a"]


def test_equal_asks_share_the_work_in_proportion_to_reliability() -> None:
    offers = [
        offer("veteran", reliability_ppm=1_000_000),
        offer("newcomer", reliability_ppm=500_000),
    ]
    wins = Counter(
        market.match(request(task_id=f"job-{i}"), offers)[0].node_id for i in range(3_000)
    )
    # Weighted draws: P(veteran first) = 1.0 / (1.0 + 0.5) = 2/3.
    assert 1_850 <= wins["veteran"] <= 2_150
    assert wins["newcomer"] == 3_000 - wins["veteran"]


def test_a_node_with_zero_reliability_is_drawn_last_among_equal_asks() -> None:
    offers = [offer("zero", reliability_ppm=0), offer("b", reliability_ppm=10_000)]
    for i in range(50):
        ranked = market.match(request(task_id=f"job-{i}"), offers)
        assert [m.node_id for m in ranked] == ["b", "zero"]


def test_the_negotiated_price_is_the_floored_midpoint_of_ask_and_maximum() -> None:
    (only,) = market.match(request(max_price_msat=10_001), [offer("a", ask_msat=4_000)])
    assert only.price_msat == 7_000
    assert market.negotiated_price_msat(5, 5) == 5
    with pytest.raises(NoMatch):
        market.negotiated_price_msat(6, 5)


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (offer("x", capabilities=frozenset({"training"})), "task type"),
        (offer("x", tier=Tier.T1), "tier t2"),
        (offer("x", has_gpu=False, vram_mb=0), "gpu=True"),
        (offer("x", vram_mb=4_000), "vram"),
        (offer("x", ram_mb=8_000), "ram"),
        (offer("x", ask_msat=10_001), "asks more than 10000 msat"),
    ],
)
def test_nothing_fitting_raises_no_match_with_the_reason(bad: NodeOffer, reason: str) -> None:
    with pytest.raises(NoMatch, match=reason):
        market.match(request(), [bad])


def test_an_empty_market_raises_no_match() -> None:
    with pytest.raises(NoMatch):
        market.match(request(), [])


def test_excluded_nodes_are_not_matched() -> None:
    assert [m.node_id for m in market.match(request(), [offer("a"), offer("b")], ["a"])] == ["b"]
    with pytest.raises(NoMatch, match="not yet tried"):
        market.match(request(), [offer("a")], exclude=["a"])


def test_a_higher_tier_node_may_run_a_lower_tier_task() -> None:
    assert market.match(request(min_tier=Tier.T1), [offer("a", tier=Tier.T3)])


offers_strategy = st.lists(
    st.builds(
        NodeOffer,
        node_id=st.text("abcdef", min_size=1, max_size=4),
        capabilities=st.frozensets(st.sampled_from(["inference", "training", "eval"]), min_size=1),
        tier=st.sampled_from(Tier),
        has_gpu=st.just(True),
        vram_mb=st.integers(0, 80_000),
        ram_mb=st.integers(0, 256_000),
        ask_msat=st.integers(0, 20_000),
        reliability_ppm=st.integers(0, 1_000_000),
    ),
    max_size=12,
    unique_by=lambda o: o.node_id,
)

requests_strategy = st.builds(
    TaskRequest,
    task_id=st.just("t"),
    task_type=st.sampled_from(["inference", "training", "eval"]),
    input_schema_id=st.just("s"),
    input_schema_version=st.just(1),
    min_tier=st.sampled_from(Tier),
    min_vram_mb=st.integers(0, 80_000),
    min_ram_mb=st.integers(0, 256_000),
    gpu_required=st.just(True),
    max_price_msat=st.integers(0, 20_000),
)


@given(req=requests_strategy, offers=offers_strategy)
@settings(max_examples=200)
def test_a_match_never_breaks_price_tier_or_capability_limits(
    req: TaskRequest, offers: list[NodeOffer]
) -> None:
    try:
        matches = market.match(req, offers)
    except NoMatch:
        fitting = [
            o
            for o in offers
            if req.task_type in o.capabilities
            and RANK[o.tier] >= RANK[req.min_tier]
            and o.vram_mb >= req.min_vram_mb
            and o.ram_mb >= req.min_ram_mb
            and o.ask_msat <= req.max_price_msat
        ]
        assert fitting == []
        return
    assert matches
    for m in matches:
        assert m.offer.ask_msat <= m.price_msat <= req.max_price_msat
        assert RANK[m.offer.tier] >= RANK[req.min_tier]
        assert req.task_type in m.offer.capabilities
        assert m.offer.vram_mb >= req.min_vram_mb and m.offer.ram_mb >= req.min_ram_mb
    keys = [
        (m.offer.ask_msat, -market.dispatch_key(req.task_id, m.offer), m.node_id) for m in matches
    ]
    assert keys == sorted(keys)
    assert market.match(req, list(reversed(offers))) == matches


def test_value_objects_name_their_invalid_field() -> None:
    with pytest.raises(InvalidValue) as err:
        request(max_price_msat=1.5)
    assert err.value.field == "max_price_msat"
    with pytest.raises(InvalidValue) as err:
        request(min_tier="t2")
    assert err.value.field == "min_tier"
    with pytest.raises(InvalidValue) as err:
        request(gpu_required=False)
    assert err.value.field == "gpu_required"
    with pytest.raises(InvalidValue) as err:
        offer("a", reliability_ppm=1_000_001)
    assert err.value.field == "reliability_ppm"
    with pytest.raises(InvalidValue) as err:
        offer("a", has_gpu=False)
    assert err.value.field == "vram_mb"
    with pytest.raises(InvalidValue) as err:
        offer("a", capabilities=frozenset())
    assert err.value.field == "capabilities"
    with pytest.raises(InvalidValue) as err:
        market.match(request(), [offer("a"), offer("a")])
    assert err.value.field == "offers"


# --------------------------------------------------------------------------- verification


REDUNDANT = VerificationPolicy(VerificationMode.REDUNDANT, redundancy=3)


def test_the_majority_of_redundant_results_is_verified_and_the_dissenter_penalised() -> None:
    verdict = market.verify_outcome(
        REDUNDANT, "t", {"a": h("x"), "b": h("y"), "c": h("x")}, seed=b"s"
    )
    assert verdict == Verified(h("x"), ("a", "c"), ("b",))


def test_without_a_majority_the_task_fails_and_nobody_is_paid() -> None:
    verdict = market.verify_outcome(
        REDUNDANT, "t", {"a": h("x"), "b": h("y"), "c": h("z")}, seed=b"s"
    )
    assert isinstance(verdict, Failed)
    assert verdict.penalised_node_ids == ("a", "b", "c")


def test_missing_replies_never_make_a_majority() -> None:
    verdict = market.verify_outcome(REDUNDANT, "t", {"a": h("x")}, seed=b"s")
    assert isinstance(verdict, Failed)
    two = market.verify_outcome(REDUNDANT, "t", {"a": h("x"), "b": h("x")}, seed=b"s")
    assert isinstance(two, Verified)


def test_more_results_than_the_redundancy_are_refused() -> None:
    with pytest.raises(InvalidValue) as err:
        market.verify_outcome(REDUNDANT, "t", {n: h("x") for n in "abcd"}, seed=b"s")
    assert err.value.field == "results"


@given(
    hashes=st.lists(st.sampled_from([h("x"), h("y"), h("z")]), min_size=1, max_size=7),
    data=st.data(),
)
def test_the_redundancy_majority_does_not_depend_on_reply_order(
    hashes: list[str], data: st.DataObject
) -> None:
    policy = VerificationPolicy(VerificationMode.REDUNDANT, redundancy=7)
    results = {f"n{i}": out for i, out in enumerate(hashes)}
    shuffled = data.draw(st.permutations(list(results.items())))
    assert market.verify_outcome(policy, "t", dict(shuffled), seed=b"s") == market.verify_outcome(
        policy, "t", results, seed=b"s"
    )
    winner = market.majority_output(results, 7)
    assert winner is None or 2 * hashes.count(winner) > 7


def test_spot_check_sampling_follows_the_seed_and_the_rate() -> None:
    never = VerificationPolicy(VerificationMode.SPOT_CHECK, spot_check_rate_ppm=0)
    always = VerificationPolicy(VerificationMode.SPOT_CHECK, spot_check_rate_ppm=1_000_000)
    tenth = VerificationPolicy(VerificationMode.SPOT_CHECK, spot_check_rate_ppm=100_000)
    ids = [f"task-{i}" for i in range(2_000)]
    assert not any(market.spot_check_selected(never, t, b"seed") for t in ids)
    assert all(market.spot_check_selected(always, t, b"seed") for t in ids)
    picked = [t for t in ids if market.spot_check_selected(tenth, t, b"seed")]
    assert 120 <= len(picked) <= 280
    assert picked == [t for t in ids if market.spot_check_selected(tenth, t, b"seed")]
    assert picked != [t for t in ids if market.spot_check_selected(tenth, t, b"other")]


def test_a_spot_checked_result_must_agree_with_the_reference() -> None:
    always = VerificationPolicy(VerificationMode.SPOT_CHECK, spot_check_rate_ppm=1_000_000)
    ok = market.verify_outcome(always, "t", {"a": h("x")}, seed=b"s", reference_output_hash=h("x"))
    assert ok == Verified(h("x"), ("a",), spot_checked=True)
    bad = market.verify_outcome(always, "t", {"a": h("x")}, seed=b"s", reference_output_hash=h("y"))
    assert isinstance(bad, Failed) and bad.penalised_node_ids == ("a",)
    with pytest.raises(InvalidValue) as err:
        market.verify_outcome(always, "t", {"a": h("x")}, seed=b"s")
    assert err.value.field == "reference_output_hash"


def test_an_unsampled_spot_check_task_is_accepted_unchecked() -> None:
    never = VerificationPolicy(VerificationMode.SPOT_CHECK, spot_check_rate_ppm=0)
    verdict = market.verify_outcome(never, "t", {"a": h("x")}, seed=b"s")
    assert verdict == Verified(h("x"), ("a",), spot_checked=False)


def test_output_hashes_must_be_sha256_hex() -> None:
    with pytest.raises(InvalidValue) as err:
        market.verify_outcome(REDUNDANT, "t", {"a": "not-a-hash"}, seed=b"s")
    assert err.value.field == "results"


# --------------------------------------------------------------------------- settlement


def test_verified_nodes_are_paid_and_dissenters_forfeit_with_a_penalty() -> None:
    verdict = Verified(h("x"), ("a", "c"), ("b",))
    settled = market.settlements_for("t", verdict, 7_000)
    assert [(s.node_id, s.kind, s.amount_msat, s.reliability_penalty) for s in settled] == [
        ("a", SettlementKind.SETTLE, 7_000, False),
        ("c", SettlementKind.SETTLE, 7_000, False),
        ("b", SettlementKind.FORFEIT, 0, True),
    ]


def test_a_failed_task_pays_nobody() -> None:
    settled = market.settlements_for("t", Failed("no majority", ("a", "b")), 7_000)
    assert all(s.kind is SettlementKind.FORFEIT and s.amount_msat == 0 for s in settled)


def test_a_forfeit_cannot_carry_money() -> None:
    with pytest.raises(InvalidValue) as err:
        market.Settlement("t", "a", SettlementKind.FORFEIT, 1)
    assert err.value.field == "amount_msat"


# --------------------------------------------------------------------------- lifecycle


def best(task: Task, offers: list[NodeOffer]) -> Match:
    return market.match(task.request, offers, exclude=task.tried_node_ids)[0]


# Distinct asks make the order of preference fixed: a, then b, then c.
OFFERS = [offer("a"), offer("b", ask_msat=4_001), offer("c", ask_msat=4_002)]


def test_a_task_walks_from_submission_to_settlement() -> None:
    task = market.assign(market.submit(request()), best(market.submit(request()), OFFERS), T0)
    assert (task.state, task.node_id, task.price_msat) == (TaskState.ASSIGNED, "a", 7_000)
    task = market.complete(task, h("out"), T0 + 10)
    verdict = market.verify_outcome(
        VerificationPolicy(VerificationMode.SPOT_CHECK, spot_check_rate_ppm=0),
        task.task_id,
        {"a": h("out")},
        seed=b"s",
    )
    task = market.record_verdict(task, verdict)
    task, settlement = market.settle(task)
    assert task.state is TaskState.SETTLED
    assert (settlement.node_id, settlement.amount_msat) == ("a", 7_000)


def test_a_timed_out_task_is_reassigned_to_another_node_never_lost() -> None:
    task = market.submit(request())
    task = market.assign(task, best(task, OFFERS), T0, timeout_s=60)
    with pytest.raises(InvalidTransition):
        market.time_out(task, T0 + 60)
    task = market.time_out(task, T0 + 61)
    assert task.state is TaskState.TIMED_OUT
    assert task.tried_node_ids == ("a",)
    assert task.request == request()
    with pytest.raises(InvalidTransition):
        market.assign(task, Match(offer("a"), 7_000), T0 + 61)
    task = market.assign(task, best(task, OFFERS), T0 + 61)
    assert (task.state, task.node_id) == (TaskState.ASSIGNED, "b")


def test_a_completion_must_carry_a_sha256_output_hash() -> None:
    task = market.submit(request())
    task = market.assign(task, best(task, OFFERS), T0)
    with pytest.raises(InvalidValue) as err:
        market.complete(task, "XYZ", T0)
    assert err.value.field == "output_hash"


def test_a_late_completion_is_refused() -> None:
    task = market.submit(request())
    task = market.assign(task, best(task, OFFERS), T0, timeout_s=60)
    with pytest.raises(InvalidTransition):
        market.complete(task, h("out"), T0 + 61)


def test_a_failed_verification_forfeits_the_payment() -> None:
    task = market.submit(request())
    task = market.complete(market.assign(task, best(task, OFFERS), T0), h("bad"), T0 + 1)
    task = market.record_verdict(task, Verified(h("good"), ("b", "c"), ("a",)))
    assert task.state is TaskState.FAILED
    task, settlement = market.settle(task)
    assert task.state is TaskState.FORFEITED
    assert settlement.kind is SettlementKind.FORFEIT and settlement.reliability_penalty


def test_invalid_transitions_raise() -> None:
    task = market.submit(request())
    with pytest.raises(InvalidTransition):
        market.complete(task, h("x"), T0)
    with pytest.raises(InvalidTransition):
        market.settle(task)
    with pytest.raises(InvalidTransition):
        market.time_out(task, T0)
    with pytest.raises(InvalidTransition):
        market.record_verdict(task, Verified(h("x"), ("a",)))
    assigned = market.assign(task, best(task, OFFERS), T0)
    with pytest.raises(InvalidTransition):
        market.assign(assigned, best(task, OFFERS), T0)


def test_a_price_outside_ask_and_maximum_is_refused() -> None:
    task = market.submit(request())
    with pytest.raises(InvalidValue) as err:
        market.assign(task, Match(offer("a"), 10_001), T0)
    assert err.value.field == "price_msat"


ACTIONS = st.sampled_from(
    ["assign", "commit", "complete", "good", "bad", "timeout", "settle", "expire", "silent",
     "abandon"]
)
EXPIRES_AT = T0 + 100


def apply(task: Task, action: str, now: int) -> Task:
    if action == "assign":
        return market.assign(task, best(task, OFFERS), now, timeout_s=10)
    if action == "commit":
        return market.commit(task, now)
    if action == "complete":
        return market.complete(task, h("out"), now)
    if action == "silent":
        return market.fail_silent(task)
    if action == "abandon":
        return market.abandon(task)
    if action in ("good", "bad"):
        paid = (task.node_id or "z",) if action == "good" else ("z",)
        return market.record_verdict(task, Verified(h("out"), paid))
    if action == "timeout":
        return market.time_out(task, now)
    if action == "expire":
        if now <= EXPIRES_AT:
            raise InvalidTransition("not yet")  # the market expires only past expires_at
        return market.expire(task)
    return market.settle(task)[0]


def finish(task: Task, now: int) -> Task:
    """Drive a task to an end by always taking a permitted step forward."""
    for _ in range(20):
        if task.state in market.TERMINAL_STATES:
            return task
        if task.state in market.ASSIGNABLE_STATES:
            task = market.assign(task, best(task, OFFERS), now, timeout_s=10)
        elif task.state in {TaskState.ASSIGNED, TaskState.COMMITTED}:
            task = market.complete(task, h("out"), task.deadline_at or now)
        elif task.state is TaskState.COMPLETED:
            task = market.record_verdict(task, Verified(h("out"), (task.node_id or "",)))
        else:
            task = market.settle(task)[0]
    raise AssertionError(f"stuck in {task.state}")


@given(steps=st.lists(st.tuples(ACTIONS, st.integers(0, 30)), max_size=25))
@settings(max_examples=200)
def test_the_lifecycle_never_loses_a_task(steps: list[tuple[str, int]]) -> None:
    task = market.submit(request(), EXPIRES_AT)
    now = T0
    for action, wait in steps:
        now += wait
        before = task
        try:
            task = apply(task, action, now)
        except (InvalidTransition, NoMatch):
            assert task == before
        assert task.request == request()
        assert len(set(task.tried_node_ids)) == len(task.tried_node_ids)
        if task.state is TaskState.ASSIGNED:
            assert task.node_id not in task.tried_node_ids
        if task.state is TaskState.EXPIRED:
            assert now > EXPIRES_AT and before.state is not TaskState.ASSIGNED
    if len(task.tried_node_ids) < len(OFFERS) or task.state not in market.ASSIGNABLE_STATES:
        assert finish(task, now).state in market.TERMINAL_STATES
    else:
        with pytest.raises(NoMatch):
            best(task, OFFERS)
