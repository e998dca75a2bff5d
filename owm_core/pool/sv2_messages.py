"""The Stratum V2 messages the pool speaks, and their binary encoding (SRS-POOL-01), from the
specification's sections 3.1 (data types), 3.6 (common messages), 5.3 (mining protocol) and 8
(message type numbers).

Each message is a frozen class listing its fields with their wire types; :func:`encode` turns
one into a :class:`~owm_core.pool.sv2_frames.Frame` and :func:`decode` a frame back into a
message. Decoding is strict: a known message type only, the right ``channel_msg`` bit, every
length prefix within its bounds and the payload consumed exactly — anything else is
:class:`~owm_core.errors.FrameMalformed`. Multibyte integers are little-endian; ``U256`` values
travel as 32 raw bytes (the order they have in a block header).

Implemented: SetupConnection (+ .Success/.Error), OpenStandardMiningChannel (+ .Success),
OpenExtendedMiningChannel (+ .Success), OpenMiningChannel.Error, NewMiningJob,
NewExtendedMiningJob, SetNewPrevHash, SetTarget, SubmitSharesStandard, SubmitSharesExtended,
SubmitShares.Success/.Error, CloseChannel. Group channels, job declaration and template
distribution are not.
"""

from __future__ import annotations

import struct
from typing import Any, ClassVar

import attrs

from owm_core.errors import FrameMalformed
from owm_core.pool.sv2_frames import CHANNEL_MSG_BIT, Frame

PROTOCOL_MINING = 0
PROTOCOL_VERSION = 2


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def take(self, count: int) -> bytes:
        if self.at + count > len(self.data):
            raise FrameMalformed("message ends before its fields do")
        chunk = self.data[self.at : self.at + count]
        self.at += count
        return chunk


def _uint(size: int) -> tuple[Any, Any]:
    def write(value: int) -> bytes:
        if not isinstance(value, int) or not 0 <= value < 1 << (8 * size):
            raise FrameMalformed(f"{value!r} does not fit an unsigned {8 * size}-bit field")
        return value.to_bytes(size, "little")

    return write, lambda reader: int.from_bytes(reader.take(size), "little")


def _fixed(size: int) -> tuple[Any, Any]:
    def write(value: bytes) -> bytes:
        if not isinstance(value, bytes) or len(value) != size:
            raise FrameMalformed(f"a {size}-byte field got {len(value)} bytes")
        return value

    return write, lambda reader: reader.take(size)


def _prefixed(max_len: int, text: bool) -> tuple[Any, Any]:
    def write(value: Any) -> bytes:
        raw: bytes = value.encode() if text else value
        if len(raw) > max_len:
            raise FrameMalformed(f"a field of at most {max_len} bytes got {len(raw)}")
        return bytes([len(raw)]) + raw

    def read(reader: _Reader) -> Any:
        length = reader.take(1)[0]
        if length > max_len:
            raise FrameMalformed(f"a field of at most {max_len} bytes declares {length}")
        raw = reader.take(length)
        if not text:
            return raw
        try:
            return raw.decode()
        except UnicodeDecodeError:
            raise FrameMalformed("a text field is not UTF-8") from None

    return write, read


def _option_u32() -> tuple[Any, Any]:
    def write(value: int | None) -> bytes:
        return b"\x00" if value is None else b"\x01" + _uint(4)[0](value)

    def read(reader: _Reader) -> int | None:
        present = reader.take(1)[0]
        if present > 1:
            raise FrameMalformed("an OPTION field holds at most one value")
        return int.from_bytes(reader.take(4), "little") if present else None

    return write, read


def _b0_64k() -> tuple[Any, Any]:
    def write(value: bytes) -> bytes:
        if not isinstance(value, bytes) or len(value) > 0xFFFF:
            raise FrameMalformed("a B0_64K field holds at most 65,535 bytes")
        return len(value).to_bytes(2, "little") + value

    return write, lambda reader: reader.take(int.from_bytes(reader.take(2), "little"))


def _bool() -> tuple[Any, Any]:
    def read(reader: _Reader) -> bool:
        raw = reader.take(1)[0]
        if raw > 1:
            raise FrameMalformed("a BOOL field is 0 or 1")
        return bool(raw)

    return (lambda value: b"\x01" if value else b"\x00"), read


def _seq_u256() -> tuple[Any, Any]:
    def write(value: tuple[bytes, ...]) -> bytes:
        if len(value) > 255 or any(len(item) != 32 for item in value):
            raise FrameMalformed("a SEQ0_255[U256] holds at most 255 32-byte values")
        return bytes([len(value)]) + b"".join(value)

    def read(reader: _Reader) -> tuple[bytes, ...]:
        return tuple(reader.take(32) for _ in range(reader.take(1)[0]))

    return write, read


