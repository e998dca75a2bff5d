"""The coordinator's Stratum V2 pool, built from ``[pool]`` (SRS-POOL-01..06, SRS-SEC-15/16).

:func:`pool_from` returns a :class:`PoolWorker` — the listener, the share judge over the
store's share repository and the registry, and a loop refreshing the block template — or
``None`` while ``[pool] enabled`` is false; it also deletes shares older than 30 days, at start
and hourly (SRS-POOL-11). Keys are created on first start in the key
directory (0600) and the static key is certified by the authority key at every start; the pool
URL miners need (with the authority key) is logged and available as :attr:`PoolWorker.url`.
"""

from __future__ import annotations

import logging
import math
import os
import resource
from pathlib import Path

import attrs

from owm_adapters.bootstrap.chains import chain_source_of
from owm_adapters.bootstrap.settings import (
    ConfigError,
    CoordinatorSettings,
    PoolSection,
    listen_address,
)
from owm_adapters.chain.local_chain import ANYONE_CAN_SPEND, LocalChain
from owm_adapters.pool.channels import MinerConnection, RegistryNodeKeys
from owm_adapters.pool.mining import MiningPool
from owm_adapters.pool.node_connections import NodeConnections
from owm_adapters.pool.server import PoolServer
from owm_adapters.services.payout_sweeps import EnqueuesPayouts
from owm_adapters.services.pool_payouts import FppsFunds, PoolPayouts
from owm_adapters.services.workers import DEFAULT_STOP_TIMEOUT_S, Loop
from owm_adapters.storage import keystore
from owm_core.errors import InvalidValue
from owm_core.pool import bitcoin, noise, secp256k1
from owm_core.pool.vardiff import VardiffPolicy
from owm_core.ports.chain import Chain
from owm_core.ports.clock import Clock
from owm_core.ports.repositories import Repositories
from owm_core.ports.repositories.pool import ShareRepository

log = logging.getLogger(__name__)

DAY_S = 86_400
SHARE_RETENTION_S = 30 * DAY_S
"""Accepted shares are kept 30 days for disputes, then deleted (SRS-POOL-11)."""
RETENTION_EVERY_S = 3_600.0


@attrs.frozen
class PoolFigures:
    """The pool's counts for its Prometheus metrics, read when they are scraped: shares
    accepted, rejected by code, blocks found (since start), miner connections open and
    waiting on a backlog, connections refused by reason, and the share difficulty floor."""

    accepted: int
    rejected: dict[str, int]
    blocks: int
    connections: int
    backlogged: int
    refused: dict[str, int]
    share_difficulty: int


class PoolWorker:
    """The pool as one of the coordinator's workers: started after the task market."""

    def __init__(
        self, pool: MiningPool, server: PoolServer, listen: tuple[str, int], poll_s: float,
        authority_xonly: bytes, shares: ShareRepository, clock: Clock,
        payouts: PoolPayouts | None = None,
    ) -> None:  # fmt: skip
        self.pool = pool
        self._server = server
        self._listen = listen
        self._authority = authority_xonly
        self._shares = shares
        self._clock = clock
        self._loop = Loop("pool-templates", self.tick, poll_s)
        self._retention = Loop("pool-retention", self.prune, RETENTION_EVERY_S, first=self.prune)
        self.address: tuple[str, int] | None = None
        self.payouts = payouts

    @property
    def url(self) -> str:
        """``stratum2+tcp://host:port/<authority key>`` once listening (section 4.7 of the spec)."""
        assert self.address is not None, "the pool is not listening"
        return pool_url(self.address, self._authority)

    def figures(self) -> PoolFigures:
        """What the pool's metrics report now."""
        pool, server = self.pool, self._server
        return PoolFigures(
            pool.accepted, pool.rejected, len(pool.blocks), server.open_connections,
            server.backlogged_connections, server.refused(), pool.share_difficulty,
        )  # fmt: skip

    def start(self) -> None:
        self.pool.refresh()
        self.address = self._server.start(*self._listen)
        self._loop.start()
        self._retention.start()
        if self.payouts is not None:
            self.payouts.start()
        log.info("mining pool listening: %s", self.url)

    def stop(self, timeout_s: float = DEFAULT_STOP_TIMEOUT_S) -> None:
        if self.payouts is not None:
            self.payouts.stop(timeout_s)
        self._server.stop(timeout_s)
        self._loop.stop(timeout_s)
        self._retention.stop(timeout_s)
        self.pool.flush_rejections()

    def tick(self) -> None:
        """One turn of the template loop: a fresh template (a block found elsewhere makes the
        jobs stale), channels due a new difficulty retargeted (vardiff), then the rejections
        counted since the last turn written (SRS-POOL-06)."""
        try:
            self.pool.refresh()
            self.pool.retarget()
        finally:
            self.pool.flush_rejections()

    def prune(self) -> int:
        """Delete shares accepted over 30 days ago (SRS-POOL-11): at start, then hourly."""
        deleted = self._shares.delete_older_than(self._clock.now() - SHARE_RETENTION_S)
        if deleted:
            log.info("pool retention: deleted %d shares older than 30 days", deleted)
        return deleted


