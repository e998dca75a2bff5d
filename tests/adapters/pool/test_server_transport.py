"""The pool's listener speaks only Noise-encrypted Stratum V2 (SRS-SEC-16): V1 JSON, plaintext
V2, tampered and oversized frames close that connection, are counted with a reason, and the
server keeps serving everyone else."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator, Sequence

import pytest

from owm_adapters.pool.connection import NoiseSocket
from owm_adapters.pool.server import PoolServer
from owm_core.errors import NoiseFailure
from owm_core.pool import sv2_frames
from owm_core.pool.sv2_frames import Frame
from tests.adapters.pool.support import closed_by_peer, dial, static_key


class Echo:
    authenticated = True  # no login here: the login deadline is tested in test_login_deadline.py

    def __init__(self, connection: NoiseSocket) -> None:
        self.connection = connection

    def on_frames(self, frames: Sequence[Frame]) -> None:
        for frame in frames:
            self.connection.send(frame)

    def closed(self) -> None:
        pass


Served = tuple[PoolServer, tuple[str, int]]


@pytest.fixture
def server() -> Iterator[Served]:
    pool = PoolServer(static_key(), Echo, handshake_timeout_s=2.0, max_payload=70_000)
    address = pool.start()
    yield pool, address
    pool.stop()


def wait_for(pool: PoolServer, reason: str) -> None:
    deadline = time.monotonic() + 5
    while pool.refusals[reason] == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert pool.refusals[reason] >= 1, dict(pool.refusals)


def test_a_miner_completes_the_handshake_and_exchanges_frames_of_every_size(server: Served) -> None:
    _pool, address = server
    miner = dial(address)
    for payload in (b"", b"ciao", b"\x01" * 65_600):
        miner.send(Frame(0x8000, 0x1A, payload))
        assert miner.receive() == Frame(0x8000, 0x1A, payload)


def test_a_stratum_v1_json_line_is_refused(server: Served) -> None:
    pool, address = server
    sock = socket.create_connection(address, timeout=5)
    sock.sendall(json.dumps({"id": 1, "method": "mining.subscribe", "params": []}).encode() + b"\n")
    assert closed_by_peer(sock)
    wait_for(pool, "frame-malformed")


def test_plaintext_stratum_v2_never_gets_an_answer_and_the_connection_is_closed(
    server: Served,
) -> None:
    pool, address = server
    sock = socket.create_connection(address, timeout=5)
    setup = Frame(
        0, 0x00, bytes([0]) + b"\x02\x00\x02\x00" + b"\x00" * 4 + b"\x09localhost" + b"\x00" * 60
    )
    sock.sendall(setup.header() + setup.payload)
    received = sock.recv(4096)
    assert len(received) == 234, "the pool only ever answers with handshake act 2"
    sock.sendall(b"\x00" * 30)
    assert closed_by_peer(sock)
    wait_for(pool, "noise-failure")


def test_a_tampered_frame_closes_that_connection_only(server: Served) -> None:
    pool, address = server
    victim, bystander = dial(address), dial(address)
    wire = bytearray(sv2_frames.encrypt_frame(victim.transport.send, Frame(0, 1, b"share")))
    wire[-1] ^= 1
    victim.sock.sendall(bytes(wire))
    assert closed_by_peer(victim.sock)
    wait_for(pool, "noise-failure")
    bystander.send(Frame(0, 2, b"still here"))
    assert bystander.receive().payload == b"still here"


def test_a_frame_declaring_an_oversized_payload_is_refused_before_it_is_read(
    server: Served,
) -> None:
    pool, address = server
    miner = dial(address)
    miner.sock.sendall(
        miner.transport.send.encrypt_with_ad(b"", sv2_frames.encode_header(0, 1, 2**24 - 1))
    )
    assert closed_by_peer(miner.sock)
    wait_for(pool, "frame-malformed")


def test_a_truncated_frame_then_a_hang_up_leaves_the_server_serving(server: Served) -> None:
    _pool, address = server
    miner = dial(address)
    wire = sv2_frames.encrypt_frame(miner.transport.send, Frame(0, 1, b"x" * 100))
    miner.sock.sendall(wire[:50])
    miner.close()
    other = dial(address)
    other.send(Frame(0, 3, b"ok"))
    assert other.receive().payload == b"ok"


def test_a_miner_expecting_another_authority_refuses_the_pool(server: Served) -> None:
    _pool, address = server
    with pytest.raises(NoiseFailure, match="expected authority"):
        dial(address, authority=b"\x02" + b"\x11" * 31)
