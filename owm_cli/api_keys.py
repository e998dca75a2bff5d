"""``owm-coordinator api-key``: issue and revoke API keys of the public HTTP API (SRS-API-02).

A thin shell over :func:`owm_adapters.services.api.access.issue_api_key` on the coordinator's
own store (the ``[coordinator]`` section of ``coordinator.toml``): the secret is printed once
and only its SHA-256 is kept. Free keys get 100 requests a day; commercial keys are not limited
(SRS-API-03).
"""

from __future__ import annotations

from pathlib import Path

import click

from owm_cli.errors import OwmGroup
from owm_cli.options import config_option, json_option, render

_CONFIG = config_option(
    "coordinator.toml; without it the embedded defaults (SQLite under ~/.owm/coordinator)."
)


@click.group("api-key", cls=OwmGroup)
def api_key() -> None:
    """Issue and revoke API keys for the public HTTP API."""


@api_key.command()
@click.option("--owner", required=True, help="Who the key is for (shown as author of records).")
@click.option(
    "--plan",
    type=click.Choice(["free", "commercial"]),
    default="free",
    show_default=True,
    help="free: 100 requests a day (sliding window); commercial: not rate limited.",
)
@_CONFIG
@json_option("the key id, plan, owner and secret")
def create(owner: str, plan: str, config_path: Path | None, as_json: bool) -> None:
    """Create a key and print its secret once (only its SHA-256 is stored)."""
    from owm_adapters.bootstrap.coordinator import repositories_from
    from owm_adapters.bootstrap.settings import load_coordinator_settings
    from owm_adapters.clock import SystemClock
    from owm_adapters.services.api.access import issue_api_key
    from owm_core.access.api_keys import Plan

    repositories = repositories_from(load_coordinator_settings(config_path))
    try:
        key, secret = issue_api_key(repositories, owner, Plan(plan), SystemClock().now())
    finally:
        repositories.close()
    report = {"key_id": key.key_id, "plan": key.plan.value, "owner": key.owner, "secret": secret}
    render(report, as_json, lambda: [
        f"key id  {key.key_id} ({key.plan.value}, owner {key.owner})",
        f"secret  {secret}",
        "send it as 'Authorization: Bearer <secret>'; it is not shown again",
    ])


@api_key.command()
@click.argument("key_id")
@_CONFIG
def revoke(key_id: str, config_path: Path | None) -> None:
    """Revoke the key KEY_ID for good (running servers stop accepting it within seconds)."""
    from owm_adapters.bootstrap.coordinator import repositories_from
    from owm_adapters.bootstrap.settings import load_coordinator_settings
    from owm_core.errors import NotFound

    repositories = repositories_from(load_coordinator_settings(config_path))
    try:
        if not repositories.api_keys.revoke(key_id):
            raise NotFound(f"no API key {key_id}")
    finally:
        repositories.close()
    click.echo(f"revoked {key_id}")
