"""Node and coordinator identities: Ed25519 keys, node ids, signatures (SRS-SEC-01, SRS-SEC-03).

This module owns the rules that turn key material into the names the network uses:

* A key is built from a 32-byte Ed25519 seed (:meth:`Identity.from_seed`). The core never draws
  randomness: adapters create the seed from the operating system (``secrets.token_bytes(32)``)
  and keep it on the node (SRS-SEC-03), then hand it here.
* A public key is written as 64 lower-case hex characters (the 32-byte Ed25519 key).
* A node id is derived from the public key alone, so anyone can recompute and check it::

      node_id = "n" + hex(SHA-256(b"owm/node-id/v1" + public_key_bytes)[:20])

  i.e. the letter ``n`` followed by 40 lower-case hex characters (160 bits). The domain prefix
  keeps node ids from ever colliding with another hash of the same key. Node ids are
  pseudonymous: they name a key, not a person (SRS-STAKE-06).
* Signatures are detached 64-byte Ed25519 signatures (PyNaCl / libsodium), written as 128
  lower-case hex characters wherever they travel as text.

The seed never leaves an :class:`Identity`: its ``repr``/``str`` show only the public key and
node id, and there is no accessor for the seed (SRS-SEC-07).
"""

from __future__ import annotations

import functools
import hashlib
import re
from typing import Any

import attrs
from nacl.exceptions import BadSignatureError, CryptoError
from nacl.public import Box
from nacl.signing import SigningKey, VerifyKey

from owm_core.errors import InvalidValue, SignatureInvalid

SEED_BYTES = 32
PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64
NODE_ID_DOMAIN = b"owm/node-id/v1"
NODE_ID_HASH_BYTES = 20

_PUBLIC_KEY_RE = re.compile(r"[0-9a-f]{64}")
SIGNATURE_HEX = re.compile(r"[0-9a-f]{128}")
"""An Ed25519 signature as 128 lower-case hex digits."""
_NODE_ID_RE = re.compile(r"n[0-9a-f]{40}")


def parse_public_key(value: object, field: str = "public_key") -> str:
    """Check that ``value`` is a public key written as 64 lower-case hex characters; return it."""
    return _parse_hex(value, field, _PUBLIC_KEY_RE, "64", "an Ed25519 public key")


def parse_signature(value: object, field: str = "signature") -> str:
    """Check that ``value`` is a signature written as 128 lower-case hex characters; return it."""
    return _parse_hex(value, field, SIGNATURE_HEX, "128", "an Ed25519 signature")


