"""``owm``: the network's tool for everyone — demos, simulations, verification."""

from __future__ import annotations

import importlib

import click

from owm_adapters.bootstrap import logs
from owm_cli.errors import OwmGroup
from owm_cli.options import logging_options, version_option

#: name → (module:attribute, one-line summary). Modules are imported only when their command
#: runs: the demo and the simulator load torch (seconds), which ``owm --help`` should not wait on.
COMMANDS = {
    "data": ("owm_cli.data:data", "Contribute datasets to the conglomerate's sub-models."),
    "demo": ("owm_cli.demo:demo", "Tour the network's rules on this machine."),
    "gov": ("owm_cli.gov:gov", "Governance proposals by signed statements; verify the log."),
    "devnet": ("owm_cli.devnet:devnet", "A whole OWM network on this machine (up/down/status)."),
    "ots": ("owm_cli.ots:ots", "OpenTimestamps proofs of model versions."),
    "release": ("owm_cli.release:release", "Build and sign release manifests (maintainers)."),
    "sim": ("owm_cli.sim:sim", "Simulations: FL under attack, the whole economy."),
    "slashing": ("owm_cli.slashing:slashing", "Maintainer acknowledgements of slashing cases."),
    "slashing-log": ("owm_cli.slashing:slashing_log", "Verify the public slashing log."),
    "treasury": ("owm_cli.treasury:treasury", "The treasury multisig's PSBT files."),
}


class LazyGroup(OwmGroup):
    """A command group that imports each subcommand's module on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module, _, attribute = COMMANDS[cmd_name][0].partition(":")
        command: click.Command = getattr(importlib.import_module(module), attribute)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, COMMANDS[name][1]) for name in sorted(COMMANDS)])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@version_option()
@logging_options
def cli(log_level: str | None, log_format: str) -> None:
    """OWM, the Open World Model: many small AI models, trained and served by independent
    nodes, paid in satoshis over Lightning, anchored in Bitcoin.

    \b
    Start here:   owm demo
    Robust FL:    owm sim fl --clients 100 --byzantine 20 --attack signflip --rule krum
    Economy:      owm sim economy --nodes 1000 --days 365 --report report/
    Provenance:   owm ots verify FILE.ots --file WEIGHTS --bitcoin-rpc URL
    Operators:    owm-node --help, owm-coordinator --help
    """
    logs.configure(log_level, log_format)
