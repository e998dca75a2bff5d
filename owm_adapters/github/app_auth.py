"""The GitHub App's identity: its JWT, and installation access tokens kept in memory only.

A GitHub App authenticates as itself with a JWT signed RS256 by its private key (``iss`` the
App id, issued 60 s in the past against clock drift, valid 9 minutes; GitHub allows 10), and
exchanges it for an installation access token (``POST /app/installations/{id}/access_tokens``)
that lives one hour. :class:`InstallationTokens` keeps those tokens in a dict — never on disk,
never in a log — drops every token past its use from it on each call, and renews one when
:meth:`~owm_core.governance.github_app.InstallationToken.usable_at` says it is near its end
(SRS-SEC-08).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import attrs
import jwt

from owm_core.errors import GitHubUnavailable
from owm_core.governance.github_app import InstallationToken
from owm_core.ports.clock import Clock

JWT_BACKDATE_S = 60
JWT_LIFE_S = 540


@attrs.frozen
class AppCredentials:
    """The App's id and RS256 private key (PEM); the key never appears in a repr."""

    app_id: str
    private_key_pem: bytes = attrs.field(repr=False)


def app_jwt(credentials: AppCredentials, now: int) -> str:
    """The App's JWT at ``now``: RS256, ``iss`` the App id, valid from 60 s ago for 9 minutes."""
    claims = {"iat": now - JWT_BACKDATE_S, "exp": now + JWT_LIFE_S, "iss": credentials.app_id}
    return jwt.encode(claims, credentials.private_key_pem, algorithm="RS256")


Exchange = Callable[[str, int], InstallationToken]
"""``(app JWT, installation id) → token``: the REST call that mints an installation token."""


class InstallationTokens:
    """Installation access tokens by installation id, in memory only (SRS-SEC-08)."""

    def __init__(self, credentials: AppCredentials, exchange: Exchange, clock: Clock) -> None:
        self._credentials = credentials
        self._exchange = exchange
        self._clock = clock
        self._tokens: dict[int, InstallationToken] = {}
        self._lock = threading.Lock()

    def token(self, installation_id: int) -> str:
        """A token of ``installation_id`` usable now: the cached one, or a fresh one."""
        now = self._clock.now()
        with self._lock:
            self._drop_ended(now)  # every installation's, not only this one's
            held = self._tokens.get(installation_id)
            if held is not None:
                return held.token
            fresh = self._exchange(app_jwt(self._credentials, now), installation_id)
            fresh = attrs.evolve(fresh, obtained_at=now)
            if not fresh.usable_at(now):
                raise GitHubUnavailable("GitHub handed out an installation token already expired")
            self._tokens[installation_id] = fresh
            return fresh.token

    def forget(self, installation_id: int) -> None:
        """Drop the cached token (GitHub refused it: revoked, or the installation is gone)."""
        with self._lock:
            self._tokens.pop(installation_id, None)

    def held(self) -> int:
        """How many tokens are in memory (for tests: they leave it, and never reach disk)."""
        with self._lock:
            return len(self._tokens)

    def _drop_ended(self, now: int) -> None:
        self._tokens = {k: v for k, v in self._tokens.items() if v.usable_at(now)}
