"""A miner that stops reading cannot stall the pool (SRS-POOL-01, SRS-PERF-11, SRS-SEC-16).

The pool pushes new work to every miner from one thread; its sends never block, what a socket
does not take waits in that connection's backlog for the writer thread, and a connection whose
backlog goes over the cap or does not drain in time is closed as ``slow-reader``. Each test
performs the attack over real sockets on 127.0.0.1."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import attrs
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from owm_adapters.chain.local_chain import LocalChain
from owm_adapters.pool.channels import MinerConnection
from owm_adapters.pool.connection import NoiseSocket, accept, connect
from owm_adapters.pool.miner import StratumMiner
from owm_adapters.pool.mining import MiningPool
from owm_adapters.pool.server import PoolServer
from owm_adapters.pool.writer import SLOW_READER, PoolWriter
from owm_adapters.storage.memory import memory_repositories
from owm_core.identity.pool_login import user_identity
from owm_core.pool import sv2_messages as sv2
from owm_core.pool.bitcoin import BlockTemplate
from owm_core.pool.sv2_frames import Frame
from tests.adapters.pool.support import AUTHORITY, closed_by_peer, static_key
from tests.adapters.pool.test_mining_protocol import MINER, POOL_SCRIPT, FrozenChain, Registry
from tests.adapters.pool.test_server_limits import wait_until

Address = tuple[str, int]
SMALL_BUFFER = 4096
"""What a non-reading miner asks of its kernel receive buffer, so the pool's sends fill it soon."""


class MovingChain(FrozenChain):
    """A chain whose tip moves at every ``block_template`` call: each refresh is a new epoch."""

    def block_template(self) -> BlockTemplate:
        height = self.template.height + 1
        self.template = attrs.evolve(
            self.template, height=height, previous_block_hash=os.urandom(32).hex()
        )
        return self.template


class CountedMinerConnection(MinerConnection):
    """The pool's handler, counting how often the listener said the connection closed."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.closed_calls = 0

    def closed(self) -> None:
        self.closed_calls += 1
        super().closed()


@attrs.frozen
class Pool:
    mining: MiningPool
    server: PoolServer
    address: Address
    handlers: list[CountedMinerConnection]


@pytest.fixture
def pools(tmp_path: Path) -> Iterator[Callable[..., Pool]]:
    started: list[PoolServer] = []

    def start(**options: object) -> Pool:
        store = memory_repositories()
        chain = MovingChain(LocalChain(tmp_path / f"chain{len(started)}.db"))
        mining = MiningPool(
            chain, store.shares, lambda: int(time.time()), payout_script=POOL_SCRIPT
        )
        mining.refresh()
        handlers: list[CountedMinerConnection] = []

        def handler(connection: NoiseSocket) -> CountedMinerConnection:
            handlers.append(CountedMinerConnection(connection, mining, Registry(MINER)))
            return handlers[-1]

        server = PoolServer(static_key(), handler, **options)  # type: ignore[arg-type]
        started.append(server)
        address = server.start()
        assert server._listener is not None  # accepted sockets inherit its small send buffer
        server._listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER)
        return Pool(mining, server, address, handlers)

    yield start
    for server in started:
        server.stop()


def non_reader(address: Address, channels: int) -> socket.socket:
    """An attacker: a registered miner that opens ``channels`` channels (each new epoch sends
    work on each) and never reads what the pool sends; its receive buffer is small."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUFFER)
    sock.settimeout(5)
    sock.connect(address)
    connection, _ = connect(sock, AUTHORITY, os.urandom, int(time.time()), max_payload=1 << 20)
    miner = StratumMiner(connection)
    miner.setup(*address)
    login = user_identity(MINER, "never-reads", connection.handshake_hash)
    for request in range(channels):
        miner.send(sv2.OpenStandardMiningChannel(request, login, 1e6, b"\xff" * 32))
    return sock


def honest(address: Address) -> StratumMiner:
    miner = StratumMiner.dial(*address, AUTHORITY, int(time.time()), timeout_s=5)
    miner.setup(*address)
    miner.open_channel(MINER, "honest")
    miner.connection.sock.settimeout(1.0)  # new work must come within 1 s of the broadcast
    return miner


