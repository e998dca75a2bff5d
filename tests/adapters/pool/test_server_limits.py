"""The pool's listener bounds what one peer can hold open (SRS-SEC-16, SRS-POOL-01): connections
over the total or the per-address cap are closed at accept, without a thread or a handshake,
counted and logged a bounded number of times; a handshake or an idle miner is closed at its
deadline; every ending frees the connection's slot, so honest miners get in again once an
attacker's sockets close; ``stop`` closes every open connection."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence

import pytest

from owm_adapters.pool.connection import ConnectionClosed, NoiseSocket
from owm_adapters.pool.server import (
    TOO_MANY_CONNECTIONS,
    TOO_MANY_FROM_ADDRESS,
    PoolServer,
    RefusalLog,
    address_key,
)
from owm_core.pool import sv2_frames
from owm_core.pool.sv2_frames import Frame
from tests.adapters.pool.support import closed_by_peer, dial, static_key

Address = tuple[str, int]


class Recorder:
    """Echoes frames and counts how often the server said the connection closed; it asks for
    no login (the login deadline is tested in test_login_deadline.py)."""

    authenticated = True

    def __init__(self, connection: NoiseSocket) -> None:
        self.connection = connection
        self.closed_calls = 0

    def on_frames(self, frames: Sequence[Frame]) -> None:
        for frame in frames:
            self.connection.send(frame)

    def closed(self) -> None:
        self.closed_calls += 1


@pytest.fixture
def servers() -> Iterator[Callable[..., tuple[PoolServer, Address]]]:
    started: list[PoolServer] = []

    def start(**options: object) -> tuple[PoolServer, Address]:
        options.setdefault("handshake_timeout_s", 30.0)
        pool = PoolServer(static_key(), Recorder, **options)  # type: ignore[arg-type]
        started.append(pool)
        return pool, pool.start()

    yield start
    for pool in started:
        pool.stop()


def hold(address: Address, source: str = "127.0.0.1") -> socket.socket:
    """An attacker's connection: open, and silent."""
    return socket.create_connection(address, timeout=5, source_address=(source, 0))


def wait_until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def echoes(miner: NoiseSocket) -> bool:
    miner.send(Frame(0, 1, b"hello"))
    return miner.receive().payload == b"hello"


def conn_threads(*socks: socket.socket) -> list[threading.Thread]:
    """The server's threads serving these client sockets (named after the peer's address)."""
    names = {"sv2-conn {}:{}".format(*s.getsockname()) for s in socks}
    return [t for t in threading.enumerate() if t.name in names]


def test_one_address_holds_at_most_its_cap_and_honest_miners_get_in_once_its_sockets_close(
    servers: Callable[..., tuple[PoolServer, Address]],
) -> None:
    pool, address = servers(max_connections_per_ip=4)
    attackers = [hold(address) for _ in range(4)]
    wait_until(lambda: pool.open_connections == 4)
    extra = hold(address)
    assert closed_by_peer(extra), "over the cap: closed at once, no handshake"
    assert pool.refusals[TOO_MANY_FROM_ADDRESS] == 1 and pool.open_connections == 4
    assert not conn_threads(extra)
    with pytest.raises((ConnectionClosed, OSError)):
        dial(address)  # the attacker's address is full, whoever dials from it
    for sock in attackers:
        sock.close()
    wait_until(lambda: pool.open_connections == 0)
    assert echoes(dial(address))
    assert pool.refusals[TOO_MANY_FROM_ADDRESS] == 2


def test_a_flood_from_one_address_leaves_room_for_miners_at_other_addresses(
    servers: Callable[..., tuple[PoolServer, Address]],
) -> None:
    pool, address = servers(max_connections_per_ip=4)
    held = [hold(address) for _ in range(4)]
    for _ in range(20):
        assert closed_by_peer(hold(address))
    assert pool.refusals[TOO_MANY_FROM_ADDRESS] == 20
    miners = [dial(address, source="127.0.0.2") for _ in range(4)]
    assert all(echoes(miner) for miner in miners)
    assert pool.open_connections == 8 and len(held) == 4


def test_the_total_cap_refuses_every_address_once_reached_and_admits_again_after_a_close(
    servers: Callable[..., tuple[PoolServer, Address]],
) -> None:
    pool, address = servers(max_connections=3)
    held = [hold(address), hold(address), hold(address, source="127.0.0.3")]
    wait_until(lambda: pool.open_connections == 3)
    assert closed_by_peer(hold(address, source="127.0.0.4"))
    assert pool.refusals[TOO_MANY_CONNECTIONS] == 1
    held.pop().close()
    wait_until(lambda: pool.open_connections == 2)
    assert echoes(dial(address, source="127.0.0.4"))


