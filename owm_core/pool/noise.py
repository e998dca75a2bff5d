"""Stratum V2's Noise handshake, ``Noise_NX_Secp256k1+EllSwift_ChaChaPoly_SHA256`` (SRS-POOL-01,
SRS-SEC-16), written from the specification's chapter 4 ("Protocol Security").

The miner (initiator) sends its ephemeral ElligatorSwift key (act 1, 64 bytes); the pool
(responder) answers with its ephemeral key, its static key encrypted, and a certificate
(``SIGNATURE_NOISE_MESSAGE``: version, validity period and an authority's BIP340 signature over
``SHA256(version || valid_from || not_valid_after || server_xonly)``), encrypted too (act 2,
64 + 80 + 90 = 234 bytes). Both sides then split the chaining key into two
:class:`CipherState` objects, one per direction. The miner checks the certificate against the
pool's published authority key and the time (:func:`verify_certificate`); a bad MAC, a wrong
authority or an expired certificate raise :class:`~owm_core.errors.NoiseFailure`.

No randomness or clock here: ephemeral secrets, ``aux`` bytes and ``now`` are arguments.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Callable

import attrs
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from owm_core.errors import NoiseFailure
from owm_core.pool import secp256k1

PROTOCOL_NAME = b"Noise_NX_Secp256k1+EllSwift_ChaChaPoly_SHA256"
MAC_BYTES = 16
CERTIFICATE_VERSION = 0
CERTIFICATE_BYTES = 74
ACT1_BYTES = secp256k1.ELLSWIFT_BYTES
ACT2_BYTES = 2 * secp256k1.ELLSWIFT_BYTES + MAC_BYTES + CERTIFICATE_BYTES + MAC_BYTES
_MAX_NONCE = 2**64 - 1
#: The last nonce a session uses (2**64 - 1 is reserved): past it the session must end.
LAST_NONCE = _MAX_NONCE - 1
#: Why a session past :data:`LAST_NONCE` fails (its ``NoiseFailure``'s message).
NONCE_EXHAUSTED = "nonce exhausted: the session must be re-established"
_CERT_SIGNED = struct.Struct("<HII")
#: The 12-byte ChaCha20-Poly1305 nonce: 4 zero bytes, then the counter as 8 little-endian bytes.
NONCE = struct.Struct("<4xQ")


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def hkdf2(chaining_key: bytes, input_key_material: bytes) -> tuple[bytes, bytes]:
    """Noise's HKDF with two outputs (RFC 5869, empty ``info``), as the specification gives it."""
    temp_key = _hmac(chaining_key, input_key_material)
    output1 = _hmac(temp_key, b"\x01")
    return output1, _hmac(temp_key, output1 + b"\x02")


