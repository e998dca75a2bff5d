"""``[pool] enabled``: the coordinator runs the mining pool (spec 4.11), Stratum V2 on its
chain, creates and keeps its keys, and a registered node mines on it with owm-mine
(SRS-POOL-01/02/05)."""

from __future__ import annotations

import contextlib
import re
import resource
import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from owm_adapters.bootstrap.api import build_api
from owm_adapters.bootstrap.coordinator import build_coordinator
from owm_adapters.bootstrap.pool import PoolWorker, pool_from
from owm_adapters.bootstrap.settings import (
    ConfigError,
    CoordinatorSection,
    CoordinatorSettings,
    NodeChain,
    PoolSection,
    ProvenanceSection,
    load_coordinator_settings,
)
from owm_adapters.chain.local_chain import LocalChain
from owm_adapters.clock import SystemClock
from owm_adapters.pool.miner import StratumMiner
from owm_adapters.storage.memory import memory_repositories
from owm_core.errors import FrameMalformed
from owm_core.identity.keys import Identity
from owm_core.pool.noise import PoolUrl
from owm_core.pool.vardiff import VardiffPolicy
from tests.adapters.pool.support import closed_by_peer
from tests.core.nodes.test_registry import make_node

MINER = Identity.from_seed(b"\x44" * 32)


def settings_in(tmp_path: Path, **pool: object) -> CoordinatorSettings:
    return CoordinatorSettings(
        coordinator=CoordinatorSection(
            data_dir=str(tmp_path), signing_key_path=str(tmp_path / "c.key")
        ),
        pool=PoolSection(enabled=True, listen="127.0.0.1:0", **pool),  # type: ignore[arg-type]
    )


def test_an_enabled_pool_runs_with_the_coordinator_and_its_shares_show_in_the_mining_api(
    tmp_path: Path,
) -> None:
    store = memory_repositories()
    store.nodes.add(make_node(node_id=MINER.node_id, public_key=MINER.public_key_hex))
    chain = LocalChain(tmp_path / "chain.db")
    coordinator = build_coordinator(
        settings_in(tmp_path), store=store, slashing=False, pool_chain=chain
    )
    assert coordinator.pool is not None
    start = chain.tip_height()
    with coordinator.running(5):
        url = PoolUrl.parse(coordinator.pool.url)
        miner = StratumMiner.dial(url.host, url.port, url.authority_xonly, int(time.time()))
        miner.setup(url.host, url.port)
        miner.open_channel(MINER, "rig")
        assert miner.mine(shares=2).accepted == 2
        miner.close()
    assert chain.tip_height() == start + 2
    assert len(store.shares.since(0, MINER.node_id)) == 2
    credit = store.miner_credits.get(MINER.node_id)  # FPPS, durable: 2 × (50 BTC − 20 %)
    assert credit is not None and credit.credited_msat == 2 * 40 * 10**8 * 1000
    assert coordinator.pool.payouts is not None  # paid through the coordinator's outbox
    views = build_api(coordinator, l402_secret=b"\x01" * 32).services.views
    stats = views.pool_stats()
    assert stats.blocks_30d == 2 and stats.miners_24h == 1 and stats.hashrate_1h_hps > 0
    mine = views.miner(MINER.node_id).stats
    assert mine.shares_24h == 2 and mine.blocks_30d == 2
    for name in ("authority.key", "static.key"):
        assert stat.S_IMODE((tmp_path / "pool" / name).stat().st_mode) == 0o600


def test_the_pool_keeps_its_authority_key_across_restarts(tmp_path: Path) -> None:
    chain = LocalChain(tmp_path / "chain.db")
    urls = []
    for _ in range(2):
        worker = pool_from(
            settings_in(tmp_path), memory_repositories(), SystemClock(), tmp_path, chain=chain
        )
        assert worker is not None
        worker.start()
        urls.append(worker.url.rpartition("/")[2])
        worker.stop()
    assert urls[0] == urls[1]


def test_a_disabled_pool_is_not_built(tmp_path: Path) -> None:
    settings = CoordinatorSettings(coordinator=CoordinatorSection(data_dir=str(tmp_path)))
    assert pool_from(settings, memory_repositories(), SystemClock(), tmp_path) is None


def test_a_pool_without_a_chain_to_mine_on_is_refused(tmp_path: Path) -> None:
    settings = CoordinatorSettings(
        coordinator=CoordinatorSection(data_dir=str(tmp_path)),
        pool=PoolSection(enabled=True, listen="127.0.0.1:0"),
        provenance=ProvenanceSection(backend="calendars"),
        chain=NodeChain(),
    )
    with pytest.raises(ConfigError, match="bitcoin_rpc or local_chain"):
        pool_from(settings, memory_repositories(), SystemClock(), tmp_path)


@pytest.mark.parametrize(
    ("key", "value"), [("listen", "nowhere"), ("payout_script", "zz"), ("share_difficulty", 0)]
)
def test_bad_pool_settings_are_config_errors_naming_the_key(
    tmp_path: Path, key: str, value: object
) -> None:
    chain = LocalChain(tmp_path / "chain.db")
    settings = (
        settings_in(tmp_path, **{key: value})
        if key != "listen"
        else CoordinatorSettings(pool=PoolSection(enabled=True, listen=str(value)))
    )
    with pytest.raises(ConfigError, match="pool"):
        pool_from(settings, memory_repositories(), SystemClock(), tmp_path, chain=chain)


