"""The GitHub App's rules: signed webhook deliveries and installation access tokens.

GitHub signs every webhook delivery with the App's webhook secret: ``X-Hub-Signature-256`` is
``sha256=`` and the hex HMAC-SHA-256 of the raw body. :func:`signature_matches` checks it in
constant time (``hmac.compare_digest``) and is called on the raw bytes *before* anything parses
them (SRS-SEC-08), so an unsigned body never reaches the JSON parser. Each delivery carries a
unique ``X-GitHub-Delivery`` id; a :class:`WebhookEvent` is stored under it and a second
delivery with a stored id is a replay (the store refuses it).

An :class:`InstallationToken` is what the App exchanges its JWT for; GitHub lets it live one
hour. :meth:`InstallationToken.usable_at` bounds its use to the earlier of GitHub's expiry and
one hour after it was obtained, minus a margin, so a token is never sent near or past its end
(SRS-SEC-08); it is kept in memory only and its ``repr`` never shows it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import attrs

from owm_core import fields
from owm_core.errors import InvalidValue

SIGNATURE_PREFIX = "sha256="
TOKEN_LIFE_S = 3_600
"""GitHub's installation access tokens live one hour; OWM never uses one longer."""
TOKEN_MARGIN_S = 60
"""A token is renewed this long before its end, so no call carries one that expires in flight."""
DELIVERY_PATTERN = r"[A-Za-z0-9-]{1,64}"
EVENT_PATTERN = r"[a-z_]{1,64}"
MAX_PAYLOAD_CHARS = 1_048_576


