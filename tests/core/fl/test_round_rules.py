"""Coordinator FL rounds: the round record's transitions, upload admission and closing."""

from __future__ import annotations

import attrs
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from owm_core.errors import (
    ByzantineAssumptionViolated,
    Conflict,
    InvalidTransition,
    InvalidValue,
)
from owm_core.fl.aggregation import Rule
from owm_core.fl.attacks import Attack, poison
from owm_core.fl.rounds import (
    MAX_REJECTIONS,
    FlRound,
    RoundState,
    RoundUpdate,
    admit,
    assigned_to_round,
    close,
    close_round,
    fail,
    note_rejection,
    same_upload,
    tolerable_f,
)
from owm_core.fl.updates import SignedUpdate, parse_update, sign_update
from owm_core.identity.keys import Identity
from owm_core.stake.slashing import SlashingReason

T0 = 1_800_000_000
NODES = [Identity.from_seed(bytes([i + 1]) * 32) for i in range(8)]


def a_round(**changes: object) -> FlRound:
    values: dict[str, object] = {
        "number": 4,
        "sub_model": "owm-base",
        "state": RoundState.OPEN,
        "started_at": T0,
        "rule": "trimmed",
        "task_ids": ("fl-r4-a",),
        "base_version": "genesis",
    }
    values.update(changes)
    return FlRound(**values)  # type: ignore[arg-type]


def an_update(
    node: Identity, weights: torch.Tensor, round_number: int = 4, task: str = "fl-r4-a:0",
    num_examples: int = 64,
) -> SignedUpdate:
    return parse_update(
        sign_update(
            node,
            round_number=round_number,
            sub_model="owm-base",
            task_id=task,
            num_examples=num_examples,
            loss=0.5,
            weights=weights,
        )
    )


def test_an_open_round_closes_once_and_then_refuses_every_move() -> None:
    opened = a_round()
    closed = close(
        opened,
        now=T0 + 30,
        f=1,
        participants=3,
        accepted=["a", "b", "c"],
        flagged=["c"],
        accuracy_ppm=812_000,
        loss=0.61,
        version_id="owm-base@owm-v0.4.0",
    )
    assert closed.state is RoundState.CLOSED and closed.closed_at == T0 + 30
    with pytest.raises(InvalidTransition):
        close(
            closed, now=T0 + 31, f=1, participants=3, accepted=[], flagged=[],
            accuracy_ppm=0, loss=0.0, version_id="x",
        )
    with pytest.raises(InvalidTransition):
        fail(closed, now=T0 + 31, reason="late")
    with pytest.raises(InvalidTransition):
        note_rejection(closed, NODES[0].node_id, "late")


def test_a_failed_round_says_why_and_has_no_version() -> None:
    failed = fail(a_round(), now=T0 + 600, reason="only 1 update arrived", participants=1)
    assert failed.state is RoundState.FAILED and failed.version_id is None
    assert "only 1" in failed.failure
    with pytest.raises(InvalidValue) as err:
        a_round(state=RoundState.CLOSED, closed_at=T0 + 1)
    assert err.value.field == "version_id"
    with pytest.raises(InvalidValue) as err:
        a_round(closed_at=T0 + 1)
    assert err.value.field == "closed_at"


def test_a_round_keeps_only_the_first_rejections() -> None:
    fl_round = a_round()
    for i in range(MAX_REJECTIONS + 5):
        fl_round = note_rejection(fl_round, NODES[0].node_id, f"reason {i}")
    assert len(fl_round.rejected) == MAX_REJECTIONS
    assert fl_round.rejected[0].endswith("reason 0")


@settings(max_examples=60)
@given(
    rule=st.sampled_from([r for r in Rule if r.robust]),
    n=st.integers(1, 60),
    cap=st.none() | st.integers(0, 20),
)
def test_tolerable_f_is_the_largest_f_the_rule_survives(
    rule: Rule, n: int, cap: int | None
) -> None:
    if n < rule.min_clients(0):
        with pytest.raises(ByzantineAssumptionViolated):
            tolerable_f(rule, n, cap)
        return
    f = tolerable_f(rule, n, cap)
    assert rule.min_clients(f) <= n
    assert (cap is not None and f == cap) or rule.min_clients(f + 1) > n


