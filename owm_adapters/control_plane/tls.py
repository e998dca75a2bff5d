"""mTLS for the gRPC control plane: ECDSA P-256 certificates bound to Ed25519 identities.

grpcio's TLS stack refuses Ed25519 certificates but accepts ECDSA P-256 (SRS-SEC-01 asks for
Ed25519; the identity stays Ed25519 and vouches for the TLS key instead, see
:mod:`owm_core.identity.tls_binding`). This adapter makes and reads the certificates
(``cryptography``) and builds grpcio credentials:

* :func:`issue_certificate` — a fresh ECDSA P-256 key and an X.509 certificate whose
  common name is the node id (plus the certificate's serial, so that every certificate has its
  own subject name, which self-signed trust anchors need) and which carries the identity's
  :class:`TlsBinding` in a non-critical extension (:data:`BINDING_OID`). The coordinator's
  certificate is self-signed, names :data:`SERVER_NAME`, the TLS name clients check
  (``grpc.ssl_target_name_override``, :func:`channel_options`), and is what nodes pin.
* :func:`issue_node_certificate` — a node's certificate, issued by the *public* node issuer
  (:func:`node_issuer`). grpcio's Python API can require a client certificate only together
  with verifying it against a root set (there is no "request but don't verify" mode), and a
  permissionless network cannot list its nodes' certificates before they register. So every
  node certificate is issued by one issuer whose private key is derived from a published
  constant: anyone can get a certificate the TLS layer accepts, which proves only that the
  client holds the certificate's private key. Who the client *is* comes from the binding,
  which the coordinator checks on every call (:class:`PeerIdentities`).
* :func:`verify_peer_certificate` — what the coordinator checks on registration and on every
  call: the peer certificate's binding verifies against the node's *registered* identity key
  and its common name is that key's node id. Inside a servicer the PEM is
  ``context.auth_context()["x509_pem_cert"][0]``.
* :func:`server_credentials` (client certificates from the node issuer required) and
  :func:`pinned_channel_credentials` (the node trusts only the coordinator certificate whose
  SHA-256 fingerprint it was given by ``owm-coordinator init``).

The identity seed never enters a certificate; only its signature over the TLS key does
(SRS-SEC-03). TLS private keys are PEM bytes the caller stores with 0600 permissions.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import hmac
import os
import socket
import ssl
import tempfile
import threading
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
COORDINATOR_VALIDITY_DAYS = 3650
"""The coordinator's certificate is pinned by nodes: re-issuing it means re-pinning them all."""
NODE_ISSUER_SEED = b"owm/node-tls-issuer/v1 (public by design: it vouches for nothing)"
_P256_ORDER = int("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551", 16)
_ISSUER_NAME = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "owm public node issuer")])
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


def _credentials(
    key: ec.EllipticCurvePrivateKey, certificate: x509.Certificate
) -> TlsCredentials:
    """PEM (PKCS#8, unencrypted: the caller stores it 0600) key and PEM certificate."""
    return TlsCredentials(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        certificate.public_bytes(serialization.Encoding.PEM),
    )


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
    issuer: TlsCredentials | None = None,
) -> TlsCredentials:
    """A new ECDSA P-256 key and a certificate bound to ``identity``.

    Common name: the identity's node id; ``dns_names`` go into the subjectAltName (the
    coordinator passes :data:`SERVER_NAME`). Valid from ``now`` for ``validity_days``.
    Self-signed unless ``issuer`` (the key and certificate of an issuer) signs it.
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
    signer: ec.EllipticCurvePrivateKey = key
    issuer_name = name
    if issuer is not None:
        signer = _private_key(issuer.private_key_pem)
        issuer_name = _der(issuer.certificate_pem).subject
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
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
    certificate = builder.sign(signer, hashes.SHA256())
    return _credentials(key, certificate)


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


def _private_key(pem: bytes) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise InvalidValue("tls_key", "is not a PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise InvalidValue("tls_key", "is not an ECDSA key")
    return key


@functools.cache
def node_issuer() -> TlsCredentials:
    """The public issuer of node certificates (module docstring: why it may be public).

    Its key is derived from :data:`NODE_ISSUER_SEED`, so every coordinator and node computes
    the same one; its certificate is rebuilt by each process (only its name and key matter).
    """
    scalar = int.from_bytes(hashlib.sha256(NODE_ISSUER_SEED).digest(), "big") % (_P256_ORDER - 1)
    key = ec.derive_private_key(scalar + 1, ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_ISSUER_NAME)
        .issuer_name(_ISSUER_NAME)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC))
        .not_valid_after(datetime.datetime(2100, 1, 1, tzinfo=datetime.UTC))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    return _credentials(key, certificate)


def issue_node_certificate(identity: Identity, now: int) -> TlsCredentials:
    """A node's TLS key and certificate: bound to ``identity``, issued by :func:`node_issuer`."""
    return issue_certificate(identity, now, issuer=node_issuer())


def issue_coordinator_certificate(identity: Identity, now: int) -> TlsCredentials:
    """The coordinator's self-signed, long-lived certificate for :data:`SERVER_NAME`."""
    return issue_certificate(
        identity, now, dns_names=[SERVER_NAME], validity_days=COORDINATOR_VALIDITY_DAYS
    )


def certificate_valid_until(certificate_pem: bytes) -> int:
    """When a PEM certificate expires (POSIX seconds)."""
    return int(_der(certificate_pem).not_valid_after_utc.timestamp())


