"""The mining-pool endpoints of v1 (SRS-POOL-09/10): pool and miner statistics, payouts, dashboard.

``GET /v1/mining/stats``, ``…/payouts`` and ``…/dashboard`` are public aggregates served from
the cached read models; ``GET /v1/mining/nodes/{node_id}`` is one miner. The live dashboard is
also a WebSocket at ``/v1/mining/dashboard`` (:func:`owm_server.http.app.dashboard_socket`),
which pushes the same :func:`dashboard_json` frame. No rule lives here: parse, call the
service, render.
"""

from __future__ import annotations

from typing import Any

import attrs
from starlette.responses import Response

from owm_adapters.services.api.views import DashboardFrame
from owm_core.pool.stats import MinerStats, MiningPayout, PoolStats
from owm_server.http.call import Call
from owm_server.http.contract import Access, Operation, Reply, Schema, Tag
from owm_server.http.v1.render import json
from owm_server.http.v1.schemas import (
    INT,
    LIMIT,
    NODE_PARAM,
    NOT_FOUND,
    STR,
    array,
    nullable,
    obj,
    published,
)

PAYOUT: Schema = obj(
    {
        "paid_at": INT,
        "amount_sat": INT,
        "payment_hash": STR,
        "recipient": {"type": "string", "enum": ["miner", "treasury"]},
        "miner_id": nullable(STR),
    }
)
POOL: Schema = obj(
    {
        "hashrate_1h_hps": INT,
        "hashrate_24h_hps": INT,
        "miners_24h": INT,
        "shares_24h": INT,
        "blocks_30d": INT,
        "paid_sat_total": INT,
        "at": INT,
    }
)
MINER: Schema = obj(
    {
        "miner_id": STR,
        "hashrate_1h_hps": INT,
        "hashrate_24h_hps": INT,
        "shares_24h": INT,
        "blocks_30d": INT,
        "paid_sat": INT,
        "payouts": INT,
    }
)
MINER_VIEW: Schema = {
    **MINER,
    "properties": {**MINER["properties"], "recent_payouts": array(PAYOUT)},
}
DASHBOARD: Schema = obj(
    {
        "type": STR,
        "pool": POOL,
        "hashrate_by_miner_1h": {"type": "object"},
        "shares_by_miner_1h": {"type": "object"},
        "rejected_by_miner": {"type": "object"},
        "earned_msat_by_miner": {"type": "object"},
        "recent_payouts": array(PAYOUT),
    }
)


def payout_json(p: MiningPayout) -> dict[str, Any]:
    """A payout to a miner, or the treasury's share of a block."""
    return published(PAYOUT, p, recipient="treasury" if p.miner_id is None else "miner")


def pool_json(p: PoolStats) -> dict[str, Any]:
    """Pool-wide statistics: every figure of the value, as :data:`POOL` lists them."""
    return attrs.asdict(p)


def miner_json(m: MinerStats) -> dict[str, Any]:
    """One miner's statistics: every figure of the value, as :data:`MINER` lists them."""
    return attrs.asdict(m)


def dashboard_json(frame: DashboardFrame) -> dict[str, Any]:
    """One live dashboard message (SRS-POOL-09): per miner, the last hour's hashrate and
    accepted shares, the shares rejected by reason code since the pool started, and the FPPS
    earnings credited so far (msat)."""
    return {
        "type": "pool_metrics",
        "pool": pool_json(frame.pool),
        "hashrate_by_miner_1h": frame.hashrate_by_miner_1h,
        "shares_by_miner_1h": frame.shares_by_miner_1h,
        "rejected_by_miner": frame.rejected_by_miner,
        "earned_msat_by_miner": frame.earned_msat_by_miner,
        "recent_payouts": [payout_json(p) for p in frame.recent_payouts],
    }


def mining_stats(call: Call) -> Response:
    return json(pool_json(call.services.views.pool_stats()))


def mining_node(call: Call) -> Response:
    view = call.services.views.miner(call.path["node_id"])
    return json(
        {**miner_json(view.stats), "recent_payouts": [payout_json(p) for p in view.payouts]}
    )


def mining_payouts(call: Call) -> Response:
    payouts = call.services.views.payouts(call.query.get("limit", 100))
    return json({"payouts": [payout_json(p) for p in payouts]})


def mining_dashboard(call: Call) -> Response:
    return json(dashboard_json(call.services.views.dashboard()))


def operations() -> list[Operation]:
    """Pool statistics, one miner, recent payouts and one dashboard frame."""
    mining = Tag("mining")
    return [
        mining(
            "GET", "/mining/stats", "miningStats", "Pool-wide hashrate, miners, blocks found",
            Access.CLIENT, mining_stats, {200: Reply("Pool statistics.", POOL)}, inline=True,
        ),
        mining(
            "GET", "/mining/nodes/{node_id}", "miningNode", "Node's mining stats and earnings",
            Access.NODE_MANAGEMENT, mining_node,
            {200: Reply("The miner's statistics.", MINER_VIEW), 404: NOT_FOUND},
            params=(NODE_PARAM,),
        ),
        mining(
            "GET", "/mining/payouts", "miningPayouts", "Recent payout history (public)",
            Access.CLIENT, mining_payouts,
            {200: Reply("Payouts, newest first.", obj({"payouts": array(PAYOUT)}))},
            params=(LIMIT,), inline=True,
        ),
        mining(
            "GET", "/mining/dashboard", "miningDashboard",
            "Live pool metrics: one frame here; a WebSocket upgrade streams them", Access.CLIENT,
            mining_dashboard,
            {200: Reply("One dashboard frame (the WebSocket sends the same shape).", DASHBOARD)},
            inline=True,
        ),
    ]