def _parse_hex(value: object, field: str, pattern: re.Pattern[str], length: str, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidValue(field, f"must be text, got {type(value).__name__}")
    if not pattern.fullmatch(value):
        raise InvalidValue(field, f"must be {length} lower-case hex characters ({what})")
    return value


def node_id_from_public_key(public_key_hex: str) -> str:
    """Derive the node id of a public key: ``"n" + hex(SHA-256(domain + key)[:20])``.

    A pure function of an immutable string, so the ids of the keys seen last are remembered
    (stake re-verification derives one per node per period); other values are checked as
    ever and refused with the same error.
    """
    if type(public_key_hex) is str:
        return _cached_node_id(public_key_hex)
    return _derive_node_id(public_key_hex)


@functools.lru_cache(maxsize=1 << 16)
def _cached_node_id(public_key_hex: str) -> str:
    return _derive_node_id(public_key_hex)


def _derive_node_id(public_key_hex: str) -> str:
    key = bytes.fromhex(parse_public_key(public_key_hex))
    digest = hashlib.sha256(NODE_ID_DOMAIN + key).digest()[:NODE_ID_HASH_BYTES]
    return "n" + digest.hex()


def parse_node_id(value: object, field: str = "node_id") -> str:
    """Check that ``value`` is a well-formed node id (``n`` + 40 lower-case hex); return it.

    Shape only: whether the id belongs to a given key is :func:`node_id_matches`' question.
    """
    if not isinstance(value, str):
        raise InvalidValue(field, f"must be text, got {type(value).__name__}")
    if not _NODE_ID_RE.fullmatch(value):
        raise InvalidValue(field, "must be 'n' followed by 40 lower-case hex characters")
    return value


def node_id_matches(node_id: str, public_key_hex: str) -> bool:
    """Whether ``node_id`` is the id derived from ``public_key_hex`` (claims must be checked)."""
    return node_id_from_public_key(public_key_hex) == node_id


@functools.lru_cache(maxsize=65_536)
def _verify_key(public_key_hex: str) -> VerifyKey:
    # Heartbeats come from the same few thousand keys again and again (SRS-PERF-04).
    return VerifyKey(bytes.fromhex(public_key_hex))


def verify_signature(public_key_hex: str, message: bytes, signature: bytes) -> None:
    """Raise :class:`SignatureInvalid` unless ``signature`` by ``public_key_hex`` signs ``message``.

    The key must already be well-formed hex (see :func:`parse_public_key`); a malformed key or a
    signature of the wrong length is reported as an invalid signature, never as a crash.
    """
    if len(signature) != SIGNATURE_BYTES or not _PUBLIC_KEY_RE.fullmatch(public_key_hex):
        raise SignatureInvalid("signature does not verify")
    try:
        _verify_key(public_key_hex).verify(message, signature)
    except BadSignatureError:
        raise SignatureInvalid("signature does not verify") from None


def _is_signing_key(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, SigningKey):
        raise InvalidValue(attribute.name.lstrip("_"), "must be built with Identity.from_seed")


@attrs.frozen(repr=False, eq=False)
class Identity:
    """An Ed25519 key pair that can sign for a node, a maintainer or the coordinator.

    Build one with :meth:`from_seed`. Two identities are equal when their public keys are.
    """

    _signing_key: SigningKey = attrs.field(validator=_is_signing_key)
    public_key_hex: str = attrs.field(init=False)
    node_id: str = attrs.field(init=False)

    @public_key_hex.default
    def _public_key_hex(self) -> str:
        return bytes(self._signing_key.verify_key).hex()

    @node_id.default
    def _node_id(self) -> str:
        return node_id_from_public_key(self.public_key_hex)

    @classmethod
    def from_seed(cls, seed: bytes) -> Identity:
        """Build the identity whose Ed25519 seed is ``seed`` (exactly 32 bytes)."""
        if not isinstance(seed, bytes):
            raise InvalidValue("seed", f"must be bytes, got {type(seed).__name__}")
        if len(seed) != SEED_BYTES:
            raise InvalidValue("seed", f"must be {SEED_BYTES} bytes, got {len(seed)}")
        return cls(SigningKey(seed))

    def sign(self, message: bytes) -> bytes:
        """The detached 64-byte Ed25519 signature of ``message``."""
        return self._signing_key.sign(message).signature

    def verify(self, message: bytes, signature: bytes) -> None:
        """Raise :class:`SignatureInvalid` unless ``signature`` is this key's over ``message``."""
        verify_signature(self.public_key_hex, message, signature)

    def box_with(self, peer_public_key_hex: str) -> Box:
        """The NaCl box shared by this identity and the Ed25519 key ``peer_public_key_hex``.

        Both keys are converted to Curve25519 (libsodium's ``crypto_sign_ed25519_*_to_curve25519``)
        so that one identity key serves for signatures and for encryption (SRS-SEC-02). The box
        holds the X25519 shared key, never the seed. A peer key that is not a usable curve point
        (malformed, low order) is an :class:`InvalidValue` naming ``public_key``.
        """
        peer = parse_public_key(peer_public_key_hex)
        try:
            return Box(
                self._signing_key.to_curve25519_private_key(),
                _verify_key(peer).to_curve25519_public_key(),
            )
        except CryptoError:
            raise InvalidValue("public_key", "is not usable for encryption") from None

    def __repr__(self) -> str:
        return f"Identity(public_key_hex={self.public_key_hex!r}, node_id={self.node_id!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Identity):
            return NotImplemented
        return self.public_key_hex == other.public_key_hex

    def __hash__(self) -> int:
        return hash(self.public_key_hex)