def _secret(path: Path) -> bytes:
    return keystore.load_secret(path) if path.exists() else keystore.create_secret(path)


def certified_key(key_dir: Path, days: int, now: int) -> tuple[noise.StaticKey, bytes]:
    """The Noise static key in ``key_dir`` certified for ``days`` from ``now`` by the authority
    key there (both created on first start, 0600), and the authority's x-only public key:
    what miners check the certificate against (SRS-POOL-01). The pool's, or the mining login
    proxy's."""
    authority_secret = _secret(key_dir / "authority.key")
    static_secret = _secret(key_dir / "static.key")
    static_ellswift = secp256k1.ellswift_create(static_secret, os.urandom(32))
    certificate = noise.sign_certificate(
        authority_secret, static_ellswift, now - 60, now + days * DAY_S, os.urandom(32)
    )
    static = noise.StaticKey(static_secret, static_ellswift, certificate)
    return static, secp256k1.xonly_public_key(authority_secret)


def pool_url(address: tuple[str, int], authority_xonly: bytes) -> str:
    """``stratum2+tcp://host:port/<authority key>`` (section 4.7 of the spec)."""
    host, port = address
    return f"stratum2+tcp://{host}:{port}/{noise.encode_authority_key(authority_xonly)}"


def _listen_of(section: PoolSection) -> tuple[str, int]:
    try:
        return listen_address(section.listen, "pool.listen")
    except InvalidValue as error:
        raise ConfigError(error.message) from None


def _chain_of(settings: CoordinatorSettings, data_dir: Path) -> Chain:
    source = chain_source_of(settings.chain)
    if source is not None:
        return source[0]
    if settings.provenance.backend == "embedded":
        return LocalChain(data_dir / "provenance" / "chain.sqlite3")
    raise ConfigError("pool.enabled needs [chain] bitcoin_rpc or local_chain to get templates from")


def _payout_script(section: PoolSection, chain: Chain) -> bytes:
    if section.payout_script:
        try:
            return bytes.fromhex(section.payout_script)
        except ValueError:
            raise ConfigError("pool.payout_script: must be a scriptPubKey in hex") from None
    if not isinstance(chain, LocalChain):
        raise ConfigError("pool.payout_script: required unless mining on the embedded chain")
    return ANYONE_CAN_SPEND


