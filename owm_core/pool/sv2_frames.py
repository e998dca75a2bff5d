"""Stratum V2 frames and their encryption (SRS-POOL-01, SRS-SEC-16), from the specification's
sections 3.2 and 4.6.

A frame is a 6-byte header — ``extension_type`` u16, ``msg_type`` u8, ``msg_length`` u24, all
little-endian; the top bit of ``extension_type`` is ``channel_msg`` — and ``msg_length`` payload
bytes. On the wire every frame is encrypted: the header alone becomes a 22-byte ciphertext (6 +
16-byte MAC), then the payload is cut into 65,519-byte pieces, each encrypted into at most
65,535 bytes. ``msg_length`` always counts plaintext bytes; :func:`ciphertext_length` turns it
into the number of bytes to read. A reader refuses, before reading further, any frame whose
declared payload exceeds its limit, so a peer cannot make it buffer 16 MiB.
"""

from __future__ import annotations

import attrs
from cryptography.exceptions import InvalidTag

from owm_core.errors import FrameMalformed, NoiseFailure
from owm_core.pool.noise import LAST_NONCE, MAC_BYTES, NONCE, NONCE_EXHAUSTED, CipherState

HEADER_BYTES = 6
ENCRYPTED_HEADER_BYTES = HEADER_BYTES + MAC_BYTES
MAX_CIPHERTEXT_BYTES = 65_535
MAX_PLAINTEXT_BYTES = MAX_CIPHERTEXT_BYTES - MAC_BYTES
MAX_PAYLOAD_BYTES = 2**24 - 1
CHANNEL_MSG_BIT = 0x8000


@attrs.frozen
class Frame:
    """One Stratum V2 message: its extension and type, and its serialised payload."""

    extension_type: int = attrs.field(
        validator=attrs.validators.and_(attrs.validators.ge(0), attrs.validators.le(0xFFFF))
    )
    msg_type: int = attrs.field(
        validator=attrs.validators.and_(attrs.validators.ge(0), attrs.validators.le(0xFF))
    )
    payload: bytes = attrs.field(validator=attrs.validators.max_len(MAX_PAYLOAD_BYTES))

    @property
    def channel_msg(self) -> bool:
        """Whether the payload starts with the channel id it is addressed to (section 3.2.1)."""
        return bool(self.extension_type & CHANNEL_MSG_BIT)

    def header(self) -> bytes:
        return encode_header(self.extension_type, self.msg_type, len(self.payload))


def encode_header(extension_type: int, msg_type: int, length: int) -> bytes:
    """The 6 header bytes."""
    return extension_type.to_bytes(2, "little") + bytes([msg_type]) + length.to_bytes(3, "little")


def ciphertext_length(plaintext_length: int) -> int:
    """Bytes on the wire for a payload of ``plaintext_length`` bytes (each piece + its MAC)."""
    whole, rest = divmod(plaintext_length, MAX_PLAINTEXT_BYTES)
    return whole * MAX_CIPHERTEXT_BYTES + (rest + MAC_BYTES if rest else 0)


def encrypt_frame(cipher: CipherState, frame: Frame) -> bytes:
    """The frame as sent: encrypted header, then the payload's encrypted pieces."""
    parts = [cipher.encrypt_with_ad(b"", frame.header())]
    payload = frame.payload
    for start in range(0, len(payload), MAX_PLAINTEXT_BYTES):
        parts.append(cipher.encrypt_with_ad(b"", payload[start : start + MAX_PLAINTEXT_BYTES]))
    return b"".join(parts)


def decrypt_payload(cipher: CipherState, raw: bytes, plaintext_length: int) -> bytes:
    """Decrypt the payload pieces of a frame whose header declared ``plaintext_length``."""
    if len(raw) != ciphertext_length(plaintext_length):
        raise FrameMalformed("the payload's ciphertext length does not match its header")
    pieces = [
        cipher.decrypt_with_ad(b"", raw[start : start + MAX_CIPHERTEXT_BYTES])
        for start in range(0, len(raw), MAX_CIPHERTEXT_BYTES)
    ]
    return b"".join(pieces)


