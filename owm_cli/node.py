"""``owm-node``: what a node operator runs (SRS 4.1)."""

from __future__ import annotations

from pathlib import Path

import click

from owm_adapters import keystore
from owm_adapters.settings import NODE_TEMPLATE, ConfigError
from owm_cli.errors import OwmGroup


@click.group(cls=OwmGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="owm")
def cli() -> None:
    """Run an OWM node: contribute compute, earn satoshis over Lightning.

    \b
    First time:   owm-node init            (identity key + commented owm.toml)
    """


@cli.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("owm.toml"),
    show_default=True,
    help="Where to write the commented configuration file.",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="State directory (default ~/.owm). The key goes to DATA_DIR/identity.key unless "
    "OWM_IDENTITY_KEY_PATH is set.",
)
def init(config_path: Path, data_dir: Path | None) -> None:
    """Create this node's Ed25519 identity and a commented owm.toml (SRS-NODE-02).

    Refuses to overwrite an existing identity or configuration file.
    """
    if config_path.exists():
        raise ConfigError(f"{config_path} already exists; refusing to overwrite it")
    configured_key = str(data_dir / "identity.key") if data_dir is not None else None
    key_path = keystore.default_key_path(configured_key)
    identity = keystore.create_identity(key_path)
    config_path.write_text(
        NODE_TEMPLATE.format(
            data_dir=str(data_dir) if data_dir is not None else "~/.owm",
            identity_key=str(key_path),
        ),
        encoding="utf-8",
    )
    click.echo(f"identity   {key_path} (mode 0600; never share this file)")
    click.echo(f"node id    {identity.node_id}")
    click.echo(f"public key {identity.public_key_hex}")
    click.echo(f"config     {config_path}")
    click.echo("next: set [lightning] node_uri in the config, then `owm-node start --config "
               f"{config_path}`")
