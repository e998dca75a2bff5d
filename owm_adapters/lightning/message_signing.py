"""Lightning message signatures, as LND's ``SignMessage`` and CLN's ``signmessage`` make them.

The scheme both implementations share (not a BOLT; LND defined it, CLN follows it):
``zbase32(header ‖ r ‖ s)`` where ``(r, s)`` is a recoverable secp256k1 ECDSA signature over
``SHA-256(SHA-256("Lightning Signed Message:" ‖ message))``, ``header = 31 + recovery id``
(compressed key), and zbase32 is Zimmermann's human-oriented base 32. The verifier recovers the
public key from the signature: a signature proves control of the node whose identity key it
recovers to (SRS-STAKE-01, SRS-LN-11).

The embedded ledger signs and verifies with these functions, and so do the protocol-level
fakes of LND and CLN in the tests, so all three produce mutually verifiable signatures.
"""

from __future__ import annotations

import hashlib

from coincurve import PrivateKey, PublicKey

PREFIX = b"Lightning Signed Message:"
"""What LND and CLN prepend to a message before hashing it."""

_ZBASE32 = "ybndrfg8ejkmcpqxot1uwisza345h769"
_ZBASE32_INDEX = {c: i for i, c in enumerate(_ZBASE32)}
_SIGNATURE_BYTES = 65
MAX_SIGNATURE_CHARS = 200
"""Longer text is refused before decoding (a signature is 104 characters)."""


def zbase32_encode(data: bytes) -> str:
    """``data`` in zbase32, most significant bit first, without padding."""
    bits = "".join(f"{byte:08b}" for byte in data)
    bits += "0" * (-len(bits) % 5)
    return "".join(_ZBASE32[int(bits[i : i + 5], 2)] for i in range(0, len(bits), 5))


def zbase32_decode(text: str) -> bytes | None:
    """The bytes ``text`` encodes, or None when it is not zbase32."""
    try:
        bits = "".join(f"{_ZBASE32_INDEX[c]:05b}" for c in text)
    except KeyError:
        return None
    usable = len(bits) - len(bits) % 8
    return bytes(int(bits[i : i + 8], 2) for i in range(0, usable, 8))


def message_digest(message: str) -> bytes:
    """The double SHA-256 that is signed: ``sha256d(PREFIX ‖ utf-8 message)``."""
    return hashlib.sha256(hashlib.sha256(PREFIX + message.encode()).digest()).digest()


def sign_message(secret_key: bytes, message: str) -> str:
    """Sign ``message`` with a node's secret key; zbase32, as ``lncli signmessage`` prints it."""
    recoverable = PrivateKey(secret_key).sign_recoverable(message_digest(message), hasher=None)
    r_s, recovery_id = recoverable[:64], recoverable[64]
    return zbase32_encode(bytes([31 + recovery_id]) + r_s)


def recover_signer(message: str, signature: str) -> str | None:
    """The compressed public key (hex) that signed ``message``, or None for a bad signature."""
    if not isinstance(signature, str) or len(signature) > MAX_SIGNATURE_CHARS:
        return None
    raw = zbase32_decode(signature)
    if raw is None or len(raw) != _SIGNATURE_BYTES or not 27 <= raw[0] <= 34:
        return None
    recovery_id = (raw[0] - 27) & 3
    try:
        key = PublicKey.from_signature_and_message(
            raw[1:] + bytes([recovery_id]), message_digest(message), hasher=None
        )
    except (ValueError, TypeError):
        return None
    return str(key.format(compressed=True).hex())


def signed_by(message: str, signature: str, pubkey: str) -> bool:
    """True when ``signature`` over ``message`` recovers to ``pubkey`` (lower-case hex)."""
    return recover_signer(message, signature) == pubkey.lower()
