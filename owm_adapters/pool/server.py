"""The pool's TCP listener: a Noise handshake per connection, then frames to a handler
(SRS-POOL-01, SRS-SEC-16).

One thread per connection reads frames and hands them to the connection's
:class:`FrameHandler` (the mining protocol, :mod:`owm_adapters.pool.mining`). Anything that is
not encrypted Stratum V2 — a Stratum V1 JSON line, plaintext V2 frames, a bad MAC, a truncated
or oversized frame, a message the protocol refuses — closes that connection, is counted in
:attr:`PoolServer.refusals` with its reason code and logged through the :class:`RefusalLog`;
the listener and the other miners carry on.

What one peer can hold open is bounded, since the pool listens on the internet (SRS-SEC-16):
at most ``max_connections`` connections in all and ``max_connections_per_ip`` from one address
(:func:`address_key`). A connection over either cap is closed as soon as it is accepted, with
no thread and no handshake, counted as ``too-many-connections`` or
``too-many-connections-from-address`` and logged through a :class:`RefusalLog` (a flood makes a
line per reason every 10 s, not a line per connection). A connection's slot is freed when it
ends, however it ends. The handshake must finish within ``handshake_timeout_s`` (a peer sending
nothing, or one byte at a time, is closed then). After it the peer has ``login_timeout_s`` to
authenticate — its handler says when (:attr:`FrameHandler.authenticated`; for the pool: a
mining channel opened with a login the registry verified, SRS-POOL-02): a connection still
unauthenticated then is closed, however much it sent meanwhile, counted as ``login-timeout``
and logged through the :class:`RefusalLog`, so a slot cannot be held without a login. The
deadline bounds every read and the wait for a whole frame (a frame trickled a byte at a time),
and is checked after every batch of frames. Once authenticated, a connection silent for
``idle_timeout_s`` is closed (``SO_RCVTIMEO``: the socket stays in blocking mode for the
writer). :meth:`PoolServer.stop` closes the listener and every open connection.

Sends to a miner never block the thread sending (SRS-POOL-01, SRS-PERF-11): one
:class:`~owm_adapters.pool.writer.PoolWriter` thread flushes what a socket did not take at
once; a miner that stops reading is closed once ``max_backlog_bytes`` are waiting for it or its
backlog has not drained for ``drain_deadline_s``, counted as ``slow-reader`` and logged through
the same :class:`RefusalLog`, so it cannot stall new work for the others.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import logging
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import attrs

from owm_adapters.pool.connection import ConnectionClosed, Entropy, NoiseSocket, accept
from owm_adapters.pool.log_limits import LogThrottle
from owm_adapters.pool.writer import (
    DRAIN_DEADLINE_S,
    MAX_BACKLOG_BYTES,
    SLOW_READER,
    PoolWriter,
)
from owm_core.access.ratelimit import address_group
from owm_core.errors import DomainError, InvalidValue
from owm_core.pool import noise
from owm_core.pool.sv2_frames import Frame

log = logging.getLogger(__name__)

DEFAULT_MAX_PAYLOAD = 65_535
"""No message the pool receives is larger; a declared length above this closes the connection."""
DEFAULT_MAX_CONNECTIONS = 4_096
DEFAULT_MAX_CONNECTIONS_PER_IP = 64
TOO_MANY_CONNECTIONS = "too-many-connections"
TOO_MANY_FROM_ADDRESS = "too-many-connections-from-address"
NOT_ALLOWED = "address-not-allowed"
ACCEPT_FAILED = "accept-failed"
"""``accept`` itself failed (out of file descriptors, say): the listener waits and tries again."""
ACCEPT_RETRY_S = 0.1
LOGIN_TIMEOUT = "login-timeout"
"""Why a connection not authenticated within ``login_timeout_s`` of its handshake was closed."""
DEFAULT_LOGIN_TIMEOUT_S = 60.0


class FrameHandler(Protocol):
    """One connection's protocol: called with the frames received together (in order), then
    once when the connection closes. ``authenticated`` says whether the peer has proven who it
    is; until it has, the listener's login deadline applies (SRS-SEC-16)."""

    @property
    def authenticated(self) -> bool: ...

    def on_frames(self, frames: Sequence[Frame]) -> None: ...

    def closed(self) -> None: ...


def address_key(host: str) -> str:
    """What the per-address cap counts a peer under (SRS-SEC-16): the address group every
    per-address cap of OWM uses (:func:`~owm_core.access.ratelimit.address_group`: IPv4, or
    the IPv6 /64), or the host as given when it is no IP address."""
    try:
        return address_group(host)
    except InvalidValue:
        return host


@attrs.define(eq=False)
class RefusalLog(LogThrottle):
    """INFO lines for connections refused or closed for a reason (over a cap, a failed
    handshake, a refused frame, no login, not reading), bounded during a flood (SRS-SEC-16): the
    first of each reason is logged at once, later ones at most one line per ``every_s`` seconds
    per reason, with how many there were since that reason's last line. Thread-safe: the
    accept thread, the connections' threads and the writer thread all report to it."""

    def refused(self, reason: str, peer: str, detail: str) -> None:
        message = "stratum connection from %s refused: %s (%s)"
        self.info(log, reason, message, peer, reason, detail)


