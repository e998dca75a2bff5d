"""mTLS for the gRPC control plane: ECDSA P-256 certificates bound to Ed25519 identities.

grpcio's TLS stack refuses Ed25519 certificates but accepts ECDSA P-256 (SRS-SEC-01 asks for
Ed25519; the identity stays Ed25519 and vouches for the TLS key instead, see
:mod:`owm_core.identity.tls_binding`). This adapter makes and reads the certificates
(``cryptography``) and builds grpcio credentials:

* :func:`issue_certificate` — a fresh ECDSA P-256 key and a self-signed X.509 certificate whose
  common name is the node id (plus the certificate's serial, so that every certificate has its
  own subject name, which self-signed trust anchors need) and which carries the identity's
  :class:`TlsBinding` in a non-critical extension (:data:`BINDING_OID`). The coordinator's
  certificate also names :data:`SERVER_NAME`, the TLS name clients check
  (``grpc.ssl_target_name_override``, :func:`channel_options`).
* :func:`verify_peer_certificate` — what the coordinator checks on registration and on every
  call: the peer certificate's binding verifies against the node's *registered* identity key
  and its common name is that key's node id. Inside a servicer the PEM is
  ``context.auth_context()["x509_pem_cert"][0]``.
* :func:`server_credentials` (client certificates required) and
  :func:`pinned_channel_credentials` (the node trusts only the coordinator certificate whose
  SHA-256 fingerprint it was given by ``owm-coordinator init``).

The identity seed never enters a certificate; only its signature over the TLS key does
(SRS-SEC-03). TLS private keys are PEM bytes the caller stores with 0600 permissions.
"""

from __future__ import annotations

import datetime
import ssl
from collections.abc import Iterable

import attrs
import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from owm_core.errors import InvalidValue, PolicyViolation, SignatureInvalid
from owm_core.identity.keys import Identity, node_id_from_public_key
from owm_core.identity.tls_binding import (
    BINDING_BYTES,
    TlsBinding,
    bind_tls_key,
    certificate_fingerprint,
    fingerprint_matches,
    verify_tls_binding,
)

BINDING_OID = x509.ObjectIdentifier("2.25.336599515106516313126190708131116835881")
"""OID of the identity-binding extension: a UUID-derived OID (ITU-T X.667), no registration."""
SERVER_NAME = "owm-coordinator"
"""The DNS name in the coordinator's certificate, which clients verify (name override)."""
DEFAULT_VALIDITY_DAYS = 365
_OCTET_STRING = 0x04


@attrs.frozen(repr=False)
class TlsCredentials:
    """A PEM private key and its PEM certificate; ``repr`` never shows the key."""

    private_key_pem: bytes
    certificate_pem: bytes

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the certificate's DER: the pin nodes keep in their config."""
        return fingerprint_of(self.certificate_pem)

    def __repr__(self) -> str:
        return f"TlsCredentials(fingerprint={self.fingerprint!r})"


def _der(pem: bytes) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise InvalidValue("certificate", "is not a PEM X.509 certificate") from None


def fingerprint_of(certificate_pem: bytes) -> str:
    """The pin of a PEM certificate (SHA-256 of its DER)."""
    der = _der(certificate_pem).public_bytes(serialization.Encoding.DER)
    return certificate_fingerprint(der)