def _f32() -> tuple[Any, Any]:
    return (lambda value: struct.pack("<f", value)), (
        lambda reader: struct.unpack("<f", reader.take(4))[0]
    )


U8, U16, U32, U64 = _uint(1), _uint(2), _uint(4), _uint(8)
U256 = _fixed(32)
STR0_255 = _prefixed(255, text=True)
B0_32 = _prefixed(32, text=False)
OPTION_U32 = _option_u32()
F32 = _f32()
B0_64K = _b0_64k()
BOOL = _bool()
SEQ0_255_U256 = _seq_u256()


class Message:
    """Base of the messages: ``MSG_TYPE``, ``CHANNEL_MSG`` and ``FIELDS`` (name, wire type)."""

    MSG_TYPE: ClassVar[int]
    CHANNEL_MSG: ClassVar[bool] = False
    FIELDS: ClassVar[tuple[tuple[str, tuple[Any, Any]], ...]]


_REGISTRY: dict[int, type[Message]] = {}
#: Messages made of fixed-size integers only (the shares, their answers' counters), decoded
#: with one ``struct`` call instead of a reader per field (the pool's hot path, SRS-PERF-11).
_FIXED: dict[int, struct.Struct] = {}
_FIXED_FORMATS = {id(U8): "B", id(U16): "H", id(U32): "I", id(U64): "Q"}


def _message(msg_type: int, channel_msg: bool, *fields: tuple[str, tuple[Any, Any]]) -> Any:
    def wrap(cls: type[Message]) -> type[Message]:
        cls.MSG_TYPE, cls.CHANNEL_MSG, cls.FIELDS = msg_type, channel_msg, fields
        _REGISTRY[msg_type] = cls
        formats = [_FIXED_FORMATS.get(id(kind)) for _, kind in fields]
        if all(formats):
            _FIXED[msg_type] = struct.Struct("<" + "".join(formats))  # type: ignore[arg-type]
        return cls

    return wrap


@_message(0x00, False, ("protocol", U8), ("min_version", U16), ("max_version", U16),
          ("flags", U32), ("endpoint_host", STR0_255), ("endpoint_port", U16),
          ("vendor", STR0_255), ("hardware_version", STR0_255), ("firmware", STR0_255),
          ("device_id", STR0_255))  # fmt: skip
@attrs.frozen
class SetupConnection(Message):
    protocol: int
    min_version: int
    max_version: int
    flags: int
    endpoint_host: str
    endpoint_port: int
    vendor: str
    hardware_version: str
    firmware: str
    device_id: str


@_message(0x01, False, ("used_version", U16), ("flags", U32))
@attrs.frozen
class SetupConnectionSuccess(Message):
    used_version: int
    flags: int


@_message(0x02, False, ("flags", U32), ("error_code", STR0_255))
@attrs.frozen
class SetupConnectionError(Message):
    flags: int
    error_code: str


@_message(0x10, False, ("request_id", U32), ("user_identity", STR0_255),
          ("nominal_hash_rate", F32), ("max_target", U256))  # fmt: skip
@attrs.frozen
class OpenStandardMiningChannel(Message):
    request_id: int
    user_identity: str
    nominal_hash_rate: float
    max_target: bytes


@_message(0x11, False, ("request_id", U32), ("channel_id", U32), ("target", U256),
          ("extranonce_prefix", B0_32), ("group_channel_id", U32))  # fmt: skip
@attrs.frozen
class OpenStandardMiningChannelSuccess(Message):
    request_id: int
    channel_id: int
    target: bytes
    extranonce_prefix: bytes
    group_channel_id: int


# "<All fields from OpenStandardMiningChannel>" then one more (section 5.3.4)
@_message(0x13, False, *OpenStandardMiningChannel.FIELDS, ("min_extranonce_size", U16))
@attrs.frozen
class OpenExtendedMiningChannel(Message):
    request_id: int
    user_identity: str
    nominal_hash_rate: float
    max_target: bytes
    min_extranonce_size: int


@_message(0x14, False, ("request_id", U32), ("channel_id", U32), ("target", U256),
          ("extranonce_size", U16), ("extranonce_prefix", B0_32),
          ("group_channel_id", U32))  # fmt: skip
@attrs.frozen
class OpenExtendedMiningChannelSuccess(Message):
    request_id: int
    channel_id: int
    target: bytes
    extranonce_size: int
    extranonce_prefix: bytes
    group_channel_id: int


@_message(0x12, False, ("request_id", U32), ("error_code", STR0_255))
@attrs.frozen
class OpenMiningChannelError(Message):
    request_id: int
    error_code: str


@_message(0x15, True, ("channel_id", U32), ("job_id", U32), ("min_ntime", OPTION_U32),
          ("version", U32), ("merkle_root", U256))  # fmt: skip
