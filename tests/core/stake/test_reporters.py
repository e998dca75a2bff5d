"""Slashing reporters: distinct stake channels count, Sybils, tasks and strangers do not."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from owm_core.errors import Conflict, PolicyViolation
from owm_core.nodes.tiers import Tier
from owm_core.stake.channel import StakeChannel
from owm_core.stake.reporters import (
    CHANNEL_REPORTER_PREFIX,
    ChannelBindings,
    ReporterStake,
    counted_signals,
    own_balance_sat,
)
from owm_core.stake.slashing import SlashingPolicy, SlashingReason, SlashingSignal, SlashingTarget

T0 = 1_700_000_000
MIN_SAT = 100_000
COORDINATOR_KEY = "0c" * 32


def node(name: str) -> str:
    return "n" + hashlib.sha1(name.encode()).hexdigest()


def point(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest() + ":0"


VICTIM = node("victim")


def signal(reporter: str, about: str = VICTIM) -> SlashingSignal:
    return SlashingSignal(
        node_id=about,
        reporter=reporter,
        reason=SlashingReason.FAKE_PROOF,
        evidence_hash=hashlib.sha256(reporter.encode()).hexdigest(),
        at=T0,
    )


def counted_reporters(signals: list[SlashingSignal], stakes: dict[str, ReporterStake]) -> set[str]:
    """The distinct reporters the slashing policy would count against the victim."""
    return {s.reporter for s in counted_signals(VICTIM, signals, stakes, MIN_SAT)}


def test_a_second_node_claiming_a_bound_channel_is_refused() -> None:
    bindings = ChannelBindings().bind(point("c"), node("a"))
    assert bindings.bind(point("c"), node("a")).node_of(point("c")) == node("a")
    with pytest.raises(Conflict):
        bindings.bind(point("c"), node("b"))
    assert bindings.release(point("c")).bind(point("c"), node("b")).node_of(point("c"))


def test_the_own_balance_is_the_treasurys_remote_side() -> None:
    channel = StakeChannel(
        "123x1x0", point("c"), "02" + "ab" * 32, 1_000_000, 900_000, 50_000, 3, True
    )
    assert own_balance_sat(channel) == 50_000


def test_three_distinct_funded_channels_slash_a_tier_one_node() -> None:
    stakes = {node(n): ReporterStake(node(n), point(n), MIN_SAT) for n in "abc"}
    signals = [signal(node(n)) for n in "abc"]
    counted = counted_signals(VICTIM, signals, stakes, MIN_SAT)
    assert {s.reporter for s in counted} == {CHANNEL_REPORTER_PREFIX + point(n) for n in "abc"}
    target = SlashingTarget(VICTIM, Tier.T1, "123x1x0")
    policy = SlashingPolicy(frozenset(), coordinator_key=COORDINATOR_KEY)
    assert policy.decide(target, counted, [], T0).node_id == VICTIM


def test_tasks_strangers_and_the_target_itself_are_never_counted() -> None:
    stakes = {VICTIM: ReporterStake(VICTIM, point("victim"), MIN_SAT)}
    signals = [
        signal("verify:task-1"),
        signal("verify:task-2"),
        signal(node("anon")),
        signal(VICTIM),
    ]
    assert counted_reporters(signals, stakes) == set()


@given(
    on_main=st.integers(0, 20),
    poor=st.lists(st.integers(0, MIN_SAT - 1), max_size=10),
    anonymous=st.integers(0, 10),
    tasks=st.integers(0, 10),
    on_victims_channel=st.integers(0, 5),
    about_others=st.integers(0, 5),
    k=st.integers(2, 5),
)
@settings(max_examples=300)
def test_a_sybil_with_one_funded_channel_never_reaches_k_distinct_reporters(
    on_main: int,
    poor: list[int],
    anonymous: int,
    tasks: int,
    on_victims_channel: int,
    about_others: int,
    k: int,
) -> None:
    stakes: dict[str, ReporterStake] = {VICTIM: ReporterStake(VICTIM, point("victim"), MIN_SAT)}
    signals = []

    def backed(name: str, channel: str, balance: int, about: str = VICTIM) -> None:
        stakes[node(name)] = ReporterStake(node(name), point(channel), balance)
        signals.append(signal(node(name), about))

    for i in range(on_main):
        backed(f"m{i}", "main", 10 * MIN_SAT)
    for i, balance in enumerate(poor):
        backed(f"p{i}", f"p{i}", balance)
    for i in range(on_victims_channel):
        backed(f"v{i}", "victim", 10 * MIN_SAT)
    for i in range(about_others):
        backed(f"o{i}", f"o{i}", 10 * MIN_SAT, about=node("someone-else"))
    signals += [signal(node(f"a{i}")) for i in range(anonymous)]
    signals += [signal(f"verify:t{i}") for i in range(tasks)]
    assert len(counted_reporters(signals, stakes)) <= 1
    counted = counted_signals(VICTIM, signals, stakes, MIN_SAT)
    policy = SlashingPolicy(frozenset(), tier1_distinct_reporters=k,
                            coordinator_key=COORDINATOR_KEY)
    with pytest.raises(PolicyViolation):
        policy.decide(SlashingTarget(VICTIM, Tier.T1, "123x1x0"), counted, [], T0)


@given(funded=st.integers(0, 8), copies=st.integers(1, 4))
def test_each_funded_channel_counts_exactly_once(funded: int, copies: int) -> None:
    stakes, signals = {}, []
    for c in range(funded):
        for j in range(copies):
            reporter = node(f"c{c}-{j}")
            stakes[reporter] = ReporterStake(reporter, point(f"c{c}"), MIN_SAT)
            signals += [signal(reporter)] * 2
    assert len(counted_reporters(signals, stakes)) == funded
