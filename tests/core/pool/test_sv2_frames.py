"""Encrypted Stratum V2 frames: round trips at every size, the spec's chunking, and refusal of
truncated, tampered or oversized frames (SRS-SEC-16)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from owm_core.errors import FrameMalformed, NoiseFailure
from owm_core.pool import sv2_frames
from owm_core.pool.noise import CipherState
from owm_core.pool.sv2_frames import Frame

KEY = b"\x42" * 32


def pair() -> tuple[CipherState, CipherState]:
    return CipherState(KEY), CipherState(KEY)


def test_the_header_is_six_little_endian_bytes() -> None:
    assert sv2_frames.encode_header(0x8000, 0x1A, 0x010203) == bytes(
        [0x00, 0x80, 0x1A, 0x03, 0x02, 0x01]
    )
    sender, receiver = pair()
    wire = sv2_frames.encrypt_frame(sender, Frame(0x8000, 0x1A, bytes(0x010203)))
    frames, _ = sv2_frames.decrypt_frames(receiver, wire, 1, max_payload=0x010203)
    assert (frames[0].extension_type, frames[0].msg_type, len(frames[0].payload)) == (
        0x8000,
        0x1A,
        0x010203,
    )
    assert Frame(0x8000, 0x1A, b"").channel_msg and not Frame(0, 0, b"").channel_msg


@pytest.mark.parametrize(
    ("plaintext", "ciphertext"),
    [(0, 0), (1, 17), (65_519, 65_535), (65_520, 65_535 + 17), (2 * 65_519, 2 * 65_535)],
)
def test_ciphertext_length_follows_the_specifications_formula(
    plaintext: int, ciphertext: int
) -> None:
    assert sv2_frames.ciphertext_length(plaintext) == ciphertext


@settings(max_examples=60, deadline=None)
@given(
    ext=st.integers(0, 0xFFFF),
    msg_type=st.integers(0, 0xFF),
    payload=st.one_of(
        st.binary(max_size=300), st.integers(65_000, 140_000).map(lambda n: b"\x5a" * n)
    ),
)
def test_any_frame_round_trips_through_encryption(ext: int, msg_type: int, payload: bytes) -> None:
    sender, receiver = pair()
    wire = sv2_frames.encrypt_frame(sender, Frame(ext, msg_type, payload))
    assert len(wire) == 22 + sv2_frames.ciphertext_length(len(payload))
    assert sv2_frames.decrypt_frame(receiver, wire) == Frame(ext, msg_type, payload)


@settings(max_examples=60, deadline=None)
@given(payload=st.binary(min_size=1, max_size=100), data=st.data())
def test_a_tampered_or_truncated_frame_is_refused_with_a_domain_error(
    payload: bytes, data: st.DataObject
) -> None:
    sender, receiver = pair()
    wire = sv2_frames.encrypt_frame(sender, Frame(0, 0x1A, payload))
    if data.draw(st.booleans()):
        position = data.draw(st.integers(0, len(wire) - 1))
        wire = wire[:position] + bytes([wire[position] ^ 0x80]) + wire[position + 1 :]
    else:
        wire = wire[: data.draw(st.integers(0, len(wire) - 1))]
    with pytest.raises((NoiseFailure, FrameMalformed)):
        sv2_frames.decrypt_frame(receiver, wire)


def test_a_declared_payload_over_the_limit_is_refused_before_reading_it() -> None:
    sender, receiver = pair()
    wire = sv2_frames.encrypt_frame(sender, Frame(0, 0x1A, b"x" * 1000))
    with pytest.raises(FrameMalformed, match="exceeds"):
        sv2_frames.decrypt_frame(receiver, wire[:22], max_payload=999)


def test_frames_replayed_out_of_order_do_not_decrypt() -> None:
    sender, receiver = pair()
    first = sv2_frames.encrypt_frame(sender, Frame(0, 1, b"a"))
    second = sv2_frames.encrypt_frame(sender, Frame(0, 1, b"b"))
    with pytest.raises(NoiseFailure):
        sv2_frames.decrypt_frame(receiver, second)
    assert sv2_frames.decrypt_frame(receiver, first).payload == b"a"


@pytest.mark.parametrize("line", [
    b'{"id": 1, "method": "mining.subscribe", "params": []}\n',
    b'{"id":1,"method":"mining.authorize","params":["worker","x"]}\n',
    b'{"id": 7, "method": "mining.subscribe", "params": ["cgminer/4.11.1", null]}\n',
])
def test_a_stratum_v1_json_line_is_refused_as_plaintext(line: bytes) -> None:
    with pytest.raises(FrameMalformed, match="Stratum V1"):
        sv2_frames.refuse_plaintext(line[:64])


@settings(max_examples=300)
@given(
    before=st.binary(max_size=14),
    after=st.binary(min_size=64, max_size=64),
)
def test_a_noise_key_starting_with_a_brace_and_holding_an_early_newline_is_not_taken_for_v1(
    before: bytes, after: bytes
) -> None:
    key = (b"{" + before + b"\n" + after)[:64]  # about one random key in 1,150 looks so
    sv2_frames.refuse_plaintext(key)


@settings(max_examples=60, deadline=None)
@given(
    payloads=st.lists(
        st.one_of(st.binary(max_size=60), st.just(b"\x5a" * 70_000)), min_size=1, max_size=6
    ),
    cuts=st.lists(st.integers(0, 200_000), max_size=4),
    limit=st.integers(1, 8),
)
def test_frames_read_from_a_buffer_as_it_arrives_come_out_whole_in_order_and_once(
    payloads: list[bytes], cuts: list[int], limit: int
) -> None:
    sender, receiver = pair()
    frames = [Frame(0x8000, 0x1A, p) for p in payloads]
    wire = b"".join(sv2_frames.encrypt_frame(sender, f) for f in frames)
    buffer, got, arrived = bytearray(), [], 0
    for end in [*sorted(c % (len(wire) + 1) for c in cuts), len(wire)]:
        buffer += wire[arrived:end]  # what TCP delivered so far
        arrived = max(arrived, end)
        while True:  # a cut frame is left in the buffer, its header decrypted again later
            taken, used = sv2_frames.decrypt_frames(receiver, buffer, limit)
            assert len(taken) <= limit
            got += taken
            del buffer[:used]
            if not taken:
                break
    assert got == frames and buffer == bytearray()


def test_a_tampered_or_oversized_frame_in_the_buffer_is_refused() -> None:
    sender, receiver = pair()
    wire = bytearray(sv2_frames.encrypt_frame(sender, Frame(0, 0x1A, b"x" * 24)))
    wire[-1] ^= 1
    with pytest.raises(NoiseFailure):
        sv2_frames.decrypt_frames(receiver, wire, 8)
    sender, receiver = pair()
    big = sv2_frames.encrypt_frame(sender, Frame(0, 0x1A, b"x" * 1_000))
    with pytest.raises(FrameMalformed, match="exceeds"):  # refused from its header alone
        sv2_frames.decrypt_frames(receiver, big[:22], 8, max_payload=999)


def test_a_session_whose_nonces_are_spent_decrypts_no_more_frames() -> None:
    # 2**64 - 1 is reserved: a receiver there refuses before decrypting, and a frame whose
    # header takes the last nonce cannot have its payload decrypted at the reserved one.
    spent = CipherState(KEY, nonce=2**64 - 1)
    with pytest.raises(NoiseFailure, match="nonce exhausted"):
        sv2_frames.decrypt_frames(spent, bytes(60), 1)
    sender = CipherState(KEY, nonce=2**64 - 2)
    header = sender.encrypt_with_ad(b"", Frame(0x8000, 0x1A, bytes(24)).header())
    last = CipherState(KEY, nonce=2**64 - 2)
    with pytest.raises(NoiseFailure, match="nonce exhausted"):
        sv2_frames.decrypt_frames(last, header + bytes(40), 1)
    assert last.nonce == 2**64 - 1  # the header was kept, as a failed payload always leaves it