@attrs.frozen
class NewMiningJob(Message):
    channel_id: int
    job_id: int
    min_ntime: int | None
    version: int
    merkle_root: bytes


@_message(0x18, True, ("channel_id", U32), ("reason_code", STR0_255))
@attrs.frozen
class CloseChannel(Message):
    channel_id: int
    reason_code: str


@_message(0x1A, True, ("channel_id", U32), ("sequence_number", U32), ("job_id", U32),
          ("nonce", U32), ("ntime", U32), ("version", U32))  # fmt: skip
@attrs.frozen
class SubmitSharesStandard(Message):
    channel_id: int
    sequence_number: int
    job_id: int
    nonce: int
    ntime: int
    version: int


# "<SubmitSharesStandard message fields>" then the extranonce (section 5.3.12)
@_message(0x1B, True, *SubmitSharesStandard.FIELDS, ("extranonce", B0_32))
@attrs.frozen
class SubmitSharesExtended(Message):
    channel_id: int
    sequence_number: int
    job_id: int
    nonce: int
    ntime: int
    version: int
    extranonce: bytes


@_message(0x1F, True, ("channel_id", U32), ("job_id", U32), ("min_ntime", OPTION_U32),
          ("version", U32), ("version_rolling_allowed", BOOL), ("merkle_path", SEQ0_255_U256),
          ("coinbase_tx_prefix", B0_64K), ("coinbase_tx_suffix", B0_64K))  # fmt: skip
@attrs.frozen
class NewExtendedMiningJob(Message):
    channel_id: int
    job_id: int
    min_ntime: int | None
    version: int
    version_rolling_allowed: bool
    merkle_path: tuple[bytes, ...]
    coinbase_tx_prefix: bytes
    coinbase_tx_suffix: bytes


@_message(0x1C, True, ("channel_id", U32), ("last_sequence_number", U32),
          ("new_submits_accepted_count", U32), ("new_shares_sum", U64))  # fmt: skip
@attrs.frozen
class SubmitSharesSuccess(Message):
    channel_id: int
    last_sequence_number: int
    new_submits_accepted_count: int
    new_shares_sum: int


@_message(0x1D, True, ("channel_id", U32), ("sequence_number", U32), ("error_code", STR0_255))
@attrs.frozen
class SubmitSharesError(Message):
    channel_id: int
    sequence_number: int
    error_code: str


@_message(0x20, True, ("channel_id", U32), ("job_id", U32), ("prev_hash", U256),
          ("min_ntime", U32), ("nbits", U32))  # fmt: skip
@attrs.frozen
class SetNewPrevHash(Message):
    channel_id: int
    job_id: int
    prev_hash: bytes
    min_ntime: int
    nbits: int


@_message(0x21, True, ("channel_id", U32), ("maximum_target", U256))
@attrs.frozen
class SetTarget(Message):
    channel_id: int
    maximum_target: bytes


def encode(message: Message) -> Frame:
    """The frame carrying ``message`` (extension 0, ``channel_msg`` as the spec's table says)."""
    payload = b"".join(write(getattr(message, name)) for name, (write, _) in message.FIELDS)
    return Frame(CHANNEL_MSG_BIT if message.CHANNEL_MSG else 0, message.MSG_TYPE, payload)


def decode(frame: Frame) -> Message:
    """The message a frame carries; ``FrameMalformed`` unless it is exactly one known message."""
    if frame.extension_type & ~CHANNEL_MSG_BIT:
        raise FrameMalformed(f"extension {frame.extension_type & 0x7FFF:#06x} is not supported")
    cls = _REGISTRY.get(frame.msg_type)
    if cls is None:
        raise FrameMalformed(f"message type {frame.msg_type:#04x} is not supported")
    if frame.channel_msg != cls.CHANNEL_MSG:
        raise FrameMalformed(f"{cls.__name__} with the wrong channel_msg bit")
    fixed = _FIXED.get(frame.msg_type)
    if fixed is not None:
        if len(frame.payload) < fixed.size:
            raise FrameMalformed("message ends before its fields do")
        if len(frame.payload) > fixed.size:
            raise FrameMalformed(f"{len(frame.payload) - fixed.size} bytes after {cls.__name__}")
        return cls(*fixed.unpack(frame.payload))
    reader = _Reader(frame.payload)
    values = {name: read(reader) for name, (_, read) in cls.FIELDS}
    if reader.at != len(frame.payload):
        raise FrameMalformed(f"{len(frame.payload) - reader.at} bytes after {cls.__name__}")
    return cls(**values)


def target_bytes(target: int) -> bytes:
    """A target as a ``U256`` field (32 little-endian bytes)."""
    return target.to_bytes(32, "little")


def target_value(raw: bytes) -> int:
    """The integer a ``U256`` target field holds."""
    return int.from_bytes(raw, "little")
