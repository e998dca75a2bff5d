"""A TLS key bound to a node's Ed25519 identity, and certificate pinning (SRS-SEC-01, SRS-SEC-03).

SRS-SEC-01 asks for mTLS with Ed25519 certificates, but grpcio's TLS stack refuses Ed25519
certificates (the handshake fails with ``NO_COMMON_SIGNATURE_ALGORITHMS``) while it accepts
ECDSA P-256. So each node's TLS certificate carries an ECDSA P-256 key, and the node's
Ed25519 identity key — which never leaves the node (SRS-SEC-03) — vouches for it by signing::

    statement = BINDING_DOMAIN ‖ identity public key (32 bytes) ‖ SHA-256(SubjectPublicKeyInfo DER)

The resulting :class:`TlsBinding` (identity public key and signature) travels inside the
certificate. Whoever knows a node's registered identity key checks the binding with
:func:`verify_tls_binding` at registration and on every connection: a certificate whose key was
vouched for by any other identity is refused, so holding a certificate is not enough to speak
for a node. Certificates are pinned by :func:`certificate_fingerprint`, the SHA-256 of their
DER encoding. X.509 parsing and generation live in the TLS adapter; this module owns bytes.
"""

from __future__ import annotations

import hashlib
import hmac

import attrs

from owm_core import fields
from owm_core.errors import InvalidValue, SignatureInvalid
from owm_core.identity.keys import (
    PUBLIC_KEY_BYTES,
    SIGNATURE_BYTES,
    Identity,
    parse_public_key,
    verify_signature,
)

BINDING_DOMAIN = b"owm/tls-binding/v1\x00"
BINDING_BYTES = PUBLIC_KEY_BYTES + SIGNATURE_BYTES
MAX_SPKI_BYTES = 4096


def _public_key(_instance: object, attribute: attrs.Attribute[str], value: object) -> None:
    parse_public_key(value, attribute.name)


def _spki(spki_der: bytes) -> bytes:
    if not isinstance(spki_der, bytes) or not 0 < len(spki_der) <= MAX_SPKI_BYTES:
        raise InvalidValue("spki_der", f"must be 1 to {MAX_SPKI_BYTES} bytes of DER")
    return spki_der


def binding_statement(public_key_hex: str, spki_der: bytes) -> bytes:
    """The bytes an identity signs to vouch for the TLS key ``spki_der``."""
    key = bytes.fromhex(parse_public_key(public_key_hex))
    return BINDING_DOMAIN + key + hashlib.sha256(_spki(spki_der)).digest()


@attrs.frozen
class TlsBinding:
    """An identity's signature over a TLS key: who vouches, and the proof."""

    public_key_hex: str = attrs.field(validator=_public_key)
    signature: bytes = attrs.field(validator=fields.raw_bytes(length=SIGNATURE_BYTES))

    def to_bytes(self) -> bytes:
        """The 96-byte wire form: public key, then signature."""
        return bytes.fromhex(self.public_key_hex) + self.signature

    @classmethod
    def from_bytes(cls, data: bytes) -> TlsBinding:
        """Read the wire form written by :meth:`to_bytes`."""
        if not isinstance(data, bytes) or len(data) != BINDING_BYTES:
            raise InvalidValue("binding", f"must be {BINDING_BYTES} bytes")
        return cls(data[:PUBLIC_KEY_BYTES].hex(), data[PUBLIC_KEY_BYTES:])


def bind_tls_key(identity: Identity, spki_der: bytes) -> TlsBinding:
    """Have ``identity`` vouch for the TLS key whose SubjectPublicKeyInfo is ``spki_der``."""
    statement = binding_statement(identity.public_key_hex, spki_der)
    return TlsBinding(identity.public_key_hex, identity.sign(statement))


def verify_tls_binding(binding: TlsBinding, public_key_hex: str, spki_der: bytes) -> None:
    """Raise :class:`SignatureInvalid` unless ``public_key_hex`` vouched for ``spki_der``.

    ``public_key_hex`` is the identity the verifier expects (the node's registered key, or the
    coordinator's), never the one the binding names about itself.
    """
    expected = parse_public_key(public_key_hex)
    if not hmac.compare_digest(binding.public_key_hex, expected):
        raise SignatureInvalid("the TLS key is vouched for by another identity")
    verify_signature(expected, binding_statement(expected, spki_der), binding.signature)


def certificate_fingerprint(certificate_der: bytes) -> str:
    """The pin of a certificate: lower-case hex SHA-256 of its DER encoding."""
    if not isinstance(certificate_der, bytes) or not certificate_der:
        raise InvalidValue("certificate", "must be non-empty DER bytes")
    return hashlib.sha256(certificate_der).hexdigest()


def fingerprint_matches(certificate_der: bytes, pinned_fingerprint: str) -> bool:
    """Whether the certificate is the pinned one (constant-time comparison)."""
    pin = pinned_fingerprint.lower().replace(":", "") if isinstance(pinned_fingerprint, str) else ""
    if not pin.isascii():
        return False
    return hmac.compare_digest(certificate_fingerprint(certificate_der), pin)
