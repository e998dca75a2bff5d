"""owm-mine inside the node daemon (SRS-NODE-13): ``[mining] enabled`` makes the node mine on
the pool as its own identity while it runs; clearnet only (SRS-NET-05)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from owm_adapters.bootstrap.node import Node, build_node, detect_hardware
from owm_adapters.bootstrap.settings import ConfigError, load_node_settings
from owm_adapters.chain.local_chain import LocalChain
from owm_adapters.control_plane.in_process import InProcessControlPlane
from owm_adapters.gpu import FixedGpuProbe, FixedHostProbe
from owm_adapters.hashing import torch_sha256d
from owm_adapters.node.mining import MiningWorker
from owm_adapters.pool.channels import MinerConnection
from owm_adapters.pool.miner import StratumMiner
from owm_adapters.pool.mining import MiningPool
from owm_adapters.pool.server import PoolServer
from owm_adapters.storage import keystore
from owm_adapters.storage.memory import memory_repositories
from owm_core.errors import HasherUnavailable, PolicyViolation
from owm_core.identity.keys import Identity
from owm_core.pool import sv2_messages as sv2
from owm_core.pool.noise import PoolUrl, encode_authority_key
from tests.adapters.pool.support import AUTHORITY, static_key
from tests.node.test_data_dir_modes import configure, initialised
from tests.prometheus_checks import samples, scrape, value


class Keys:
    def __init__(self) -> None:
        self.keys: dict[str, str] = {}

    def public_key_of(self, node_id: str) -> str | None:
        return self.keys.get(node_id)


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[tuple[str, Keys, LocalChain]]:
    chain = LocalChain(tmp_path / "chain.db")
    mining = MiningPool(
        chain, memory_repositories().shares, lambda: int(time.time()), payout_script=b"\x51"
    )
    mining.refresh()
    keys = Keys()
    server = PoolServer(static_key(), lambda c: MinerConnection(c, mining, keys))
    host, port = server.start()
    yield f"stratum2+tcp://{host}:{port}/{encode_authority_key(AUTHORITY)}", keys, chain
    server.stop()


def wait_until(condition: object, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.05)
    assert condition(), "condition not reached"  # type: ignore[operator]


def test_the_worker_mines_shares_as_the_node_and_stops_promptly(
    pool: tuple[str, Keys, LocalChain],
) -> None:
    url, keys, chain = pool
    identity = Identity.from_seed(b"\x51" * 32)
    keys.keys[identity.node_id] = identity.public_key_hex
    start = chain.tip_height()
    worker = MiningWorker(identity, url, "daemon", intensity=50)
    worker.start()
    try:
        wait_until(lambda: worker.accepted >= 2)
    finally:
        began = time.monotonic()
        worker.stop()
    assert time.monotonic() - began < 5
    assert chain.tip_height() >= start + 2 and worker.rejected == 0


def test_an_unregistered_node_keeps_retrying_without_crashing(
    pool: tuple[str, Keys, LocalChain],
) -> None:
    url, _keys, _chain = pool
    worker = MiningWorker(Identity.from_seed(b"\x52" * 32), url, "", intensity=100)
    worker.start()
    time.sleep(0.5)
    worker.stop()
    assert worker.accepted == 0 and not worker.connected


class BrokenGpu:
    name, batch = "torch:cuda", 1 << 20

    def search(self, prefix: bytes, start: int, count: int, target: int) -> list[int]:
        raise HasherUnavailable("the torch hasher failed on cuda: CUDA error: out of memory")


def test_a_failing_hasher_is_logged_and_retried_without_ending_the_miner_thread(
    pool: tuple[str, Keys, LocalChain], caplog: pytest.LogCaptureFixture
) -> None:
    url, keys, _chain = pool
    identity = Identity.from_seed(b"\x55" * 32)
    keys.keys[identity.node_id] = identity.public_key_hex
    worker = MiningWorker(identity, url, "gpu0", intensity=100, hasher=BrokenGpu())
    with caplog.at_level(logging.WARNING, logger="owm_adapters.node.mining"):
        worker.start()
        wait_until(lambda: "CUDA error: out of memory" in caplog.text)
        assert worker._thread is not None and worker._thread.is_alive()
        worker.stop()
    assert worker.accepted == 0 and "retrying in" in caplog.text


@pytest.mark.parametrize(
    ("url", "env"),
    [
        ("stratum2+tcp://abc.onion:3333/9bXiEd8boQVhq7WddEcERUL5tyyJVFYdU8th3HfbNXK3Yw6GRXh", {}),
        (
            "stratum2+tcp://pool:3333/9bXiEd8boQVhq7WddEcERUL5tyyJVFYdU8th3HfbNXK3Yw6GRXh",
            {"ALL_PROXY": "socks5h://x:1"},
        ),
    ],
)
def test_the_daemons_miner_refuses_tor_and_socks(
    url: str, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, setting in env.items():
        monkeypatch.setenv(name, setting)
    with pytest.raises(PolicyViolation):
        MiningWorker(Identity.from_seed(b"\x53" * 32), url, "", intensity=100)


def node_with(tmp_path: Path, keys: Keys, mining: str) -> tuple[Node, Path]:
    """A node (registered with the pool's key registry) whose owm.toml has ``[mining]``
    ``mining``, built, not started; and its data directory."""
    data = initialised(tmp_path)
    identity = keystore.load_identity(data / "identity.key")
    keys.keys[identity.node_id] = identity.public_key_hex
    config = configure(tmp_path, data)
    config.write_text(config.read_text() + f"[mining]\n{mining}\n", encoding="utf-8")
    report = detect_hardware(100, FixedGpuProbe([]), FixedHostProbe(ram=16_000, bandwidth=100))
    built = build_node(
        load_node_settings(config), InProcessControlPlane(None),  # type: ignore[arg-type]
        report=report, say=lambda _line: None,
    )  # fmt: skip
    return built, data


@pytest.mark.parametrize(("hasher", "name"), [("cpu", "cpu"), ("torch", "torch:cpu")])
def test_mining_enabled_in_owm_toml_runs_while_the_node_runs_with_the_chosen_hasher(
    tmp_path: Path,
    pool: tuple[str, Keys, LocalChain],
    monkeypatch: pytest.MonkeyPatch,
    hasher: str,
    name: str,
) -> None:
    monkeypatch.setattr(torch_sha256d, "cuda_available", lambda: False)  # as on this machine
    monkeypatch.delenv("OWM_IDENTITY_KEY_PATH", raising=False)
    url, keys, chain = pool
    built, _data = node_with(tmp_path, keys, f'enabled = true\npool_url = "{url}"\nworker = "n1"\n'
                             f'hasher = "{hasher}"')  # fmt: skip
    assert built.miner is not None and built.miner.hasher.name == name
    start = chain.tip_height()
    with built.running():
        wait_until(lambda: built.miner is not None and built.miner.accepted >= 1)
    assert chain.tip_height() > start


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ('enabled = true\npool_url = "stratum+tcp://pool:3333"', "mining.pool_url"),
        ("intensity = 0", "mining.intensity"),
        ('hasher = "gpu"', "mining.hasher"),
    ],
)
def test_bad_mining_settings_are_config_errors_naming_the_key(
    tmp_path: Path, section: str, key: str
) -> None:
    config = tmp_path / "owm.toml"
    config.write_text(f"[mining]\n{section}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=key):
        load_node_settings(config)


def test_max_shares_per_minute_spaces_the_shares_out(pool: tuple[str, Keys, LocalChain]) -> None:
    url, keys, _chain = pool
    identity = Identity.from_seed(b"\x54" * 32)
    keys.keys[identity.node_id] = identity.public_key_hex
    worker = MiningWorker(identity, url, "slow", intensity=100, max_shares_per_minute=60)
    worker.start()
    time.sleep(2.5)
    worker.stop()
    assert 1 <= worker.accepted <= 4  # one a second, not hundreds


def test_proxy_listen_in_owm_toml_runs_the_login_proxy_with_the_node_for_sv2_firmware(
    tmp_path: Path, pool: tuple[str, Keys, LocalChain], monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    caplog.set_level(logging.INFO, logger="owm_adapters.bootstrap.node")
    monkeypatch.delenv("OWM_IDENTITY_KEY_PATH", raising=False)
    url, keys, _chain = pool
    built, data = node_with(tmp_path, keys, f'pool_url = "{url}"\nproxy_listen = "127.0.0.1:0"')
    assert built.miner is None and built.mining_proxy is not None  # the node itself does not mine
    with built.running():
        logged = caplog.text.split("mining login proxy: miners connect to ")[1].split()[0]
        proxy = PoolUrl.parse(logged)
        miner = StratumMiner.dial(proxy.host, proxy.port, proxy.authority_xonly, int(time.time()))
        try:
            miner.setup(proxy.host, proxy.port)
            miner.send(sv2.OpenStandardMiningChannel(1, "asic", 1e6, b"\xff" * 32))
            opened = miner.receive()
            assert isinstance(opened, sv2.OpenStandardMiningChannelSuccess)
            miner.channel_id, miner.target = opened.channel_id, sv2.target_value(opened.target)
            while miner.work is None:
                miner.receive()
            assert miner.mine(shares=2).accepted == 2
            scraped = samples(scrape(f"http://127.0.0.1:{built.health.port}/metrics"))
        finally:
            miner.close()
    assert (data / "mine-proxy" / "authority.key").exists()
    assert value(scraped, "owm_node_mining_proxy_miners") == 1
    assert value(scraped, "owm_node_mining_proxy_shares_accepted_total") == 2


def test_a_proxy_listen_address_without_a_port_a_pool_or_a_network_is_a_config_error(
    tmp_path: Path,
) -> None:
    config = tmp_path / "owm.toml"
    config.write_text('[mining]\nproxy_listen = "127.0.0.1:34255"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"mining\.pool_url"):
        load_node_settings(config)
    pool = "stratum2+tcp://pool.example:34254/9bXiEd8boQVhq7WddEcERUL5tyyJVFYdU8th3HfbNXK3Yw6GRXh"
    config.write_text(f'[mining]\npool_url = "{pool}"\nproxy_listen = "somewhere"\n')
    with pytest.raises(ConfigError, match=r"mining\.proxy_listen: must be HOST:PORT"):
        load_node_settings(config)
    config.write_text(f'[mining]\npool_url = "{pool}"\nproxy_listen = "127.0.0.1:34255"\n'
                      'proxy_allow = ["192.168.1.0/24", "10.0.0.300/8"]\n')  # fmt: skip
    with pytest.raises(ConfigError, match=r"owm\.toml: mining\.proxy_allow: .*10\.0\.0\.300"):
        load_node_settings(config)
