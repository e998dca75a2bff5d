"""The Stratum V2 messages the pool speaks, and their binary encoding (SRS-POOL-01), from the
specification's sections 3.1 (data types), 3.6 (common messages), 5.3 (mining protocol) and 8
(message type numbers).

Each message is a frozen class whose attributes, in the spec's order, are annotated with their
wire types (``U32``, ``STR0_255``, ...); :func:`encode` turns one into a
:class:`~owm_core.pool.sv2_frames.Frame` and :func:`decode` a frame back into a message. The
extended channel's open and submit messages start with the standard ones' fields, as the spec
says, through a shared base. Decoding is strict: a known message type only, the right
``channel_msg`` bit, every length prefix within its bounds and the payload consumed exactly —
anything else is :class:`~owm_core.errors.FrameMalformed`. Multibyte integers are
little-endian; ``U256`` values travel as 32 raw bytes (the order they have in a block header).

Implemented: SetupConnection (+ .Success/.Error), OpenStandardMiningChannel (+ .Success),
OpenExtendedMiningChannel (+ .Success), OpenMiningChannel.Error, NewMiningJob,
NewExtendedMiningJob, SetNewPrevHash, SetTarget, SubmitSharesStandard, SubmitSharesExtended,
SubmitShares.Success/.Error, CloseChannel. Group channels, job declaration and template
distribution are not.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Annotated, Any, ClassVar, NamedTuple, TypeVar, get_type_hints

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


class _Wire(NamedTuple):
    """How one wire type is written and read; ``struct_format`` for fixed-size integers."""

    write: Callable[[Any], bytes]
    read: Callable[[_Reader], Any]
    struct_format: str | None = None


def _uint(size: int) -> _Wire:
    def write(value: int) -> bytes:
        if not isinstance(value, int) or not 0 <= value < 1 << (8 * size):
            raise FrameMalformed(f"{value!r} does not fit an unsigned {8 * size}-bit field")
        return value.to_bytes(size, "little")

    def read(reader: _Reader) -> int:
        return int.from_bytes(reader.take(size), "little")

    return _Wire(write, read, struct_format={1: "B", 2: "H", 4: "I", 8: "Q"}[size])


def _fixed(size: int) -> _Wire:
    def write(value: bytes) -> bytes:
        if not isinstance(value, bytes) or len(value) != size:
            raise FrameMalformed(f"a {size}-byte field got {len(value)} bytes")
        return value

    return _Wire(write, lambda reader: reader.take(size))


def _prefixed(max_len: int, text: bool) -> _Wire:
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

    return _Wire(write, read)


def _option_u32() -> _Wire:
    def write(value: int | None) -> bytes:
        return b"\x00" if value is None else b"\x01" + _uint(4).write(value)

    def read(reader: _Reader) -> int | None:
        present = reader.take(1)[0]
        if present > 1:
            raise FrameMalformed("an OPTION field holds at most one value")
        return int.from_bytes(reader.take(4), "little") if present else None

    return _Wire(write, read)


def _b0_64k() -> _Wire:
    def write(value: bytes) -> bytes:
        if not isinstance(value, bytes) or len(value) > 0xFFFF:
            raise FrameMalformed("a B0_64K field holds at most 65,535 bytes")
        return len(value).to_bytes(2, "little") + value

    return _Wire(write, lambda reader: reader.take(int.from_bytes(reader.take(2), "little")))


def _bool() -> _Wire:
    def read(reader: _Reader) -> bool:
        raw = reader.take(1)[0]
        if raw > 1:
            raise FrameMalformed("a BOOL field is 0 or 1")
        return bool(raw)

    return _Wire(lambda value: b"\x01" if value else b"\x00", read)


def _seq_u256() -> _Wire:
    def write(value: tuple[bytes, ...]) -> bytes:
        if len(value) > 255 or any(len(item) != 32 for item in value):
            raise FrameMalformed("a SEQ0_255[U256] holds at most 255 32-byte values")
        return bytes([len(value)]) + b"".join(value)

    def read(reader: _Reader) -> tuple[bytes, ...]:
        return tuple(reader.take(32) for _ in range(reader.take(1)[0]))

    return _Wire(write, read)


def _f32() -> _Wire:
    return _Wire(
        lambda value: struct.pack("<f", value),
        lambda reader: struct.unpack("<f", reader.take(4))[0],
    )


# The spec's data types (section 3.1) as field annotations: the Python type a field holds,
# with the wire type that encodes it as metadata (read by :func:`_message`).
U8 = Annotated[int, _uint(1)]
U16 = Annotated[int, _uint(2)]
U32 = Annotated[int, _uint(4)]
U64 = Annotated[int, _uint(8)]
U256 = Annotated[bytes, _fixed(32)]
STR0_255 = Annotated[str, _prefixed(255, text=True)]
B0_32 = Annotated[bytes, _prefixed(32, text=False)]
OPTION_U32 = Annotated[int | None, _option_u32()]
F32 = Annotated[float, _f32()]
B0_64K = Annotated[bytes, _b0_64k()]
BOOL = Annotated[bool, _bool()]
SEQ0_255_U256 = Annotated[tuple[bytes, ...], _seq_u256()]


class Message:
    """Base of the messages: ``MSG_TYPE``, ``CHANNEL_MSG`` and ``FIELDS`` (name, wire type),
    the fields in the order of the class's attributes, each with its annotation's wire type."""

    MSG_TYPE: ClassVar[int]
    CHANNEL_MSG: ClassVar[bool] = False
    FIELDS: ClassVar[tuple[tuple[str, _Wire], ...]]


_REGISTRY: dict[int, type[Message]] = {}
#: Messages made of fixed-size integers only (the shares, their answers' counters), decoded
#: with one ``struct`` call instead of a reader per field (the pool's hot path, SRS-PERF-11).
_FIXED: dict[int, struct.Struct] = {}

_M = TypeVar("_M", bound=type[Message])


def _message(msg_type: int, channel_msg: bool) -> Callable[[_M], _M]:
    """Register an attrs message class under ``msg_type``; its wire layout is its attributes
    in order, each encoded as its annotation (``U32``, ``STR0_255``, ...) says."""

    def wrap(cls: _M) -> _M:
        hints = get_type_hints(cls, include_extras=True)
        attributes = attrs.fields(cls)  # type: ignore[arg-type]
        fields = tuple((a.name, hints[a.name].__metadata__[0]) for a in attributes)
        cls.MSG_TYPE, cls.CHANNEL_MSG, cls.FIELDS = msg_type, channel_msg, fields
        _REGISTRY[msg_type] = cls
        formats = [wire.struct_format for _, wire in fields]
        if all(formats):
            _FIXED[msg_type] = struct.Struct("<" + "".join(formats))
        return cls

    return wrap


@_message(0x00, False)
@attrs.frozen
class SetupConnection(Message):
    protocol: U8
    min_version: U16
    max_version: U16
    flags: U32
    endpoint_host: STR0_255
    endpoint_port: U16
    vendor: STR0_255
    hardware_version: STR0_255
    firmware: STR0_255
    device_id: STR0_255


@_message(0x01, False)
@attrs.frozen
class SetupConnectionSuccess(Message):
    used_version: U16
    flags: U32


@_message(0x02, False)
@attrs.frozen
class SetupConnectionError(Message):
    flags: U32
    error_code: STR0_255


@attrs.frozen
class _OpenMiningChannel(Message):
    """The fields of OpenStandardMiningChannel, which OpenExtendedMiningChannel starts with
    ("<All fields from OpenStandardMiningChannel>", section 5.3.4)."""

    request_id: U32
    user_identity: STR0_255
    nominal_hash_rate: F32
    max_target: U256


@_message(0x10, False)
@attrs.frozen
class OpenStandardMiningChannel(_OpenMiningChannel):
    """Open a standard channel (section 5.3.2)."""


@_message(0x11, False)
@attrs.frozen
class OpenStandardMiningChannelSuccess(Message):
    request_id: U32
    channel_id: U32
    target: U256
    extranonce_prefix: B0_32
    group_channel_id: U32


@_message(0x13, False)
@attrs.frozen
class OpenExtendedMiningChannel(_OpenMiningChannel):
    """Open an extended channel: a standard channel's fields, then one more (section 5.3.4)."""

    min_extranonce_size: U16