def server_credentials(coordinator: TlsCredentials) -> grpc.ServerCredentials:
    """Server credentials that require a client certificate from the node issuer.

    The TLS layer then knows only that the client holds its certificate's key; the servicer
    checks the identity binding on every call (:class:`PeerIdentities`).
    """
    return grpc.ssl_server_credentials(
        [(coordinator.private_key_pem, coordinator.certificate_pem)],
        root_certificates=node_issuer().certificate_pem,
        require_client_auth=True,
    )


class PeerIdentities:
    """The identity keys that vouched for peer certificates, verified once per certificate.

    A connection presents the same certificate on every call; parsing it and checking the
    Ed25519 binding once keeps the per-call cost to a dictionary look-up. Bounded: the oldest
    entries go first.
    """

    def __init__(self, capacity: int = 8192) -> None:
        self._capacity = capacity
        self._known: dict[bytes, str] = {}
        self._lock = threading.Lock()

    def public_key_of(self, certificate_pem: bytes) -> str:
        """The Ed25519 key bound to this certificate (``SignatureInvalid`` when none is)."""
        with self._lock:
            known = self._known.get(certificate_pem)
        if known is not None:
            return known
        _common_name, binding, _spki = certificate_binding(certificate_pem)
        verify_peer_certificate(certificate_pem, binding.public_key_hex)
        with self._lock:
            if len(self._known) >= self._capacity:
                self._known.pop(next(iter(self._known)))
            self._known[certificate_pem] = binding.public_key_hex
        return binding.public_key_hex

    def require(self, certificate_pem: bytes | None, public_key_hex: str) -> None:
        """Refuse (``SignatureInvalid``) unless the certificate is bound to ``public_key_hex``.

        SRS-SEC-01/03: the key a request speaks for must be the key that vouched for the TLS
        key of the connection it arrived on.
        """
        if certificate_pem is None:
            raise SignatureInvalid("the connection has no TLS client certificate")
        bound = self.public_key_of(certificate_pem)
        if not hmac.compare_digest(bound, public_key_hex.lower()):
            raise SignatureInvalid(
                "the TLS client certificate is bound to another identity than the request's key"
            )


class PinMismatch(PolicyViolation):
    """The coordinator presented a certificate other than the pinned one."""

    code = "tls-pin-mismatch"


def pinned_channel_credentials(
    server_certificate_pem: bytes, pinned_fingerprint: str, node: TlsCredentials
) -> grpc.ChannelCredentials:
    """Client credentials that trust only the pinned coordinator certificate.

    Refused (:class:`PinMismatch`, naming the expected and the presented fingerprint) when
    ``server_certificate_pem`` is not the certificate whose fingerprint the node was configured
    with. Use with :func:`channel_options`.
    """
    der = _der(server_certificate_pem).public_bytes(serialization.Encoding.DER)
    if not fingerprint_matches(der, pinned_fingerprint):
        raise PinMismatch(
            f"the coordinator's TLS certificate has fingerprint {certificate_fingerprint(der)}, "
            f"expected {pinned_fingerprint} ([coordinator] tls_fingerprint)"
        )
    return grpc.ssl_channel_credentials(
        root_certificates=server_certificate_pem,
        private_key=node.private_key_pem,
        certificate_chain=node.certificate_pem,
    )


@attrs.frozen(repr=False)
class ClientTls:
    """What a client needs to reach the coordinator: its own bound certificate and the pin."""

    credentials: TlsCredentials
    coordinator_fingerprint: str

    def __repr__(self) -> str:
        return f"ClientTls(pin={self.coordinator_fingerprint!r})"


def pinned_channel(
    target: str, tls: ClientTls, options: Iterable[tuple[str, object]] = ()
) -> grpc.Channel:
    """An mTLS channel to ``target`` (``host:port``) that trusts only the pinned certificate.

    Fetches the certificate the server presents (``OSError`` when unreachable), refuses it with
    :class:`PinMismatch` unless it is the pinned one, then dials with it as the only root.
    """
    host, _, port = target.rpartition(":")
    served = fetch_server_certificate(host.strip("[]"), int(port), client=tls.credentials)
    credentials = pinned_channel_credentials(
        served, tls.coordinator_fingerprint, tls.credentials
    )
    return grpc.secure_channel(target, credentials, options=[*channel_options(), *options])


def channel_options() -> list[tuple[str, str]]:
    """gRPC channel options: check the coordinator certificate against :data:`SERVER_NAME`."""
    return [("grpc.ssl_target_name_override", SERVER_NAME)]


def fetch_server_certificate(
    host: str, port: int, timeout_s: float = 5.0, client: TlsCredentials | None = None
) -> bytes:
    """The certificate a TLS server presents, unverified: compare it with the pin before use.

    With ``client``, the handshake presents that certificate (and offers ``h2``), so an mTLS
    gRPC server completes it instead of logging a failed handshake for every node that looks.
    """
    if client is None:
        return ssl.get_server_certificate((host, port), timeout=timeout_s).encode("ascii")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the caller compares the result with its pin
    context.set_alpn_protocols(["h2"])
    with tempfile.TemporaryDirectory(prefix="owm-tls-") as folder:  # ssl reads keys from files
        key, certificate = os.path.join(folder, "tls.key"), os.path.join(folder, "tls.crt")
        for path, data in ((key, client.private_key_pem), (certificate, client.certificate_pem)):
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(data)
        context.load_cert_chain(certificate, key)
    with (
        socket.create_connection((host, port), timeout=timeout_s) as connection,
        context.wrap_socket(connection, server_hostname=None) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    if not der:
        raise ssl.SSLError("the server presented no certificate")
    return ssl.DER_cert_to_PEM_cert(der).encode("ascii")
