"""Vardiff over real sockets and Noise (SRS-POOL-03, SRS-POOL-04): each channel opens at the
difficulty its miner's declared hash rate calls for, is retargeted every minute by the pool's
template loop (``SetTarget``), and shares sent before a change reached the miner are still judged
at the difficulty they were mined for."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from owm_adapters.chain.local_chain import LocalChain
from owm_adapters.pool.channels import GRACE_S, Channel, MinerConnection
from owm_adapters.pool.connection import NoiseSocket
from owm_adapters.pool.miner import StratumMiner
from owm_adapters.pool.mining import MiningPool
from owm_adapters.pool.server import PoolServer
from owm_adapters.storage.memory import memory_repositories
from owm_core.pool import bitcoin
from owm_core.pool import sv2_messages as sv2
from owm_core.pool.vardiff import VardiffPolicy
from tests.adapters.pool.support import AUTHORITY, static_key
from tests.adapters.pool.test_mining_protocol import MINER, POOL_SCRIPT, FrozenChain, Registry

HARD_BITS = 0x1B0404CB  # difficulty 16,307: room for channels' difficulties to move
T0 = 1_800_000_000


@attrs.define
class Stage:
    pool: MiningPool
    address: tuple[str, int]
    clock: list[int]
    handlers: list[MinerConnection]

    def miner(self, hash_rate: float) -> StratumMiner:
        miner = StratumMiner.dial(*self.address, AUTHORITY, int(time.time()))
        miner.setup("127.0.0.1", self.address[1])
        miner.open_channel(MINER, "rig", nominal_hash_rate=hash_rate)
        return miner

    def minute_later(self) -> None:
        self.clock[0] += 60
        self.pool.retarget()

    def channel(self) -> Channel:
        (handler,) = self.handlers
        (channel,) = handler._channels.values()
        return channel


def serve(pool: MiningPool) -> tuple[PoolServer, list[MinerConnection]]:
    """A listener for ``pool`` and the handlers of the connections it takes, as they come."""
    handlers: list[MinerConnection] = []

    def handler(connection: NoiseSocket) -> MinerConnection:
        handlers.append(MinerConnection(connection, pool, Registry(MINER)))
        return handlers[-1]

    return PoolServer(static_key(), handler), handlers


def staged(tmp_path: Path, bits: int | None) -> Iterator[Stage]:
    """A vardiff pool on a held template (with ``bits``, else regtest's: every hash is near a
    share, and no difficulty above 1), its clock still until a test moves it."""
    chain = FrozenChain(LocalChain(tmp_path / "chain.db"))
    if bits is not None:
        chain.template = attrs.evolve(chain.template, bits=bits)
    clock = [T0]
    pool = MiningPool(chain, memory_repositories().shares, lambda: clock[0],
                      payout_script=POOL_SCRIPT, vardiff=VardiffPolicy())  # fmt: skip
    pool.refresh()
    server, handlers = serve(pool)
    yield Stage(pool, server.start(), clock, handlers)
    server.stop()


@pytest.fixture
def stage(tmp_path: Path) -> Iterator[Stage]:
    yield from staged(tmp_path, HARD_BITS)


@pytest.fixture
def regtest(tmp_path: Path) -> Iterator[Stage]:
    yield from staged(tmp_path, None)


def set_target(miner: StratumMiner) -> int:
    """The difficulty of the next ``SetTarget`` the miner gets."""
    message = miner.receive()
    assert isinstance(message, sv2.SetTarget), message
    return bitcoin.DIFF1_TARGET // sv2.target_value(message.maximum_target)


@pytest.mark.parametrize(("hash_rate", "difficulty"), [(1e12, 2_328), (1e6, 1), (1e18, 16_307)])
def test_a_channel_opens_at_the_difficulty_its_miners_hash_rate_calls_for(
    stage: Stage, hash_rate: float, difficulty: int
) -> None:
    miner = stage.miner(hash_rate)  # 1 TH/s: six shares a minute at 2,328; never above a block
    assert miner.target == bitcoin.share_target(difficulty)
    miner.close()


def test_a_silent_channel_falls_a_step_a_minute_to_the_floor_each_step_sent_as_set_target(
    stage: Stage,
) -> None:
    miner = stage.miner(1e12)
    seen = []
    for _ in range(6):
        stage.minute_later()
        seen.append(set_target(miner))
    assert seen == [582, 145, 36, 9, 2, 1]
    stage.minute_later()  # at the floor: nothing more is sent
    assert stage.channel().difficulty == 1
    miner.close()


def test_a_new_share_difficulty_is_vardiffs_floor_too(stage: Stage) -> None:
    miner = stage.miner(1e12)
    stage.pool.set_share_difficulty(9)
    assert set_target(miner) == 9  # every channel is set afresh
    stage.minute_later()  # silent: it would fall to 2, but 9 is the floor now
    assert stage.channel().difficulty == 9
    miner.close()


def test_a_busy_channel_rises_and_shares_mined_before_the_change_are_judged_at_the_old_target(
    stage: Stage,
) -> None:
    miner = stage.miner(1e12)
    channel = stage.channel()
    channel.accepted = 24  # four times the six a minute it was set for
    stage.minute_later()
    assert set_target(miner) == 4 * 2_328
    now = stage.clock[0]
    assert channel.judged_at(now + GRACE_S - 1) == 2_328  # in flight when the target changed
    assert channel.judged_at(now + GRACE_S) == 4 * 2_328
    assert channel.accepted == 0  # a new window
    miner.close()


def test_accepted_shares_count_towards_their_channels_next_retarget(regtest: Stage) -> None:
    miner = regtest.miner(1e6)
    assert miner.mine(shares=3).accepted == 3
    assert regtest.channel().accepted == 3
    miner.close()


def test_a_lower_difficulty_applies_at_once_and_a_higher_one_after_the_grace() -> None:
    channel = Channel(1, "n", difficulty=100, now=T0)
    channel.retargeted(25, T0 + 60)
    assert channel.judged_at(T0 + 60) == 25
    channel.retargeted(400, T0 + 120)
    assert channel.judged_at(T0 + 120) == 25 and channel.judged_at(T0 + 120 + GRACE_S) == 400
    assert not channel.retargeted(400, T0 + 200) and channel.judged_at(T0 + 200) == 400


def test_an_update_channel_sets_the_difficulty_afresh_for_the_new_hash_rate(stage: Stage) -> None:
    miner = stage.miner(1e12)
    assert miner.channel_id is not None
    miner.send(sv2.UpdateChannel(miner.channel_id, 4e12, b"\xff" * 32))
    assert set_target(miner) == 9_313  # six shares a minute at 4 TH/s
    miner.close()


def test_a_maximum_target_below_the_channels_makes_it_harder_and_one_past_a_block_is_refused(
    stage: Stage,
) -> None:
    miner = stage.miner(1e6)
    assert miner.channel_id is not None
    asked = bitcoin.share_target(5_000)
    miner.send(sv2.UpdateChannel(miner.channel_id, 1e6, sv2.target_bytes(asked)))
    difficulty = set_target(miner)
    assert bitcoin.share_target(difficulty) <= asked < bitcoin.share_target(difficulty - 1)
    too_hard = sv2.target_bytes(bitcoin.share_target(10**6))  # a block here is 16,307
    miner.send(sv2.UpdateChannel(miner.channel_id, 1e6, too_hard))
    assert miner.receive() == sv2.UpdateChannelError(miner.channel_id, "max-target-out-of-range")
    miner.send(sv2.UpdateChannel(miner.channel_id + 99, 1e6, b"\xff" * 32))
    assert miner.receive() == sv2.UpdateChannelError(miner.channel_id + 99, "invalid-channel-id")
    miner.send(sv2.UpdateChannel(miner.channel_id, 1e12, b"\xff" * 32))  # still served
    assert set_target(miner) == 2_328
    miner.close()


def test_a_channel_far_faster_than_its_difficulty_is_raised_before_its_minute_is_over(
    stage: Stage,
) -> None:
    miner = stage.miner(1e12)
    stage.channel().accepted = 24  # four windows' worth within five seconds
    stage.clock[0] += 5
    stage.pool.retarget()
    assert set_target(miner) == 4 * 2_328
    miner.close()


def test_shares_coming_far_too_fast_start_a_new_window_as_they_are_judged(
    regtest: Stage,
) -> None:
    miner = regtest.miner(1e6)
    assert miner.mine(shares=30).accepted == 30
    assert regtest.channel().accepted == 30 - 24  # retargeted at the 24th, in the same second
    miner.close()
