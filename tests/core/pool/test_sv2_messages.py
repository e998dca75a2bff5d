"""Stratum V2 mining messages: the spec's byte layouts, round trips of every message, and
strict decoding that refuses anything else without crashing (SRS-POOL-01, SRS-SEC-16)."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from owm_core.errors import FrameMalformed
from owm_core.pool import sv2_messages as sv2
from owm_core.pool.sv2_frames import Frame

u8, u16, u32, u64 = (st.integers(0, 2**b - 1) for b in (8, 16, 32, 64))
u256 = st.binary(min_size=32, max_size=32)
text = st.text(max_size=60)
# nominal_hash_rate is an F32: only values a 32-bit float holds exactly round-trip
STRATEGIES: dict[str, Any] = {
    "protocol": u8, "min_version": u16, "max_version": u16, "flags": u32, "endpoint_port": u16,
    "endpoint_host": text, "vendor": text, "hardware_version": text, "firmware": text,
    "device_id": text, "used_version": u16, "error_code": text, "reason_code": text,
    "request_id": u32, "user_identity": text, "max_target": u256, "channel_id": u32,
    "target": u256, "extranonce_prefix": st.binary(max_size=32), "group_channel_id": u32,
    "job_id": u32, "min_ntime": st.none() | u32, "version": u32, "merkle_root": u256,
    "sequence_number": u32, "nonce": u32, "ntime": u32, "last_sequence_number": u32,
    "new_submits_accepted_count": u32, "new_shares_sum": u64, "prev_hash": u256, "nbits": u32,
    "maximum_target": u256, "nominal_hash_rate": st.sampled_from([0.0, 1.0, 2.0**40]),
    "min_extranonce_size": u16, "extranonce_size": u16, "extranonce": st.binary(max_size=32),
    "version_rolling_allowed": st.booleans(), "merkle_path": st.lists(u256, max_size=4).map(tuple),
    "coinbase_tx_prefix": st.binary(max_size=300), "coinbase_tx_suffix": st.binary(max_size=300),
}  # fmt: skip
MESSAGES = [
    sv2.SetupConnection, sv2.SetupConnectionSuccess, sv2.SetupConnectionError,
    sv2.OpenStandardMiningChannel, sv2.OpenStandardMiningChannelSuccess,
    sv2.OpenMiningChannelError, sv2.NewMiningJob, sv2.CloseChannel, sv2.SubmitSharesStandard,
    sv2.SubmitSharesSuccess, sv2.SubmitSharesError, sv2.SetNewPrevHash, sv2.SetTarget,
    sv2.OpenExtendedMiningChannel, sv2.OpenExtendedMiningChannelSuccess,
    sv2.NewExtendedMiningJob, sv2.SubmitSharesExtended, sv2.UpdateChannel, sv2.UpdateChannelError,
]  # fmt: skip


def message_of(cls: type[sv2.Message]) -> st.SearchStrategy[sv2.Message]:
    fields = {f.name: STRATEGIES[f.name] for f in attrs.fields(cls)}  # type: ignore[arg-type]
    if cls is sv2.SetNewPrevHash:
        fields["min_ntime"] = u32  # a plain U32 here, an OPTION[u32] in NewMiningJob
    return st.builds(cls, **fields)


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(MESSAGES).flatmap(message_of))
def test_every_message_round_trips_through_its_frame(message: sv2.Message) -> None:
    frame = sv2.encode(message)
    assert frame.msg_type == message.MSG_TYPE and frame.channel_msg == message.CHANNEL_MSG
    assert sv2.decode(frame) == message


def test_submit_shares_standard_has_the_specifications_layout() -> None:
    frame = sv2.encode(sv2.SubmitSharesStandard(1, 2, 3, 4, 5, 0x20000000))
    assert frame.header() == bytes([0x00, 0x80, 0x1A, 24, 0, 0])
    assert frame.payload == bytes.fromhex("010000000200000003000000040000000500000000000020")


def test_extended_messages_have_the_specifications_layout() -> None:
    job = sv2.encode(sv2.NewExtendedMiningJob(7, 9, None, 2, True, (b"\xbb" * 32,), b"ab", b"c"))
    assert job.header()[:3] == bytes([0x00, 0x80, 0x1F])
    assert job.payload == (
        bytes.fromhex("07000000" "09000000" "00" "02000000" "01" "01") + b"\xbb" * 32
        + b"\x02\x00ab" + b"\x01\x00c"
    )  # fmt: skip
    submit = sv2.encode(sv2.SubmitSharesExtended(1, 2, 3, 4, 5, 6, b"\xee\xff"))
    assert submit.header()[:3] == bytes([0x00, 0x80, 0x1B])
    assert submit.payload == bytes.fromhex("01000000020000000300000004000000050000000600000002eeff")
    opened = sv2.encode(sv2.OpenExtendedMiningChannelSuccess(1, 2, b"\x00" * 32, 4, b"\x09", 0))
    assert opened.header()[:3] == bytes([0x00, 0x00, 0x14])
    assert opened.payload[40:] == bytes.fromhex("0400" + "0109" + "00000000")


def test_new_mining_job_encodes_an_absent_min_ntime_as_an_empty_option() -> None:
    frame = sv2.encode(sv2.NewMiningJob(7, 9, None, 2, b"\xaa" * 32))
    assert frame.payload == bytes.fromhex("07000000090000000002000000") + b"\xaa" * 32
    with_time = sv2.encode(sv2.NewMiningJob(7, 9, 5, 2, b"\xaa" * 32))
    assert with_time.payload[8:13] == bytes.fromhex("0105000000")


@settings(max_examples=200, deadline=None)
@given(ext=st.sampled_from([0, 0x8000, 1, 0x8001]), msg_type=u8, payload=st.binary(max_size=120))
def test_decoding_arbitrary_bytes_gives_a_message_or_frame_malformed(
    ext: int, msg_type: int, payload: bytes
) -> None:
    try:
        message = sv2.decode(Frame(ext, msg_type, payload))
    except FrameMalformed:
        return
    assert sv2.encode(message) == Frame(ext, msg_type, payload) or isinstance(
        message, sv2.OpenStandardMiningChannel | sv2.OpenExtendedMiningChannel
    )  # (an F32 NaN does not compare equal to itself)


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (Frame(0, 0x1A, bytes(24)), "channel_msg"),
        (Frame(0x8000, 0x1A, bytes(25)), "after"),
        (Frame(0x8000, 0x1A, bytes(23)), "ends before"),
        (Frame(0x8000, 0x1E, bytes(24)), "not supported"),
        (Frame(0x8000, 0x1B, bytes(24)), "ends before"),
        (Frame(0x8000, 0x1F, bytes(13) + b"\x02" + bytes(5)), "BOOL"),
        (Frame(0x8001, 0x1A, bytes(24)), "extension"),
        (Frame(0, 0x11, bytes(40) + b"\x21" + bytes(37)), "at most 32"),
        (Frame(0x8000, 0x15, bytes(8) + b"\x02" + bytes(36)), "OPTION"),
    ],
)
def test_malformed_messages_are_refused_naming_what_is_wrong(frame: Frame, reason: str) -> None:
    with pytest.raises(FrameMalformed, match=reason):
        sv2.decode(frame)


def test_a_value_that_does_not_fit_its_field_is_refused_when_encoding() -> None:
    for bad in (2**32, -1, 1.5, "1"):  # the one-struct-call path refuses what the fields do
        with pytest.raises(FrameMalformed):
            sv2.encode(sv2.SubmitSharesStandard(0, 0, 0, bad, 0, 0))  # type: ignore[arg-type]
    with pytest.raises(FrameMalformed):
        sv2.encode(sv2.SubmitSharesSuccess(1, 2, 3, 2**64))
    with pytest.raises(FrameMalformed):
        sv2.encode(sv2.SetupConnectionError(0, "x" * 256))


share_frames = st.builds(
    Frame,
    st.sampled_from([0x8000, 0x8000, 0, 1, 0x8001, 0xFFFF]),
    st.sampled_from([0x1A, 0x1A, 0x1A, 0x1B, 0x1C, 0x00]) | u8,
    st.binary(min_size=22, max_size=26) | st.binary(max_size=60),
)


@given(frames=st.lists(share_frames, max_size=8))
@settings(max_examples=500)
def test_the_pools_fast_share_read_agrees_with_decode_on_every_frame(frames: list[Frame]) -> None:
    # The pool reads a standard share straight into its fields and decodes every other frame;
    # so a frame the fast read takes must decode to the same share, and one it leaves must be
    # anything but a well-formed SubmitSharesStandard (decode refuses it or gives another
    # message: a wrong length or channel_msg bit is refused there, as always).
    for frame, fields in zip(frames, sv2.standard_share_fields(frames), strict=True):
        try:
            decoded: sv2.Message | None = sv2.decode(frame)
        except FrameMalformed:
            decoded = None
        if fields is None:
            assert not isinstance(decoded, sv2.SubmitSharesStandard)
        else:
            assert decoded == sv2.SubmitSharesStandard(*fields)