def test_a_flood_of_refused_connections_logs_one_line_per_reason_per_interval(
    servers: Callable[..., tuple[PoolServer, Address]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="owm_adapters.pool")
    now = [1000.0]
    refusal_log = RefusalLog(every_s=10.0, clock=lambda: now[0])
    pool, address = servers(max_connections_per_ip=1, refusal_log=refusal_log)
    held = hold(address)
    wait_until(lambda: pool.open_connections == 1)

    def lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if TOO_MANY_FROM_ADDRESS in r.getMessage()]

    for _ in range(30):
        assert closed_by_peer(hold(address))
    assert pool.refusals[TOO_MANY_FROM_ADDRESS] == 30
    assert len(lines()) == 1 and "1 such since the last line" in lines()[0]
    now[0] += 10.0
    assert closed_by_peer(hold(address))
    assert len(lines()) == 2 and "30 such since the last line" in lines()[1]
    assert all(r.levelno == logging.INFO for r in caplog.records if "refused" in r.getMessage())
    held.close()


def test_a_flood_of_stratum_v1_lines_is_counted_each_time_but_logged_once_per_interval(
    servers: Callable[..., tuple[PoolServer, Address]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="owm_adapters.pool")
    pool, address = servers(refusal_log=RefusalLog(every_s=10.0, clock=lambda: 1000.0))
    v1_line = json.dumps({"id": 1, "method": "mining.subscribe", "params": []}).encode() + b"\n"
    for _ in range(40):
        sock = hold(address)
        sock.sendall(v1_line)
        assert closed_by_peer(sock)
    wait_until(lambda: pool.refusals["frame-malformed"] == 40)
    lines = [r.getMessage() for r in caplog.records if "frame-malformed" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith("stratum connection from 127.0.0.1 refused")


def test_each_reason_gets_its_first_refusal_logged_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="owm_adapters.pool")
    refusals = RefusalLog(every_s=10.0, clock=lambda: 5.0)
    for reason in (TOO_MANY_CONNECTIONS, TOO_MANY_CONNECTIONS, TOO_MANY_FROM_ADDRESS):
        refusals.refused(reason, "192.0.2.1", "full")
    assert [r.getMessage().split(": ")[1].split(" ")[0] for r in caplog.records] == [
        TOO_MANY_CONNECTIONS,
        TOO_MANY_FROM_ADDRESS,
    ]


def test_a_peer_that_sends_nothing_is_closed_at_the_handshake_timeout_and_its_slot_freed(
    servers: Callable[..., tuple[PoolServer, Address]],
) -> None:
    pool, address = servers(handshake_timeout_s=0.5, max_connections_per_ip=1)
    silent = hold(address)
    started = time.monotonic()
    assert closed_by_peer(silent)
    assert time.monotonic() - started < 3
    wait_until(lambda: pool.refusals["handshake-incomplete"] == 1)
    wait_until(lambda: pool.open_connections == 0)
    assert echoes(dial(address))


def test_a_peer_trickling_its_handshake_a_byte_at_a_time_is_closed_at_the_handshake_deadline(
    servers: Callable[..., tuple[PoolServer, Address]],
) -> None:
    pool, address = servers(handshake_timeout_s=1.0)
    slow = hold(address)

    def trickle() -> None:  # 60 of act 1's 64 bytes, one every 0.1 s: 6 s if let run
        for _ in range(60):
            time.sleep(0.1)
            try:
                slow.send(b"\x01")
            except OSError:
                return

    threading.Thread(target=trickle, daemon=True).start()
    started = time.monotonic()
    assert closed_by_peer(slow)
    assert time.monotonic() - started < 3
    wait_until(lambda: pool.refusals["handshake-incomplete"] == 1)


def test_a_miner_silent_after_the_handshake_is_closed_at_the_idle_timeout_and_its_slot_freed(
    servers: Callable[..., tuple[PoolServer, Address]],
) -> None:
    pool, address = servers(idle_timeout_s=0.5, max_connections_per_ip=1)
    idle = dial(address)
    assert closed_by_peer(idle.sock)
    wait_until(lambda: pool.open_connections == 0)
    assert echoes(dial(address))


def _hang_up_mid_handshake(pool: PoolServer, address: Address) -> None:
    sock = hold(address)
    sock.sendall(b"\x01" * 10)
    wait_until(lambda: pool.open_connections == 1)
    sock.close()


def _speak_stratum_v1(_pool: PoolServer, address: Address) -> None:
    sock = hold(address)
    sock.sendall(json.dumps({"id": 1, "method": "mining.subscribe", "params": []}).encode() + b"\n")
    assert closed_by_peer(sock)


def _send_a_tampered_frame(_pool: PoolServer, address: Address) -> None:
    miner = dial(address)
    wire = bytearray(sv2_frames.encrypt_frame(miner.transport.send, Frame(0, 1, b"share")))
    wire[-1] ^= 1
    miner.sock.sendall(bytes(wire))
    assert closed_by_peer(miner.sock)


def _mine_then_hang_up(_pool: PoolServer, address: Address) -> None:
    miner = dial(address)
    assert echoes(miner)
    miner.close()


@pytest.mark.parametrize(
    "end", [_hang_up_mid_handshake, _speak_stratum_v1, _send_a_tampered_frame, _mine_then_hang_up]
)
def test_a_connection_frees_its_slot_however_it_ends(
    servers: Callable[..., tuple[PoolServer, Address]], end: Callable[[PoolServer, Address], None]
) -> None:
    pool, address = servers(max_connections=1, max_connections_per_ip=1)
    for _ in range(3):
        end(pool, address)
        wait_until(lambda: pool.open_connections == 0)
    assert echoes(dial(address))
    assert pool.refusals[TOO_MANY_CONNECTIONS] == pool.refusals[TOO_MANY_FROM_ADDRESS] == 0


def test_stop_closes_every_open_connection_runs_each_handlers_closed_once_and_ends_threads(
    servers: Callable[..., tuple[PoolServer, Address]],
) -> None:
    handlers: list[Recorder] = []

    def recording(connection: NoiseSocket) -> Recorder:
        handlers.append(Recorder(connection))
        return handlers[-1]

    pool = PoolServer(static_key(), recording, handshake_timeout_s=30.0)
    address = pool.start()
    miners = [dial(address) for _ in range(3)]
    assert all(echoes(miner) for miner in miners)
    half_done = hold(address)
    wait_until(lambda: pool.open_connections == 4)
    socks = [*(miner.sock for miner in miners), half_done]
    pool.stop()
    assert [handler.closed_calls for handler in handlers] == [1, 1, 1]
    assert pool.open_connections == 0 and not conn_threads(*socks)
    assert all(closed_by_peer(sock) for sock in socks)
    assert not pool.refusals, "stopping is no refusal"
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(address, timeout=5)


def test_ipv6_peers_are_capped_per_slash_64_and_mapped_ipv4_as_ipv4() -> None:
    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2:bbbb::2")
    assert address_key("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:3::1") != address_key("2001:db8:1:2::1")
    assert address_key("::ffff:192.0.2.7") == "192.0.2.7" == address_key("192.0.2.7")
    assert address_key("fe80::1%eth0") == "fe80::/64"


_FEW_DESCRIPTORS_POOL = """
import logging, os, resource, sys
from owm_adapters.pool.server import PoolServer
from tests.adapters.pool.support import static_key
from tests.adapters.pool.test_server_limits import Recorder

logging.basicConfig(level=logging.INFO, stream=sys.stderr)
pool = PoolServer(static_key(), Recorder, handshake_timeout_s=30.0)
_host, port = pool.start()
_soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 8, hard))
print(port, flush=True)
sys.stdin.read()
pool.stop()
"""


def test_a_pool_out_of_file_descriptors_keeps_listening_and_admits_miners_again() -> None:
    """Caps above the process's open-file limit (``ulimit -n``) must not kill the listener: an
    ``accept`` failing with EMFILE is logged (``accept-failed``) and tried again."""
    server = subprocess.Popen(
        [sys.executable, "-c", _FEW_DESCRIPTORS_POOL],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )  # fmt: skip
    try:
        assert server.stdout is not None and server.stdin is not None
        address = ("127.0.0.1", int(server.stdout.readline()))
        flood = [hold(address) for _ in range(30)]  # the pool has 8 descriptors to spare
        time.sleep(0.5)
        for sock in flood:
            sock.close()
        miner = dial(address)
        assert echoes(miner)
        miner.close()
        server.stdin.close()
        assert server.wait(10) == 0
    finally:
        server.kill()
    assert server.stderr is not None
    log = server.stderr.read()
    assert log.count("accept-failed") == 1 and "Too many open files" in log
