"""``owm``: the network's tool for everyone — demos, simulations, verification."""

from __future__ import annotations

import click

from owm_cli.demo import demo
from owm_cli.errors import OwmGroup
from owm_cli.ots import ots
from owm_cli.release import release
from owm_cli.sim import sim
from owm_cli.slashing import slashing, slashing_log


@click.group(cls=OwmGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="owm")
def cli() -> None:
    """OWM, the Open World Model: many small AI models, trained and served by independent
    nodes, paid in satoshis over Lightning, anchored in Bitcoin.

    \b
    Start here:   owm demo
    Robust FL:    owm sim fl --clients 100 --byzantine 20 --attack signflip --rule krum
    Provenance:   owm ots verify FILE.ots --file WEIGHTS --bitcoin-rpc URL
    Operators:    owm-node --help, owm-coordinator --help
    """


cli.add_command(demo)
cli.add_command(ots)
cli.add_command(sim)
cli.add_command(release)
cli.add_command(slashing_log)
cli.add_command(slashing)