def test_fedavg_tolerates_nobody() -> None:
    assert tolerable_f(Rule.FEDAVG, 50) == 0


def test_an_upload_is_admitted_only_into_its_own_open_round_task_and_node() -> None:
    update = an_update(NODES[0], torch.zeros(5))
    admit(a_round(), update, task_group="fl-r4-a", assigned_node_id=NODES[0].node_id, parameters=5)
    with pytest.raises(InvalidTransition):
        admit(
            fail(a_round(), now=T0 + 1, reason="x"), update, task_group="fl-r4-a",
            assigned_node_id=NODES[0].node_id, parameters=5,
        )
    with pytest.raises(InvalidValue) as err:
        admit(a_round(), update, task_group="other", assigned_node_id=NODES[0].node_id,
              parameters=5)
    assert err.value.field == "task_id"
    with pytest.raises(InvalidTransition):
        admit(a_round(), update, task_group="fl-r4-a", assigned_node_id=NODES[1].node_id,
              parameters=5)
    with pytest.raises(InvalidValue) as err:
        admit(a_round(), update, task_group="fl-r4-a", assigned_node_id=NODES[0].node_id,
              parameters=6)
    assert err.value.field == "weights"
    with pytest.raises(InvalidValue) as err:
        admit(a_round(sub_model="owm-geo"), update, task_group="fl-r4-a",
              assigned_node_id=NODES[0].node_id, parameters=5)
    assert err.value.field == "sub_model"


def test_an_upload_claiming_more_examples_than_its_task_assigned_is_refused() -> None:
    update = an_update(NODES[0], torch.zeros(5), num_examples=65)
    mine = {"task_group": "fl-r4-a", "assigned_node_id": NODES[0].node_id, "parameters": 5}
    admit(a_round(max_examples=65), update, **mine)  # type: ignore[arg-type]
    with pytest.raises(InvalidValue) as err:
        admit(a_round(max_examples=64), update, max_examples=64, **mine)  # type: ignore[arg-type]
    assert err.value.field == "num_examples" and "at most 64" in err.value.reason


def test_only_a_node_holding_one_of_the_rounds_replicas_has_its_rejections_recorded() -> None:
    fl_round = a_round()
    assert assigned_to_round(fl_round, "fl-r4-a", NODES[0].node_id, NODES[0].node_id)
    assert not assigned_to_round(fl_round, "fl-r4-a", NODES[1].node_id, NODES[0].node_id)
    assert not assigned_to_round(fl_round, "fl-r9-b", NODES[0].node_id, NODES[0].node_id)
    assert not assigned_to_round(fl_round, None, None, NODES[0].node_id)


@settings(max_examples=60, deadline=None)
@given(
    honest_n=st.integers(2, 6),
    assigned=st.integers(1, 64),
    claimed=st.integers(1, 10**9),
    rule=st.sampled_from([Rule.FEDAVG, Rule.MULTIKRUM]),
)
def test_an_inflated_example_count_cannot_let_one_update_dominate_the_aggregate(
    honest_n: int, assigned: int, claimed: int, rule: Rule
) -> None:
    """A node claiming any count: either refused (more than its task assigned), or weighed
    at most like one honest node, so the aggregate stays within 1/(n) of the way to its
    update, whatever count it wrote (SRS-SEC-05)."""
    d = 8
    honest = torch.ones(d)
    bad = torch.full((d,), -100.0)
    fl_round = a_round(max_examples=assigned)
    updates = [an_update(NODES[i], honest, num_examples=assigned) for i in range(honest_n)]
    attacker = an_update(NODES[7], bad, num_examples=claimed)
    try:
        admit(fl_round, attacker, task_group="fl-r4-a", assigned_node_id=NODES[7].node_id,
              parameters=d, max_examples=fl_round.max_examples)
        updates.append(attacker)
    except InvalidValue as refused:
        assert refused.field == "num_examples" and claimed > assigned
    if rule is Rule.MULTIKRUM and len(updates) < rule.min_clients(0):
        return
    outcome = close_round(updates, rule=rule, previous_weights=torch.zeros(d),
                          reporter="coordinator", now=T0)
    pulled = float((outcome.weights - honest).norm()) / float((bad - honest).norm())
    assert pulled <= 1 / len(updates) + 1e-5


