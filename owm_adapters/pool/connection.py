"""A Noise-encrypted Stratum V2 connection over a TCP socket, either end (SRS-POOL-01, SRS-SEC-16).

:func:`accept` runs the pool's side of the handshake, :func:`connect` the miner's; both return a
:class:`NoiseSocket` that sends and receives whole :class:`~owm_core.pool.sv2_frames.Frame`
objects. The pool's connections (``accept`` given the listener's
:class:`~owm_adapters.pool.writer.PoolWriter`) write without ever blocking, the miner's block
until the kernel takes the frame. Reads are bounded: the whole handshake by a deadline, each
frame by the payload limit checked on its decrypted header before the payload is read. A plain
Stratum V1 JSON line, a bad MAC or a truncated frame raise a domain error and the caller closes
the socket.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Sequence

from owm_adapters.pool.writer import Outlet, PoolWriter
from owm_core.errors import NoiseFailure
from owm_core.pool import noise, sv2_frames
from owm_core.pool.sv2_frames import Frame

Entropy = Callable[[int], bytes]


class ConnectionClosed(Exception):
    """The peer closed the connection (possibly in the middle of a frame)."""


def read_exactly(sock: socket.socket, count: int) -> bytes:
    """``count`` bytes from ``sock``; :class:`ConnectionClosed` if it ends first."""
    chunks: list[bytes] = []
    left = count
    while left:
        chunk = sock.recv(min(left, 1 << 16))
        if not chunk:
            raise ConnectionClosed(
                f"connection closed {count - left} bytes into a {count}-byte read"
            )
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


class NoiseSocket:
    """Frames in and out of one socket, encrypted with the handshake's transport ciphers.

    Sending is serialised by a lock (the pool pushes new jobs from another thread than the one
    answering shares): frames are encrypted in order (the nonces count up) and written under
    it, through ``outlet`` when one is given (the pool's side: never blocking, SRS-POOL-01),
    else with a blocking ``sendall`` (the miner's side). Receiving belongs to one reader
    thread, which reads what the socket has (up to 64 KiB at a time) into a buffer, so frames a
    miner sent together come out of one read (:meth:`receive_batch`).
    """

    def __init__(
        self,
        sock: socket.socket,
        transport: noise.Transport,
        max_payload: int,
        outlet: Outlet | None = None,
    ) -> None:
        self.sock = sock
        self.transport = transport
        self.max_payload = max_payload
        self._send_lock = threading.Lock()
        self._buffer = bytearray()
        self._outlet = outlet
        self._write = sock.sendall if outlet is None else outlet.write

    @property
    def handshake_hash(self) -> bytes:
        """The Noise handshake hash ``h``: the same at both ends, unique to this session."""
        return self.transport.handshake_hash

    def send(self, frame: Frame) -> None:
        self.send_batch([frame])

    def send_batch(self, frames: Sequence[Frame]) -> None:
        """Encrypt ``frames`` in order and send them with one write."""
        with self._send_lock:
            cipher = self.transport.send
            self._write(b"".join(sv2_frames.encrypt_frame(cipher, f) for f in frames))

    def receive(self) -> Frame:
        """The next frame; ``NoiseFailure`` or ``FrameMalformed`` if tampered, too big or cut."""
        return self.receive_batch(1)[0]

    def receive_batch(self, limit: int = 256, deadline: float | None = None) -> list[Frame]:
        """The frames that have arrived whole (at most ``limit``), waiting for the first: what
        the miner sent together, to be answered together. The buffer is decrypted in one pass
        (:func:`~owm_core.pool.sv2_frames.decrypt_frames`, SRS-PERF-11). With ``deadline``
        (``time.monotonic``), ``TimeoutError`` once it passes before a whole frame is in: a peer
        trickling a frame a byte at a time is not waited for past it (SRS-SEC-16)."""
        cipher, buffer = self.transport.receive, self._buffer
        while True:
            frames, used = sv2_frames.decrypt_frames(cipher, buffer, limit, self.max_payload)
            if used:
                del buffer[:used]
            if frames:
                return frames
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"no whole frame by the deadline ({len(buffer)} bytes in)")
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionClosed(f"connection closed {len(buffer)} bytes into a frame")
            buffer += chunk

    def close(self) -> None:
        if self._outlet is not None:
            self._outlet.close()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


def _read_act1(sock: socket.socket, deadline: float) -> bytes:
    """Act 1, read by ``deadline`` (``time.monotonic``) however slowly the peer sends it: a
    peer trickling a byte at a time cannot hold the handshake open past it (SRS-SEC-16)."""
    received = b""
    while len(received) < noise.ACT1_BYTES:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"handshake not done in time ({len(received)} bytes of act 1)")
        sock.settimeout(left)
        chunk = sock.recv(noise.ACT1_BYTES - len(received))
        if not chunk:
            sv2_frames.refuse_plaintext(received + b"\n")
            raise ConnectionClosed("connection closed during the handshake")
        received += chunk
        sv2_frames.refuse_plaintext(received)
    return received


def accept(
    sock: socket.socket,
    static: noise.StaticKey,
    entropy: Entropy,
    *,
    timeout_s: float,
    max_payload: int,
    writer: PoolWriter | None = None,
) -> NoiseSocket:
    """The pool's side of the handshake on a freshly accepted socket, done within ``timeout_s``
    (SRS-SEC-16). With ``writer``, the session's sends go through an outlet of it and never
    block (SRS-POOL-01); the socket is left in blocking mode, as the outlet needs."""
    deadline = time.monotonic() + timeout_s
    act1 = _read_act1(sock, deadline)
    act2, transport = noise.respond(act1, static, _secret(entropy), entropy(32))
    sock.sendall(act2)
    sock.settimeout(None)
    outlet = None if writer is None else writer.outlet(sock)
    return NoiseSocket(sock, transport, max_payload, outlet)


def dial(
    host: str, port: int, authority_xonly: bytes, now: int, *, entropy: Entropy,
    timeout_s: float, max_payload: int,
) -> NoiseSocket:  # fmt: skip
    """A miner's session with the pool at ``host:port``: a clearnet TCP connection (never
    through a proxy, SRS-NET-05) and the handshake (:func:`connect`), within ``timeout_s``;
    later reads wait as long as ``timeout_s`` too (a ``socket`` timeout)."""
    sock = socket.create_connection((host, port), timeout=timeout_s)
    try:
        connection, _static = connect(sock, authority_xonly, entropy, now, max_payload=max_payload)
    except BaseException:
        sock.close()
        raise
    return connection


def connect(
    sock: socket.socket, authority_xonly: bytes, entropy: Entropy, now: int, *, max_payload: int
) -> tuple[NoiseSocket, bytes]:
    """The miner's side of the handshake: the session and the pool's static key, once the pool's
    certificate has verified against ``authority_xonly`` at ``now``."""
    initiator = noise.Initiator(_secret(entropy), entropy(32))
    sock.sendall(initiator.act1())
    act2 = read_exactly(sock, noise.ACT2_BYTES)
    transport, pool_static = initiator.finish(act2, authority_xonly, now)
    return NoiseSocket(sock, transport, max_payload), pool_static


def _secret(entropy: Entropy) -> bytes:
    # A uniformly random 32-byte string is a valid secp256k1 key except with probability ~2^-128;
    # draw again rather than fail on that.
    for _ in range(4):
        secret = entropy(32)
        if 0 < int.from_bytes(secret, "big") < _ORDER:
            return secret
    raise NoiseFailure("the entropy source gave no valid secret key")


_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
