"""The public read models: network statistics, the anonymised registry, the slashing log (and
the maintainers' statements behind each reversal in it), the pool.

Aggregates any client may read, computed from the store and kept in the shared
:class:`~owm_adapters.services.api.config.ReadCache` for ``cache_ttl_ms``, so the public read
endpoints stay fast under 1,000 concurrent clients (SRS-PERF-08). Nothing here writes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import attrs

from owm_adapters.services.api.config import ApiConfig, ReadCache
from owm_core.coordination.network import AnonymousNode, NetworkStats, anonymised, network_stats
from owm_core.errors import must_exist
from owm_core.identity.envelopes import Envelope
from owm_core.nodes.registry import Liveness, Node, NodeStatus
from owm_core.pool.fpps import TREASURY_CREDIT_ID
from owm_core.pool.stats import (
    BLOCK_WINDOW_S,
    HourlyWork,
    MinerStats,
    MiningPayout,
    PoolStats,
    PoolWork,
    hourly_hashrate,
    hourly_payouts,
    miner_stats,
    per_miner_hashrate_1h,
    pool_stats,
    shares_by_miner_1h,
)
from owm_core.ports.clock import Clock
from owm_core.ports.repositories import Repositories
from owm_core.stake.channel import Stake
from owm_core.stake.reversals import reversal_of
from owm_core.stake.slashing import SlashingLogRecord, SlashingReversalEntry


@attrs.frozen
class PublishedReversal:
    """A reversal entry of the slashing log and the maintainers' statements behind it, which
    hash to its ``statement_hash`` (GET /v1/slashing/reversals/{log_index})."""

    entry: SlashingReversalEntry
    statements: tuple[Envelope, ...]


@attrs.frozen
class MinerView:
    """A miner's statistics and its recent payouts (GET /v1/mining/nodes/{node_id})."""

    stats: MinerStats
    payouts: Sequence[MiningPayout]


@attrs.frozen
class DashboardFrame:
    """One push of the live pool dashboard (SRS-POOL-09): the pool's figures, each active
    miner's hashrate and shares accepted in the last hour, the shares rejected per miner and
    reason code (stored, so they survive a restart: SRS-POOL-06), each miner's FPPS earnings
    credited so far in msat, and the latest payouts."""

    pool: PoolStats
    hashrate_by_miner_1h: dict[str, int]
    recent_payouts: Sequence[MiningPayout]
    shares_by_miner_1h: dict[str, int] = attrs.Factory(dict)
    rejected_by_miner: dict[str, dict[str, int]] = attrs.Factory(dict)
    earned_msat_by_miner: dict[str, int] = attrs.Factory(dict)


class LivePool(Protocol):
    """What the read models ask of a pool running in this process (SRS-POOL-09/10)."""

    def work(self) -> PoolWork | None:
        """The height, ``nBits`` and share difficulty mined now."""
        ...

    def rejections(self) -> dict[str, dict[str, int]]:
        """Shares rejected per miner and reason code: the stored totals and those not written
        yet."""
        ...


@attrs.frozen
class PoolPage:
    """What the pool page shows (SRS-POOL-10): the pool's figures, its current work (None when
    no pool runs in this process), each active miner's hashrate, the last 24 hours hour by
    hour (hashrate, shares, sat paid; oldest first) and the latest payouts."""

    pool: PoolStats
    work: PoolWork | None
    hashrate_by_miner_1h: dict[str, int]
    hourly_hashrate_hps: Sequence[int]
    hourly_shares: Sequence[int]
    hourly_paid_sat: Sequence[int]
    recent_payouts: Sequence[MiningPayout]


PAGE_PAYOUTS = 20
"""Payouts listed on the pool page."""


