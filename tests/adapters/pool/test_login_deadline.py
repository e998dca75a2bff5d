"""A connection must log in soon after its handshake (SRS-SEC-16, SRS-POOL-02): one that has not
opened a mining channel with a login the registry verified within ``login_timeout_s`` is closed,
counted as ``login-timeout`` and logged, and its slot is freed — whether it stays silent, keeps
sending messages that never log it in, or trickles one frame a byte at a time. An honest miner
that logs in in time mines on past the deadline. Each test performs the attack over real
sockets on 127.0.0.1 against the pool's own handler
(:class:`~owm_adapters.pool.channels.MinerConnection`)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from owm_adapters.chain.local_chain import LocalChain
from owm_adapters.pool.channels import EXTRANONCE_SIZE, MinerConnection
from owm_adapters.pool.connection import ConnectionClosed
from owm_adapters.pool.miner import StratumMiner
from owm_adapters.pool.mining import MiningPool
from owm_adapters.pool.server import LOGIN_TIMEOUT, PoolServer
from owm_adapters.storage.memory import memory_repositories
from owm_core.identity.pool_login import user_identity
from owm_core.pool import sv2_frames
from owm_core.pool import sv2_messages as sv2
from owm_core.pool.sv2_frames import Frame
from tests.adapters.pool.support import AUTHORITY, closed_by_peer, dial, static_key
from tests.adapters.pool.test_extended_channels import ExtendedMiner
from tests.adapters.pool.test_mining_protocol import (
    MINER,
    POOL_SCRIPT,
    STRANGER,
    FrozenChain,
    Pool,
    Registry,
    miner_on,
)
from tests.adapters.pool.test_server_limits import wait_until

DEADLINE_S = 1.0
"""The login deadline in these tests (60 s by default)."""


@pytest.fixture
def pools(tmp_path: Path) -> Iterator[Callable[..., tuple[Pool, PoolServer]]]:
    """Pools with a 1 s login deadline and room for one connection, so a connection whose slot
    is not freed keeps the next miner out."""
    started: list[PoolServer] = []

    def start(
        login_timeout_s: float = DEADLINE_S, idle_timeout_s: float = 600.0
    ) -> tuple[Pool, PoolServer]:
        store = memory_repositories()
        chain = FrozenChain(LocalChain(tmp_path / f"chain{len(started)}.db"))
        mining = MiningPool(
            chain, store.shares, lambda: int(time.time()), payout_script=POOL_SCRIPT
        )
        mining.refresh()
        registry = Registry(MINER)
        server = PoolServer(
            static_key(), lambda c: MinerConnection(c, mining, registry),
            login_timeout_s=login_timeout_s, idle_timeout_s=idle_timeout_s, max_connections=1,
        )  # fmt: skip
        started.append(server)
        return Pool(mining, server.start(), chain, store), server

    yield start
    for server in started:
        server.stop()


def assert_closed_at_the_deadline(server: PoolServer, pool: Pool, began: float) -> None:
    """The connection ended about ``DEADLINE_S`` after ``began`` (the handshake's end), as a
    ``login-timeout``; its slot is free again: a registered miner gets in and mines."""
    took = time.monotonic() - began
    assert DEADLINE_S * 0.8 < took < DEADLINE_S + 3.0, f"closed after {took:.2f} s"
    wait_until(lambda: server.refusals[LOGIN_TIMEOUT] == 1 and server.open_connections == 0)
    assert set(server.refusals) == {LOGIN_TIMEOUT}
    assert miner_on(pool).mine(shares=1).accepted == 1


@pytest.mark.parametrize("setup_first", [False, True], ids=["silent", "set-up-then-silent"])
def test_a_peer_that_never_logs_in_is_closed_at_the_login_deadline_and_its_slot_freed(
    pools: Callable[..., tuple[Pool, PoolServer]],
    caplog: pytest.LogCaptureFixture,
    setup_first: bool,
) -> None:
    caplog.set_level(logging.INFO, logger="owm_adapters.pool")
    pool, server = pools()
    connection = dial(pool.address)
    began = time.monotonic()
    if setup_first:
        StratumMiner(connection).setup(*pool.address)
    assert closed_by_peer(connection.sock)
    assert_closed_at_the_deadline(server, pool, began)
    assert f"refused: {LOGIN_TIMEOUT} (not authenticated within 1 s of the handshake)" in (
        caplog.text
    )


@pytest.mark.parametrize(
    "login",
    [
        lambda session: user_identity(STRANGER, "rig", session),  # not registered
        lambda session: user_identity(MINER, "rig", b"\x00" * 32),  # signed for another session
    ],
    ids=["unknown-node", "login-of-another-session"],
)
def test_a_peer_sending_refused_logins_without_pause_is_still_closed_at_the_login_deadline(
    pools: Callable[..., tuple[Pool, PoolServer]], login: Callable[[bytes], str]
) -> None:
    pool, server = pools()
    attacker = StratumMiner.dial(*pool.address, AUTHORITY, int(time.time()))
    began = time.monotonic()
    attacker.setup(*pool.address)
    refused = 0
    with pytest.raises((ConnectionClosed, OSError)):
        while True:  # far more often than any idle timeout: only the login deadline ends it
            identity = login(attacker.connection.handshake_hash)
            attacker.send(sv2.OpenStandardMiningChannel(refused, identity, 1e6, b"\xff" * 32))
            answer = attacker.receive()
            assert isinstance(answer, sv2.OpenMiningChannelError)
            assert answer.error_code == "unknown-user"
            refused += 1
            time.sleep(0.05)
    assert refused >= 5, "the attacker kept the connection busy before the deadline"
    assert_closed_at_the_deadline(server, pool, began)


def test_a_peer_trickling_one_large_frame_a_byte_at_a_time_is_closed_at_the_login_deadline(
    pools: Callable[..., tuple[Pool, PoolServer]],
) -> None:
    """Each byte comes well within any read timeout; only the deadline on the whole frame (not
    on each read) cuts the peer off (60,000 bytes at one per 50 ms would take 50 minutes)."""
    pool, server = pools()
    attacker = dial(pool.address)
    began = time.monotonic()
    wire = sv2_frames.encrypt_frame(attacker.transport.send, Frame(0, 1, b"\x00" * 60_000))
    attacker.sock.sendall(wire[:100])

    def trickle() -> None:
        for index in range(100, len(wire)):
            time.sleep(0.05)
            try:
                attacker.sock.send(wire[index : index + 1])
            except OSError:
                return

    threading.Thread(target=trickle, daemon=True).start()
    assert closed_by_peer(attacker.sock)
    assert_closed_at_the_deadline(server, pool, began)


def test_an_honest_miner_that_logs_in_in_time_keeps_mining_past_the_login_deadline(
    pools: Callable[..., tuple[Pool, PoolServer]],
) -> None:
    pool, server = pools()
    miner = miner_on(pool)
    time.sleep(DEADLINE_S * 1.5)
    assert miner.mine(shares=2).accepted == 2
    assert server.open_connections == 1 and not server.refusals


def test_an_extended_channel_logs_a_connection_in_as_well(
    pools: Callable[..., tuple[Pool, PoolServer]],
) -> None:
    pool, server = pools()
    miner = ExtendedMiner(pool)
    assert isinstance(miner.opened, sv2.OpenExtendedMiningChannelSuccess)
    time.sleep(DEADLINE_S * 1.5)
    extranonce = b"\x01" * EXTRANONCE_SIZE
    assert isinstance(miner.submit(extranonce, miner.find(extranonce)), sv2.SubmitSharesSuccess)
    assert server.open_connections == 1 and not server.refusals


def test_a_silent_peer_is_closed_at_the_idle_timeout_when_that_comes_before_the_login_deadline(
    pools: Callable[..., tuple[Pool, PoolServer]],
) -> None:
    pool, server = pools(idle_timeout_s=0.5, login_timeout_s=60.0)
    connection = dial(pool.address)
    began = time.monotonic()
    assert closed_by_peer(connection.sock)
    assert time.monotonic() - began < 3.0
    wait_until(lambda: server.open_connections == 0)
    assert not server.refusals, "an idle connection ends quietly, as after a login"