def test_the_same_upload_twice_is_a_repeat_and_a_different_one_a_conflict() -> None:
    first = RoundUpdate(an_update(NODES[0], torch.ones(3)), received_at=T0)
    again = RoundUpdate(an_update(NODES[0], torch.ones(3)), received_at=T0 + 5)
    assert same_upload(first, again)
    other = RoundUpdate(an_update(NODES[0], torch.zeros(3)), received_at=T0 + 6)
    with pytest.raises(Conflict):
        same_upload(first, other)
    assert not same_upload(first, RoundUpdate(an_update(NODES[1], torch.ones(3)), T0))


def honest_round(
    n: int, seed: int, d: int = 200, noise: float = 1e-3
) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    reference = torch.randn(d, generator=g)
    step = 0.1 * torch.randn(d, generator=g)
    return reference, reference + step + noise * torch.randn(n, d, generator=g)


@pytest.mark.parametrize("attack", [Attack.SIGNFLIP, Attack.SCALED, Attack.GAUSSIAN])
@pytest.mark.parametrize("rule", [Rule.TRIMMED_MEAN, Rule.MEDIAN, Rule.KRUM])
def test_a_poisoned_update_is_flagged_and_signalled_with_its_signed_statement(
    attack: Attack, rule: Rule
) -> None:
    reference, honest = honest_round(4, seed=1)
    bad = poison(attack, reference=reference, honest=honest, own=honest[:1].clone(),
                 generator=torch.Generator().manual_seed(2))
    rows = [*honest, bad[0]]
    updates = [an_update(NODES[i], row) for i, row in enumerate(rows)]
    outcome = close_round(updates, rule=rule, previous_weights=reference,
                          reporter="coordinator", now=T0)
    assert outcome.flagged == (NODES[4].node_id,)
    (signal,) = outcome.signals
    assert signal.node_id == NODES[4].node_id
    assert signal.reason is SlashingReason.POISONED_UPDATE
    assert signal.evidence_hash == updates[4].statement.hex()
    honest_mean = honest.mean(dim=0)
    assert float((outcome.weights - honest_mean).norm()) < float((bad[0] - honest_mean).norm())


@settings(max_examples=15, deadline=None)
@given(n=st.integers(3, 7), seed=st.integers(0, 10_000), noise=st.sampled_from([0.0, 1e-7, 1e-3]))
def test_honest_updates_are_never_flagged_even_when_they_are_nearly_identical(
    n: int, seed: int, noise: float
) -> None:
    reference, honest = honest_round(n, seed, noise=noise)
    updates = [an_update(NODES[i], row) for i, row in enumerate(honest)]
    outcome = close_round(updates, rule=Rule.TRIMMED_MEAN, previous_weights=reference,
                          reporter="coordinator", now=T0)
    assert outcome.flagged == () and outcome.signals == ()
    assert outcome.f == tolerable_f(Rule.TRIMMED_MEAN, n)
    lo, hi = honest.min(dim=0).values, honest.max(dim=0).values
    assert bool(((outcome.weights >= lo - 1e-6) & (outcome.weights <= hi + 1e-6)).all())


def test_closing_refuses_duplicates_wrong_sizes_and_too_few_updates() -> None:
    reference, honest = honest_round(3, seed=3)
    twice = [an_update(NODES[0], honest[0]), an_update(NODES[0], honest[1])]
    with pytest.raises(InvalidValue):
        close_round(twice, rule=Rule.MEDIAN, previous_weights=reference, reporter="c", now=T0)
    short = [an_update(NODES[0], honest[0][:10])]
    with pytest.raises(InvalidValue):
        close_round(short, rule=Rule.MEDIAN, previous_weights=reference, reporter="c", now=T0)
    with pytest.raises(ByzantineAssumptionViolated):
        close_round([], rule=Rule.MEDIAN, previous_weights=reference, reporter="c", now=T0)
    pair = [an_update(NODES[i], honest[i]) for i in range(2)]
    with pytest.raises(ByzantineAssumptionViolated):
        close_round(pair, rule=Rule.KRUM, previous_weights=reference, reporter="c", now=T0)


def test_a_stored_update_cannot_be_rebuilt_with_other_weights() -> None:
    update = an_update(NODES[0], torch.ones(3))
    with pytest.raises(InvalidValue, match="signature"):
        attrs.evolve(update, weights=an_update(NODES[0], torch.zeros(3)).weights)
