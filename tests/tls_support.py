"""mTLS for tests: one coordinator certificate per test session, node certificates on demand.

Every gRPC control plane in the tests is mTLS, like production (SRS-SEC-01): servers present
:data:`COORDINATOR_TLS`; clients present a certificate bound to the identity they speak for and
pin the coordinator's fingerprint.
"""

from __future__ import annotations

import os
import threading
import time

import grpc

from owm_adapters.control_plane.tls import (
    ClientTls,
    TlsCredentials,
    issue_coordinator_certificate,
    issue_node_certificate,
    pinned_channel,
)
from owm_core.identity.keys import Identity

COORDINATOR_IDENTITY = Identity.from_seed(b"t" * 32)
COORDINATOR_TLS: TlsCredentials = issue_coordinator_certificate(
    COORDINATOR_IDENTITY, int(time.time())
)
"""The certificate test coordinators present (TLS stacks check validity on the real clock)."""
OPERATOR = Identity.from_seed(os.urandom(32))
"""Whom a test client speaks for when it speaks for no node (submitting tasks, reading)."""

_issued: dict[str, ClientTls] = {}
_lock = threading.Lock()
_IDENTITIES: dict[str, Identity] = {}


def known(identity: Identity) -> Identity:
    """Let routing clients (:func:`identity_for`) speak for ``identity``; returned unchanged."""
    _IDENTITIES[identity.public_key_hex] = identity
    return identity


def identity_for(public_key_hex: str | None) -> Identity | None:
    """The identity made :func:`known` under ``public_key_hex``, if any."""
    return _IDENTITIES.get(public_key_hex or "")


def client_tls(identity: Identity | None = None, pin: str | None = None) -> ClientTls:
    """A client certificate bound to ``identity`` (default :data:`OPERATOR`), pinning ``pin``
    (default: :data:`COORDINATOR_TLS`'s fingerprint)."""
    who = identity if identity is not None else OPERATOR
    fingerprint = pin if pin is not None else COORDINATOR_TLS.fingerprint
    with _lock:
        known = _issued.get(who.public_key_hex)
        if known is None:
            known = ClientTls(issue_node_certificate(who, int(time.time())), fingerprint)
            _issued[who.public_key_hex] = known
    return ClientTls(known.credentials, fingerprint)


def secure_channel(
    address: str, identity: Identity | None = None, pin: str | None = None
) -> grpc.Channel:
    """An mTLS channel to a test coordinator at ``address`` speaking for ``identity``."""
    return pinned_channel(address, client_tls(identity, pin))