@attrs.define
class Views:
    """The cached public read models (see the module docstring)."""

    _repositories: Repositories
    _clock: Clock
    _liveness: Liveness
    _cache: ReadCache
    _config: ApiConfig
    _pool: LivePool | None = None

    # -- network -----------------------------------------------------------------------------

    def network_stats(self) -> NetworkStats:
        """Registry counts and total stake (GET /v1/network/stats)."""
        return self._cache.get("network_stats", self._network_stats)

    def _network_stats(self) -> NetworkStats:
        nodes, stakes = self._registry()
        return network_stats(nodes, stakes, self._clock.now(), self._liveness)

    def _registry(self) -> tuple[Sequence[Node], Mapping[str, Stake]]:
        """Every registered node and its stake, read once per cache period for both network
        endpoints."""
        def read() -> tuple[Sequence[Node], Mapping[str, Stake]]:
            nodes = self._repositories.nodes.list()
            return nodes, self._repositories.stakes.get_many([n.public_key for n in nodes])

        registry: tuple[Sequence[Node], Mapping[str, Stake]] = self._cache.get("registry", read)
        return registry

    def anonymous_nodes(self, status: NodeStatus | None = None) -> Sequence[AnonymousNode]:
        """The registry without identities (GET /v1/network/nodes), optionally one status."""
        listed = self._cache.get("network_nodes", self._anonymous_nodes)
        return [n for n in listed if status is None or n.status is status]

    def _anonymous_nodes(self) -> list[AnonymousNode]:
        now, (nodes, stakes) = self._clock.now(), self._registry()
        return [anonymised(n, stakes.get(n.public_key), now, self._liveness) for n in nodes]

    def slashing_log(self, start: int = 0, limit: int = 100) -> Sequence[SlashingLogRecord]:
        """The public slashing log from ``start`` (SRS-STAKE-06)."""
        limit = min(limit, self._config.max_list)
        return self._cache.get(
            ("slashing", start, limit),
            lambda: self._repositories.slashing_log.entries(start, limit),
        )

    def reversal(self, log_index: int) -> PublishedReversal:
        """The reversal of slashing entry ``log_index`` with the statements behind it, so that
        anyone can check two real maintainers signed it (docs/slashing.md, "Appeals";
        SRS-STAKE-06, SRS-SEC-14); NotFound while that entry is not reversed (statements of an
        appeal still under way are not published)."""
        return self._cache.get(("slashing_reversal", log_index), lambda: self._reversal(log_index))

    def _reversal(self, log_index: int) -> PublishedReversal:
        later = self._repositories.slashing_log.entries(log_index, None)
        entry = must_exist(
            reversal_of(later, log_index), f"slashing-log entry {log_index} is not reversed"
        )
        counted = self._repositories.slashing_evidence.counted_reversal_statements(entry.index)
        return PublishedReversal(entry, tuple(counted))

    # -- mining (SRS-POOL-09/10) -------------------------------------------------------------

    def _day(self) -> Sequence[HourlyWork]:
        """The last 24 hours' shares summed per hour and miner: one indexed GROUP BY, however
        many shares the 30 days hold (SRS-POOL-10/11)."""
        return self._cache.get(
            "hourly_work", lambda: self._repositories.shares.hourly_work(self._clock.now(), 24)
        )

    def _blocks_30d(self, miner_id: str | None = None) -> int:
        start = self._clock.now() - BLOCK_WINDOW_S + 1
        return self._repositories.shares.blocks_since(start, miner_id=miner_id)

    def pool_stats(self) -> PoolStats:
        """Pool hashrate, miners, blocks found, payouts (GET /v1/mining/stats)."""
        return self._cache.get(
            "pool_stats",
            lambda: pool_stats(
                self._day(), self._blocks_30d(), self._repositories.mining_payouts.totals(),
                self._clock.now(),
            ),
        )

    def miner(self, node_id: str) -> MinerView:
        """One node's mining statistics and payouts (GET /v1/mining/nodes/{node_id})."""
        must_exist(self._repositories.nodes.get(node_id), f"no node {node_id}")
        payouts = self._repositories.mining_payouts
        stats = miner_stats(
            node_id, self._day(), self._blocks_30d(node_id), payouts.totals(node_id),
            self._clock.now(),
        )  # fmt: skip
        return MinerView(stats, payouts.recent(100, miner_id=node_id))

    def payouts(self, limit: int = 100) -> Sequence[MiningPayout]:
        """Recent payouts, newest first (GET /v1/mining/payouts, public)."""
        limit = min(limit, self._config.max_list)
        return self._cache.get(
            ("payouts", limit), lambda: self._repositories.mining_payouts.recent(limit)
        )

    def pool_page(self) -> PoolPage:
        """The pool page's figures and hour-by-hour series (GET /pool), cached like the rest."""
        return self._cache.get("pool_page", self._pool_page)

    def _pool_page(self) -> PoolPage:
        now, day = self._clock.now(), self._day()
        rates, counts = hourly_hashrate(day)
        payouts = self._repositories.mining_payouts
        return PoolPage(
            pool=self.pool_stats(),
            work=self._pool.work() if self._pool is not None else None,
            hashrate_by_miner_1h=per_miner_hashrate_1h(day),
            hourly_hashrate_hps=rates,
            hourly_shares=counts,
            hourly_paid_sat=hourly_payouts(payouts.paid_by_hours_ago(now, 24), 24),
            recent_payouts=payouts.recent(PAGE_PAYOUTS),
        )

    def _rejections(self) -> dict[str, dict[str, int]]:
        """Rejected shares per miner and code: the pool's own count (the stored totals and
        what it has not written yet) when it runs here, else the stored totals."""
        if self._pool is not None:
            return self._pool.rejections()
        return self._repositories.share_rejections.by_miner()

    def dashboard(self) -> DashboardFrame:
        """One frame of the live pool dashboard (WebSocket /v1/mining/dashboard), computed at
        most once per cache period however many sockets are open."""
        return self._cache.get(
            "dashboard",
            lambda: DashboardFrame(
                self.pool_stats(),
                per_miner_hashrate_1h(self._day()),
                self.payouts(10),
                shares_by_miner_1h(self._day()),
                self._rejections(),
                {c.miner_id: c.credited_msat for c in self._repositories.miner_credits.list()
                 if c.miner_id != TREASURY_CREDIT_ID},
            ),
        )
