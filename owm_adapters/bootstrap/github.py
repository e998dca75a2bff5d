"""The GitHub App's part of the composition root: ``[github]`` settings → :class:`GitHubApp`.

The App is on when ``webhook_secret_file`` is set: the webhook secret and the App's private key
are read from files that must be private (mode 0600; the key never enters the settings file),
and the REST client (:class:`~owm_adapters.github.rest.GitHubRest`) is built when ``app_id``
and ``private_key_file`` are set too. Installation tokens stay in that client's memory.
"""

from __future__ import annotations

import stat
from pathlib import Path

from owm_adapters.bootstrap.settings import ConfigError, CoordinatorSettings
from owm_adapters.github.app_auth import AppCredentials
from owm_adapters.github.rest import GitHubRest
from owm_adapters.services.bounty_book import BountyBook, BountyTerms
from owm_adapters.services.github_app import GitHubApp
from owm_adapters.services.github_bounties import BountyDesk, BountyPayouts
from owm_core.ports.clock import Clock
from owm_core.ports.github import GitHub
from owm_core.ports.lightning import Lightning
from owm_core.ports.repositories import Repositories


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
    store: Repositories,
    clock: Clock,
    payouts: BountyPayouts | None = None,
    treasury: Lightning | None = None,
    github: GitHub | None = None,
) -> GitHubApp | None:
    """The GitHub App of ``settings`` (None when ``[github] webhook_secret_file`` is empty);
    with ``payouts`` and ``treasury`` its events drive bounties (:class:`BountyDesk`)."""
    section = settings.github
    if not section.webhook_secret_file:
        return None
    secret = private_secret(section.webhook_secret_file, "webhook_secret_file").strip()
    if github is None and section.app_id and section.private_key_file:
        key = private_secret(section.private_key_file, "private_key_file")
        github = GitHubRest(section.api_url, AppCredentials(section.app_id, key), clock)
    app = GitHubApp(store, clock, secret, github)
    if payouts is not None and treasury is not None:
        terms = BountyTerms(section.max_bounty_sat, section.bounty_budget_sat)
        book = BountyBook(store, clock, treasury, terms)
        app.add_handler(BountyDesk(store, book, payouts, github))
    return app
