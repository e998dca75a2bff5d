"""The GitHub App's part of the composition root: ``[github]`` settings → :class:`GitHubApp`.

The App is on when ``webhook_secret_file`` is set: the webhook secret and the App's private key
are read from files that must be private (mode 0600; the key never enters the settings file),
and the REST client (:class:`~owm_adapters.github.rest.GitHubRest`) is built when ``app_id``
and ``private_key_file`` are set too. Installation tokens stay in that client's memory.
"""

from __future__ import annotations

import stat
from pathlib import Path

from owm_adapters.bootstrap.provenance import timestamping_of
from owm_adapters.bootstrap.settings import ConfigError, CoordinatorSettings, data_dir_of
from owm_adapters.github.app_auth import AppCredentials
from owm_adapters.github.rest import GitHubRest
from owm_adapters.services.bounty_book import BountyBook, BountyTerms
from owm_adapters.services.coordinator.service import CoordinatorService
from owm_adapters.services.fl_rounds import FlRoundService
from owm_adapters.services.github_app import GitHubApp
from owm_adapters.services.github_bounties import BountyDesk
from owm_adapters.services.github_contributions import ContributionFlow, ContributionPorts
from owm_adapters.services.payouts import PayoutDispatcher
from owm_adapters.storage.content import FilesystemContentStore
from owm_core.ports.github import GitHub


def private_secret(path_text: str, what: str) -> bytes:
    """The bytes of the private file ``path_text`` (mode 0600); ConfigError otherwise."""
    path = Path(path_text).expanduser()
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"[github] {what}: cannot read {path}: {exc.strerror}") from None
    if mode & 0o077:
        raise ConfigError(
            f"[github] {what}: {path} is readable by group or others (mode {mode:04o}): "
            f"run chmod 600 {path}"
        )
    return data


def github_app_from(
    settings: CoordinatorSettings,
    service: CoordinatorService,
    payouts: PayoutDispatcher | None = None,
    fl: FlRoundService | None = None,
    github: GitHub | None = None,
) -> GitHubApp | None:
    """The GitHub App of ``settings`` (None when ``[github] webhook_secret_file`` is empty)
    over ``service``'s store, clock, treasury and key; with ``payouts`` its events drive
    bounties (:class:`BountyDesk`) and, with a GitHub port, the contribution flow
    (:class:`ContributionFlow`: archives in ``<data_dir>/content``, records stamped by the
    FL rounds' OpenTimestamps port when they run — one calendar per process — else by the
    ``[provenance]`` one)."""
    store, clock, treasury = service.repositories, service.clock, service.lightning
    section = settings.github
    if not section.webhook_secret_file:
        return None
    secret = private_secret(section.webhook_secret_file, "webhook_secret_file").strip()
    if github is None and section.app_id and section.private_key_file:
        key = private_secret(section.private_key_file, "private_key_file")
        github = GitHubRest(section.api_url, AppCredentials(section.app_id, key), clock)
    content = FilesystemContentStore(data_dir_of(settings) / "content")
    app = GitHubApp(store, clock, secret, github, content=content)
    if payouts is None:
        return app
    terms = BountyTerms(section.max_bounty_sat, section.bounty_budget_sat)
    app.add_handler(BountyDesk(store, BountyBook(store, clock, treasury, terms), payouts, github))
    if github is not None:
        stamping = fl.timestamping if fl is not None else timestamping_of(
            settings.provenance, data_dir_of(settings), settings.chain
        )
        ports = ContributionPorts(github, content, stamping, service.signer, payouts)
        app.add_handler(ContributionFlow(store, clock, ports, section.contribution_reward_sat,
                                         section.public_url))
    return app
