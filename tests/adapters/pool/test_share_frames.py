"""A miner connection reads standard shares straight into their fields (SRS-PERF-11) yet refuses
every malformed share frame exactly as decoding a message does (SRS-POOL-01, SRS-SEC-16)."""

from __future__ import annotations

import struct
import time
from pathlib import Path

import pytest

from owm_adapters.chain.local_chain import LocalChain
from owm_adapters.pool.channels import MinerConnection
from owm_adapters.pool.mining import MiningPool
from owm_adapters.storage.memory import memory_repositories
from owm_core.errors import FrameMalformed
from owm_core.pool import sv2_messages as sv2
from owm_core.pool.sv2_frames import CHANNEL_MSG_BIT, Frame


class Wire:
    """The connection's socket as the handler sees it: what it sent, decoded."""

    handshake_hash = b"\x00" * 32

    def __init__(self) -> None:
        self.sent: list[sv2.Message] = []

    def send(self, frame: Frame) -> None:
        self.send_batch([frame])

    def send_batch(self, frames: list[Frame]) -> None:
        self.sent.extend(sv2.decode(frame) for frame in frames)


def set_up(tmp_path: Path) -> tuple[MinerConnection, Wire]:
    pool = MiningPool(LocalChain(tmp_path / "chain.db"), memory_repositories().shares,
                      lambda: int(time.time()), payout_script=b"\x51")  # fmt: skip
    pool.refresh()
    wire = Wire()
    handler = MinerConnection(wire, pool, nodes=None)  # type: ignore[arg-type]
    handler.on_frames([sv2.encode(sv2.SetupConnection(0, 2, 2, 0, "h", 1, "v", "", "", ""))])
    assert isinstance(wire.sent.pop(), sv2.SetupConnectionSuccess)
    return handler, wire


SHARE = struct.pack("<6I", 7, 1, 1, 0, 0, 0)


@pytest.mark.parametrize(
    ("frame", "refusal"),
    [
        (Frame(CHANNEL_MSG_BIT, 0x1A, SHARE + b"\x00"), "1 bytes after SubmitSharesStandard"),
        (Frame(CHANNEL_MSG_BIT, 0x1A, SHARE[:-1]), "message ends before its fields do"),
        (Frame(0, 0x1A, SHARE), "SubmitSharesStandard with the wrong channel_msg bit"),
        (Frame(CHANNEL_MSG_BIT | 1, 0x1A, SHARE), "extension 0x0001 is not supported"),
    ],
)
def test_a_malformed_share_frame_is_refused_as_decoding_refuses_it_and_nothing_is_judged(
    tmp_path: Path, frame: Frame, refusal: str
) -> None:
    handler, wire = set_up(tmp_path)
    with pytest.raises(FrameMalformed) as raised:
        sv2.decode(frame)
    assert raised.value.message == refusal
    with pytest.raises(FrameMalformed, match=refusal):
        handler.on_frames([sv2.encode(sv2.SubmitSharesStandard(7, 1, 1, 0, 0, 0)), frame])
    assert wire.sent == []  # the well-formed share before it was not judged or answered either


def test_a_well_formed_share_read_the_fast_way_is_answered_as_a_decoded_one(
    tmp_path: Path,
) -> None:
    handler, wire = set_up(tmp_path)
    handler.on_frames([Frame(CHANNEL_MSG_BIT, 0x1A, SHARE)])  # channel 7 was never opened
    assert wire.sent == [sv2.SubmitSharesError(7, 1, "invalid-channel-id")]
