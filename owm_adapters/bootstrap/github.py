"""The GitHub App's part of the composition root: ``[github]`` settings → :class:`GitHubApp`.

The App is on when ``webhook_secret_file`` is set: the webhook secret and the App's private key
are read from files that must be private (mode 0600; the key never enters the settings file),
and the REST client (:class:`~owm_adapters.github.rest.GitHubRest`) is built when ``app_id``
and ``private_key_file`` are set too. Installation tokens stay in that client's memory.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path

from owm_adapters.bootstrap.provenance import timestamping_of
from owm_adapters.bootstrap.settings import (
    ConfigError,
    CoordinatorSettings,
    GitHubSection,
    data_dir_of,
)
from owm_adapters.github.app_auth import AppCredentials
from owm_adapters.github.rest import GitHubRest
from owm_adapters.services.bounty_book import BountyBook, BountyTerms
from owm_adapters.services.coordinator.service import CoordinatorService
from owm_adapters.services.github_app import GitHubApp
from owm_adapters.services.github_bounties import BountyDesk
from owm_adapters.services.github_contributions import ContributionFlow, ContributionPorts
from owm_adapters.services.payouts import PayoutDispatcher
from owm_adapters.storage.content import FilesystemContentStore
from owm_adapters.storage.s3_content import S3ContentStore, S3Credentials, S3Location
from owm_core.ports.content_store import ContentStore
from owm_core.ports.github import GitHub
from owm_core.ports.timestamping import Timestamping


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


def archive_store_of(
    settings: CoordinatorSettings, environ: Mapping[str, str] = os.environ
) -> ContentStore:
    """The content-addressed store of ``[github] archive_store``: a folder in the data
    directory (``"files"``) or an S3-compatible bucket (``"s3"``); ConfigError otherwise."""
    section = settings.github
    if section.archive_store == "files":
        return FilesystemContentStore(data_dir_of(settings) / "content")
    if section.archive_store != "s3":
        raise ConfigError(
            f'[github] archive_store: "{section.archive_store}" is neither "files" nor "s3"'
        )
    if not section.s3_bucket:
        raise ConfigError('[github] archive_store = "s3" needs s3_bucket')
    location = S3Location(section.s3_bucket, section.s3_region, section.s3_endpoint_url,
                          section.s3_prefix)
    return S3ContentStore(location, _s3_credentials(section, environ))


def _s3_credentials(section: GitHubSection, environ: Mapping[str, str]) -> S3Credentials:
    if section.s3_credentials_file:
        lines = private_secret(section.s3_credentials_file, "s3_credentials_file").decode()
        parts = [line.strip() for line in lines.splitlines() if line.strip()]
        if len(parts) != 2:
            raise ConfigError(
                "[github] s3_credentials_file: expected the access key id on its first line "
                "and the secret access key on its second"
            )
        return S3Credentials(parts[0], parts[1])
    key_id = environ.get("AWS_ACCESS_KEY_ID", "")
    secret = environ.get("AWS_SECRET_ACCESS_KEY", "")
    if not (key_id and secret):
        raise ConfigError(
            '[github] archive_store = "s3" needs s3_credentials_file, or AWS_ACCESS_KEY_ID '
            "and AWS_SECRET_ACCESS_KEY in the environment"
        )
    return S3Credentials(key_id, secret)


def github_app_from(
    settings: CoordinatorSettings,
    service: CoordinatorService,
    payouts: PayoutDispatcher | None = None,
    timestamping: Timestamping | None = None,
    github: GitHub | None = None,
) -> GitHubApp | None:
    """The GitHub App of ``settings`` (None when ``[github] webhook_secret_file`` is empty)
    over ``service``'s store, clock, treasury and key; with ``payouts`` its events drive
    bounties (:class:`BountyDesk`) and, with a GitHub port, the contribution flow
    (:class:`ContributionFlow`: archives in :func:`archive_store_of`, records stamped through
    ``timestamping``, the process's one calendar, else a ``[provenance]`` one of its own that
    the caller stops)."""
    store, clock, treasury = service.repositories, service.clock, service.lightning
    section = settings.github
    if not section.webhook_secret_file:
        return None
    secret = private_secret(section.webhook_secret_file, "webhook_secret_file").strip()
    if github is None and section.app_id and section.private_key_file:
        key = private_secret(section.private_key_file, "private_key_file")
        github = GitHubRest(section.api_url, AppCredentials(section.app_id, key), clock)
    content = archive_store_of(settings)
    app = GitHubApp(store, clock, secret, github, content=content)
    if payouts is None:
        return app
    terms = BountyTerms(section.max_bounty_sat, section.bounty_budget_sat, section.bounty_lapse_s)
    desk = BountyDesk(store, BountyBook(store, clock, treasury, terms), payouts, github)
    app.add_handler(desk)
    app.workers.append(("bounty-lapses", desk.lapses))
    if github is not None:
        stamping = timestamping or timestamping_of(
            settings.provenance, data_dir_of(settings), settings.chain
        )
        ports = ContributionPorts(github, content, stamping, service.signer, payouts)
        app.add_handler(ContributionFlow(store, clock, ports, section.contribution_reward_sat,
                                         section.public_url))
    return app