def next_prev_hash(miner: StratumMiner) -> sv2.SetNewPrevHash:
    while True:
        message = miner.receive()
        if isinstance(message, sv2.SetNewPrevHash):
            return message


def broadcast_new_epoch(mining: MiningPool) -> threading.Thread:
    """A new tip, announced from another thread, as the pool's template poll does."""
    thread = threading.Thread(target=mining.refresh, daemon=True)
    thread.start()
    return thread


def test_a_miner_that_never_reads_delays_no_one_elses_work_and_is_closed_as_a_slow_reader(
    pools: Callable[..., Pool],
) -> None:
    pool = pools()  # the default cap, MAX_BACKLOG_BYTES
    attacker = non_reader(pool.address, channels=32)  # subscribed first: sent to first
    wait_until(lambda: len(pool.handlers) == 1 and len(pool.handlers[0]._channels) == 32)
    miner = honest(pool.address)
    for epoch in range(400):
        began = time.monotonic()
        broadcast = broadcast_new_epoch(pool.mining)
        announced = next_prev_hash(miner)  # TimeoutError after 1 s: the broadcast is stuck
        assert time.monotonic() - began < 1.0, f"epoch {epoch}: new work came late"
        assert announced.prev_hash == pool.mining.prev_hash()
        broadcast.join(1.0)
        assert not broadcast.is_alive(), f"epoch {epoch}: the broadcast is stuck"
        if pool.server.refusals[SLOW_READER]:
            break
    assert pool.server.refusals[SLOW_READER] == 1, "the non-reader was never closed"
    wait_until(lambda: pool.handlers[0].closed_calls == 1 and pool.server.open_connections == 1)
    assert closed_by_peer(attacker)
    assert pool.server.backlogged_connections == 0
    announced = (broadcast_new_epoch(pool.mining), next_prev_hash(miner))[1]
    assert announced.prev_hash == pool.mining.prev_hash(), "the honest miner mines on"
    assert pool.handlers[0].closed_calls == 1 and pool.handlers[1].closed_calls == 0


def test_a_miner_reading_a_trickle_is_closed_once_its_backlog_has_not_drained_in_time(
    pools: Callable[..., Pool],
) -> None:
    pool = pools(max_backlog_bytes=64 << 20, drain_deadline_s=1.0)  # only the deadline closes it
    attacker = non_reader(pool.address, channels=64)
    wait_until(lambda: len(pool.handlers) == 1 and len(pool.handlers[0]._channels) == 64)
    while not pool.server.backlogged_connections:
        broadcast_new_epoch(pool.mining).join(1.0)
    stalled = time.monotonic()

    def trickle() -> None:  # a byte every 50 ms: never under the cap's eye, never drained
        try:
            while attacker.recv(1):
                time.sleep(0.05)
        except OSError:
            pass

    threading.Thread(target=trickle, daemon=True).start()
    wait_until(lambda: pool.server.refusals[SLOW_READER] == 1, timeout_s=5.0)
    assert 0.5 < time.monotonic() - stalled < 3.0
    wait_until(lambda: pool.handlers[0].closed_calls == 1 and pool.server.open_connections == 0)


def test_a_miner_on_64_channels_with_small_buffers_that_reads_stays_under_the_default_cap(
    pools: Callable[..., Pool],
) -> None:
    """The default cap (64 KiB) leaves an honest miner room: one at the channel cap, its kernel
    buffers small, reading as it can, gets every new block's work on every channel, blocks
    coming 50 ms apart (a new block's work for 64 channels is about 11 KiB)."""
    pool = pools()
    sock = non_reader(pool.address, channels=64)
    wait_until(lambda: len(pool.handlers) == 1 and len(pool.handlers[0]._channels) == 64)
    received = [0]

    def read() -> None:
        try:
            while chunk := sock.recv(1 << 16):
                received[0] += len(chunk)
        except OSError:
            pass

    threading.Thread(target=read, daemon=True).start()
    for _ in range(30):
        broadcast_new_epoch(pool.mining).join(5.0)
        time.sleep(0.05)
    wait_until(lambda: pool.server.backlogged_connections == 0)
    assert not pool.server.refusals and pool.handlers[0].closed_calls == 0
    assert received[0] > 30 * 64 * 150, "each epoch's work on each channel arrived"
    sock.close()


