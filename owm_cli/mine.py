"""``owm-mine``: the built-in Stratum V2 miner, signed in with the node's identity
(SRS-NODE-13, SRS-POOL-02), hashing on the CPU or with torch on a GPU (``--hasher``), and the
login proxy through which SV2 firmware and proxies mine for the node (``owm-mine proxy``,
SRS-POOL-03)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import click

from owm_adapters.bootstrap import logs
from owm_adapters.bootstrap.mining_proxy import DEFAULT_MAX_MINERS
from owm_adapters.hashing.select import HASHERS, hasher_for
from owm_adapters.pool.miner import StratumMiner, check_clearnet
from owm_adapters.storage.keystore import load_identity
from owm_cli.errors import OwmGroup
from owm_cli.options import logging_options, version_option
from owm_core.pool.noise import PoolUrl


@click.group(cls=OwmGroup, context_settings={"help_option_names": ["-h", "--help"]})
@version_option()
@logging_options
def cli(log_level: str | None, log_format: str) -> None:
    """Mine on an OWM pool over Stratum V2 with this node's identity (see owm-mine run -h)."""
    logs.configure(log_level, log_format)


POOL_OPTION = click.option(
    "--pool",
    "pool_url",
    required=True,
    help="The pool as stratum2+tcp://HOST:PORT/AUTHORITY_KEY (the key the pool publishes).",
)
IDENTITY_OPTION = click.option(
    "--identity",
    "identity_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("~/.owm/identity.key"),
    show_default=True,
    help="The node's identity key file (created by owm-node init; mode 0600).",
)


@cli.command()
@POOL_OPTION
@IDENTITY_OPTION
@click.option("--worker", default="", help="Worker name shown in the pool's statistics.")
@click.option(
    "--shares",
    type=click.IntRange(1),
    default=None,
    help="Stop after this many answered shares [default: mine until interrupted].",
)
@click.option(
    "--hasher",
    type=click.Choice(HASHERS),
    default="cpu",
    show_default=True,
    help="cpu: hashlib; torch: SHA-256d over tensors, on a CUDA GPU when one is found, else "
    "the CPU; auto: torch on a CUDA GPU if there is one, else cpu.",
)
def run(pool_url: str, identity_path: Path, worker: str, shares: int | None, hasher: str) -> None:
    """Connect (clearnet only, never through a SOCKS proxy), sign in and mine."""
    url = PoolUrl.parse(pool_url)
    check_clearnet(url.host, os.environ)
    header_hasher = hasher_for(hasher)
    identity = load_identity(identity_path.expanduser())
    miner = StratumMiner.dial(
        url.host, url.port, url.authority_xonly, int(time.time()), hasher=header_hasher
    )
    try:
        miner.setup(url.host, url.port)
        miner.open_channel(identity, worker)
        click.echo(
            f"mining as {identity.node_id} on {url.host}:{url.port} with {header_hasher.name}"
        )
        accepted, rejected = 0, 0
        while shares is None or accepted + rejected < shares:
            result = miner.mine(shares=1 if shares is None else shares - accepted - rejected)
            accepted += result.accepted
            rejected += sum(result.rejected.values())
            for code, count in sorted(result.rejected.items()):
                click.echo(f"rejected {count} share(s): {code}")
        click.echo(f"accepted {accepted} rejected {rejected}")
    finally:
        miner.close()


@cli.command()
@POOL_OPTION
@IDENTITY_OPTION
@click.option(
    "--listen",
    default="127.0.0.1:34255",
    show_default=True,
    help="HOST:PORT the miners connect to. Whoever reaches it mines in the node's name and "
    "takes one of its places at the pool: keep it on the node's machine or farm network.",
)
@click.option(
    "--key-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("~/.owm/mine-proxy"),
    show_default=True,
    help="Where the proxy's Noise keys are kept (created on first start, mode 0600): its "
    "authority key, which the miners are configured with, stays the same across restarts.",
)
@click.option(
    "--max-miners",
    type=click.IntRange(1),
    default=DEFAULT_MAX_MINERS,
    show_default=True,
    help="Miners connected at once (each is one connection to the pool, which allows a node "
    "16 by default: [pool] max_connections_per_node).",
)
@click.option(
    "--allow",
    "allow",
    multiple=True,
    metavar="CIDR",
    help="A network miners may connect from, e.g. 192.168.1.0/24 (repeatable); others are "
    "closed as they connect. Default: any address that can reach --listen.",
)
@click.option(
    "--report-s",
    type=click.FloatRange(min=0, min_open=True),
    default=60.0,
    show_default=True,
    help="Seconds between the lines saying how many miners are connected and how their "
    "shares went.",
)
def proxy(
    pool_url: str, identity_path: Path, listen: str, key_dir: Path, max_miners: int,
    allow: tuple[str, ...], report_s: float,
) -> None:  # fmt: skip
    """Let SV2 firmware and proxies mine for this node (SRS-POOL-03).

    They send a plain user name where the pool wants the node's signed login; the proxy
    accepts them with a key of its own, opens a connection to the pool for each, signed in as
    the node (the user name becomes the worker name), and passes everything else through.
    Runs until SIGTERM or Ctrl-C."""
    from owm_adapters.bootstrap.mining_proxy import mining_proxy
    from owm_adapters.bootstrap.settings import allowed_networks, listen_address
    from owm_cli.signals import stopped_by_signals

    url = PoolUrl.parse(pool_url)
    check_clearnet(url.host, os.environ)
    address = listen_address(listen, "--listen")
    allowed = allowed_networks(allow, "--allow")
    identity = load_identity(identity_path.expanduser())
    built = mining_proxy(url, identity, key_dir.expanduser(), int(time.time()),
                         listen=address, max_miners=max_miners, allowed=allowed)  # fmt: skip
    with stopped_by_signals() as stop:
        miners_url = built.start()
        click.echo(f"mining for node {identity.node_id} on {url.host}:{url.port}")
        click.echo(f"miners connect to {miners_url} (their user name is the worker name)")
        try:
            while not stop.wait(report_s):
                click.echo(built.counts.summary())
        finally:
            built.stop()
    click.echo(built.counts.summary())


if __name__ == "__main__":
    cli()