def webhook_signature(secret: bytes, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value GitHub sends for ``body`` under ``secret``."""
    return SIGNATURE_PREFIX + hmac.new(secret, body, hashlib.sha256).hexdigest()


def signature_matches(secret: bytes, body: bytes, header: str | None) -> bool:
    """Whether ``header`` is the HMAC-SHA-256 of the raw ``body`` under ``secret``, compared in
    constant time (SRS-SEC-08). No secret, no header or another scheme never matches."""
    if not secret or not header or not header.startswith(SIGNATURE_PREFIX):
        return False
    expected = webhook_signature(secret, body).encode()
    return hmac.compare_digest(expected, header.encode("utf-8", "replace"))


@attrs.frozen
class WebhookEvent:
    """One signature-checked webhook delivery as stored before it is acknowledged."""

    delivery_id: str = attrs.field(validator=fields.text(pattern=DELIVERY_PATTERN))
    event: str = attrs.field(validator=fields.text(pattern=EVENT_PATTERN))
    action: str = attrs.field(validator=fields.text(min_len=0, max_len=64))
    repository: str = attrs.field(validator=fields.text(min_len=0, max_len=140))
    installation_id: int | None = attrs.field(
        validator=attrs.validators.optional(fields.integer(1, 2**63 - 1))
    )
    received_at: int = attrs.field(validator=fields.timestamp())
    body_sha256: str = attrs.field(validator=fields.hex_digest())
    payload: str = attrs.field(
        validator=fields.text(min_len=2, max_len=MAX_PAYLOAD_CHARS), repr=False
    )

    def body(self) -> dict[str, Any]:
        """The payload as GitHub sent it (a JSON object)."""
        value: dict[str, Any] = json.loads(self.payload)
        return value


def parse_webhook(delivery_id: str, event: str, raw: bytes, now: int) -> WebhookEvent:
    """The event of a delivery whose signature matched; InvalidValue names what is wrong
    (a missing header, a body that is not a JSON object)."""
    try:
        text = raw.decode("utf-8")
        body = json.loads(text)
    except (UnicodeDecodeError, ValueError):
        raise InvalidValue("body", "is not JSON") from None
    if not isinstance(body, dict):
        raise InvalidValue("body", "must be a JSON object")
    action = body.get("action")
    repository = body.get("repository")
    installation = body.get("installation")
    full_name = repository.get("full_name") if isinstance(repository, dict) else None
    installation_id = installation.get("id") if isinstance(installation, dict) else None
    return WebhookEvent(
        delivery_id=delivery_id,
        event=event,
        action=action if isinstance(action, str) else "",
        repository=full_name if isinstance(full_name, str) else "",
        installation_id=installation_id if isinstance(installation_id, int) else None,
        received_at=now,
        body_sha256=hashlib.sha256(raw).hexdigest(),
        payload=text,
    )


@attrs.frozen
class InstallationToken:
    """An installation access token and its life (kept in memory only, SRS-SEC-08)."""

    installation_id: int = attrs.field(validator=fields.integer(1))
    token: str = attrs.field(validator=fields.text(max_len=512), repr=False)
    expires_at: int = attrs.field(validator=fields.timestamp())
    obtained_at: int = attrs.field(validator=fields.timestamp())

    def usable_until(self) -> int:
        """The last second this token may be sent: the earlier of GitHub's expiry and one hour
        after it was obtained, less :data:`TOKEN_MARGIN_S`."""
        return min(self.expires_at, self.obtained_at + TOKEN_LIFE_S) - TOKEN_MARGIN_S

    def usable_at(self, now: int) -> bool:
        """Whether the token may still be sent at ``now``."""
        return self.obtained_at <= now < self.usable_until()


@attrs.frozen
class PullRequest:
    """What the App reads of a pull request (GET /repos/{owner}/{repo}/pulls/{number})."""

    repository: str
    number: int = attrs.field(validator=fields.integer(1))
    title: str
    author: str
    merged: bool
    head_sha: str
    body: str = ""
    additions: int = 0
    deletions: int = 0
    changed_files: int = 0


@attrs.frozen
class ChangedFile:
    """One file a pull request changed (GET /repos/{owner}/{repo}/pulls/{number}/files)."""

    path: str = attrs.field(validator=fields.text(max_len=4_096))
    status: str = attrs.field(validator=fields.text(max_len=32))
    """``added``, ``modified``, ``removed``, ``renamed``, ``copied``, ``changed``, ``unchanged``."""
    additions: int = attrs.field(default=0, validator=fields.integer(0))
    deletions: int = attrs.field(default=0, validator=fields.integer(0))


@attrs.frozen
class PullChanges:
    """What a pull request changed and who wrote it: its files, and the GitHub logins of its
    commits' authors (GET …/pulls/{number}/commits)."""

    files: tuple[ChangedFile, ...] = ()
    authors: tuple[str, ...] = ()

    def measured_paths(self) -> frozenset[str]:
        """The paths whose content at the merge is measured: every changed file still there."""
        return frozenset(f.path for f in self.files if f.status != "removed")


HANDLER_PATTERN = r"[a-z][a-z0-9_-]{0,31}"
"""A webhook handler's name, under which its pending retries are stored."""
MAX_REASON_CHARS = 200


@attrs.frozen
class HandlerRetry:
    """A webhook handler still to be run (again) with one stored delivery, kept in the store so
    that a coordinator's restart or crash loses no merge's bounty or reward (SRS-LN-08).

    ``attempts`` counts the runs begun; ``next_at`` is when the next may begin (a run in
    progress holds it ahead as a lease); ``expires_at`` is when it is given up; ``reason`` is
    the last failure's message (the handlers' DomainError messages carry no secrets).
    """

    delivery_id: str = attrs.field(validator=fields.text(pattern=DELIVERY_PATTERN))
    handler: str = attrs.field(validator=fields.text(pattern=HANDLER_PATTERN))
    attempts: int = attrs.field(validator=fields.integer(0, 2**31 - 1))
    next_at: int = attrs.field(validator=fields.timestamp())
    expires_at: int = attrs.field(validator=fields.timestamp())
    reason: str = attrs.field(
        default="", validator=fields.text(min_len=0, max_len=MAX_REASON_CHARS)
    )

    def expired_at(self, now: int) -> bool:
        """Whether this retry is past its end at ``now`` (to be given up, not run)."""
        return now >= self.expires_at
