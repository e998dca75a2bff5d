"""``owm-mine run``: a node mines on a pool with its identity key; clearnet only (SRS-NET-05)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from owm_adapters import hashing
from owm_adapters.chain.local_chain import LocalChain
from owm_adapters.pool.channels import MinerConnection
from owm_adapters.pool.mining import MiningPool
from owm_adapters.pool.server import PoolServer
from owm_adapters.storage import keystore
from owm_adapters.storage.memory import memory_repositories
from owm_cli.mine import cli
from owm_core.pool.noise import encode_authority_key
from tests.adapters.pool.support import AUTHORITY, static_key


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
