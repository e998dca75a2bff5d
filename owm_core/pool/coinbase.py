"""The pool's coinbase transactions and blocks, serialised by hand (SRS-POOL-05).

The pool mines coinbase-only blocks on a template: one transaction paying the block subsidy
to the pool's script, its scriptSig the BIP34 height then the channel's extranonce prefix, so
every channel hashes a different Merkle root. Leaving the template's mempool transactions out
forgoes their fees but keeps every block valid without a witness commitment (the embedded
chain's blocks are built the same way). No I/O: bytes in, bytes out.
"""

from __future__ import annotations

import struct

from owm_core.errors import InvalidValue
from owm_core.pool.bitcoin import BlockHeader, double_sha256

MAX_SCRIPT_SIG_BYTES = 100


def script_number(value: int) -> bytes:
    """``CScript() << value`` as Bitcoin Core writes a BIP34 height: ``OP_0``, ``OP_1``…``OP_16``
    or a minimal little-endian push (a zero byte added when the top bit is set)."""
    if value == 0:
        return b"\x00"
    if 1 <= value <= 16:
        return bytes([0x50 + value])
    if value < 0:
        raise InvalidValue("height", "must not be negative")
    raw = value.to_bytes((value.bit_length() + 7) // 8, "little")
    if raw[-1] & 0x80:
        raw += b"\x00"
    return push_data(raw)


def push_data(data: bytes) -> bytes:
    """A script push of up to 75 bytes."""
    if len(data) > 75:
        raise InvalidValue("data", "a direct push holds at most 75 bytes")
    return bytes([len(data)]) + data


def compact_size(value: int) -> bytes:
    """Bitcoin's variable-length integer."""
    if value < 0xFD:
        return bytes([value])
    if value <= 0xFFFF:
        return b"\xfd" + struct.pack("<H", value)
    if value <= 0xFFFFFFFF:
        return b"\xfe" + struct.pack("<I", value)
    return b"\xff" + struct.pack("<Q", value)


def coinbase_transaction(
    height: int, value_sat: int, payout_script: bytes, extranonce: bytes
) -> bytes:
    """A version-2, non-witness coinbase paying ``value_sat`` to ``payout_script``."""
    script_sig = script_number(height) + push_data(extranonce)
    if len(script_sig) > MAX_SCRIPT_SIG_BYTES:
        raise InvalidValue("extranonce", "the coinbase scriptSig would exceed 100 bytes")
    return b"".join(
        [
            struct.pack("<i", 2),
            compact_size(1),
            b"\x00" * 32 + b"\xff\xff\xff\xff",
            compact_size(len(script_sig)) + script_sig,
            b"\xff\xff\xff\xff",
            compact_size(1),
            struct.pack("<q", value_sat),
            compact_size(len(payout_script)) + payout_script,
            b"\x00\x00\x00\x00",
        ]
    )


def coinbase_parts(
    height: int, value_sat: int, payout_script: bytes, extranonce_size: int
) -> tuple[bytes, bytes]:
    """The coinbase cut around its extranonce, as an extended job carries it
    (``coinbase_tx_prefix``, ``coinbase_tx_suffix``; SV2 section 5.3.16): for every extranonce
    of ``extranonce_size`` bytes, ``prefix + extranonce + suffix`` is
    :func:`coinbase_transaction` with that extranonce."""
    transaction = coinbase_transaction(height, value_sat, payout_script, b"\x00" * extranonce_size)
    script_sig_length = len(script_number(height)) + 1 + extranonce_size
    # version, input count, outpoint, the scriptSig's length, the height, the push's length
    at = 4 + 1 + 36 + len(compact_size(script_sig_length)) + len(script_number(height)) + 1
    return transaction[:at], transaction[at + extranonce_size :]


def merkle_root(coinbase: bytes) -> bytes:
    """The Merkle root of a coinbase-only block: the coinbase's txid (internal byte order)."""
    return double_sha256(coinbase)


def serialize_block(header: BlockHeader | bytes, coinbase: bytes) -> bytes:
    """The full block as ``submitblock`` takes it: header (or its 80 serialised bytes, as the
    pool's share path holds it), one transaction."""
    raw = header if isinstance(header, bytes) else header.serialize()
    return raw + compact_size(1) + coinbase
