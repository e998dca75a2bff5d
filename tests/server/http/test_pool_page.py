"""The mining pool's public page (SRS-POOL-10): figures and charts from the shares the real pool
accepted and the payouts it made over the embedded Lightning ledger, rendered on the server and
shown in headless Chromium.

Shares are judged by the real :class:`~owm_adapters.pool.mining.MiningPool` over the embedded
regtest chain (where every share is a block worth the whole subsidy, so the FPPS credit is
40 BTC a share) in three different hours; the pool's payout sweep pays the miner's node and the
treasury's 20 % through the payout outbox, and the page must draw a point per hour.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from starlette.testclient import TestClient

from owm_adapters.chain.local_chain import LocalChain
from owm_adapters.pool.mining import MiningPool
from owm_adapters.services.api import ApiConfig, ApiServices
from owm_adapters.services.payouts import LedgerInvoiceSource, PayoutDispatcher
from owm_adapters.services.pool_payouts import PoolPayouts
from owm_core.pool.stats import MiningPayout
from owm_server.http.app import create_app
from owm_server.http.pool_page import PANELS, hashrate
from owm_server.http.serve import ApiServer
from tests.adapters.pool.test_mining_protocol import POOL_SCRIPT, FrozenChain
from tests.adapters.pool.test_share_credit_atomic import valid_nonce
from tests.server.harness import T1_STAKE_SAT, SimNode
from tests.server.http.test_dashboard import _browse, _charts
from tests.server.http.world import World, build_world

SUBSIDY_MSAT = 50 * 10**8 * 1000
BIG_CHANNEL_SAT = 300 * 10**8


@attrs.frozen
class PoolWorld:
    world: World
    pool: MiningPool
    services: ApiServices
    miner: str
    treasury_cut: str


@pytest.fixture
def pooled(tmp_path: Path) -> Iterator[PoolWorld]:
    for world in build_world(tmp_path):
        chain = FrozenChain(LocalChain(tmp_path / "chain.db", clock=world.clock))
        pool = MiningPool(chain, world.repos.shares, world.clock.now, payout_script=POOL_SCRIPT,
                          credits=world.repos.miner_credits, atomic=world.repos.atomic,
                          rejections=world.repos.share_rejections)  # fmt: skip
        pool.refresh()
        services = ApiServices.over(world.services.coordinator, b"\x11" * 32,
                                    ApiConfig(cache_ttl_ms=0), pool=pool)  # fmt: skip
        node = SimNode.create()
        world.ledger.add_node("miner-node", secret_key=node.ln_key.secret)
        world.ledger.open_channel(world.treasury, node.ln_pubkey, BIG_CHANNEL_SAT,
                                  push_sat=T1_STAKE_SAT)
        world.register(node)
        cut = world.ledger.add_node("pool-treasury")
        world.ledger.open_channel(world.treasury, cut, BIG_CHANNEL_SAT)
        yield PoolWorld(world, pool, services, node.node_id, cut)


def mine_and_pay(pooled: PoolWorld) -> None:
    """Two shares, an hour later one more, then an hour later the sweep pays (all real)."""
    world, pool = pooled.world, pooled.pool
    job = pool.make_job(1, b"\x01" * 8)
    nonce = 0
    for batch in (2, 1):
        for _ in range(batch):
            ntime = job.min_ntime
            nonce = valid_nonce(pool, job, ntime, start=nonce)
            assert pool.judge(pooled.miner, job, nonce, ntime, job.version).accepted is not None
            nonce += 1
        world.clock.advance(3_600)
    dispatcher = PayoutDispatcher(world.repos, world.ledger.lightning("treasury"),
                                  LedgerInvoiceSource(world.ledger), world.clock)  # fmt: skip
    sweep = PoolPayouts(
        world.repos, world.clock, dispatcher, treasury_destination=pooled.treasury_cut
    )
    assert len(sweep.sweep()) == 2  # the miner's 80 % and the treasury's 20 %, one batch
    assert dispatcher.sweep() == 2
    sweep.sweep()  # lists the paid payouts
    dispatcher.stop()


def fragment(pooled: PoolWorld, name: str) -> str:
    client = TestClient(create_app(pooled.services), client=("203.0.113.7", 5000))
    reply = client.get(f"/pool/fragments/{name}")
    assert reply.status_code == 200
    return reply.text


def test_the_pool_page_shows_the_figures_of_the_shares_the_pool_accepted_and_its_payouts(
    pooled: PoolWorld,
) -> None:
    mine_and_pay(pooled)
    summary = fragment(pooled, "summary")
    assert "<dt>miners, last 24 h</dt><dd>1</dd>" in summary
    assert "<dt>shares, last 24 h</dt><dd>3</dd>" in summary
    assert "<dt>blocks found, last 30 days</dt><dd>3</dd>" in summary  # regtest: each a block
    assert "<dt>share difficulty</dt><dd>1</dd>" in summary
    assert "<dt>FPPS rate</dt><dd>4,000,000,000.000 sat per share" in summary  # 50 BTC less 20 %
    assert "<dt>paid to miners and treasury</dt><dd>15,000,000,000 sat</dd>" in summary
    payouts = fragment(pooled, "payouts")
    assert pooled.miner in payouts and "12,000,000,000 sat" in payouts  # 3 × 40 BTC
    assert "treasury (20 %)" in payouts and "3,000,000,000 sat" in payouts  # 3 × 10 BTC
    charts = _charts(fragment(pooled, "charts"))
    # two hours with shares, one hour with payouts: a line point per hour, a bar where non-zero
    assert charts == {
        "chart-pool-hashrate": (24, 24), "chart-pool-shares": (24, 24),
        "chart-pool-payouts": (24, 24),
    }  # fmt: skip
    text = fragment(pooled, "charts")
    assert text.count(": 2 shares</title>") == 1 and text.count(": 1 shares</title>") == 1
    assert text.count(": 15,000,000,000 sat</title>") == 1  # one batch: 80 % and 20 % of 3 shares


def test_an_empty_pool_page_says_so_instead_of_drawing_charts(pooled: PoolWorld) -> None:
    assert "<svg" not in fragment(pooled, "charts")
    assert "no share in the last 24 h" in fragment(pooled, "charts")
    assert "no payout yet" in fragment(pooled, "payouts")
    assert "no miner submitted a share in the last hour" in fragment(pooled, "summary")


def test_hashrates_are_shown_in_the_largest_fitting_unit() -> None:
    assert [hashrate(h) for h in (0, 999, 4_294_967_296, 10**21)] == [
        "0 H/s", "999 H/s", "4.3 GH/s", "1,000.0 EH/s"]  # fmt: skip


@pytest.mark.slow
def test_in_headless_chromium_the_public_pool_page_fills_with_charts_from_real_shares(
    pooled: PoolWorld, tmp_path: Path
) -> None:
    mine_and_pay(pooled)
    server = ApiServer(create_app(pooled.services), "127.0.0.1:0", grace_s=1)
    server.start()
    try:
        dumped = _browse(f"http://127.0.0.1:{server.port}/pool", tmp_path / "profile",
                         "--virtual-time-budget=5000", "--dump-dom")  # fmt: skip
    finally:
        server.stop(1)
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    dom = dumped.stdout
    assert "loading…" not in dom
    assert pooled.miner in dom and "treasury (20 %)" in dom
    assert re.search(r"<dt>blocks found, last 30 days</dt><dd>3</dd>", dom)
    drawn = _charts(dom)
    assert set(drawn) == {"chart-pool-hashrate", "chart-pool-shares", "chart-pool-payouts"}
    assert all(n > 0 and n == elements for n, elements in drawn.values())
    assert set(PANELS) == {"summary", "charts", "payouts"}


def test_the_public_pool_page_escapes_what_the_store_holds(pooled: PoolWorld) -> None:
    pooled.world.repos.mining_payouts.add(MiningPayout(
        paid_at=pooled.world.clock.now(), amount_sat=5, payment_hash="ab" * 32,
        miner_id="<script>alert(1)</script>",
    ))  # fmt: skip
    body = fragment(pooled, "payouts")  # asked from a non-loopback address: the page is public
    assert "<script>" not in body and "&lt;script&gt;alert(1)&lt;/script&gt;" in body


def first_frame(services: ApiServices) -> Any:
    """The first message of the live feed (WebSocket /v1/mining/dashboard)."""
    client = TestClient(create_app(services), client=("127.0.0.1", 5000))
    with client.websocket_connect("/v1/mining/dashboard") as socket:
        return socket.receive_json()


def test_the_live_feed_carries_each_miners_hashrate_shares_rejections_by_reason_and_earnings(
    pooled: PoolWorld,
) -> None:
    pool, miner = pooled.pool, pooled.miner
    job = pool.make_job(1, b"\x02" * 8)
    nonce = valid_nonce(pool, job, job.min_ntime)
    assert pool.judge(miner, job, nonce, job.min_ntime, job.version).accepted is not None
    again = pool.judge(miner, job, nonce, job.min_ntime, job.version)  # the same header twice
    assert again.error_code == "duplicate-share"
    frame = first_frame(pooled.services)
    assert frame["shares_by_miner_1h"] == {miner: 1}
    assert frame["hashrate_by_miner_1h"][miner] > 0
    assert frame["rejected_by_miner"] == {miner: {"duplicate-share": 1}}
    assert frame["earned_msat_by_miner"] == {miner: 40 * 10**8 * 1000}  # 80 % of 50 BTC


def test_the_live_feed_shows_the_stored_rejections_when_the_pool_runs_in_another_process(
    pooled: PoolWorld,
) -> None:
    pool, miner = pooled.pool, pooled.miner
    job = pool.make_job(1, b"\x03" * 8)
    nonce = valid_nonce(pool, job, job.min_ntime)
    pool.judge(miner, job, nonce, job.min_ntime, job.version)
    pool.judge(miner, job, nonce, job.min_ntime - 1, job.version)
    pool.flush_rejections()  # what the pool's worker loop does every few seconds
    services = ApiServices.over(pooled.world.services.coordinator, b"\x11" * 32,
                                ApiConfig(cache_ttl_ms=0))  # no pool here  # fmt: skip
    assert first_frame(services)["rejected_by_miner"] == {miner: {"invalid-timestamp": 1}}