class FixedClock:
    def __init__(self, now: int) -> None:
        self._now = now

    def now(self) -> int:
        return self._now

    def monotonic_ms(self) -> int:
        return 0


def test_shares_older_than_thirty_days_are_deleted_and_younger_ones_kept(tmp_path: Path) -> None:
    """The pool keeps accepted shares 30 days to settle disputes, then deletes them
    (SRS-POOL-11)."""
    from fractions import Fraction

    from owm_core.pool.bitcoin import AcceptedShare

    store = memory_repositories()
    now = 1_800_000_000
    for age_days, name in ((31, "old"), (29, "young")):
        share = AcceptedShare(name, 1, Fraction(1), name.encode().hex().ljust(64, "0"), False)
        store.shares.add(share, now - age_days * 86_400)
    worker = pool_from(
        settings_in(tmp_path), store, FixedClock(now), tmp_path, chain=LocalChain(tmp_path / "c.db")
    )
    assert worker is not None
    assert worker.prune() == 1
    assert [s.miner_id for _, s in store.shares.since(0)] == ["young"]


def test_a_devnet_pool_values_a_regtest_block_at_its_pretend_reward_and_pays_it_after_the_block(
    tmp_path: Path,
) -> None:
    from owm_adapters.lightning.embedded import SimLedger
    from owm_adapters.services.payouts import LedgerInvoiceSource, PayoutDispatcher
    from owm_core.nodes.registry import LnNodeUri
    from tests.server.harness import StepClock

    clock = StepClock(int(time.time()))
    store = memory_repositories()
    ledger = SimLedger(tmp_path / "ln.sqlite3", clock=clock.now)
    treasury, miner_ln = ledger.add_node("treasury"), ledger.add_node("miner")
    ledger.open_channel(treasury, miner_ln, 50_000)  # a devnet-sized payout channel
    store.nodes.add(make_node(
        node_id=MINER.node_id, public_key=MINER.public_key_hex, registered_at=clock.now(),
        last_heartbeat=clock.now(),
        ln_node_uri=LnNodeUri.parse(f"{miner_ln}@127.0.0.1:9735"),
    ))  # fmt: skip
    dispatcher = PayoutDispatcher(store, ledger.lightning("treasury"), LedgerInvoiceSource(ledger),
                                  clock)  # fmt: skip
    settings = settings_in(tmp_path, fpps_block_reward_sat=50, payout_sweep_s=10.0)
    worker = pool_from(settings, store, clock, tmp_path, chain=LocalChain(tmp_path / "chain.db"),
                       payouts=dispatcher)  # fmt: skip
    assert worker is not None and worker.payouts is not None
    worker.start()
    try:
        url = PoolUrl.parse(worker.url)
        miner = StratumMiner.dial(url.host, url.port, url.authority_xonly, clock.now())
        miner.setup(url.host, url.port)
        miner.open_channel(MINER, "rig")
        assert miner.mine(shares=2).accepted == 2  # two regtest blocks
        miner.close()
    finally:
        worker.stop()
    credit = store.miner_credits.get(MINER.node_id)
    assert credit is not None and credit.credited_msat == 2 * 40_000  # 80 % of 50 sat, twice
    assert worker.pool.work() is not None
    assert worker.pool.work().fpps_msat_per_share == 40_000  # type: ignore[union-attr]
    clock.advance(10)  # the next sweep: 80 sat is far under 10,000, but a block was found
    (payout,) = worker.payouts.sweep()
    dispatcher.sweep()
    (channel,) = ledger.lightning("miner").channels_with(treasury)
    assert payout.amount_msat == 80_000 and channel.local_balance_sat == 80
    dispatcher.stop()


