"""The mining login proxy of ``owm-mine proxy``, built from its options (SRS-POOL-02,
SRS-POOL-03; the relay itself: :mod:`owm_adapters.pool.proxy`).

:func:`mining_proxy` returns a :class:`MiningProxy`: a listener for SV2 firmware and proxies
(Noise with a key and certificate of its own, kept in ``key_dir``: the authority key miners are
configured with stays the same across restarts) whose miners each get a connection to the pool
signed in as the node.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import attrs

from owm_adapters.bootstrap.pool import certified_key, pool_url
from owm_adapters.pool.connection import NoiseSocket, dial
from owm_adapters.pool.proxy import RelayCounts, relays
from owm_adapters.pool.server import PoolServer
from owm_core.identity.keys import Identity
from owm_core.pool.noise import PoolUrl

DEFAULT_LISTEN = ("127.0.0.1", 34255)
DEFAULT_MAX_MINERS = 16
"""The pool's default ``max_connections_per_node``: one more miner would be refused there."""
CERTIFICATE_DAYS = 365
DIAL_TIMEOUT_S = 10.0
MAX_PAYLOAD = 1 << 20


@attrs.frozen
class MiningProxy:
    """The proxy's listener and what its miners did (:class:`RelayCounts`)."""

    server: PoolServer
    counts: RelayCounts
    listen: tuple[str, int]
    authority_xonly: bytes

    def start(self) -> str:
        """Listen; the URL miners are given (``stratum2+tcp://host:port/<authority key>``)."""
        return pool_url(self.server.start(*self.listen), self.authority_xonly)

    def stop(self) -> None:
        """Stop listening and close every miner's connection, and each one's to the pool."""
        self.server.stop()


def mining_proxy(
    pool: PoolUrl, identity: Identity, key_dir: Path, now: int,
    *, listen: tuple[str, int] = DEFAULT_LISTEN, max_miners: int = DEFAULT_MAX_MINERS,
    allowed: Callable[[str], bool] | None = None,
) -> MiningProxy:  # fmt: skip
    """The proxy for ``identity``'s miners to ``pool`` (not started): at most ``max_miners``
    at once, from the addresses ``allowed`` takes (``settings.allowed_networks``; None: any
    that can reach ``listen``); its certificate valid for a year from ``now``."""
    static, authority = certified_key(key_dir, CERTIFICATE_DAYS, now)
    counts = RelayCounts()

    def upstream() -> NoiseSocket:
        connection = dial(
            pool.host, pool.port, pool.authority_xonly, int(time.time()), entropy=os.urandom,
            timeout_s=DIAL_TIMEOUT_S, max_payload=MAX_PAYLOAD,
        )  # fmt: skip
        connection.sock.settimeout(None)  # the pool may say nothing for minutes
        return connection

    server = PoolServer(
        static, relays(upstream, identity, counts), max_connections=max_miners,
        max_connections_per_ip=max_miners, allowed=allowed,
    )  # fmt: skip
    return MiningProxy(server, counts, listen, authority)
