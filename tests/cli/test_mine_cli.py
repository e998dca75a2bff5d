"""``owm-mine run``: a node mines on a pool with its identity key; clearnet only (SRS-NET-05)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from owm_adapters import hashing
from owm_adapters.chain.local_chain import LocalChain
from owm_adapters.pool.channels import MinerConnection
from owm_adapters.pool.miner import StratumMiner
from owm_adapters.pool.mining import MiningPool
from owm_adapters.pool.server import PoolServer
from owm_adapters.storage import keystore
from owm_adapters.storage.memory import memory_repositories
from owm_cli.mine import cli
from owm_core.pool import sv2_messages as sv2
from owm_core.pool.noise import PoolUrl, encode_authority_key
from tests.adapters.pool.support import AUTHORITY, static_key

ROOT = Path(__file__).resolve().parents[2]


class Keys:
    def __init__(self) -> None:
        self.keys: dict[str, str] = {}

    def public_key_of(self, node_id: str) -> str | None:
        return self.keys.get(node_id)


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[tuple[str, Path, LocalChain]]:
    chain = LocalChain(tmp_path / "chain.db")
    mining = MiningPool(
        chain, memory_repositories().shares, lambda: int(time.time()), payout_script=b"\x51"
    )
    mining.refresh()
    keys = Keys()
    identity = keystore.create_identity(tmp_path / "identity.key")
    keys.keys[identity.node_id] = identity.public_key_hex
    server = PoolServer(static_key(), lambda c: MinerConnection(c, mining, keys))
    host, port = server.start()
    yield (
        f"stratum2+tcp://{host}:{port}/{encode_authority_key(AUTHORITY)}",
        tmp_path / "identity.key",
        chain,
    )
    server.stop()


@pytest.mark.parametrize(("hasher", "shown"), [("cpu", "with cpu"), ("torch", "with torch:")])
def test_owm_mine_run_mines_shares_that_extend_the_chain_with_either_hasher(
    pool: tuple[str, Path, LocalChain], hasher: str, shown: str
) -> None:
    url, key, chain = pool
    start = chain.tip_height()
    result = CliRunner().invoke(cli, [
        "run", "--pool", url, "--identity", str(key), "--worker", "w", "--shares", "2",
        "--hasher", hasher,
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert shown in result.output and "accepted 2 rejected 0" in result.output
    assert chain.tip_height() == start + 2


def test_owm_mine_asked_for_torch_without_it_says_so_in_one_line(
    pool: tuple[str, Path, LocalChain], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, key, _chain = pool
    monkeypatch.setitem(sys.modules, "torch", None)  # torch not installed
    monkeypatch.delitem(sys.modules, "owm_adapters.hashing.torch_sha256d", raising=False)
    monkeypatch.delattr(hashing, "torch_sha256d", raising=False)
    result = CliRunner().invoke(
        cli, ["run", "--pool", url, "--identity", str(key), "--hasher", "torch"]
    )
    assert result.exit_code == 2
    assert result.output.startswith('error: hasher "torch" needs PyTorch')
    assert result.output.count("\n") == 1


@pytest.mark.parametrize(
    ("url", "env", "message"),
    [
        (
            "stratum2+tcp://abcdef.onion:3333/9bXiEd8boQVhq7WddEcERUL5tyyJVFYdU8th3HfbNXK3Yw6GRXh",
            {},
            ".onion",
        ),
        (
            "stratum2+tcp://pool.example:3333/9bXiEd8boQVhq7WddEcERUL5tyyJVFYdU8th3HfbNXK3Yw6GRXh",
            {"ALL_PROXY": "socks5h://127.0.0.1:9050"},
            "SOCKS",
        ),
        ("stratum+tcp://pool.example:3333", {}, "stratum2+tcp://"),
    ],
)
def test_owm_mine_refuses_onion_pools_socks_proxies_and_v1_urls_in_one_line(
    url: str, env: dict[str, str], message: str, tmp_path: Path
) -> None:
    result = CliRunner().invoke(
        cli, ["run", "--pool", url, "--identity", str(tmp_path / "k")], env=env
    )
    assert result.exit_code == 2
    assert result.output.startswith("error: ") and message in result.output
    assert result.output.count("\n") == 1


def test_owm_mine_proxy_lets_a_miner_with_a_plain_user_name_mine_for_the_node_until_sigterm(
    pool: tuple[str, Path, LocalChain], tmp_path: Path
) -> None:
    url, key, chain = pool
    start = chain.tip_height()
    process = subprocess.Popen(
        [sys.executable, "-m", "owm_cli.mine", "proxy", "--pool", url, "--identity", str(key),
         "--listen", "127.0.0.1:0", "--key-dir", str(tmp_path / "proxy-keys")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(2)]
        assert lines[0].startswith("mining for node n"), lines
        assert lines[1].startswith("miners connect to stratum2+tcp://127.0.0.1:"), lines
        proxy = PoolUrl.parse(lines[1].split()[3])
        miner = StratumMiner.dial(proxy.host, proxy.port, proxy.authority_xonly, int(time.time()))
        try:
            miner.setup(proxy.host, proxy.port)
            miner.send(sv2.OpenStandardMiningChannel(1, "s9.rig", 1e6, b"\xff" * 32))
            opened = miner.receive()
            assert isinstance(opened, sv2.OpenStandardMiningChannelSuccess), opened
            miner.channel_id, miner.target = opened.channel_id, sv2.target_value(opened.target)
            while miner.work is None:
                miner.receive()
            assert miner.mine(shares=2).accepted == 2
        finally:
            miner.close()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
        assert "shares accepted 2, rejected 0" in process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert chain.tip_height() == start + 2  # regtest shares are blocks


@pytest.mark.parametrize(
    ("option", "value", "error"),
    [
        ("--listen", "localhost", "error: --listen: 'localhost' is not HOST:PORT"),
        ("--allow", "10.0.0.0/33", "error: --allow: '10.0.0.0/33' does not appear to be an IPv4"),
    ],
)
def test_owm_mine_proxy_refuses_a_bad_listen_address_or_network_in_one_line(
    pool: tuple[str, Path, LocalChain], option: str, value: str, error: str
) -> None:
    url, key, _chain = pool
    result = CliRunner().invoke(
        cli, ["proxy", "--pool", url, "--identity", str(key), option, value]
    )
    assert result.exit_code == 2
    assert result.output.startswith(error) and result.output.count("\n") == 1
