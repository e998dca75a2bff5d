"""One registered node holds at most ``max_connections_per_node`` logged-in connections on the
pool, from however many addresses (SRS-SEC-16, SRS-POOL-02): the login past the cap is answered
``OpenMiningChannel.Error`` ``too-many-connections-for-node``, counted and logged a bounded
number of times, while other nodes still log in; a connection counts for each node it holds a
channel of, once, until it closes, and then frees its place for the node. The attacks run over
real sockets from several loopback addresses (127.0.0.1–127.0.0.4) against the pool's own
handler; the counting rule itself is stated as a property."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from owm_adapters.chain.local_chain import LocalChain
from owm_adapters.pool.channels import MinerConnection
from owm_adapters.pool.log_limits import LogThrottle
from owm_adapters.pool.miner import StratumMiner
from owm_adapters.pool.mining import MiningPool
from owm_adapters.pool.node_connections import TOO_MANY_FOR_NODE, NodeConnections
from owm_adapters.pool.server import LOGIN_TIMEOUT, PoolServer
from owm_adapters.storage.memory import memory_repositories
from owm_core.identity.keys import Identity
from owm_core.identity.pool_login import user_identity
from owm_core.pool import sv2_messages as sv2
from tests.adapters.pool.support import closed_by_peer, dial, static_key
from tests.adapters.pool.test_mining_protocol import MINER, POOL_SCRIPT, FrozenChain, Registry
from tests.adapters.pool.test_server_limits import wait_until

OTHER = Identity.from_seed(b"\x33" * 32)
NODE_CAP = 3


class Capped:
    """A pool whose nodes may hold ``NODE_CAP`` logged-in connections each (2 per address)."""

    def __init__(self, tmp_path: Path, node_cap: int = NODE_CAP, login_timeout_s: float = 60.0):
        store = memory_repositories()
        chain = FrozenChain(LocalChain(tmp_path / "chain.db"))
        mining = MiningPool(
            chain, store.shares, lambda: int(time.time()), payout_script=POOL_SCRIPT
        )
        mining.refresh()
        registry = Registry(MINER, OTHER)
        self.per_node = NodeConnections(node_cap)
        self.server = PoolServer(
            static_key(), lambda c: MinerConnection(c, mining, registry, self.per_node),
            max_connections_per_ip=2, login_timeout_s=login_timeout_s,
        )  # fmt: skip
        self.address = self.server.start()

    def connect(self, source: str) -> StratumMiner:
        """A miner connected from ``source`` and set up, with no channel yet."""
        miner = StratumMiner(dial(self.address, source=source))
        miner.setup(*self.address)
        return miner


@pytest.fixture
def capped(tmp_path: Path) -> Iterator[Capped]:
    pool = Capped(tmp_path)
    yield pool
    pool.server.stop()


def open_as(
    miner: StratumMiner, identity: Identity, request_id: int = 1, extended: bool = False
) -> sv2.Message:
    """The pool's answer to a channel opened with ``identity``'s login (jobs skipped)."""
    login = user_identity(identity, "rig", miner.connection.handshake_hash)
    miner.send(
        sv2.OpenExtendedMiningChannel(request_id, login, 1e6, b"\xff" * 32, 4) if extended
        else sv2.OpenStandardMiningChannel(request_id, login, 1e6, b"\xff" * 32)
    )  # fmt: skip
    while True:
        answer = sv2.decode(miner.connection.receive())
        if not isinstance(answer, sv2.NewMiningJob | sv2.NewExtendedMiningJob | sv2.SetNewPrevHash):
            return answer


def test_one_node_from_several_addresses_is_refused_past_its_cap_while_another_node_logs_in(
    capped: Capped, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="owm_adapters.pool")
    held = []
    for n in range(1, NODE_CAP + 1):  # one connection per address: no address cap is reached
        miner = capped.connect(f"127.0.0.{n}")
        miner.open_channel(MINER, f"rig{n}")
        held.append(miner)
    assert capped.per_node.count(MINER.node_id) == NODE_CAP
    attacker = capped.connect("127.0.0.4")
    assert open_as(attacker, MINER, 7) == sv2.OpenMiningChannelError(7, TOO_MANY_FOR_NODE)
    assert open_as(attacker, MINER, 8, extended=True) == sv2.OpenMiningChannelError(
        8, TOO_MANY_FOR_NODE
    )
    assert capped.per_node.refused[MINER.node_id] == 2
    assert capped.per_node.count(MINER.node_id) == NODE_CAP
    assert (
        f"mining channel for {MINER.node_id} from 127.0.0.4 refused: {TOO_MANY_FOR_NODE} "
        f"({NODE_CAP} connections logged in, the most allowed); 1 such since the last line"
    ) in caplog.text
    # another node logs in, on a fresh connection and on the refused one alike
    other = capped.connect("127.0.0.4")
    other.open_channel(OTHER, "rig")
    assert isinstance(open_as(attacker, OTHER, 9), sv2.OpenStandardMiningChannelSuccess)
    assert capped.per_node.count(OTHER.node_id) == 2
    assert other.mine(shares=1).accepted == 1
    # one of the node's connections closes: its place is free again
    held.pop().close()
    wait_until(lambda: capped.per_node.count(MINER.node_id) == NODE_CAP - 1)
    comeback = capped.connect("127.0.0.3")
    comeback.open_channel(MINER, "rig3")
    assert comeback.mine(shares=1).accepted == 1
    assert capped.per_node.count(MINER.node_id) == NODE_CAP
    assert held[0].mine(shares=1).accepted == 1  # the node's other connections mine on


def test_a_connection_refused_by_the_node_cap_with_no_channel_is_closed_at_the_login_deadline(
    tmp_path: Path,
) -> None:
    pool = Capped(tmp_path, node_cap=1, login_timeout_s=1.0)
    try:
        first = pool.connect("127.0.0.1")
        first.open_channel(MINER, "rig")
        refused = pool.connect("127.0.0.2")
        began = time.monotonic()
        assert open_as(refused, MINER) == sv2.OpenMiningChannelError(1, TOO_MANY_FOR_NODE)
        assert closed_by_peer(refused.connection.sock)
        assert 0.5 < time.monotonic() - began < 4.0
        wait_until(lambda: pool.server.refusals[LOGIN_TIMEOUT] == 1)
        assert first.mine(shares=1).accepted == 1  # logged in: past the deadline, still mining
        assert pool.per_node.count(MINER.node_id) == 1
    finally:
        pool.server.stop()


def test_a_connection_counts_once_per_node_it_holds_channels_of_until_it_closes(
    capped: Capped,
) -> None:
    proxy = capped.connect("127.0.0.1")
    answers = [open_as(proxy, MINER, 1), open_as(proxy, MINER, 2, extended=True),
               open_as(proxy, OTHER, 3)]  # fmt: skip
    assert [type(a) for a in answers] == [
        sv2.OpenStandardMiningChannelSuccess, sv2.OpenExtendedMiningChannelSuccess,
        sv2.OpenStandardMiningChannelSuccess,
    ]  # fmt: skip
    assert (capped.per_node.count(MINER.node_id), capped.per_node.count(OTHER.node_id)) == (1, 1)
    for answer in answers:  # closing its channels does not release it: it stays logged in
        assert isinstance(answer, sv2.OpenStandardMiningChannelSuccess
                          | sv2.OpenExtendedMiningChannelSuccess)  # fmt: skip
        proxy.send(sv2.CloseChannel(answer.channel_id, "done"))
    assert isinstance(open_as(proxy, MINER, 4), sv2.OpenStandardMiningChannelSuccess)
    assert capped.per_node.count(MINER.node_id) == 1
    proxy.close()
    wait_until(lambda: capped.per_node.count(MINER.node_id) == 0)
    assert capped.per_node.count(OTHER.node_id) == 0


Step = tuple[str, int, str]
NODES = ("n-a", "n-b", "n-c")
KINDS = ("open", "login", "close")
steps = st.lists(
    st.tuples(st.sampled_from(KINDS), st.integers(0, 7), st.sampled_from(NODES)),
    max_size=80,
)


@given(steps, st.integers(1, 4))
def test_each_nodes_count_is_its_open_logged_in_connections_and_never_passes_the_cap(
    sequence: list[Step], cap: int
) -> None:
    counter = NodeConnections(cap)
    live: list[object] = []  # open connections
    nodes_of: dict[int, set[str]] = {}  # by id(): what each open connection counts for
    refusals = 0
    for kind, index, node in sequence:
        if kind == "open" or not live:
            live.append(object())
            continue
        connection = live[index % len(live)]
        held = nodes_of.setdefault(id(connection), set())
        if kind == "close":
            counter.release(connection)
            live.remove(connection)
            del nodes_of[id(connection)]
            continue
        holders = sum(node in h for h in nodes_of.values())
        allowed = node in held or holders < cap
        assert counter.admit(connection, node) is allowed
        refusals += not allowed
        if allowed:
            held.add(node)
        for name in NODES:
            assert counter.count(name) == sum(name in h for h in nodes_of.values()) <= cap
    assert sum(counter.refused.values()) == refusals
    for connection in live:
        counter.release(connection)
    assert all(counter.count(name) == 0 for name in NODES)


def test_connections_logging_in_and_closing_in_many_threads_never_pass_the_cap() -> None:
    cap, inside, most = 3, [0], [0]
    counter = NodeConnections(cap)
    lock = threading.Lock()

    def churn() -> None:
        for _ in range(300):
            connection = object()
            if counter.admit(connection, "n-a"):  # it holds a place until it releases it
                with lock:
                    inside[0] += 1
                    most[0] = max(most[0], inside[0])
                time.sleep(0.0005)
                with lock:
                    inside[0] -= 1
            counter.release(connection)

    threads = [threading.Thread(target=churn) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most[0] <= cap and counter.count("n-a") == 0
    assert counter.refused["n-a"] > 0  # the threads did contend for the places


def test_a_flood_of_refused_logins_is_counted_each_time_and_logged_once_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="owm_adapters.pool")
    now = [0.0]
    counter = NodeConnections(1, throttle=LogThrottle(10.0, lambda: now[0]))
    assert counter.admit("held", "n-a")
    for n in range(50):
        assert not counter.admit(n, "n-a", "192.0.2.7")
    now[0] = 11.0
    assert not counter.admit("late", "n-a", "192.0.2.7")
    lines = [r.getMessage() for r in caplog.records if TOO_MANY_FOR_NODE in r.getMessage()]
    assert counter.refused["n-a"] == 51
    assert [line.rsplit("; ", 1)[1] for line in lines] == [
        "1 such since the last line", "50 such since the last line",
    ]  # fmt: skip