@_message(0x14, False)
@attrs.frozen
class OpenExtendedMiningChannelSuccess(Message):
    request_id: U32
    channel_id: U32
    target: U256
    extranonce_size: U16
    extranonce_prefix: B0_32
    group_channel_id: U32


@_message(0x12, False)
@attrs.frozen
class OpenMiningChannelError(Message):
    request_id: U32
    error_code: STR0_255


@_message(0x15, True)
@attrs.frozen
class NewMiningJob(Message):
    channel_id: U32
    job_id: U32
    min_ntime: OPTION_U32
    version: U32
    merkle_root: U256


@_message(0x16, True)
@attrs.frozen
class UpdateChannel(Message):
    """The miner's new hash rate or maximum target for a channel (section 5.3.7)."""

    channel_id: U32
    nominal_hash_rate: F32
    maximum_target: U256


@_message(0x17, True)
@attrs.frozen
class UpdateChannelError(Message):
    channel_id: U32
    error_code: STR0_255


@_message(0x18, True)
@attrs.frozen
class CloseChannel(Message):
    channel_id: U32
    reason_code: STR0_255


@attrs.frozen
class _SubmitShares(Message):
    """The fields of SubmitSharesStandard, which SubmitSharesExtended starts with
    ("<SubmitSharesStandard message fields>", section 5.3.12)."""

    channel_id: U32
    sequence_number: U32
    job_id: U32
    nonce: U32
    ntime: U32
    version: U32


