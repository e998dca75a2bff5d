"""A stake-backed Sybil cannot get an honest tier-1 node slashed (SRS-STAKE-04, SRS-SEC-11).

Tier-1 signals count one reporter per distinct stake channel that holds the reporter's own
balance; tasks, anonymous keys, identities sharing a channel and the target's own channel count
for nothing (``owm_adapters.services.slashing.stake_backed``). The probe that used to work: two
fake nodes backed by the victim's channel and three anonymous tasks reported the victim, which
was suspended, its unpaid rewards forfeited and its channel force-closed.
"""

from __future__ import annotations

import hashlib
import os

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st

from owm_adapters.services.slashing import SlashingService
from owm_adapters.storage.memory import MemoryRepositories, memory_repositories
from owm_core.identity.keys import Identity
from owm_core.nodes.registry import LnNodeUri, Node
from owm_core.nodes.tiers import StakeRequirements, Tier
from owm_core.payments.records import PaymentState, RewardPayment
from owm_core.stake.channel import Stake, StakeChannel, StakeStatus, check_stake
from owm_core.stake.slashing import SlashingPolicy, SlashingReason, SlashingSignal
from tests.server.harness import StepClock

T0 = 1_800_000_000
MIN_SAT = StakeRequirements().for_tier(Tier.T1).min_sats
TREASURY = "03" + "ee" * 32


class RecordingCloser:
    """The force-close handle: records every channel it is asked to close."""

    def __init__(self) -> None:
        self.closed: list[str] = []

    def force_close(self, channel_point: str) -> str:
        self.closed.append(channel_point)
        return "ff" * 32


@attrs.define
class Network:
    repositories: MemoryRepositories
    closer: RecordingCloser
    slashing: SlashingService

    def node(self, channel_point: str, own_sat: int = MIN_SAT) -> str:
        """A registered tier-1 node with an active stake on ``channel_point``; its node id.

        Stored directly, as a registration before channel bindings and Lightning proofs could
        have stored it: the slashing rule must hold even for such records.
        """
        identity = Identity.from_seed(os.urandom(32))
        channel = StakeChannel(
            channel_id="100x1x0", channel_point=channel_point, peer_pubkey=TREASURY,
            capacity_sat=2 * own_sat, local_balance_sat=own_sat, remote_balance_sat=own_sat,
            confirmations=3, active=True,
        )  # fmt: skip
        check = check_stake(Tier.T1, [channel], StakeRequirements(t1_sats=max(1, own_sat)))
        stake = Stake.register(identity.public_key_hex, check, T0).verified(check, T0)
        self.repositories.stakes.save(stake)
        self.repositories.nodes.add(Node(
            node_id=identity.node_id, public_key=identity.public_key_hex,
            ln_node_uri=LnNodeUri.parse(f"02{'11' * 32}@127.0.0.1:9735"), tier=Tier.T1,
            vram_mb=0, ram_mb=16_000, bandwidth_mbps=100, registered_at=T0, last_heartbeat=T0,
        ))  # fmt: skip
        return identity.node_id

    def stake_of(self, node_id: str) -> Stake:
        node = self.repositories.nodes.get(node_id)
        assert node is not None
        stake = self.repositories.stakes.get(node.public_key)
        assert stake is not None
        return stake


def network() -> Network:
    repositories = memory_repositories()
    closer = RecordingCloser()
    coordinator = Identity.from_seed(os.urandom(32))
    slashing = SlashingService(
        repositories, closer, coordinator,  # type: ignore[arg-type]
        StepClock(T0 + 60),
        SlashingPolicy(maintainer_keys=[], coordinator_key=coordinator.public_key_hex),
    )  # fmt: skip
    return Network(repositories, closer, slashing)


