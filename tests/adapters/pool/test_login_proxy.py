"""The mining login proxy over real sockets and Noise: SV2 firmware that sends a plain user name
mines for the node through it, its shares stored under the node's id (SRS-POOL-02, SRS-POOL-03),
and a pool out of reach costs the miner its connection, not the proxy."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from owm_adapters.bootstrap.mining_proxy import MiningProxy, mining_proxy
from owm_adapters.bootstrap.settings import allowed_networks
from owm_adapters.chain.local_chain import LocalChain
from owm_adapters.pool.miner import StratumMiner
from owm_adapters.pool.server import PoolServer
from owm_core.errors import InvalidValue
from owm_core.pool import sv2_messages as sv2
from owm_core.pool.noise import PoolUrl
from tests.adapters.pool.support import AUTHORITY, closed_by_peer
from tests.adapters.pool.test_mining_protocol import MINER, FrozenChain, Pool, start_pool

WIDE_OPEN = b"\xff" * 32


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[Pool]:
    served, server = start_pool(FrozenChain(LocalChain(tmp_path / "chain.db")))
    yield served
    server.stop()


def started(proxy: MiningProxy) -> Iterator[PoolUrl]:
    url = PoolUrl.parse(proxy.start())
    try:
        yield url
    finally:
        proxy.stop()


@pytest.fixture
def proxy_url(pool: Pool, tmp_path: Path) -> Iterator[PoolUrl]:
    upstream = PoolUrl(*pool.address, AUTHORITY)
    yield from started(mining_proxy(upstream, MINER, tmp_path / "proxy", int(time.time()),
                                    listen=("127.0.0.1", 0)))  # fmt: skip


def firmware(url: PoolUrl) -> StratumMiner:
    """A miner set up through the proxy that signs in as SV2 firmware does: a plain name."""
    miner = StratumMiner.dial(url.host, url.port, url.authority_xonly, int(time.time()))
    miner.setup(url.host, url.port)
    return miner


def open_plain(miner: StratumMiner, user_name: str) -> sv2.OpenStandardMiningChannelSuccess:
    miner.send(sv2.OpenStandardMiningChannel(7, user_name, 1e6, WIDE_OPEN))
    answer = miner.receive()
    assert isinstance(answer, sv2.OpenStandardMiningChannelSuccess), answer
    miner.channel_id, miner.target = answer.channel_id, sv2.target_value(answer.target)
    while miner.work is None:
        miner.receive()
    return answer


def test_firmware_sending_a_plain_user_name_mines_for_the_node_through_the_proxy(
    pool: Pool, proxy_url: PoolUrl, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="owm_adapters.pool.proxy")
    miner = firmware(proxy_url)
    try:
        assert open_plain(miner, "farm.rig1").request_id == 7  # the miner's own request id
        result = miner.mine(shares=3)
    finally:
        miner.close()
    assert (result.accepted, result.rejected) == (3, {})
    shares = pool.store.shares.since(0)
    assert len(shares) == 3 and {s.miner_id for _, s in shares} == {MINER.node_id}
    assert f"miner 'farm-rig1' mining as node {MINER.node_id}" in caplog.text


def test_an_extended_channel_opened_through_the_proxy_is_signed_in_as_the_node_too(
    proxy_url: PoolUrl,
) -> None:
    miner = firmware(proxy_url)
    try:
        miner.send(sv2.OpenExtendedMiningChannel(3, "asic-1", 1e12, WIDE_OPEN, 4))
        answer = miner.receive()
    finally:
        miner.close()
    assert isinstance(answer, sv2.OpenExtendedMiningChannelSuccess), answer
    assert (answer.request_id, answer.extranonce_size) == (3, 8)


def test_the_proxy_counts_its_miners_and_their_accepted_and_rejected_shares(
    pool: Pool, tmp_path: Path
) -> None:
    proxy = mining_proxy(PoolUrl(*pool.address, AUTHORITY), MINER, tmp_path / "p",
                         int(time.time()), listen=("127.0.0.1", 0))  # fmt: skip
    for url in started(proxy):
        miner = firmware(url)
        open_plain(miner, "rig")
        assert miner.mine(shares=2).accepted == 2
        work = miner.work
        assert work is not None
        assert isinstance(miner.submit(work, 0, ntime=work.ntime + 10_000), sv2.SubmitSharesError)
        assert proxy.counts.summary() == (
            "miners 1, shares accepted 2, rejected 1 (invalid-timestamp 1)"
        )
        miner.close()
        deadline = time.monotonic() + 5
        while proxy.counts.miners and time.monotonic() < deadline:
            time.sleep(0.01)
        assert proxy.counts.miners == 0


def test_a_miner_whose_pool_is_out_of_reach_is_closed_and_the_proxy_goes_on(
    pool: Pool, tmp_path: Path
) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        nowhere = unused.getsockname()[1]  # nothing listens there once closed
    proxy = mining_proxy(PoolUrl("127.0.0.1", nowhere, AUTHORITY), MINER, tmp_path / "p",
                         int(time.time()), listen=("127.0.0.1", 0))  # fmt: skip
    for url in started(proxy):
        for _ in range(2):
            miner = StratumMiner.dial(url.host, url.port, url.authority_xonly, int(time.time()))
            miner.connection.sock.settimeout(5)
            assert closed_by_peer(miner.connection.sock)
            miner.close()
        server: PoolServer = proxy.server
        deadline = time.monotonic() + 5
        while server.open_connections and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.refusals["upstream-unavailable"] == 2
        assert server.open_connections == 0


def test_the_proxys_authority_key_stays_the_same_across_restarts(
    pool: Pool, tmp_path: Path
) -> None:
    upstream = PoolUrl(*pool.address, AUTHORITY)
    keys = tmp_path / "proxy"
    first = mining_proxy(upstream, MINER, keys, int(time.time()), listen=("127.0.0.1", 0))
    second = mining_proxy(upstream, MINER, keys, int(time.time()), listen=("127.0.0.1", 0))
    assert first.authority_xonly == second.authority_xonly != AUTHORITY
    assert oct((keys / "authority.key").stat().st_mode & 0o777) == "0o600"


def test_miners_from_outside_the_allowed_networks_are_closed_as_they_connect(
    pool: Pool, tmp_path: Path
) -> None:
    upstream = PoolUrl(*pool.address, AUTHORITY)
    elsewhere = allowed_networks(["10.0.0.0/8", "fd00::/8"], "--allow")
    proxy = mining_proxy(upstream, MINER, tmp_path / "p", int(time.time()),
                         listen=("127.0.0.1", 0), allowed=elsewhere)  # fmt: skip
    for url in started(proxy):
        with socket.create_connection((url.host, url.port), timeout=5) as refused:
            assert closed_by_peer(refused)
        deadline = time.monotonic() + 5
        while not proxy.server.refusals and time.monotonic() < deadline:
            time.sleep(0.01)
        assert proxy.server.refused() == {"address-not-allowed": 1}
    here = allowed_networks(["127.0.0.0/8"], "--allow")
    proxy = mining_proxy(upstream, MINER, tmp_path / "p", int(time.time()),
                         listen=("127.0.0.1", 0), allowed=here)  # fmt: skip
    for url in started(proxy):
        miner = firmware(url)
        open_plain(miner, "rig")
        miner.close()


def test_allowed_networks_take_ipv4_ipv6_and_mapped_addresses_and_refuse_a_bad_one() -> None:
    allowed = allowed_networks(["192.168.1.0/24", "2001:db8::/32"], "mining.proxy_allow")
    assert allowed is not None
    assert allowed("192.168.1.7") and allowed("::ffff:192.168.1.7") and allowed("2001:db8::5")
    assert not allowed("192.168.2.7") and not allowed("127.0.0.1") and not allowed("localhost")
    assert allowed_networks([], "x") is None
    with pytest.raises(InvalidValue, match=r"mining\.proxy_allow: .*192\.168\.1\.300"):
        allowed_networks(["192.168.1.300/24"], "mining.proxy_allow")
