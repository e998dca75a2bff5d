"""The secp256k1 operations Stratum V2's Noise handshake needs, over libsecp256k1 (SRS-POOL-01).

* ElligatorSwift (BIP324): 64-byte encodings of public keys and the x-only ECDH whose output
  is BIP324's tagged hash ``SHA256(tag || tag || ell_initiator || ell_responder || x)`` with
  ``tag = SHA256("bip324_ellswift_xonly_ecdh")`` — exactly the specification's ``v2_ecdh``.
* BIP340 Schnorr signatures over 32-byte messages, for the pool's certificate.

The library is the one bundled with ``coincurve`` (its cffi ``lib``); nothing here draws
randomness — secret keys and auxiliary random bytes are arguments. Any malformed input (a
secret key of zero or above the group order, a bad signature length) raises
:class:`~owm_core.errors.NoiseFailure` naming what was wrong, never the secret.
"""

from __future__ import annotations

from coincurve._libsecp256k1 import ffi, lib
from coincurve.context import GLOBAL_CONTEXT

from owm_core.errors import NoiseFailure

ELLSWIFT_BYTES = 64
XONLY_BYTES = 32
SECRET_BYTES = 32
SIGNATURE_BYTES = 64

_CTX = GLOBAL_CONTEXT.ctx


def _bytes_of(value: object, length: int, what: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != length:
        raise NoiseFailure(f"{what} must be {length} bytes")
    return value


def ellswift_create(secret: bytes, aux: bytes) -> bytes:
    """The 64-byte ElligatorSwift encoding of ``secret``'s public key (``aux``: 32 random bytes
    that pick one of the many encodings, so the bytes on the wire look uniformly random)."""
    out = ffi.new("unsigned char[64]")
    secret = _bytes_of(secret, SECRET_BYTES, "a secret key")
    if not lib.secp256k1_ellswift_create(_CTX, out, secret, _bytes_of(aux, 32, "aux")):
        raise NoiseFailure("invalid secret key")
    return bytes(ffi.buffer(out, ELLSWIFT_BYTES))


def ellswift_xonly(ellswift: bytes) -> bytes:
    """The 32-byte x coordinate an ElligatorSwift encoding stands for (every 64 bytes decode)."""
    pubkey = ffi.new("secp256k1_pubkey *")
    lib.secp256k1_ellswift_decode(_CTX, pubkey, _bytes_of(ellswift, 64, "an EllSwift key"))
    xonly = ffi.new("secp256k1_xonly_pubkey *")
    lib.secp256k1_xonly_pubkey_from_pubkey(_CTX, xonly, ffi.NULL, pubkey)
    out = ffi.new("unsigned char[32]")
    lib.secp256k1_xonly_pubkey_serialize(_CTX, out, xonly)
    return bytes(ffi.buffer(out, XONLY_BYTES))


def v2_ecdh(secret: bytes, ours: bytes, theirs: bytes, initiator: bool) -> bytes:
    """BIP324's shared secret from our ``secret`` (whose encoding is ``ours``) and ``theirs``:
    the initiator's encoding is hashed first, so both sides agree (not commutative in roles)."""
    out = ffi.new("unsigned char[32]")
    ours = _bytes_of(ours, 64, "an EllSwift key")
    theirs = _bytes_of(theirs, 64, "an EllSwift key")
    first, second = (ours, theirs) if initiator else (theirs, ours)
    ok = lib.secp256k1_ellswift_xdh(
        _CTX,
        out,
        first,
        second,
        _bytes_of(secret, SECRET_BYTES, "a secret key"),
        0 if initiator else 1,
        lib.secp256k1_ellswift_xdh_hash_function_bip324,
        ffi.NULL,
    )
    if not ok:
        raise NoiseFailure("ElligatorSwift ECDH failed")
    return bytes(ffi.buffer(out, 32))


def _keypair(secret: bytes) -> object:
    keypair = ffi.new("secp256k1_keypair *")
    if not lib.secp256k1_keypair_create(_CTX, keypair, _bytes_of(secret, 32, "a secret key")):
        raise NoiseFailure("invalid secret key")
    return keypair


def xonly_public_key(secret: bytes) -> bytes:
    """The BIP340 32-byte x-only public key of ``secret``."""
    xonly = ffi.new("secp256k1_xonly_pubkey *")
    lib.secp256k1_keypair_xonly_pub(_CTX, xonly, ffi.NULL, _keypair(secret))
    out = ffi.new("unsigned char[32]")
    lib.secp256k1_xonly_pubkey_serialize(_CTX, out, xonly)
    return bytes(ffi.buffer(out, XONLY_BYTES))


def schnorr_sign(secret: bytes, message32: bytes, aux: bytes) -> bytes:
    """A BIP340 signature of the 32-byte ``message32`` (``aux``: 32 bytes of fresh randomness)."""
    sig = ffi.new("unsigned char[64]")
    msg = _bytes_of(message32, 32, "a message hash")
    if not lib.secp256k1_schnorrsig_sign32(
        _CTX, sig, msg, _keypair(secret), _bytes_of(aux, 32, "aux")
    ):
        raise NoiseFailure("signing failed")
    return bytes(ffi.buffer(sig, SIGNATURE_BYTES))


def schnorr_verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is a valid BIP340 signature of ``message`` by x-only ``public_key``
    (a public key that is not on the curve, or a signature of the wrong size, is just invalid)."""
    if not isinstance(signature, bytes) or len(signature) != SIGNATURE_BYTES:
        return False
    if not isinstance(public_key, bytes) or len(public_key) != XONLY_BYTES:
        return False
    xonly = ffi.new("secp256k1_xonly_pubkey *")
    if not lib.secp256k1_xonly_pubkey_parse(_CTX, xonly, public_key):
        return False
    return bool(lib.secp256k1_schnorrsig_verify(_CTX, signature, message, len(message), xonly))
