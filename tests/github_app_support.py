"""What the GitHub App's tests share: an App key pair, signed deliveries of GitHub's own example
payloads, and a started local GitHub stand-in."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from owm_adapters.github.app_auth import AppCredentials
from owm_adapters.github.standin import GitHubStandIn
from owm_core.governance.github_app import webhook_signature

SECRET = b"it-is-a-webhook-secret-of-32-byt"
APP_ID = "123456"


@cache
def app_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65_537, key_size=2048)


def credentials(key: rsa.RSAPrivateKey | None = None) -> AppCredentials:
    """The App's credentials (``key``: another App's key, for attacks)."""
    pem = (key or app_key()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )  # fmt: skip
    return AppCredentials(APP_ID, pem)


def public_pem() -> bytes:
    return app_key().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def delivery(
    event: str, payload: dict[str, Any], secret: bytes = SECRET, delivery_id: str | None = None
) -> tuple[dict[str, str], bytes]:
    """The headers and raw body GitHub would post for ``payload``."""
    raw = json.dumps(payload).encode()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery_id or str(uuid.uuid4()),
        "X-Hub-Signature-256": webhook_signature(secret, raw),
    }
    return headers, raw


@contextmanager
def standin(now: Any) -> Iterator[GitHubStandIn]:
    """A started stand-in whose App is :func:`credentials`' (its clock: ``now()``)."""
    server = GitHubStandIn(APP_ID, public_pem(), now)
    server.start()
    try:
        yield server
    finally:
        server.stop()
