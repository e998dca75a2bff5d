"""``owm-coordinator``: what a coordinator operator runs (SRS 4.10)."""

from __future__ import annotations

from pathlib import Path

import click

from owm_adapters import keystore
from owm_cli.errors import OwmGroup


@click.group(cls=OwmGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="owm")
def cli() -> None:
    """Run an OWM coordinator: node registry, task dispatch, FL rounds, rewards.

    \b
    First time:   owm-coordinator init     (the coordinator's signing key)
    """


@cli.command()
@click.option(
    "--key",
    "key_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("~/.owm/coordinator.key"),
    show_default=True,
    help="Where to create the coordinator's Ed25519 key, which signs slashing-log entries "
    "(SRS-LN-13).",
)
def init(key_path: Path) -> None:
    """Create the coordinator's signing identity; refuses to overwrite an existing one."""
    identity = keystore.create_identity(key_path.expanduser())
    click.echo(f"coordinator key {key_path} (mode 0600)")
    click.echo(f"public key      {identity.public_key_hex}")