def point(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest() + ":0"


def signal(target: str, reporter: str, n: int = 0) -> SlashingSignal:
    evidence = hashlib.sha256(f"{reporter}/{n}".encode()).hexdigest()
    return SlashingSignal(target, reporter, SlashingReason.FAKE_PROOF, evidence, T0 + 30)


def owed(node_id: str, i: int) -> RewardPayment:
    return RewardPayment(
        payment_id=f"p{i}", task_id=f"t{i}", node_id=node_id, amount_msat=5_000,
        payment_hash=hashlib.sha256(bytes([i])).hexdigest(), created_at=T0, updated_at=T0,
    )  # fmt: skip


def untouched(net: Network, honest: str) -> bool:
    """Not suspended, nothing forfeited, nothing force-closed, nothing logged."""
    node = net.repositories.nodes.get(honest)
    payments = net.repositories.payments.for_node(honest)
    return (
        net.stake_of(honest).status is StakeStatus.ACTIVE
        and node is not None and not node.suspended
        and all(p.state is PaymentState.PENDING for p in payments)
        and net.closer.closed == []
        and list(net.repositories.slashing_log.entries()) == []
    )  # fmt: skip


def test_two_fake_nodes_on_the_victims_channel_and_three_anonymous_tasks_slash_nobody() -> None:
    """The probe, replayed against the wired rule: the honest node keeps everything."""
    net = network()
    victim_channel = point("victim")
    honest = net.node(victim_channel)
    fakes = [net.node(victim_channel) for _ in range(2)]  # backed by the victim's channel
    for i in range(2):
        net.repositories.payments.upsert(owed(honest, i))
    tasks = [f"verify:task-{i}" for i in range(3)]  # three anonymous tasks

    outcomes = net.slashing.report([signal(honest, r) for r in [*fakes, *tasks]])

    assert outcomes == []
    assert untouched(net, honest)


def test_three_reporters_with_their_own_stake_channels_still_slash() -> None:
    """The rule does not disarm slashing: distinct stakes are distinct reporters."""
    net = network()
    target = net.node(point("target"))
    reporters = [net.node(point(f"reporter-{i}")) for i in range(3)]

    [outcome] = net.slashing.report([signal(target, r) for r in reporters])

    assert net.stake_of(target).status is StakeStatus.SLASHED
    assert net.closer.closed == [point("target")] and outcome.logged


@settings(max_examples=60, deadline=None)
@given(
    sybil_channels=st.integers(1, 2),
    identities=st.lists(st.integers(0, 1), min_size=1, max_size=8),
    tasks=st.integers(0, 5),
    strangers=st.integers(0, 3),
    on_victims_channel=st.integers(0, 2),
    underfunded=st.integers(0, 3),
    repeats=st.integers(1, 2),
)
def test_no_sybil_set_with_fewer_stakes_than_the_threshold_gets_an_honest_node_slashed(
    sybil_channels: int,
    identities: list[int],
    tasks: int,
    strangers: int,
    on_victims_channel: int,
    underfunded: int,
    repeats: int,
) -> None:
    """Any identities on fewer than 3 funded channels, plus tasks, anonymous keys, identities
    on the victim's own channel and reporters whose channel holds less than the tier-1
    minimum of their own: the victim is never slashed (threshold 3, SRS-STAKE-04)."""
    net = network()
    victim_channel = point("victim")
    honest = net.node(victim_channel)
    net.repositories.payments.upsert(owed(honest, 1))
    reporters = [net.node(point(f"sybil-{i % sybil_channels}")) for i in identities]
    reporters += [net.node(victim_channel) for _ in range(on_victims_channel)]
    reporters += [net.node(point(f"poor-{i}"), MIN_SAT - 1) for i in range(underfunded)]
    reporters += [f"verify:task-{i}" for i in range(tasks)]
    reporters += [os.urandom(32).hex() for _ in range(strangers)]

    outcomes = net.slashing.report(
        [signal(honest, r, n) for r in reporters for n in range(repeats)]
    )

    assert outcomes == []
    assert untouched(net, honest)