@_message(0x1A, True)
@attrs.frozen
class SubmitSharesStandard(_SubmitShares):
    """Shares found on a standard channel (section 5.3.11)."""


@_message(0x1B, True)
@attrs.frozen
class SubmitSharesExtended(_SubmitShares):
    """Shares found on an extended channel: a standard submission's fields, then the
    extranonce the miner rolled (section 5.3.12)."""

    extranonce: B0_32


@_message(0x1F, True)
@attrs.frozen
class NewExtendedMiningJob(Message):
    channel_id: U32
    job_id: U32
    min_ntime: OPTION_U32
    version: U32
    version_rolling_allowed: BOOL
    merkle_path: SEQ0_255_U256
    coinbase_tx_prefix: B0_64K
    coinbase_tx_suffix: B0_64K


@_message(0x1C, True)
@attrs.frozen
class SubmitSharesSuccess(Message):
    channel_id: U32
    last_sequence_number: U32
    new_submits_accepted_count: U32
    new_shares_sum: U64


@_message(0x1D, True)
@attrs.frozen
class SubmitSharesError(Message):
    channel_id: U32
    sequence_number: U32
    error_code: STR0_255


@_message(0x20, True)
@attrs.frozen
class SetNewPrevHash(Message):
    channel_id: U32
    job_id: U32
    prev_hash: U256
    min_ntime: U32
    nbits: U32


@_message(0x21, True)
@attrs.frozen
class SetTarget(Message):
    channel_id: U32
    maximum_target: U256


_STANDARD_SHARE = _FIXED[SubmitSharesStandard.MSG_TYPE]


def encode(message: Message) -> Frame:
    """The frame carrying ``message`` (extension 0, ``channel_msg`` as the spec's table says)."""
    fixed = _FIXED.get(message.MSG_TYPE)
    if fixed is not None:  # one struct call; a value that does not fit is refused the same
        try:
            payload = fixed.pack(*(getattr(message, name) for name, _ in message.FIELDS))
        except struct.error:
            payload = _encode_fields(message)  # raises FrameMalformed naming the value
    else:
        payload = _encode_fields(message)
    return Frame(CHANNEL_MSG_BIT if message.CHANNEL_MSG else 0, message.MSG_TYPE, payload)


def _encode_fields(message: Message) -> bytes:
    return b"".join(wire.write(getattr(message, name)) for name, wire in message.FIELDS)


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
    values = {name: wire.read(reader) for name, wire in cls.FIELDS}
    if reader.at != len(frame.payload):
        raise FrameMalformed(f"{len(frame.payload) - reader.at} bytes after {cls.__name__}")
    return cls(**values)


ShareFields = tuple[int, int, int, int, int, int]
"""A ``SubmitSharesStandard``'s fields in order: ``(channel_id, sequence_number, job_id, nonce,
ntime, version)``."""


def standard_share_fields(frames: Sequence[Frame]) -> list[ShareFields | None]:
    """For each frame, the fields of the ``SubmitSharesStandard`` it carries — what
    :func:`decode` would give, as a tuple — or None for any other frame, which the caller
    decodes with :func:`decode` (so a share frame with another extension, the wrong
    ``channel_msg`` bit or the wrong length is refused there, as always). One ``struct`` call
    a share and no message object: the pool's hot path (SRS-PERF-11)."""
    msg_type, unpack = SubmitSharesStandard.MSG_TYPE, _STANDARD_SHARE.unpack
    size = _STANDARD_SHARE.size
    return [
        unpack(frame.payload)
        if frame.msg_type == msg_type and frame.extension_type == CHANNEL_MSG_BIT
        and len(frame.payload) == size else None
        for frame in frames
    ]  # fmt: skip


def target_bytes(target: int) -> bytes:
    """A target as a ``U256`` field (32 little-endian bytes)."""
    return target.to_bytes(32, "little")


def target_value(raw: bytes) -> int:
    """The integer a ``U256`` target field holds."""
    return int.from_bytes(raw, "little")
