"""The stake check, the stake bonus and the stake state machine (spec 4.12, SRS-STAKE-01..10)."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from owm_core.errors import CooldownActive, InsufficientStake, InvalidTransition, InvalidValue
from owm_core.nodes.tiers import StakeRequirements, Tier
from owm_core.stake.channel import (
    BONUS_BASE_BPS,
    BONUS_MAX_BPS,
    COOLDOWN_S,
    GRACE_PERIOD_S,
    REVERIFY_PERIOD_S,
    Stake,
    StakeChannel,
    StakeCheck,
    StakeCooldownActive,
    StakePolicy,
    StakeStatus,
    check_stake,
    stake_bonus_bps,
)

NODE_KEY = "ab" * 32
PEER = "02" + "cd" * 32
T0 = 1_700_000_000
HOUR = 3600
DAY = 86_400
T1_MIN = StakeRequirements().t1_sats


def channel(
    capacity_sat: int, confirmations: int = 3, channel_id: str = "800000x1x0", active: bool = True
) -> StakeChannel:
    return StakeChannel(
        channel_id=channel_id,
        channel_point="ef" * 32 + ":0",
        peer_pubkey=PEER,
        capacity_sat=capacity_sat,
        local_balance_sat=0,
        remote_balance_sat=capacity_sat,  # the node's own balance: its stake
        confirmations=confirmations,
        active=active,
    )


def check(capacity_sat: int, confirmations: int = 3, tier: Tier = Tier.T1) -> StakeCheck:
    return check_stake(tier, [channel(capacity_sat, confirmations)])


def pending(capacity_sat: int = T1_MIN, confirmations: int = 0) -> Stake:
    return Stake.register(NODE_KEY, check(capacity_sat, confirmations), T0)


def active(capacity_sat: int = T1_MIN) -> Stake:
    return pending(capacity_sat).verified(check(capacity_sat), T0 + 600)


def degraded() -> Stake:
    return active().reverified(check(T1_MIN - 1), T0 + REVERIFY_PERIOD_S)


# --- check_stake -----------------------------------------------------------------------------


def test_a_channel_at_the_tier_minimum_passes_the_stake_check() -> None:
    result = check_stake(Tier.T1, [channel(100_000)])
    assert result.passed and result.confirmed
    assert result.required_sats == 100_000
    result.raise_if_failed()


def test_a_channel_below_the_minimum_fails_with_insufficient_stake_and_the_required_amount() -> (
    None
):
    result = check_stake(Tier.T2, [channel(499_999)])
    assert not result.passed
    assert result.best_capacity_sat == 499_999
    with pytest.raises(InsufficientStake) as caught:
        result.raise_if_failed()
    assert caught.value.required_sats == 500_000
    assert caught.value.code == "insufficient-stake"


def test_a_node_without_channels_fails_the_stake_check() -> None:
    result = check_stake(Tier.T3, [])
    assert (result.passed, result.best_capacity_sat, result.required_sats) == (False, 0, 2_000_000)


def test_the_best_qualifying_channel_is_a_confirmed_one_then_the_largest() -> None:
    unconfirmed_big = channel(900_000, confirmations=0, channel_id="big")
    confirmed_small = channel(150_000, confirmations=1, channel_id="small")
    confirmed_mid = channel(300_000, confirmations=6, channel_id="mid")
    too_small = channel(99_999, channel_id="tiny")
    result = check_stake(Tier.T1, [too_small, unconfirmed_big, confirmed_small, confirmed_mid])
    assert result.channel is not None and result.channel.channel_id == "mid"
    assert result.best_capacity_sat == 900_000
    only_unconfirmed = check_stake(Tier.T1, [unconfirmed_big, too_small])
    assert only_unconfirmed.passed and not only_unconfirmed.confirmed


def test_stake_minimums_come_from_the_configured_requirements() -> None:
    cheap = StakeRequirements(t1_sats=10, t2_sats=20, t3_sats=30)
    assert check_stake(Tier.T3, [channel(30)], cheap).passed
    assert not check_stake(Tier.T3, [channel(29)], cheap).passed


def test_check_stake_refuses_things_that_are_not_channels() -> None:
    with pytest.raises(InvalidValue) as caught:
        check_stake(Tier.T1, [{"capacity_sat": 10**9}])  # type: ignore[list-item]
    assert caught.value.field == "channels"


def test_a_stake_check_cannot_claim_a_channel_below_the_requirement() -> None:
    with pytest.raises(InvalidValue) as caught:
        StakeCheck(tier=Tier.T1, required_sats=200, best_capacity_sat=100, channel=channel(100))
    assert caught.value.field == "channel"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"channel_id": ""}, "channel_id"),
        ({"channel_point": "nothex:0"}, "channel_point"),
        ({"peer_pubkey": "ab" * 32}, "peer_pubkey"),
        ({"capacity_sat": 1.5e5}, "capacity_sat"),
        ({"local_balance_sat": -1}, "local_balance_sat"),
        ({"remote_balance_sat": 10**9}, "remote_balance_sat"),
        ({"confirmations": -1}, "confirmations"),
        ({"active": 1}, "active"),
    ],
)
def test_invalid_channels_are_refused_naming_the_field(
    kwargs: dict[str, object], field: str
) -> None:
    base: dict[str, object] = {
        "channel_id": "800000x1x0",
        "channel_point": "ef" * 32 + ":1",
        "peer_pubkey": PEER,
        "capacity_sat": 150_000,
        "local_balance_sat": 100_000,
        "remote_balance_sat": 40_000,
        "confirmations": 1,
        "active": True,
    }
    with pytest.raises(InvalidValue) as caught:
        StakeChannel(**{**base, **kwargs})  # type: ignore[arg-type]
    assert caught.value.field == field


# --- stake bonus (SRS-STAKE-10) --------------------------------------------------------------


@pytest.mark.parametrize(
    ("capacity", "bonus"),
    [
        (0, 10_000),
        (99_999, 10_000),
        (100_000, 10_000),
        (150_000, 10_500),
        (200_000, 11_000),
        (300_000, 11_500),
        (400_000, 12_000),
        (3_200_000, 15_000),
        (10**12, 15_000),
    ],
)
def test_the_stake_bonus_adds_ten_percent_per_doubling_up_to_one_and_a_half(
    capacity: int, bonus: int
) -> None:
    assert stake_bonus_bps(capacity, 100_000) == bonus


def test_the_stake_bonus_rule_is_configurable() -> None:
    policy = StakePolicy(bonus_step_bps=2_000, bonus_max_bps=20_000)
    assert stake_bonus_bps(200_000, 100_000, policy) == 12_000
    assert stake_bonus_bps(10**9, 100_000, policy) == 20_000


def test_the_stake_bonus_refuses_float_amounts() -> None:
    with pytest.raises(InvalidValue) as caught:
        stake_bonus_bps(1.5e5, 100_000)  # type: ignore[arg-type]
    assert caught.value.field == "capacity_sat"
    with pytest.raises(InvalidValue) as caught:
        stake_bonus_bps(150_000, 0)
    assert caught.value.field == "min_sats"


@settings(max_examples=300)
@given(
    minimum=st.integers(1, 10**8),
    capacity=st.integers(0, 10**12),
    extra=st.integers(0, 10**12),
)
def test_the_stake_bonus_never_decreases_with_capacity_and_stays_in_bounds(
    minimum: int, capacity: int, extra: int
) -> None:
    low = stake_bonus_bps(capacity, minimum)
    high = stake_bonus_bps(capacity + extra, minimum)
    assert BONUS_BASE_BPS <= low <= high <= BONUS_MAX_BPS


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"reverify_period_s": 0}, "reverify_period_s"),
        ({"grace_period_s": 1.5}, "grace_period_s"),
        ({"cooldown_s": -1}, "cooldown_s"),
        ({"bonus_max_bps": 9_999}, "bonus_max_bps"),
        ({"bonus_step_bps": -1}, "bonus_step_bps"),
    ],
)
def test_invalid_stake_policies_are_refused_naming_the_field(
    kwargs: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidValue) as caught:
        StakePolicy(**kwargs)  # type: ignore[arg-type]
    assert caught.value.field == field


def test_documented_stake_timings() -> None:
    assert (REVERIFY_PERIOD_S, GRACE_PERIOD_S, COOLDOWN_S) == (6 * HOUR, 24 * HOUR, 30 * DAY)


# --- the state machine, by example -----------------------------------------------------------


def test_registration_with_a_qualifying_channel_starts_pending() -> None:
    stake = pending()
    assert stake.status is StakeStatus.PENDING
    assert stake.tier is Tier.T1 and stake.required_sats == T1_MIN


def test_registration_without_enough_stake_is_refused_with_the_minimum() -> None:
    with pytest.raises(InsufficientStake) as caught:
        Stake.register(NODE_KEY, check(T1_MIN - 1), T0)
    assert caught.value.required_sats == T1_MIN


def test_a_pending_stake_stays_pending_until_its_channel_confirms() -> None:
    stake = pending()
    still = stake.verified(check(T1_MIN, confirmations=0), T0 + 60)
    assert still.status is StakeStatus.PENDING
    live = still.verified(check(T1_MIN, confirmations=1), T0 + 660)
    assert live.status is StakeStatus.ACTIVE
    assert live.next_verification_at == T0 + 660 + REVERIFY_PERIOD_S


def test_a_pending_stake_whose_channel_vanished_does_not_become_active() -> None:
    stake = pending().verified(check_stake(Tier.T1, []), T0 + 60)
    assert stake.status is StakeStatus.PENDING


def test_an_active_stake_below_the_minimum_at_reverification_is_degraded_with_24h_grace() -> None:
    now = T0 + REVERIFY_PERIOD_S
    stake = active().reverified(check(T1_MIN - 1), now)
    assert stake.status is StakeStatus.DEGRADED
    assert stake.grace_until == now + GRACE_PERIOD_S
    assert stake.channel is not None  # the registration's channel, for a later force close


def test_a_degraded_stake_restored_within_grace_is_active_again() -> None:
    stake = degraded()
    assert stake.grace_until is not None
    restored = stake.reverified(check(T1_MIN * 2), stake.grace_until - 1)
    assert restored.status is StakeStatus.ACTIVE
    assert restored.grace_until is None
    assert restored.bonus_bps == 11_000


def test_a_degraded_stake_still_short_keeps_its_original_grace_deadline() -> None:
    stake = degraded()
    again = stake.reverified(check(T1_MIN - 1), stake.changed_at + REVERIFY_PERIOD_S)
    assert again.status is StakeStatus.DEGRADED
    assert again.grace_until == stake.grace_until


def test_a_degraded_stake_is_suspended_when_its_grace_expires_without_slashing() -> None:
    stake = degraded()
    assert stake.grace_until is not None
    assert stake.tick(stake.grace_until - 1) == stake
    suspended = stake.tick(stake.grace_until)
    assert suspended.status is StakeStatus.SUSPENDED
    assert suspended.cooldown_until is None
    assert suspended.may_register(stake.grace_until)


def test_capacity_restored_after_the_grace_deadline_comes_too_late() -> None:
    stake = degraded()
    assert stake.grace_until is not None
    late = stake.reverified(check(T1_MIN * 4), stake.grace_until)
    assert late.status is StakeStatus.SUSPENDED


def test_the_stake_bonus_is_recomputed_whenever_the_capacity_changes() -> None:
    stake = active(T1_MIN)
    assert stake.bonus_bps == 10_000
    grown = stake.reverified(check(T1_MIN * 4), T0 + REVERIFY_PERIOD_S)
    assert (grown.capacity_sat, grown.bonus_bps) == (T1_MIN * 4, 12_000)
    shrunk = grown.reverified(check(T1_MIN * 3), T0 + 2 * REVERIFY_PERIOD_S)
    assert (shrunk.capacity_sat, shrunk.bonus_bps) == (T1_MIN * 3, 11_500)


def test_reverification_is_due_every_six_hours() -> None:
    stake = active()
    assert stake.next_verification_at is not None
    assert not stake.verification_due(stake.next_verification_at - 1)
    assert stake.verification_due(stake.next_verification_at)
    assert not pending().verification_due(T0 + 10 * DAY)


def test_a_cooperative_close_deregisters_without_cooldown() -> None:
    closed = active().cooperatively_closed(T0 + DAY)
    assert closed.status is StakeStatus.DEREGISTERED
    assert closed.cooldown_until is None
    again = Stake.register(NODE_KEY, check(T1_MIN), T0 + DAY, previous=closed)
    assert again.status is StakeStatus.PENDING


def test_a_slashed_node_cannot_register_during_cooldown() -> None:
    slashed = active().slashed(T0 + DAY)
    assert slashed.status is StakeStatus.SLASHED
    assert slashed.cooldown_until == T0 + DAY + COOLDOWN_S
    assert slashed.channel is not None  # the channel to force-close (SRS-STAKE-05)
    with pytest.raises(CooldownActive) as caught:
        Stake.register(NODE_KEY, check(T1_MIN), T0 + DAY + COOLDOWN_S - 10, previous=slashed)
    assert isinstance(caught.value, StakeCooldownActive)
    assert caught.value.remaining_s == 10
    assert caught.value.code == "cooldown-active"
    assert "10 s" in caught.value.message


def test_a_slashed_node_may_register_again_once_the_cooldown_has_expired() -> None:
    slashed = active().slashed(T0 + DAY)
    assert not slashed.may_register(T0 + DAY + COOLDOWN_S - 1)
    assert slashed.may_register(T0 + DAY + COOLDOWN_S)
    again = Stake.register(NODE_KEY, check(T1_MIN), T0 + DAY + COOLDOWN_S, previous=slashed)
    assert again.status is StakeStatus.PENDING
    assert again.cooldown_until is None


def test_a_cooperative_close_cannot_dodge_a_later_slash() -> None:
    slashed = active().cooperatively_closed(T0 + HOUR).slashed(T0 + 2 * HOUR)
    assert not slashed.may_register(T0 + 2 * HOUR + COOLDOWN_S - 1)


def test_a_registered_key_cannot_register_twice() -> None:
    with pytest.raises(InvalidTransition):
        Stake.register(NODE_KEY, check(T1_MIN), T0 + 1, previous=active())


def test_previous_records_of_another_key_are_refused() -> None:
    other = Stake.register("cd" * 32, check(T1_MIN), T0).cooperatively_closed(T0)
    with pytest.raises(InvalidValue) as caught:
        Stake.register(NODE_KEY, check(T1_MIN), T0, previous=other)
    assert caught.value.field == "previous"


@pytest.mark.parametrize(
    "move",
    [
        lambda s: active().verified(check(T1_MIN), T0 + DAY),
        lambda s: pending().reverified(check(T1_MIN), T0 + DAY),
        lambda s: active().slashed(T0 + DAY).slashed(T0 + DAY),
        lambda s: active().slashed(T0 + DAY).cooperatively_closed(T0 + DAY),
        lambda s: active().cooperatively_closed(T0 + DAY).cooperatively_closed(T0 + DAY),
        lambda s: degraded().tick(T0 + 10 * DAY).reverified(check(T1_MIN), T0 + 10 * DAY),
    ],
)
def test_invalid_transitions_are_refused(move: object) -> None:
    with pytest.raises(InvalidTransition):
        move(None)  # type: ignore[operator]


def test_time_running_backwards_is_refused() -> None:
    stake = active()
    with pytest.raises(InvalidValue) as caught:
        stake.reverified(check(T1_MIN), stake.changed_at - 1)
    assert caught.value.field == "now"
    with pytest.raises(InvalidValue):
        stake.tick(1.5)  # type: ignore[arg-type]


def test_a_check_for_another_tier_is_refused() -> None:
    with pytest.raises(InvalidValue) as caught:
        active().reverified(check(10**7, tier=Tier.T3), T0 + DAY)
    assert caught.value.field == "check"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"public_key": "XY" * 32}, "public_key"),
        ({"status": StakeStatus.ACTIVE, "channel": None}, "channel"),
        ({"status": StakeStatus.DEGRADED}, "grace_until"),
        ({"status": StakeStatus.SLASHED}, "cooldown_until"),
        ({"bonus_bps": 9_999}, "bonus_bps"),
        ({"capacity_sat": 1.0}, "capacity_sat"),
        ({"changed_at": -1}, "changed_at"),
    ],
)
def test_inconsistent_stakes_are_refused_naming_the_field(
    changes: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidValue) as caught:
        attrs.evolve(pending(), **changes)
    assert caught.value.field == field


# --- the state machine, as rules over arbitrary histories -------------------------------------


CAPACITIES = st.sampled_from([T1_MIN, 0, T1_MIN - 1, 3 * T1_MIN, 40 * T1_MIN]) | st.integers(
    0, 50 * T1_MIN
)
CONFIRMATIONS = st.sampled_from([1, 0, 6])
RARELY = st.sampled_from([False, False, False, True])  # leaving moves end the interesting paths


class StakeLifecycle(RuleBasedStateMachine):
    """Drives a key's stake through arbitrary moves and checks the spec's invariants."""

    def __init__(self) -> None:
        super().__init__()
        self.now = T0
        self.stake: Stake | None = None
        self.slashed_at: int | None = None

    def _try(self, move: object) -> None:
        before = self.stake
        try:
            after = move()  # type: ignore[operator]
        except (InvalidTransition, InsufficientStake, CooldownActive) as refused:
            if isinstance(refused, CooldownActive):
                assert self.slashed_at is not None
                assert self.now < self.slashed_at + COOLDOWN_S
            return
        assert isinstance(after, Stake)
        self._check_move(before, after)
        self.stake = after

    def _check_move(self, before: Stake | None, after: Stake) -> None:
        if after.status is StakeStatus.ACTIVE:
            assert after.channel is not None and after.channel.confirmations >= 1
            assert after.channel.capacity_sat >= after.required_sats
        if after.status is StakeStatus.SUSPENDED and (
            before is None or before.status is not StakeStatus.SUSPENDED
        ):
            assert before is not None and before.status is StakeStatus.DEGRADED
            assert before.grace_until is not None and self.now >= before.grace_until
        if after.status is StakeStatus.SLASHED and (
            before is None or before.status is not StakeStatus.SLASHED
        ):
            self.slashed_at = self.now
        if after.status is StakeStatus.DEREGISTERED and before is not None:
            assert after.cooldown_until is None
        if (
            after.status is StakeStatus.PENDING
            and before is not None
            and before.status is StakeStatus.SLASHED
        ):
            assert self.slashed_at is not None
            assert self.now >= self.slashed_at + COOLDOWN_S

    @rule(seconds=st.sampled_from([0, 1, 600, HOUR, 6 * HOUR, DAY, 7 * DAY, 30 * DAY]))
    def wait(self, seconds: int) -> None:
        self.now += seconds

    @rule(capacity=CAPACITIES, confirmations=CONFIRMATIONS)
    def register(self, capacity: int, confirmations: int) -> None:
        previous = self.stake
        self._try(
            lambda: Stake.register(NODE_KEY, check(capacity, confirmations), self.now, previous)
        )
        if self.stake is not previous and previous is not None:
            assert previous.may_register(self.now)

    @precondition(lambda self: self.stake is not None)
    @rule(capacity=CAPACITIES, confirmations=CONFIRMATIONS)
    def verify(self, capacity: int, confirmations: int) -> None:
        stake = self.stake
        assert stake is not None
        self._try(lambda: stake.verified(check(capacity, confirmations), self.now))

    @precondition(lambda self: self.stake is not None)
    @rule(capacity=CAPACITIES, confirmations=CONFIRMATIONS)
    def reverify(self, capacity: int, confirmations: int) -> None:
        stake = self.stake
        assert stake is not None
        result = check(capacity, confirmations)
        self._try(lambda: stake.reverified(result, self.now))
        after = self.stake
        if after is not stake and after is not None and after.status is not StakeStatus.SUSPENDED:
            assert after.capacity_sat == result.capacity_sat
            assert after.bonus_bps == stake_bonus_bps(result.capacity_sat, T1_MIN)

    @precondition(lambda self: self.stake is not None)
    @rule()
    def tick(self) -> None:
        stake = self.stake
        assert stake is not None
        self._try(lambda: stake.tick(self.now))

    @precondition(lambda self: self.stake is not None)
    @rule(now_rather_than_later=RARELY)
    def close_cooperatively(self, now_rather_than_later: bool) -> None:
        stake = self.stake
        assert stake is not None
        if not now_rather_than_later:
            return
        self._try(lambda: stake.cooperatively_closed(self.now))

    @precondition(lambda self: self.stake is not None)
    @rule(now_rather_than_later=RARELY)
    def slash(self, now_rather_than_later: bool) -> None:
        stake = self.stake
        assert stake is not None
        if not now_rather_than_later:
            return
        self._try(lambda: stake.slashed(self.now))

    @invariant()
    def the_state_is_always_a_defined_one(self) -> None:
        if self.stake is not None:
            assert self.stake.status in set(StakeStatus)

    @invariant()
    def a_slashed_key_cannot_register_before_thirty_days(self) -> None:
        stake = self.stake
        if stake is not None and stake.status is StakeStatus.SLASHED:
            assert self.slashed_at is not None
            assert stake.may_register(self.now) == (self.now >= self.slashed_at + COOLDOWN_S)

    @invariant()
    def only_a_slash_sets_a_cooldown(self) -> None:
        stake = self.stake
        if stake is not None:
            assert (stake.cooldown_until is not None) == (stake.status is StakeStatus.SLASHED)


StakeLifecycle.TestCase.settings = settings(max_examples=300, stateful_step_count=50, deadline=None)
test_stake_lifecycle_keeps_the_spec_invariants = StakeLifecycle.TestCase


@given(
    own=st.integers(0, 10**9),
    treasury=st.integers(0, 10**9),
)
def test_only_the_nodes_own_balance_is_its_stake_never_the_treasurys_side(
    own: int, treasury: int
) -> None:
    """SRS-STAKE-01: a channel the treasury funded, or one the node emptied, stakes nothing."""
    funded = StakeChannel(
        channel_id="800000x1x0", channel_point="ef" * 32 + ":0", peer_pubkey=PEER,
        capacity_sat=own + treasury, local_balance_sat=treasury, remote_balance_sat=own,
        confirmations=3, active=True,
    )  # fmt: skip
    result = check_stake(Tier.T1, [funded])
    assert result.passed == (own >= T1_MIN)
    assert result.capacity_sat == own
    if not result.passed:
        with pytest.raises(InsufficientStake, match="own balance"):
            result.raise_if_failed()


@given(st.lists(st.integers(min_value=0, max_value=4 * T1_MIN), max_size=3))
def test_a_stake_check_asked_again_gives_the_same_verdict(capacities: list[int]) -> None:
    channels = [channel(c, channel_id=f"800000x{i}x0") for i, c in enumerate(capacities)]
    first = check_stake(Tier.T1, channels)
    assert check_stake(Tier.T1, list(channels)) == first
    assert check_stake(Tier.T1, iter(channels)) == first


def test_a_stake_check_refuses_what_is_not_a_channel_every_time_hashable_or_not() -> None:
    for bad in (["not a channel"], [["unhashable"]]):
        for _ in range(2):
            with pytest.raises(InvalidValue):
                check_stake(Tier.T1, bad)  # type: ignore[list-item]