@attrs.define
class CipherState:
    """A key and a counter nonce for ChaCha20-Poly1305 (nonce: 4 zero bytes, then the counter
    as 8 little-endian bytes). Without a key, it passes data through (the handshake's start)."""

    key: bytes | None = None
    nonce: int = 0
    _aead: ChaCha20Poly1305 | None = attrs.field(default=None, init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if self.key is not None:
            self._aead = ChaCha20Poly1305(self.key)

    def _next_nonce(self) -> bytes:
        if self.nonce > LAST_NONCE:
            raise NoiseFailure(NONCE_EXHAUSTED)
        return NONCE.pack(self.nonce)

    def encrypt_with_ad(self, ad: bytes, plaintext: bytes) -> bytes:
        """``ENCRYPT(k, n++, ad, plaintext)``, or ``plaintext`` while there is no key."""
        if self._aead is None:
            return plaintext
        ciphertext = self._aead.encrypt(self._next_nonce(), plaintext, ad)
        self.nonce += 1
        return ciphertext

    def decryptor(self) -> Callable[[bytes, bytes, bytes], bytes]:
        """``decrypt(nonce, ciphertext, ad)``: the raw ChaCha20-Poly1305 decryption with this key
        (pass-through while there is no key), for a caller that counts the nonces itself and
        packs them with :data:`NONCE` (:func:`~owm_core.pool.sv2_frames.decrypt_frames`: one
        call a piece and no method call around it, the receiving side's hot path,
        SRS-PERF-11). It raises ``cryptography``'s ``InvalidTag`` on a failed tag: the caller
        turns that into ``NoiseFailure``; the caller never passes :data:`LAST_NONCE`."""
        if self._aead is None:
            return lambda _nonce, ciphertext, _ad: bytes(ciphertext)
        return self._aead.decrypt

    def decrypt_with_ad(self, ad: bytes, ciphertext: bytes | memoryview) -> bytes:
        """``DECRYPT(k, n++, ad, ciphertext)``; a failed tag leaves ``n`` and raises."""
        if self._aead is None:
            return bytes(ciphertext)
        try:
            plaintext = self._aead.decrypt(self._next_nonce(), ciphertext, ad)
        except InvalidTag:
            raise NoiseFailure("message authentication failed") from None
        self.nonce += 1
        return plaintext


@attrs.define
class SymmetricState:
    """The handshake's chaining key ``ck``, hash ``h`` and cipher (Noise's SymmetricState)."""

    ck: bytes
    h: bytes
    cipher: CipherState = attrs.field(factory=CipherState)

    @classmethod
    def initial(cls) -> SymmetricState:
        """``h = HASH(protocolName)``, ``ck = h``, ``h = HASH(h)``, no key (section 4.5.1)."""
        h = hashlib.sha256(PROTOCOL_NAME).digest()
        return cls(ck=h, h=hashlib.sha256(h).digest())

    def mix_hash(self, data: bytes) -> None:
        self.h = hashlib.sha256(self.h + data).digest()

    def mix_key(self, input_key_material: bytes) -> None:
        self.ck, temp_k = hkdf2(self.ck, input_key_material)
        self.cipher = CipherState(temp_k)

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        ciphertext = self.cipher.encrypt_with_ad(self.h, plaintext)
        self.mix_hash(ciphertext)
        return ciphertext

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        plaintext = self.cipher.decrypt_with_ad(self.h, ciphertext)
        self.mix_hash(ciphertext)
        return plaintext

    def split(self) -> tuple[CipherState, CipherState]:
        """(initiator → responder, responder → initiator) transport ciphers."""
        k1, k2 = hkdf2(self.ck, b"")
        return CipherState(k1), CipherState(k2)


@attrs.frozen
class Certificate:
    """The ``SIGNATURE_NOISE_MESSAGE`` the pool sends inside act 2 (section 4.5.2)."""

    version: int
    valid_from: int
    not_valid_after: int
    signature: bytes

    def serialize(self) -> bytes:
        """The 74 bytes: version u16, valid_from u32, not_valid_after u32, signature."""
        return (
            _CERT_SIGNED.pack(self.version, self.valid_from, self.not_valid_after) + self.signature
        )

    @classmethod
    def parse(cls, raw: bytes) -> Certificate:
        if len(raw) != CERTIFICATE_BYTES:
            raise NoiseFailure(f"a certificate is {CERTIFICATE_BYTES} bytes")
        version, valid_from, not_valid_after = _CERT_SIGNED.unpack(raw[:10])
        return cls(version, valid_from, not_valid_after, raw[10:])


def certificate_message(
    version: int, valid_from: int, not_valid_after: int, server_xonly: bytes
) -> bytes:
    """``m = SHA-256(version || valid_from || not_valid_after || server_public_key)``."""
    packed = _CERT_SIGNED.pack(version, valid_from, not_valid_after)
    return hashlib.sha256(packed + server_xonly).digest()


def sign_certificate(
    authority_secret: bytes,
    server_ellswift: bytes,
    valid_from: int,
    not_valid_after: int,
    aux: bytes,
) -> Certificate:
    """The authority certifies the pool's static key for ``[valid_from, not_valid_after]``."""
    if not 0 <= valid_from <= not_valid_after <= 0xFFFFFFFF:
        raise NoiseFailure("a certificate's validity period must be ordered 32-bit times")
    server_xonly = secp256k1.ellswift_xonly(server_ellswift)
    message = certificate_message(CERTIFICATE_VERSION, valid_from, not_valid_after, server_xonly)
    signature = secp256k1.schnorr_sign(authority_secret, message, aux)
    return Certificate(CERTIFICATE_VERSION, valid_from, not_valid_after, signature)


def verify_certificate(
    certificate: Certificate, server_ellswift: bytes, authority_xonly: bytes, now: int
) -> None:
    """Refuse a certificate of another version, outside its validity period at ``now``, or not
    signed by ``authority_xonly`` over this server key (SRS-SEC-16: no man in the middle)."""
    if certificate.version != CERTIFICATE_VERSION:
        raise NoiseFailure(f"unknown certificate version {certificate.version}")
    if not certificate.valid_from <= now <= certificate.not_valid_after:
        raise NoiseFailure("the pool's certificate is not valid at this time")
    message = certificate_message(
        certificate.version,
        certificate.valid_from,
        certificate.not_valid_after,
        secp256k1.ellswift_xonly(server_ellswift),
    )
    if not secp256k1.schnorr_verify(authority_xonly, message, certificate.signature):
        raise NoiseFailure("the pool's certificate is not signed by the expected authority")


@attrs.define
class Transport:
    """One side's ciphers after the handshake, and the handshake hash (binds logins to it)."""

    send: CipherState
    receive: CipherState
    handshake_hash: bytes


@attrs.frozen
class StaticKey:
    """The pool's long-term key and its certificate."""

    secret: bytes = attrs.field(repr=False)
    ellswift: bytes
    certificate: Certificate


class Initiator:
    """The miner's side of the handshake: :meth:`act1`, then :meth:`finish` with act 2."""

    def __init__(self, ephemeral_secret: bytes, aux: bytes) -> None:
        self._secret = ephemeral_secret
        self._ellswift = secp256k1.ellswift_create(ephemeral_secret, aux)
        self._state = SymmetricState.initial()

    def act1(self) -> bytes:
        """``-> e``: the 64-byte ephemeral key (and the empty payload hashed)."""
        self._state.mix_hash(self._ellswift)
        self._state.encrypt_and_hash(b"")
        return self._ellswift

    def finish(self, act2: bytes, authority_xonly: bytes, now: int) -> tuple[Transport, bytes]:
        """``<- e, ee, s, es, SIGNATURE_NOISE_MESSAGE``: the transport and the pool's static key,
        after checking every MAC and the certificate."""
        if len(act2) != ACT2_BYTES:
            raise NoiseFailure(f"handshake act 2 is {ACT2_BYTES} bytes, got {len(act2)}")
        state = self._state
        remote_ephemeral = act2[:64]
        state.mix_hash(remote_ephemeral)
        state.mix_key(secp256k1.v2_ecdh(self._secret, self._ellswift, remote_ephemeral, True))
        remote_static = state.decrypt_and_hash(act2[64:144])
        state.mix_key(secp256k1.v2_ecdh(self._secret, self._ellswift, remote_static, True))
        certificate = Certificate.parse(state.decrypt_and_hash(act2[144:]))
        verify_certificate(certificate, remote_static, authority_xonly, now)
        to_pool, from_pool = state.split()
        return Transport(send=to_pool, receive=from_pool, handshake_hash=state.h), remote_static


def respond(
    act1: bytes, static: StaticKey, ephemeral_secret: bytes, aux: bytes
) -> tuple[bytes, Transport]:
    """The pool's side: act 2 for the miner's ``act1`` and the pool's transport."""
    if len(act1) != ACT1_BYTES:
        raise NoiseFailure(f"handshake act 1 is {ACT1_BYTES} bytes, got {len(act1)}")
    state = SymmetricState.initial()
    state.mix_hash(act1)
    state.decrypt_and_hash(b"")
    ephemeral = secp256k1.ellswift_create(ephemeral_secret, aux)
    state.mix_hash(ephemeral)
    state.mix_key(secp256k1.v2_ecdh(ephemeral_secret, ephemeral, act1, False))
    encrypted_static = state.encrypt_and_hash(static.ellswift)
    state.mix_key(secp256k1.v2_ecdh(static.secret, static.ellswift, act1, False))
    encrypted_certificate = state.encrypt_and_hash(static.certificate.serialize())
    from_miner, to_miner = state.split()
    transport = Transport(send=to_miner, receive=from_miner, handshake_hash=state.h)
    return ephemeral + encrypted_static + encrypted_certificate, transport


_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_AUTHORITY_PREFIX = b"\x01\x00"


def encode_authority_key(authority_xonly: bytes) -> str:
    """The pool authority key as published (section 4.7): base58check of ``[1, 0] || key``."""
    payload = _AUTHORITY_PREFIX + authority_xonly
    raw = payload + hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4]
    number = int.from_bytes(raw, "big")
    digits = ""
    while number:
        number, rest = divmod(number, 58)
        digits = _B58[rest] + digits
    return "1" * (len(raw) - len(raw.lstrip(b"\x00"))) + digits


