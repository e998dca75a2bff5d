"""``owm-mine``: the built-in Stratum V2 miner, signed in with the node's identity
(SRS-NODE-13, SRS-POOL-02), hashing on the CPU or with torch on a GPU (``--hasher``); real hash
rate comes from SV2 firmware or proxies pointed at the same pool (SRS-POOL-03)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import click

from owm_adapters.bootstrap import logs
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


@cli.command()
@click.option(
    "--pool",
    "pool_url",
    required=True,
    help="The pool as stratum2+tcp://HOST:PORT/AUTHORITY_KEY (the key the pool publishes).",
)
@click.option(
    "--identity",
    "identity_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("~/.owm/identity.key"),
    show_default=True,
    help="The node's identity key file (created by owm-node init; mode 0600).",
)
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
