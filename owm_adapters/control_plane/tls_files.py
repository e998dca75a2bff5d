"""TLS keys and certificates on disk, for the coordinator and for nodes (SRS-SEC-01).

A private key file is written with mode 0600 (its directory 0700) and refused when others can
read it, like the identity key (:mod:`owm_adapters.storage.keystore`). The coordinator's
certificate is created once (``owm-coordinator init``, or the first ``serve``) and kept: nodes
pin its fingerprint, so a new one means re-pinning every node. A node's certificate is its own
business: it is issued on first start and re-issued when it would expire within
:data:`RENEW_BEFORE_S` or was bound to another identity (the key file was replaced).
"""

from __future__ import annotations

import stat
from collections.abc import Callable
from pathlib import Path

import attrs

from owm_adapters.control_plane.tls import (
    TlsCredentials,
    certificate_binding,
    certificate_valid_until,
    issue_coordinator_certificate,
    issue_node_certificate,
)
from owm_adapters.files import write_private_bytes
from owm_core.errors import DomainError
from owm_core.identity.keys import Identity

RENEW_BEFORE_S = 30 * 86_400


class TlsFileError(DomainError):
    """A TLS key or certificate file is unreadable, malformed or readable by others."""

    code = "tls-file"


@attrs.frozen
class TlsPaths:
    """Where a process keeps its TLS private key and certificate (both PEM)."""

    key: Path
    certificate: Path

    @classmethod
    def in_dir(cls, directory: Path) -> TlsPaths:
        """``tls.key`` and ``tls.crt`` in ``directory``."""
        return cls(directory / "tls.key", directory / "tls.crt")

    def exists(self) -> bool:
        """Whether both files are there."""
        return self.key.exists() and self.certificate.exists()


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` with mode 0600, replacing it atomically."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_private_bytes(path, data)


def save(paths: TlsPaths, credentials: TlsCredentials) -> None:
    """Write the key and the certificate (both 0600)."""
    _write_private(paths.key, credentials.private_key_pem)
    _write_private(paths.certificate, credentials.certificate_pem)


def load(paths: TlsPaths) -> TlsCredentials:
    """Read the key and certificate; refuse a key file that others can read."""
    try:
        mode = paths.key.stat().st_mode
        key = paths.key.read_bytes()
        certificate = paths.certificate.read_bytes()
    except OSError as exc:
        raise TlsFileError(f"cannot read TLS files {paths.key}: {type(exc).__name__}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise TlsFileError(f"{paths.key} is readable by other users; run `chmod 600 {paths.key}`")
    if b"PRIVATE KEY" not in key or b"CERTIFICATE" not in certificate:
        raise TlsFileError(f"{paths.key} / {paths.certificate} are not a PEM key and certificate")
    return TlsCredentials(key, certificate)


def coordinator_tls(paths: TlsPaths, identity: Identity, now: int) -> tuple[TlsCredentials, bool]:
    """The coordinator's TLS credentials, created on first use; and whether they were created."""
    return _load_or_issue(paths, lambda: issue_coordinator_certificate(identity, now), None)


def node_tls(paths: TlsPaths, identity: Identity, now: int) -> TlsCredentials:
    """The node's certificate bound to ``identity``: kept while valid, else issued anew."""

    def current(credentials: TlsCredentials) -> bool:
        _name, binding, _spki = certificate_binding(credentials.certificate_pem)
        valid_until = certificate_valid_until(credentials.certificate_pem)
        return binding.public_key_hex == identity.public_key_hex and (
            valid_until > now + RENEW_BEFORE_S
        )

    credentials, _created = _load_or_issue(
        paths, lambda: issue_node_certificate(identity, now), current
    )
    return credentials


def _load_or_issue(
    paths: TlsPaths,
    issue: Callable[[], TlsCredentials],
    keep: Callable[[TlsCredentials], bool] | None,
) -> tuple[TlsCredentials, bool]:
    if paths.exists():
        credentials = load(paths)
        try:
            if keep is None or keep(credentials):
                return credentials, False
        except DomainError:
            if keep is None:
                raise
    credentials = issue()
    save(paths, credentials)
    return credentials, True