def decrypt_frames(
    cipher: CipherState, buffer: bytes | bytearray, limit: int, max_payload: int = MAX_PAYLOAD_BYTES
) -> tuple[list[Frame], int]:
    """Decrypt the whole frames at the start of ``buffer``, at most ``limit``: the frames and
    how many bytes they took (a frame cut short is left for later, its header decrypted again
    then; ``cipher.nonce`` counts the pieces kept). A header declaring a payload over
    ``max_payload`` is refused before its payload is read. One pass over one copy of the
    buffer (the AEAD takes ``bytes`` slices faster than views), calling the AEAD itself
    (:meth:`~owm_core.pool.noise.CipherState.decryptor`) with nonces packed by one precompiled
    struct, instead of a method call and a nonce object per piece: the receiving side's hot
    path (SRS-PERF-11). A failed tag is ``NoiseFailure``, as is the exhausted nonce."""
    frames: list[Frame] = []
    data, at, nonce = bytes(buffer), 0, cipher.nonce
    size, last = len(data), LAST_NONCE
    decrypt, pack = cipher.decryptor(), NONCE.pack
    try:
        while len(frames) < limit and size - at >= ENCRYPTED_HEADER_BYTES:
            if nonce > last:  # (never in a session's life: 2**64 pieces)
                raise NoiseFailure(NONCE_EXHAUSTED)
            header = decrypt(pack(nonce), data[at : at + ENCRYPTED_HEADER_BYTES], b"")
            length = header[3] | header[4] << 8 | header[5] << 16
            if length > max_payload:
                raise FrameMalformed(
                    f"a {length}-byte payload exceeds the {max_payload}-byte limit"
                )
            start = at + ENCRYPTED_HEADER_BYTES
            end = start + (length + MAC_BYTES if length <= MAX_PLAINTEXT_BYTES else
                           ciphertext_length(length)) if length else start  # fmt: skip
            if end > size:
                break  # the payload is not all here: decrypt the header again when it is
            nonce += 1  # the header's decryption, now kept
            if not length:
                payload = b""
            elif length <= MAX_PLAINTEXT_BYTES:
                if nonce > last:
                    raise NoiseFailure(NONCE_EXHAUSTED)
                payload = decrypt(pack(nonce), data[start:end], b"")
                nonce += 1
            else:
                cipher.nonce = nonce
                payload = decrypt_payload(cipher, data[start:end], length)
                nonce = cipher.nonce
            frames.append(_trusted_frame(header[0] | header[1] << 8, header[2], payload))
            at = end
    except InvalidTag:
        raise NoiseFailure("message authentication failed") from None
    finally:
        cipher.nonce = nonce
    return frames, at


_SLOTS = {name: Frame.__dict__[name].__set__ for name in ("extension_type", "msg_type", "payload")}
_set_extension, _set_type, _set_payload = _SLOTS.values()


def _trusted_frame(extension_type: int, msg_type: int, payload: bytes) -> Frame:
    """A :class:`Frame` of values read from a decrypted 6-byte header (a u16, a u8) and a
    payload within its u24 length, built without re-running the validators they cannot fail
    (its slots set directly)."""
    frame: Frame = object.__new__(Frame)
    _set_extension(frame, extension_type)
    _set_type(frame, msg_type)
    _set_payload(frame, payload)
    return frame


def decrypt_frame(cipher: CipherState, raw: bytes, max_payload: int = MAX_PAYLOAD_BYTES) -> Frame:
    """Decrypt one whole frame held in ``raw`` (exactly one; a cut frame or trailing bytes are
    refused) with :func:`decrypt_frames`."""
    frames, used = decrypt_frames(cipher, raw, 1, max_payload)
    if not frames or used != len(raw):
        raise FrameMalformed(f"{len(raw)} bytes are not exactly one encrypted frame")
    return frames[0]


V1_LINE_MIN = 16
"""The shortest printable text before a newline that :func:`refuse_plaintext` takes for a
Stratum V1 line (every V1 request is longer)."""


def refuse_plaintext(prefix: bytes) -> None:
    """Refuse what a plain Stratum V1 miner sends first — a JSON line — instead of a Noise key
    (SRS-SEC-16): ``{`` then printable text, ended by a newline after at least
    :data:`V1_LINE_MIN` characters or filling the 64 bytes of a key. A random key starts so
    with a probability below 10^-11; a newline anywhere after a leading ``{`` alone is not
    enough (about one honest handshake in a thousand would be refused)."""
    if prefix[:1] != b"{":
        return
    text, newline, _ = prefix[:64].partition(b"\n")
    ended = (newline and len(text) >= V1_LINE_MIN) or len(text) >= 64
    if ended and all(32 <= byte < 127 for byte in text):
        raise FrameMalformed(
            "plain Stratum V1 (JSON) refused: this pool speaks encrypted Stratum V2"
        )