def _spki(certificate: x509.Certificate) -> bytes:
    return certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def issue_certificate(
    identity: Identity,
    now: int,
    *,
    dns_names: Iterable[str] = (),
    validity_days: int = DEFAULT_VALIDITY_DAYS,
) -> TlsCredentials:
    """A new ECDSA P-256 key and a self-signed certificate bound to ``identity``.

    Common name: the identity's node id; ``dns_names`` go into the subjectAltName (the
    coordinator passes :data:`SERVER_NAME`). Valid from ``now`` for ``validity_days``.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    binding = bind_tls_key(identity, spki).to_bytes()
    serial = x509.random_serial_number()
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, identity.node_id),
            # A name per certificate: TLS trust stores find a self-signed root by its name,
            # so a re-issued certificate must not share the old one's.
            x509.NameAttribute(NameOID.SERIAL_NUMBER, format(serial, "x")),
        ]
    )
    start = datetime.datetime.fromtimestamp(now, datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(start - datetime.timedelta(minutes=5))
        .not_valid_after(start + datetime.timedelta(days=validity_days))
        .add_extension(
            x509.UnrecognizedExtension(
                BINDING_OID, bytes([_OCTET_STRING, BINDING_BYTES]) + binding
            ),
            critical=False,
        )
    )
    names = [x509.DNSName(n) for n in dns_names]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    certificate = builder.sign(key, hashes.SHA256())
    return TlsCredentials(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        certificate.public_bytes(serialization.Encoding.PEM),
    )


def certificate_binding(certificate_pem: bytes) -> tuple[str, TlsBinding, bytes]:
    """The common name, the identity binding and the SPKI DER of a PEM certificate."""
    certificate = _der(certificate_pem)
    if not isinstance(certificate.public_key(), ec.EllipticCurvePublicKey):
        raise SignatureInvalid("the TLS key is not an ECDSA key")
    try:
        raw = certificate.extensions.get_extension_for_oid(BINDING_OID).value
    except x509.ExtensionNotFound:
        raise SignatureInvalid("the certificate carries no identity binding") from None
    value = raw.value if isinstance(raw, x509.UnrecognizedExtension) else b""
    if value[:2] != bytes([_OCTET_STRING, BINDING_BYTES]):
        raise SignatureInvalid("the identity binding is malformed")
    common_names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    common_name = str(common_names[0].value) if common_names else ""
    return common_name, TlsBinding.from_bytes(value[2:]), _spki(certificate)


def verify_peer_certificate(certificate_pem: bytes, public_key_hex: str) -> str:
    """Check that ``public_key_hex`` vouched for this certificate; return its node id.

    Raises :class:`SignatureInvalid` when the binding was made by another identity, names
    another key or another TLS key, or when the common name is not the key's node id.
    """
    common_name, binding, spki = certificate_binding(certificate_pem)
    verify_tls_binding(binding, public_key_hex, spki)
    node_id = node_id_from_public_key(public_key_hex)
    if common_name != node_id:
        raise SignatureInvalid("the certificate's common name is not the identity's node id")
    return node_id


def server_credentials(
    coordinator: TlsCredentials, client_certificates: Iterable[bytes]
) -> grpc.ServerCredentials:
    """Server credentials that require a client certificate among ``client_certificates``.

    Node certificates are self-signed, so the trusted set is the certificates of registered
    nodes (each checked with :func:`verify_peer_certificate` when it was registered).
    """
    roots = b"".join(client_certificates)
    if not roots:
        raise InvalidValue("client_certificates", "must trust at least one node certificate")
    return grpc.ssl_server_credentials(
        [(coordinator.private_key_pem, coordinator.certificate_pem)],
        root_certificates=roots,
        require_client_auth=True,
    )


def pinned_channel_credentials(
    server_certificate_pem: bytes, pinned_fingerprint: str, node: TlsCredentials
) -> grpc.ChannelCredentials:
    """Client credentials that trust only the pinned coordinator certificate.

    Refused (``PolicyViolation``) when ``server_certificate_pem`` is not the certificate
    whose fingerprint the node was configured with. Use with :func:`channel_options`.
    """
    der = _der(server_certificate_pem).public_bytes(serialization.Encoding.DER)
    if not fingerprint_matches(der, pinned_fingerprint):
        raise PolicyViolation("the coordinator's certificate does not match the pinned one")
    return grpc.ssl_channel_credentials(
        root_certificates=server_certificate_pem,
        private_key=node.private_key_pem,
        certificate_chain=node.certificate_pem,
    )


def channel_options() -> list[tuple[str, str]]:
    """gRPC channel options: check the coordinator certificate against :data:`SERVER_NAME`."""
    return [("grpc.ssl_target_name_override", SERVER_NAME)]


def fetch_server_certificate(host: str, port: int, timeout_s: float = 5.0) -> bytes:
    """The certificate a TLS server presents, unverified: compare it with the pin before use."""
    pem = ssl.get_server_certificate((host, port), timeout=timeout_s)
    return pem.encode("ascii")
