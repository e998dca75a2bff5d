"""Variable share difficulty (SRS-POOL-03, SRS-POOL-04): a channel's difficulty aims at its
policy's shares a minute, moves a bounded step at a time, and stays between the pool's floor
and a block."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from owm_core.errors import InvalidValue
from owm_core.pool.bitcoin import DIFF1_TARGET
from owm_core.pool.vardiff import (
    HASHES_PER_DIFFICULTY_1,
    VardiffPolicy,
    initial_difficulty,
    network_difficulty,
    next_difficulty,
    retarget_due,
)

POLICIES = st.builds(
    VardiffPolicy,
    shares_per_minute=st.integers(1, 600),
    retarget_s=st.integers(1, 600),
    min_difficulty=st.integers(1, 1_000),
    max_step=st.integers(2, 16),
)
MOST = st.integers(1, 10**14)


@given(policy=POLICIES, most=MOST, current=st.integers(1, 10**14), accepted=st.integers(0, 10**6),
       elapsed=st.integers(1, 10**5))  # fmt: skip
def test_a_retarget_moves_at_most_one_step_and_stays_between_the_floor_and_a_block(
    policy: VardiffPolicy, most: int, current: int, accepted: int, elapsed: int
) -> None:
    new = next_difficulty(current, accepted, elapsed, policy, most)
    assert policy.min_difficulty <= new <= max(policy.min_difficulty, most)
    lowest = max(policy.min_difficulty, min(most, current // policy.max_step))
    assert lowest <= new <= max(policy.min_difficulty, current * policy.max_step)


@given(policy=POLICIES, current=st.integers(1, 10**9), elapsed=st.integers(1, 10**4),
       accepted=st.integers(0, 10**4), more=st.integers(1, 10**4))  # fmt: skip
def test_more_shares_in_the_same_time_never_lower_the_difficulty(
    policy: VardiffPolicy, current: int, elapsed: int, accepted: int, more: int
) -> None:
    elapsed += policy.retarget_s
    fewer = next_difficulty(current, accepted, elapsed, policy, 10**15)
    assert next_difficulty(current, accepted + more, elapsed, policy, 10**15) >= fewer


@given(current=st.integers(1, 10**9), minutes=st.integers(1, 60))
def test_a_channel_sending_what_the_policy_wants_keeps_its_difficulty(
    current: int, minutes: int
) -> None:
    policy = VardiffPolicy(shares_per_minute=6, retarget_s=60)
    assert next_difficulty(current, 6 * minutes, 60 * minutes, policy, 10**15) == current


def test_a_silent_channel_falls_a_step_a_retarget_to_the_floor() -> None:
    policy = VardiffPolicy(min_difficulty=2)
    steps = [1024]
    while steps[-1] != 2:
        steps.append(next_difficulty(steps[-1], 0, 60, policy, 10**6))
    assert steps == [1024, 256, 64, 16, 4, 2]


@given(rate=st.floats(1e3, 1e18), policy=POLICIES)
def test_a_channel_opens_at_about_its_policys_shares_a_minute_for_its_declared_hash_rate(
    rate: float, policy: VardiffPolicy
) -> None:
    difficulty = initial_difficulty(rate, policy, 10**20)
    per_minute = rate * 60 / (difficulty * HASHES_PER_DIFFICULTY_1)
    if difficulty > policy.min_difficulty:  # not held at the floor: rounded down, so a bit more
        assert policy.shares_per_minute <= per_minute * (1 + 1e-9)
        assert per_minute <= policy.shares_per_minute * (difficulty + 1) / difficulty * (1 + 1e-9)
    else:
        assert per_minute <= policy.shares_per_minute * (1 + 1e-9) * 2


@pytest.mark.parametrize("rate", [0.0, -5.0, math.nan, math.inf])
def test_an_unknown_hash_rate_opens_at_the_floor(rate: float) -> None:
    assert initial_difficulty(rate, VardiffPolicy(min_difficulty=3), 10**9) == 3


def test_no_difficulty_goes_above_a_blocks() -> None:
    most = network_difficulty(DIFF1_TARGET // 5000)
    assert most == 5000
    assert initial_difficulty(1e18, VardiffPolicy(), most) == 5000
    assert next_difficulty(4000, 10**6, 60, VardiffPolicy(), most) == 5000
    assert network_difficulty(2**255) == 1  # regtest: easier than difficulty 1


def test_a_policy_out_of_its_ranges_is_refused_naming_the_field() -> None:
    with pytest.raises(InvalidValue, match="shares_per_minute"):
        VardiffPolicy(shares_per_minute=0)
    with pytest.raises(InvalidValue, match="max_step"):
        VardiffPolicy(max_step=1)


@given(policy=POLICIES, accepted=st.integers(0, 10**6), elapsed=st.integers(0, 10**5))
def test_a_retarget_is_due_after_its_window_or_at_once_when_shares_come_far_too_fast(
    policy: VardiffPolicy, accepted: int, elapsed: int
) -> None:
    window = max(1, policy.shares_per_minute * policy.retarget_s // 60)
    too_fast = accepted >= policy.max_step * window
    assert retarget_due(accepted, elapsed, policy) is (elapsed >= policy.retarget_s or too_fast)


def test_an_asic_that_declared_a_cpus_hash_rate_is_raised_every_few_shares() -> None:
    policy = VardiffPolicy()  # 6 a minute: due at once after 24 shares
    difficulty, shares = 1, 0
    while difficulty < 200_000:  # 100 TH/s: six shares a minute at about 232,830
        shares += 24
        assert retarget_due(24, 1, policy)
        difficulty = next_difficulty(difficulty, 24, 1, policy, 10**9)
    assert shares <= 24 * 9  # nine steps of 4x, not nine minutes of shares
