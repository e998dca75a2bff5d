"""The coordinator's Prometheus metrics report on its mining pool (SRS-POOL-06, SRS-POOL-09):
shares accepted and rejected by code, blocks, connections open and refused by reason."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from prometheus_client import generate_latest

from owm_adapters.bootstrap.pool import pool_from
from owm_adapters.chain.local_chain import LocalChain
from owm_adapters.clock import SystemClock
from owm_adapters.pool.miner import StratumMiner
from owm_adapters.storage.memory import memory_repositories
from owm_core.pool import sv2_messages as sv2
from owm_core.pool.noise import PoolUrl
from owm_server.metrics import CoordinatorMetrics
from tests.adapters.bootstrap.test_pool_bootstrap import MINER, settings_in
from tests.adapters.pool.support import closed_by_peer
from tests.core.nodes.test_registry import make_node
from tests.prometheus_checks import samples, value

STRATUM_V1 = b'{"id": 1, "method": "mining.subscribe", "params": []}\n'


def test_the_metrics_count_the_pools_shares_blocks_and_connections(tmp_path: Path) -> None:
    store = memory_repositories()
    store.nodes.add(make_node(node_id=MINER.node_id, public_key=MINER.public_key_hex))
    worker = pool_from(settings_in(tmp_path, share_difficulty=3), store, SystemClock(), tmp_path,
                       chain=LocalChain(tmp_path / "chain.db"))  # fmt: skip
    assert worker is not None
    metrics = CoordinatorMetrics()
    metrics.bind_pool(worker)
    worker.start()
    try:
        url = PoolUrl.parse(worker.url)
        miner = StratumMiner.dial(url.host, url.port, url.authority_xonly, int(time.time()))
        miner.setup(url.host, url.port)
        miner.open_channel(MINER, "rig")
        assert miner.mine(shares=2).accepted == 2  # regtest: each a block
        work = miner.work
        assert work is not None
        assert isinstance(miner.submit(work, 0, ntime=work.ntime - 1), sv2.SubmitSharesError)
        open_now = samples(generate_latest(metrics.registry).decode())
        with socket.create_connection((url.host, url.port), timeout=5) as v1:
            v1.sendall(STRATUM_V1)
            assert closed_by_peer(v1)
        miner.close()
        deadline = time.monotonic() + 5
        while worker.figures().connections and time.monotonic() < deadline:
            time.sleep(0.01)
        after = samples(generate_latest(metrics.registry).decode())
    finally:
        worker.stop()
    assert value(open_now, "owm_pool_shares_accepted_total") == 2
    assert value(open_now, "owm_pool_shares_rejected_total", code="invalid-timestamp") == 1
    assert value(open_now, "owm_pool_blocks_found_total") == 2
    assert value(open_now, "owm_pool_connections") == 1
    assert value(open_now, "owm_pool_share_difficulty") == 3
    assert value(after, "owm_pool_connections") == 0
    assert value(after, "owm_pool_connections_refused_total", reason="frame-malformed") == 1