def pool_from(
    settings: CoordinatorSettings, store: Repositories, clock: Clock, data_dir: Path,
    *, chain: Chain | None = None, payouts: EnqueuesPayouts | None = None,
) -> PoolWorker | None:  # fmt: skip
    """The pool ``[pool]`` configures (module docstring); ``chain`` replaces the settings'.
    With the coordinator's payout outbox (``payouts``) miners' FPPS credits are paid over
    Lightning (:class:`~owm_adapters.services.pool_payouts.PoolPayouts`)."""
    section = settings.pool
    if not section.enabled:
        return None
    if section.share_difficulty < 1 or section.certificate_days < 1 or section.template_poll_s <= 0:
        raise ConfigError("pool: share_difficulty and certificate_days ≥ 1, template_poll_s > 0")
    if section.payout_sweep_s <= 0 or section.fpps_block_reward_sat < 0:
        raise ConfigError("pool: payout_sweep_s > 0 and fpps_block_reward_sat ≥ 0")
    if section.fpps_reserve_sat < -1 or section.treasury_floor_sat < 0:
        raise ConfigError("pool: fpps_reserve_sat ≥ -1 and treasury_floor_sat ≥ 0")
    _check_connection_caps(section)
    listen = _listen_of(section)
    chain = chain if chain is not None else _chain_of(settings, data_dir)
    key_dir = Path(section.key_dir).expanduser() if section.key_dir else data_dir / "pool"
    static, authority = certified_key(key_dir, section.certificate_days, clock.now())
    pool = MiningPool(
        chain, store.shares, clock.now, payout_script=_payout_script(section, chain),
        share_difficulty=section.share_difficulty, credits=store.miner_credits,
        vardiff=_vardiff_of(section),
        atomic=store.atomic, rejections=store.share_rejections,
        fpps_subsidy_sat=section.fpps_block_reward_sat or None,
    )  # fmt: skip
    nodes = RegistryNodeKeys(store.nodes)
    per_node = NodeConnections(section.max_connections_per_node)
    server = PoolServer(
        static, lambda connection: MinerConnection(connection, pool, nodes, per_node),
        max_connections=section.max_connections,
        max_connections_per_ip=section.max_connections_per_ip,
        login_timeout_s=section.login_timeout_s,
    )  # fmt: skip
    return PoolWorker(
        pool, server, listen, section.template_poll_s, authority, store.shares, clock,
        None if payouts is None else PoolPayouts(
            store, clock, payouts, period_s=section.payout_sweep_s,
            treasury_destination=section.treasury_node, funds=_funds_of(section),
        ),
    )  # fmt: skip


def _vardiff_of(section: PoolSection) -> VardiffPolicy | None:
    """``[pool] shares_per_minute`` as a vardiff policy over ``share_difficulty``; 0: none."""
    if section.shares_per_minute == 0:
        return None
    try:
        return VardiffPolicy(section.shares_per_minute, min_difficulty=section.share_difficulty)
    except InvalidValue as error:
        raise ConfigError(f"pool.shares_per_minute: {error.reason} (0 turns vardiff off)") from None


def _check_connection_caps(section: PoolSection) -> None:
    """``max_connections``, ``max_connections_per_ip`` and ``max_connections_per_node`` are
    positive integers and ``login_timeout_s`` a positive (finite) number of seconds
    (SRS-SEC-16); a total cap near or above the open-file limit (``ulimit -n``) is warned about:
    past that limit new connections wait unaccepted (the listener retries) instead of meeting
    the cap."""
    for name in ("max_connections", "max_connections_per_ip", "max_connections_per_node"):
        value = getattr(section, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"pool.{name}: must be a positive integer, not {value!r}")
    login = section.login_timeout_s
    if isinstance(login, bool) or not isinstance(login, int | float) or not 0 < login < math.inf:
        raise ConfigError(
            f"pool.login_timeout_s: must be a positive number of seconds, not {login!r}"
        )
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and section.max_connections + FILES_SPARE > soft:
        log.warning(
            "pool.max_connections %d is near or above this process's open-file limit %d "
            "(ulimit -n): raise the limit or lower the cap", section.max_connections, soft,
        )  # fmt: skip


#: Descriptors the coordinator needs besides the pool's connections (database, gRPC, HTTP, logs).
FILES_SPARE = 256


#: A found block's value when ``fpps_block_reward_sat`` is 0: the subsidy of the 2024–2028
#: era (fees not counted, so the funds are never overstated by them).
CURRENT_ERA_SUBSIDY_SAT = bitcoin.block_subsidy_sat(840_000)


def _funds_of(section: PoolSection) -> FppsFunds | None:
    """The FPPS funds the treasury floor is measured against; None (unchecked) when
    ``fpps_reserve_sat`` is −1 (SRS-POOL-07)."""
    if section.fpps_reserve_sat < 0:
        return None
    value = section.fpps_block_reward_sat or CURRENT_ERA_SUBSIDY_SAT
    return FppsFunds(section.fpps_reserve_sat, value, section.treasury_floor_sat)
