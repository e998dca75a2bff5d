"""One periodic stake re-verification pass over every active node (SRS-PERF-14, SRS-STAKE-02).

Usage:  PYTHONPATH=. .venv/bin/python bench/stake_recheck.py [--nodes 2000]
        [--lightning embedded|lnd]

Every 6 hours the coordinator re-checks each active stake: one look at the node record, one
question to the treasury's Lightning node for the channels with the node's Lightning key
(LND ``ListChannels(peer=…)``, CLN ``listpeerchannels id=…``, the embedded ledger's own), the
stake rule, and a write of what changed (``owm_core.coordination.stakes.reverify_due_stakes``).
The pass runs on the coordinator's market thread, so its length is also how long the market's
housekeeping waits once every 6 hours.

What it does, in one run:

1. ``--nodes`` nodes, each with its own Lightning key and a stake channel to the treasury in
   the embedded Lightning ledger (a SQLite file), are registered straight into the
   coordinator's store (SQLite, a WAL file as on embedded defaults) with active stakes.
2. The clock moves 6 hours on and one pass re-verifies them all, timed; every stake must come
   back active (the pass fails otherwise). ``--lightning lnd`` asks through the LND adapter
   over real gRPC with TLS and macaroons, served by ``tests/fakes/lnd_server.py`` from the same
   ledger (LND's own protos), instead of the embedded adapter: one RPC per node, as against a
   real LND.

The baseline is the spec's period: the pass's share of the 6 hours it must fit in. The spec
gives SRS-PERF-14 no figure of its own. The last line is machine-readable:
``nodes=<n> lightning=<kind> pass_s=<s> per_node_ms=<ms> period_share=<fraction>``.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from coincurve import PrivateKey

from owm_adapters.lightning.embedded import SimLedger
from owm_adapters.storage.sql import open_repositories
from owm_core.coordination.stakes import (
    bound_stake_check,
    recheck_stake,
    reverify_due_stakes,
    stake_channel_of,
)
from owm_core.identity.keys import Identity
from owm_core.nodes.registry import LnNodeUri, Node
from owm_core.nodes.tiers import StakeRequirements, Tier
from owm_core.ports.lightning import StakeChannels
from owm_core.ports.repositories import Repositories
from owm_core.stake.channel import REVERIFY_PERIOD_S, Stake, StakeStatus

T0 = 1_800_000_000
CAPACITY_SAT = 200_000


def ln_key(number: int) -> str:
    """The Lightning public key of node ``number``'s own Lightning node."""
    secret = hashlib.sha256(b"bench-stake-ln-%d" % number).digest()
    return PrivateKey(secret).public_key.format(compressed=True).hex()


def register(
    repos: Repositories, ledger: SimLedger, lightning: StakeChannels, treasury: str, count: int
) -> None:
    """``count`` nodes with stake channels to ``treasury`` and active stakes, as registration
    leaves them (SRS-STAKE-01)."""
    requirements = StakeRequirements()
    for number in range(count):
        who = Identity.from_seed(hashlib.sha256(b"bench-stake-%d" % number).digest())
        peer = ln_key(number)
        ledger.open_channel(peer, treasury, CAPACITY_SAT)  # the node funds it: its own balance
        repos.nodes.add(Node(
            node_id=who.node_id, public_key=who.public_key_hex,
            ln_node_uri=LnNodeUri(peer, "node.bench.invalid", 9735), tier=Tier.T1, vram_mb=0,
            ram_mb=16_000, bandwidth_mbps=100, registered_at=T0, last_heartbeat=T0,
        ))  # fmt: skip
        channels = [stake_channel_of(c) for c in lightning.channels_with(peer)]
        check = bound_stake_check(repos, who.node_id, Tier.T1, channels, requirements)
        stake = Stake.register(who.public_key_hex, check, T0)
        repos.stakes.save(stake)
        active = recheck_stake(repos, lightning, stake, T0, requirements)
        assert active.status is StakeStatus.ACTIVE, active
        if number and number % 1000 == 0:
            print(f"  {number} nodes registered", file=sys.stderr)


@contextmanager
def treasury_lightning(kind: str, ledger: SimLedger) -> Iterator[StakeChannels]:
    """The treasury's Lightning port: the embedded adapter, or LND's over gRPC."""
    if kind == "embedded":
        yield ledger.lightning("treasury")
        return
    from owm_adapters.lightning.lnd import LndLightning
    from tests.fakes.lnd_server import FakeLnd

    macaroon, force_close = b"bench-payment-macaroon", b"bench-force-close-macaroon"
    fake = FakeLnd(ledger, "treasury", payment_macaroon=macaroon,
                   force_close_macaroon=force_close).start()  # fmt: skip
    lnd = LndLightning(fake.target, tls_cert_pem=fake.cert_pem, payment_macaroon=macaroon)
    try:
        yield lnd
    finally:
        lnd.close()
        fake.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=2000)
    parser.add_argument("--lightning", choices=("embedded", "lnd"), default="embedded")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="owm-stake-bench-") as tmp:
        ledger = SimLedger(Path(tmp) / "lightning.sqlite3", clock=lambda: T0)
        treasury = ledger.add_node("treasury")
        repos = open_repositories(f"sqlite:///{Path(tmp) / 'coordinator.sqlite3'}")
        with treasury_lightning(args.lightning, ledger) as lightning:
            started = time.perf_counter()
            register(repos, ledger, lightning, treasury, args.nodes)
            print(f"{args.nodes} nodes registered in {time.perf_counter() - started:.1f} s")
            started = time.perf_counter()
            rechecked = reverify_due_stakes(repos, lightning, T0 + REVERIFY_PERIOD_S)
            elapsed = time.perf_counter() - started
    if len(rechecked) != args.nodes or any(s.status is not StakeStatus.ACTIVE for s in rechecked):
        sys.exit(f"the pass re-verified {len(rechecked)} of {args.nodes} stakes as active")
    share = elapsed / REVERIFY_PERIOD_S
    print(f"one pass over {args.nodes} active stakes ({args.lightning} Lightning, SQLite store): "
          f"{elapsed:.2f} s, {elapsed / args.nodes * 1000:.2f} ms a node, {share:.4%} of the "
          f"{REVERIFY_PERIOD_S // 3600} h period")  # fmt: skip
    print(f"nodes={args.nodes} lightning={args.lightning} pass_s={elapsed:.2f} "
          f"per_node_ms={elapsed / args.nodes * 1000:.3f} period_share={share:.6f}")


if __name__ == "__main__":
    main()