@attrs.define(eq=False)
class PoolServer:
    """Accepts miners on a TCP port; each connection gets a handler from ``handlers``, within
    the caps on open connections (module docstring)."""

    _static: noise.StaticKey
    _handlers: Callable[[NoiseSocket], FrameHandler]
    _entropy: Entropy = attrs.field(default=os.urandom, kw_only=True)
    _handshake_timeout_s: float = attrs.field(default=10.0, kw_only=True)
    _idle_timeout_s: float = attrs.field(default=600.0, kw_only=True)
    _login_timeout_s: float = attrs.field(
        default=DEFAULT_LOGIN_TIMEOUT_S, kw_only=True, validator=attrs.validators.gt(0)
    )
    _max_payload: int = attrs.field(default=DEFAULT_MAX_PAYLOAD, kw_only=True)
    _max_connections: int = attrs.field(
        default=DEFAULT_MAX_CONNECTIONS, kw_only=True, validator=attrs.validators.ge(1)
    )
    _max_connections_per_ip: int = attrs.field(
        default=DEFAULT_MAX_CONNECTIONS_PER_IP, kw_only=True, validator=attrs.validators.ge(1)
    )
    _refusal_log: RefusalLog = attrs.field(factory=RefusalLog, kw_only=True)
    _max_backlog_bytes: int = attrs.field(
        default=MAX_BACKLOG_BYTES, kw_only=True, validator=attrs.validators.ge(1)
    )
    _drain_deadline_s: float = attrs.field(
        default=DRAIN_DEADLINE_S, kw_only=True, validator=attrs.validators.gt(0)
    )
    #: Whether a peer's address may connect at all (None: any; the login proxy's --allow).
    _allowed: Callable[[str], bool] | None = attrs.field(default=None, kw_only=True)
    _listener: socket.socket | None = attrs.field(init=False, default=None)
    _threads: list[threading.Thread] = attrs.field(init=False, factory=list)
    _stopping: threading.Event = attrs.field(init=False, factory=threading.Event)
    refusals: collections.Counter[str] = attrs.field(init=False, factory=collections.Counter)
    _lock: threading.Lock = attrs.field(init=False, factory=threading.Lock)
    _open: dict[socket.socket, threading.Thread] = attrs.field(init=False, factory=dict)
    _per_address: collections.Counter[str] = attrs.field(init=False, factory=collections.Counter)
    _writer: PoolWriter = attrs.field(init=False)

    @_writer.default
    def _new_writer(self) -> PoolWriter:
        return PoolWriter(
            self._slow_reader, max_backlog=self._max_backlog_bytes, drain_s=self._drain_deadline_s
        )

    @property
    def open_connections(self) -> int:
        """Connections holding a slot now: in the handshake or after it."""
        with self._lock:
            return len(self._open)

    def start(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        """Listen on ``host:port`` (0: any free port); the address actually bound."""
        listener = socket.create_server((host, port))
        self._listener = listener
        address = listener.getsockname()
        self._writer.start(name=f"sv2-writer :{address[1]}")
        thread = threading.Thread(target=self._accept_loop, name="sv2-accept", daemon=True)
        thread.start()
        self._threads.append(thread)
        return address[0], address[1]

    def refused(self) -> dict[str, int]:
        """Connections refused or closed, by reason, since the listener started."""
        with self._lock:
            return dict(self.refusals)

    @property
    def backlogged_connections(self) -> int:
        """Connections with frames the kernel has not taken yet, waiting in their backlog."""
        return self._writer.backlogged

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop listening and close every open connection: each handler's ``closed`` runs once,
        in its connection's thread, and the threads end, the writer's last (waiting up to
        ``timeout_s`` in all)."""
        with self._lock:
            self._stopping.set()
            connections = dict(self._open)
        if self._listener is not None:
            with contextlib.suppress(OSError):  # wakes the accept thread (a close alone does not)
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
        for sock in connections:
            with contextlib.suppress(OSError):  # wakes the connection's thread out of its read
                sock.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + timeout_s
        for thread in (*self._threads, *connections.values()):
            thread.join(max(0.0, deadline - time.monotonic()))
        self._writer.stop(max(0.0, deadline - time.monotonic()))

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while True:
            try:
                sock, peer = self._listener.accept()
            except OSError as error:
                if self._stopping.is_set() or error.errno == errno.EBADF:
                    return
                self._refusal_log.refused(ACCEPT_FAILED, "(unknown)", str(error))
                self._stopping.wait(ACCEPT_RETRY_S)
                continue
            self._admit(sock, peer)

    def _admit(self, sock: socket.socket, peer: tuple[str, int]) -> None:
        """Start ``sock``'s thread, or close it at once when a cap is reached or its address
        is not allowed (SRS-SEC-16)."""
        if self._allowed is not None and not self._allowed(peer[0]):
            self._closed_as(NOT_ALLOWED, peer[0], "not in the networks allowed to connect")
            sock.close()
            return
        key = address_key(peer[0])
        with self._lock:
            refusal = self._over_cap(key)
            if refusal is None:
                thread = threading.Thread(
                    target=self._serve, args=(sock, peer, key), daemon=True,
                    name=f"sv2-conn {peer[0]}:{peer[1]}",
                )  # fmt: skip
                self._open[sock] = thread
                self._per_address[key] += 1
                thread.start()
                return
        if refusal[0]:
            self._closed_as(refusal[0], peer[0], refusal[1])
        sock.close()

    def _over_cap(self, key: str) -> tuple[str, str] | None:
        """The reason and detail of refusing one more connection from ``key``; ``None`` while
        both caps allow it; an empty reason (not counted) once the pool is stopping."""
        if self._stopping.is_set():
            return "", "the pool is stopping"
        if len(self._open) >= self._max_connections:
            return TOO_MANY_CONNECTIONS, f"{len(self._open)} open, the most allowed"
        if self._per_address[key] >= self._max_connections_per_ip:
            return (
                TOO_MANY_FROM_ADDRESS,
                f"{self._per_address[key]} open from {key}, the most allowed",
            )
        return None

    def _slow_reader(self, peer: str, detail: str) -> None:
        """A miner not reading what the pool sends was closed by the writer (SRS-SEC-16)."""
        self._closed_as(SLOW_READER, peer, detail)

    def _closed_as(self, reason: str, peer: str, detail: str) -> None:
        """Count and log why an admitted connection was closed — a failed handshake, a refused
        frame, no login, not reading — through the :class:`RefusalLog`, so a flood of bad
        connections makes a line per reason every few seconds, not one each (SRS-SEC-16);
        nothing once the pool is stopping."""
        if self._stopping.is_set():
            log.debug("stratum connection from %s closed: the pool is stopping", peer)
            return
        with self._lock:
            self.refusals[reason] += 1
        self._refusal_log.refused(reason, peer, detail)

    def _serve(self, sock: socket.socket, peer: tuple[str, int], key: str) -> None:
        try:
            self._converse(sock, peer)
        finally:
            with self._lock:
                del self._open[sock]
                self._per_address[key] -= 1
                if not self._per_address[key]:
                    del self._per_address[key]

    def _converse(self, sock: socket.socket, peer: tuple[str, int]) -> None:
        try:
            connection = accept(
                sock,
                self._static,
                self._entropy,
                timeout_s=self._handshake_timeout_s,
                max_payload=self._max_payload,
                writer=self._writer,
            )
        except DomainError as error:
            self._closed_as(error.code, peer[0], error.message)
            sock.close()
            return
        except (ConnectionClosed, OSError) as error:
            self._closed_as("handshake-incomplete", peer[0], str(error))
            sock.close()
            return
        login_by = time.monotonic() + self._login_timeout_s
        try:
            handler = self._handlers(connection)
        except DomainError as error:  # e.g. a proxy's pool out of reach
            self._closed_as(error.code, peer[0], error.message)
            connection.close()
            return
        try:
            if not self._await_login(connection, handler, login_by):
                self._closed_as(
                    LOGIN_TIMEOUT, peer[0],
                    f"not authenticated within {self._login_timeout_s:g} s of the handshake",
                )  # fmt: skip
                return
            _receive_timeout(sock, self._idle_timeout_s)
            while True:
                handler.on_frames(connection.receive_batch())
        except DomainError as error:
            self._closed_as(error.code, peer[0], error.message)
        except (ConnectionClosed, OSError) as error:
            log.debug("stratum connection from %s ended: %s", peer, error)
        finally:
            handler.closed()
            connection.close()

    def _await_login(self, connection: NoiseSocket, handler: FrameHandler, deadline: float) -> bool:
        """Hand frames to ``handler`` until it is authenticated (``True``) or ``deadline``
        (``time.monotonic``) passes first (``False``), SRS-SEC-16: each read waits at most
        until the deadline, and the deadline is checked after every batch, so a peer that
        keeps sending without logging in is cut off too, and so is one trickling a frame a byte
        at a time. A read timing out on the idle timeout (shorter than what is left to the
        deadline) ends the connection as after the login."""
        while not handler.authenticated:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            wait = min(left, self._idle_timeout_s)
            _receive_timeout(connection.sock, wait)
            try:
                frames = connection.receive_batch(deadline=deadline)
            except TimeoutError:
                return False
            except BlockingIOError:
                if wait < left:
                    raise
                return False
            handler.on_frames(frames)
        return True


def _receive_timeout(sock: socket.socket, timeout_s: float) -> None:
    """Make a read wait at most ``timeout_s`` (then it fails with ``BlockingIOError``) while the
    socket stays in blocking mode, as the writer's non-blocking sends need (a Python timeout
    would make each of them wait for the socket to be writable first). At least 1 ms: a zero
    ``SO_RCVTIMEO`` would mean waiting forever."""
    timeout_s = max(timeout_s, 0.001)
    seconds = int(timeout_s)
    microseconds = int((timeout_s - seconds) * 1_000_000)
    timeval = struct.pack("@ll", seconds, microseconds)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