def test_stop_with_a_connection_holding_a_backlog_ends_promptly_and_joins_the_writer(
    pools: Callable[..., Pool],
) -> None:
    pool = pools(max_backlog_bytes=64 << 20, drain_deadline_s=60.0)
    attacker = non_reader(pool.address, channels=64)
    wait_until(lambda: len(pool.handlers) == 1 and len(pool.handlers[0]._channels) == 64)
    while not pool.server.backlogged_connections:
        broadcast_new_epoch(pool.mining).join(1.0)
    writer = f"sv2-writer :{pool.address[1]}"
    assert [t for t in threading.enumerate() if t.name == writer]
    began = time.monotonic()
    pool.server.stop()
    assert time.monotonic() - began < 2.0
    assert not [t for t in threading.enumerate() if t.name == writer]
    assert pool.handlers[0].closed_calls == 1 and pool.server.open_connections == 0
    assert not pool.server.refusals, "stopping is no refusal"
    assert closed_by_peer(attacker)


@attrs.define
class Session:
    """The pool's end (writing through a started writer, a small send buffer) and a miner's end
    (a small receive buffer) of one Noise session over TCP."""

    writer: PoolWriter
    pool: NoiseSocket
    miner: NoiseSocket


@pytest.fixture
def session() -> Iterator[Session]:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER)  # inherited
    writer = PoolWriter(lambda peer, detail: None, max_backlog=64 << 20)
    writer.start()
    ends: list[NoiseSocket] = []

    def respond() -> None:
        sock, _ = listener.accept()
        ends.append(accept(sock, static_key(), os.urandom, timeout_s=10, max_payload=1 << 20,
                           writer=writer))  # fmt: skip

    responder = threading.Thread(target=respond)
    responder.start()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUFFER)
    sock.settimeout(10)
    sock.connect(listener.getsockname())
    miner, _ = connect(sock, AUTHORITY, os.urandom, int(time.time()), max_payload=1 << 20)
    responder.join()
    yield Session(writer, ends[0], miner)
    ends[0].close()
    miner.close()
    writer.stop()
    listener.close()


def tagged(sender: int, index: int, size: int) -> Frame:
    return Frame(0, 1, bytes([sender]) + index.to_bytes(2, "big") + b"\xa5" * size)


frame_sizes = st.lists(st.integers(0, 60_000), min_size=1, max_size=4)
batches_of_one_sender = st.lists(frame_sizes, max_size=12)


def test_frames_written_partly_by_the_kernel_and_partly_from_the_backlog_arrive_whole_in_order(
    session: Session,
) -> None:
    @settings(max_examples=25, deadline=None)
    @given(batches=st.lists(batches_of_one_sender, min_size=1, max_size=2))
    @example(batches=[[[60_000] * 4] * 6, [[100]] * 12])
    def frames_arrive_as_sent(batches: Sequence[Sequence[Sequence[int]]]) -> None:
        sent = [
            [[tagged(s, i, size) for size in batch] for i, batch in enumerate(sender)]
            for s, sender in enumerate(batches)
        ]

        def send(batches_of_one_sender: list[list[Frame]]) -> None:
            for frames in batches_of_one_sender:
                session.pool.send_batch(frames)

        senders = [threading.Thread(target=send, args=(frames,)) for frames in sent]
        for thread in senders:
            thread.start()
        expected = sum(len(frames) for sender in sent for frames in sender)
        received: list[Frame] = []
        while len(received) < expected:  # a slow reader: a frame at a time, pausing
            received.append(session.miner.receive())
            time.sleep(0.0005)
        for thread in senders:
            thread.join(5.0)
            assert not thread.is_alive(), "a send blocked"
        for s, sender in enumerate(sent):
            assert [f for f in received if f.payload[0] == s] == [f for b in sender for f in b]

    frames_arrive_as_sent()
    assert session.writer.backlogs_started > 0, "the backlog path was exercised"
    assert session.writer.backlogged == 0
