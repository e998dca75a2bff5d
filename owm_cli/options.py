"""Click options that more than one command line declares, written once."""

from __future__ import annotations

import enum
import json
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import attrs
import click

from owm_adapters.bootstrap.logs import FORMATS, LEVELS
from owm_cli.api_client import get_json, v1_url
from owm_core.errors import DomainError
from owm_core.identity.keys import parse_public_key

Command = TypeVar("Command", bound=Callable[..., Any])

DISTRIBUTION = "owm-network"


def version_option() -> Callable[[Command], Command]:
    """``--version``: the installed ``owm-network`` distribution's version (a checkout run
    without installing it says so instead of failing)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        installed = version(DISTRIBUTION)
    except PackageNotFoundError:
        installed = f"unknown ({DISTRIBUTION} is not installed)"
    return click.version_option(version=installed)


def config_option(help_text: str, default: Path | None = None) -> Callable[[Command], Command]:
    """``--config PATH``, passed as ``config_path``: the TOML file a command reads its settings
    from; ``default`` when not given (None: the embedded defaults), shown in ``--help`` if set."""
    return click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=default,
        show_default=default is not None,
        help=help_text,
    )


NETWORKS = ["main", "test", "signet", "regtest"]


def chain_options(*, credentials: bool) -> Callable[[Command], Command]:
    """Where block headers come from when a command checks an OpenTimestamps proof: a Bitcoin
    Core / Knots node (``--bitcoin-rpc``, its cookie, and ``--rpc-user``/``--rpc-password``
    when ``credentials``) or a devnet's chain file, and the network's proof-of-work rules."""
    options = [
        click.option("--bitcoin-rpc", "rpc_url", metavar="URL",
                     help="Bitcoin Core / Knots JSON-RPC, e.g. http://127.0.0.1:8332."),
    ]
    if credentials:
        options += [
            click.option("--rpc-user", envvar="OWM_BITCOIN_RPC_USER", metavar="USER",
                         help="RPC user (env OWM_BITCOIN_RPC_USER)."),
            click.option("--rpc-password", envvar="OWM_BITCOIN_RPC_PASSWORD", metavar="PASSWORD",
                         help="RPC password (env OWM_BITCOIN_RPC_PASSWORD; prefer the env)."),
        ]
    options += [
        click.option("--rpc-cookie", type=click.Path(dir_okay=False, path_type=Path),
                     help="bitcoind's .cookie file"
                     + (" instead of user/password." if credentials else ".")),
        click.option("--local-chain", type=click.Path(exists=True, dir_okay=False,
                                                      path_type=Path),
                     help="A devnet's embedded chain file instead of bitcoind."),
        click.option("--network", type=click.Choice(NETWORKS),
                     help="Proof-of-work rules to judge headers by [default: asked from "
                          "bitcoind; regtest for --local-chain]."),
    ]

    def decorate(command: Command) -> Command:
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def json_option(what: str = "the report") -> Callable[[Command], Command]:
    """``--json``, passed as ``as_json``: print ``what`` as one JSON object on stdout instead
    of text, for scripts. Progress and errors stay on stderr, so stdout always parses."""
    return click.option("--json", "as_json", is_flag=True,
                        help=f"Print {what} as one JSON object (the same figures as the text).")


def render(report: Mapping[str, Any], as_json: bool, lines: Callable[[], Iterable[str]]) -> None:
    """Print ``report`` as sorted, indented JSON when ``as_json``, else the text ``lines()``
    renders from the same data: the one place every ``--json`` command goes through."""
    if as_json:
        click.echo(json.dumps(report, indent=2, sort_keys=True))
        return
    for line in lines():
        click.echo(line)


def progress(line: str) -> None:
    """One progress line on stderr (stdout stays the command's result, parseable with
    ``--json``), flushed so it shows while the work goes on."""
    click.echo(line, err=True)
    sys.stderr.flush()


def plain(value: Any) -> dict[str, Any]:
    """An attrs instance as JSON-ready data (enums as their values), for ``--json``."""
    return attrs.asdict(value, value_serializer=lambda _i, _f, v: (
        v.value if isinstance(v, enum.Enum) else v))


def logging_options(command: Command) -> Command:
    """``--log-level`` and ``--log-format``, passed as ``log_level`` and ``log_format``: what a
    program's group callback hands to ``owm_adapters.bootstrap.logs.configure``."""
    command = click.option(
        "--log-format", type=click.Choice(FORMATS), default="text", show_default=True,
        help="Log lines on stderr: human-readable text, or one JSON object per line.",
    )(command)
    return click.option(
        "--log-level", type=click.Choice(LEVELS, case_sensitive=False), default=None,
        help="Lowest level logged [default: $OWM_LOG_LEVEL, else INFO].",
    )(command)


def _keep_coordinator(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        try:
            value = parse_public_key(value.strip().lower(), "--coordinator")
        except DomainError as exc:
            raise click.BadParameter(str(exc)) from None
    ctx.meta["owm_coordinator"] = value


#: ``--coordinator``: the coordinator a signed statement or envelope is for (SRS-SEC-03);
#: read it with :func:`chosen_coordinator`.
COORDINATOR_OPTION = click.option(
    "--coordinator", expose_value=False, callback=_keep_coordinator,
    envvar="OWM_COORDINATOR_KEY",
    help="The public key (64 hex) of the coordinator the statement is for; by default the one "
    "--api answers (GET /v1/network/coordinator). A coordinator refuses statements for "
    "another (env OWM_COORDINATOR_KEY).",
)  # fmt: skip


def chosen_coordinator(api_url: str | None) -> str:
    """The public key of the coordinator a statement is addressed to: ``--coordinator``, else
    the one at ``--api`` (a usage error without either)."""
    chosen = click.get_current_context().meta.get("owm_coordinator")
    if chosen:
        return str(chosen)
    if not api_url:
        raise click.UsageError(
            "--coordinator (the coordinator's public key) is required without --api"
        )
    key = get_json(v1_url(api_url, "/network/coordinator")).get("coordinator_key")
    if not isinstance(key, str):
        raise click.ClickException(f"{api_url} did not say its coordinator key")
    return key