def decode_authority_key(text: str) -> bytes:
    """The 32-byte x-only authority key from its published form; ``NoiseFailure`` if the text
    is not base58, its checksum fails or its version prefix is not ``[1, 0]``."""
    number = 0
    for char in text:
        index = _B58.find(char)
        if index < 0:
            raise NoiseFailure("the authority key is not base58")
        number = number * 58 + index
    body = number.to_bytes((number.bit_length() + 7) // 8, "big")
    raw = b"\x00" * (len(text) - len(text.lstrip("1"))) + body
    payload, checksum = raw[:-4], raw[-4:]
    if hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4] != checksum:
        raise NoiseFailure("the authority key's checksum does not match")
    if len(payload) != 34 or payload[:2] != _AUTHORITY_PREFIX:
        raise NoiseFailure("the authority key must be version [1, 0] and 32 bytes")
    return payload[2:]


@attrs.frozen
class PoolUrl:
    """A pool address as the specification writes it (section 4.7):
    ``stratum2+tcp://host:port/<base58check authority key>``."""

    host: str
    port: int
    authority_xonly: bytes

    @classmethod
    def parse(cls, url: str) -> PoolUrl:
        """Parse ``url``; ``NoiseFailure`` naming what is wrong (never a partial address)."""
        scheme, sep, rest = url.partition("://")
        if scheme != "stratum2+tcp" or not sep:
            raise NoiseFailure("a pool URL starts with stratum2+tcp://")
        address, _, key = rest.partition("/")
        host, colon, port_text = address.rpartition(":")
        if not colon or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise NoiseFailure("a pool URL names host:port")
        if not key:
            raise NoiseFailure("a pool URL ends with the pool's authority key")
        return cls(host.strip("[]"), int(port_text), decode_authority_key(key))