def test_the_treasury_floor_is_off_by_default_on_with_a_reserve_and_a_bad_value_is_refused(
    tmp_path: Path,
) -> None:
    from owm_adapters.bootstrap.pool import CURRENT_ERA_SUBSIDY_SAT, _funds_of
    from owm_adapters.services.pool_payouts import FppsFunds

    assert _funds_of(PoolSection()) is None  # fpps_reserve_sat = -1: unchecked, as before
    on = PoolSection(fpps_reserve_sat=1_000_000, treasury_floor_sat=5)
    assert _funds_of(on) == FppsFunds(1_000_000, CURRENT_ERA_SUBSIDY_SAT, 5)
    assert CURRENT_ERA_SUBSIDY_SAT == 312_500_000
    devnet = PoolSection(fpps_reserve_sat=0, fpps_block_reward_sat=50)
    assert _funds_of(devnet) == FppsFunds(0, 50, 0)
    chain = LocalChain(tmp_path / "chain.db")
    for bad in ({"fpps_reserve_sat": -2}, {"treasury_floor_sat": -1}):
        with pytest.raises(ConfigError, match="pool"):
            pool_from(settings_in(tmp_path, **bad), memory_repositories(), SystemClock(), tmp_path,
                      chain=chain)  # fmt: skip


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ("max_connections = 0", "pool.max_connections: must be a positive integer, not 0"),
        ("max_connections_per_ip = -3", "pool.max_connections_per_ip: must be a positive integer"),
        ("max_connections_per_node = 0", "pool.max_connections_per_node: must be a positive"),
        ('max_connections = "many"', "pool.max_connections: invalid value for type, expected int"),
        ("login_timeout_s = 0.0", "pool.login_timeout_s: must be a positive number of seconds"),
        ("login_timeout_s = -1.5", "pool.login_timeout_s: must be a positive number of seconds"),
        ("login_timeout_s = inf", "pool.login_timeout_s: must be a positive number of seconds"),
        ("login_timeout_s = nan", "pool.login_timeout_s: must be a positive number of seconds"),
        ('login_timeout_s = "soon"', "pool.login_timeout_s: invalid value for type"),
    ],
)
def test_connection_caps_and_login_deadlines_out_of_range_are_one_line_config_errors(
    tmp_path: Path, line: str, error: str
) -> None:
    config = tmp_path / "coordinator.toml"
    config.write_text(f'[pool]\nenabled = true\nlisten = "127.0.0.1:0"\n{line}\n')
    with pytest.raises(ConfigError, match=re.escape(error)) as refused:
        settings = load_coordinator_settings(config, environ={})
        pool_from(settings, memory_repositories(), SystemClock(), tmp_path,
                  chain=LocalChain(tmp_path / "chain.db"))  # fmt: skip
    assert "\n" not in str(refused.value)


@contextlib.contextmanager
def listening(tmp_path: Path, **pool: object) -> Iterator[PoolWorker]:
    """The pool ``[pool]`` with ``pool`` configures, started, stopped on leaving."""
    worker = pool_from(settings_in(tmp_path, **pool), memory_repositories(), SystemClock(),
                       tmp_path, chain=LocalChain(tmp_path / "chain.db"))  # fmt: skip
    assert worker is not None
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()


def test_the_connection_caps_reach_the_listener(tmp_path: Path) -> None:
    with listening(tmp_path, max_connections_per_ip=1) as worker:
        assert worker.address is not None
        first = socket.create_connection(worker.address, timeout=5)
        second = socket.create_connection(worker.address, timeout=5)
        assert closed_by_peer(second)
        first.close()


def test_the_per_node_cap_reaches_the_pools_logins(tmp_path: Path) -> None:
    store = memory_repositories()
    store.nodes.add(make_node(node_id=MINER.node_id, public_key=MINER.public_key_hex))
    worker = pool_from(settings_in(tmp_path, max_connections_per_node=1), store, SystemClock(),
                       tmp_path, chain=LocalChain(tmp_path / "chain.db"))  # fmt: skip
    assert worker is not None
    worker.start()
    try:
        url = PoolUrl.parse(worker.url)
        miners = [StratumMiner.dial(url.host, url.port, url.authority_xonly, int(time.time()))
                  for _ in range(2)]  # fmt: skip
        for miner in miners:
            miner.setup(url.host, url.port)
        miners[0].open_channel(MINER, "rig")
        with pytest.raises(FrameMalformed, match="too-many-connections-for-node"):
            miners[1].open_channel(MINER, "rig")
    finally:
        worker.stop()


def test_the_login_deadline_reaches_the_listener(tmp_path: Path) -> None:
    with listening(tmp_path, login_timeout_s=0.5) as worker:
        url = PoolUrl.parse(worker.url)
        silent = StratumMiner.dial(url.host, url.port, url.authority_xonly, int(time.time()))
        began = time.monotonic()
        assert closed_by_peer(silent.connection.sock)  # no login: closed after 0.5 s, not 60
        assert time.monotonic() - began < 3.0


def test_a_total_cap_above_the_open_file_limit_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        pytest.skip("no open-file limit to exceed")
    pool_from(settings_in(tmp_path, max_connections=soft), memory_repositories(), SystemClock(),
              tmp_path, chain=LocalChain(tmp_path / "chain.db"))  # fmt: skip
    assert "open-file limit" in caplog.text and "ulimit -n" in caplog.text


def test_vardiff_is_on_by_default_over_the_share_difficulty_and_off_at_zero_shares_a_minute(
    tmp_path: Path,
) -> None:
    chain = LocalChain(tmp_path / "chain.db")

    def built(**pool: object) -> PoolWorker:
        worker = pool_from(settings_in(tmp_path, **pool), memory_repositories(), SystemClock(),
                           tmp_path, chain=chain)  # fmt: skip
        assert worker is not None
        return worker

    assert built(share_difficulty=8).pool.vardiff == VardiffPolicy(6, min_difficulty=8)
    assert built(shares_per_minute=30).pool.vardiff == VardiffPolicy(30)
    assert built(shares_per_minute=0).pool.vardiff is None
    with pytest.raises(ConfigError, match=r"pool\.shares_per_minute: .*0 turns vardiff off"):
        built(shares_per_minute=-1)
