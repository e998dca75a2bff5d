"""Builds the worlds the Lightning contract suite runs in: one per backend, same ledger underneath.

Every world has a treasury (the node under test, reached through the adapter under test), a
peer node with a direct channel to it, a hub, and a node beyond the hub; the peers are embedded
ledger nodes. Tests see the treasury through two adapters: one holding the force-close
credential and one holding only the payment credential (SRS-SEC-13). For CLN the force-close
credential is a close-only rune sent to a fake clnrest over HTTPS.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import attrs

from owm_adapters.lightning.cln import ClnLightning, ClnRestForceClose
from owm_adapters.lightning.embedded import SimLedger, SimLightning
from owm_adapters.lightning.lnd import LndLightning
from owm_core.ports.lightning import Lightning
from tests.fakes.cln_server import FakeCln
from tests.fakes.clnrest_server import FakeClnRest
from tests.fakes.lnd_server import FakeLnd

BACKENDS = ("embedded", "lnd", "cln")
PAYMENT_MACAROON = bytes.fromhex("0201036c6e6402f801") + os.urandom(64)
FORCE_CLOSE_MACAROON = bytes.fromhex("0201036c6e6402f801") + os.urandom(64)

CAPACITY_SAT = 1_000_000
PUSH_SAT = 100_000


@attrs.define
class World:
    """The treasury under test and the embedded network around it."""

    backend: str
    ledger: SimLedger
    treasury: Lightning
    payment_only: Lightning
    peer: SimLightning
    hub: SimLightning
    far: SimLightning
    stake_channel_point: str
    #: The fake CLN socket the CLN world talks to (its requests are recorded); None elsewhere.
    cln: FakeCln | None = None


@contextmanager
def lightning_world(backend: str, directory: Path) -> Iterator[World]:
    """Start the backend's protocol peer (if any) and yield a ready world."""
    ledger = SimLedger(directory / "ln.sqlite")
    treasury_pubkey = ledger.add_node("treasury", address="127.0.0.1:9735")
    for alias in ("peer", "hub", "far"):
        ledger.add_node(alias)
    peer = ledger.lightning("peer")
    hub = ledger.lightning("hub")
    far = ledger.lightning("far")
    stake = ledger.open_channel(
        treasury_pubkey, peer.node_pubkey(), CAPACITY_SAT, push_sat=PUSH_SAT
    )
    ledger.open_channel(treasury_pubkey, hub.node_pubkey(), CAPACITY_SAT, push_sat=PUSH_SAT)
    ledger.open_channel(hub.node_pubkey(), far.node_pubkey(), CAPACITY_SAT, push_sat=PUSH_SAT)

    def world(treasury: Lightning, payment_only: Lightning, cln: FakeCln | None = None
              ) -> World:
        return World(backend, ledger, treasury, payment_only, peer, hub, far,
                     stake.channel_point, cln)

    if backend == "embedded":
        yield world(
            ledger.lightning("treasury", force_close_allowed=True), ledger.lightning("treasury")
        )
    elif backend == "lnd":
        fake = FakeLnd(
            ledger, "treasury",
            payment_macaroon=PAYMENT_MACAROON, force_close_macaroon=FORCE_CLOSE_MACAROON,
        ).start()
        full = LndLightning(fake.target, tls_cert_pem=fake.cert_pem,
                            payment_macaroon=PAYMENT_MACAROON,
                            force_close_macaroon=FORCE_CLOSE_MACAROON)
        payment_only = LndLightning(fake.target, tls_cert_pem=fake.cert_pem,
                                    payment_macaroon=PAYMENT_MACAROON)
        try:
            yield world(full, payment_only)
        finally:
            full.close()
            payment_only.close()
            fake.stop()
    elif backend == "cln":
        socket_dir = tempfile.mkdtemp(prefix="owm-cln-", dir="/tmp")
        socket_path = os.path.join(socket_dir, "lightning-rpc")
        fake_cln = FakeCln(ledger, "treasury", socket_path).start()
        clnrest = FakeClnRest(fake_cln, directory / "clnrest").start()
        force_closer = ClnRestForceClose(
            clnrest.url, clnrest.create_rune([["method=close"]]),
            ca_pem=clnrest.ca_file.read_bytes(),
        )
        try:
            yield world(
                ClnLightning(socket_path, force_closer=force_closer, poll_interval_s=0.02),
                ClnLightning(socket_path, poll_interval_s=0.02),
                fake_cln,
            )
        finally:
            clnrest.stop()
            fake_cln.stop()
            shutil.rmtree(socket_dir, ignore_errors=True)
    else:
        raise ValueError(backend)
