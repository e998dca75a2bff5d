"""The pool's sends never wait on a miner (SRS-POOL-01, SRS-PERF-11, SRS-SEC-16).

The pool pushes new work to every miner from one thread, in turn; one blocking send to a miner
that stops reading its socket would hold that thread — and new work for every other miner —
until the socket's timeout. So each accepted connection writes through an :class:`Outlet`: the
frames, already encrypted in order under the connection's send lock, are offered to the kernel
with one non-blocking send; in the common case the kernel takes them all and the write is done
in the caller's thread, with no hand-off. What it does not take waits in the outlet's *backlog*,
which one :class:`PoolWriter` thread (per listener) flushes as the socket becomes writable
(``selectors``). While a backlog exists, later writes are appended to it, so bytes leave in the
order they were written and frames stay whole.

A miner that does not read is closed (counted and logged as :data:`SLOW_READER` by the
listener), so a backlog is bounded in size and in age: over :data:`MAX_BACKLOG_BYTES`, or not
emptied for :data:`DRAIN_DEADLINE_S` (a miner reading a byte a minute keeps a backlog forever
without ever going over the cap). The socket is shut down, which ends its reader thread; that
thread runs the handler's ``closed`` and frees the slot, as for any other ending.

The socket must be in blocking mode (``settimeout(None)``): ``MSG_DONTWAIT`` makes one send
non-blocking on Linux, but on a socket with a Python timeout, CPython first waits for the
socket to be writable, up to that timeout. The listener bounds reads with ``SO_RCVTIMEO``.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

SLOW_READER = "slow-reader"
"""Why a connection whose backlog went over the cap or did not drain in time was closed."""
MAX_BACKLOG_BYTES = 64 << 10
"""The most a connection may leave unsent (on top of what the kernel holds), 64 KiB. Encrypted,
a standard job and the ``SetNewPrevHash`` activating it are about 170 bytes, an extended job
140 bytes and up with its coinbase, an answer to a share about 60: 64 KiB is some 380 jobs or
1,000 answers; a new block's work on all 64 channels a connection may open is about 11 KiB
(standard) or 15 KiB (extended, on a regtest coinbase). A miner that reads drains that long
before the next block's (tested with 64 channels, 4 KiB kernel buffers and a block every
50 ms); over the cap, the miner is not reading. The cap bounds what attackers make the pool
hold: ``max_connections`` (4,096) × 64 KiB = 256 MiB at most (SRS-SEC-16)."""
DRAIN_DEADLINE_S = 30.0
"""How long a connection's backlog may stay non-empty. An honest miner on a slow link empties
it within seconds (the pool sends it a few hundred bytes per job and answer); one that reads
just enough to stay under the cap is closed after this."""

SlowReader = Callable[[str, str], None]
"""Told ``(peer, detail)`` when a connection is closed as a slow reader."""


class Outlet:
    """One accepted connection's output: non-blocking writes in order, the rest in a backlog
    that the :class:`PoolWriter` flushes."""

    def __init__(self, writer: PoolWriter, sock: socket.socket, peer: str) -> None:
        self.sock = sock
        self.peer = peer
        self._writer = writer
        self._lock = threading.Lock()
        self._backlog = bytearray()
        self._since = 0.0  # when the backlog last became non-empty
        self._closed: str | None = None  # why it no longer writes

    def write(self, data: bytes) -> None:
        """Send ``data`` after everything written before, never blocking: what the kernel does
        not take now is kept for the writer thread. ``BrokenPipeError`` once the connection was
        closed (as a slow reader, say): the caller stops sending to it."""
        with self._lock:
            if self._closed is not None:
                raise BrokenPipeError(errno.EPIPE, f"connection closed: {self._closed}")
            if not self._backlog:
                try:
                    sent = self.sock.send(data, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    sent = 0
                if sent == len(data):
                    return
                self._since = self._writer.clock()
                self._writer.watch(self)
                data = data[sent:]
            self._backlog += data
            unsent = len(self._backlog)
        if unsent > self._writer.max_backlog:
            self._writer.drop(self, f"{unsent} bytes unsent, over the cap")
            raise BrokenPipeError(errno.EPIPE, f"connection closed: {SLOW_READER}")

    def close(self) -> None:
        """Stop writing (the connection is closing); what is unsent is dropped."""
        self.stop("closed")

    def stop(self, reason: str) -> bool:
        """Drop the backlog and stop writing; whether this call stopped it (a first reason
        is kept)."""
        with self._lock:
            stopped, self._closed = self._closed is None, self._closed or reason
            self._backlog = bytearray()
            self._writer.unwatch(self)
        return stopped

    @property
    def stalled_since(self) -> float | None:
        """When the backlog last became non-empty; ``None`` while there is none."""
        with self._lock:
            return self._since if self._backlog else None

    def flush(self) -> None:
        """Send what the kernel takes of the backlog now (the writer thread, when writable)."""
        with self._lock:
            if self._backlog:
                try:
                    del self._backlog[: self.sock.send(self._backlog, socket.MSG_DONTWAIT)]
                except BlockingIOError:
                    return
                except OSError as error:  # reset by the peer: its reader thread sees it too
                    log.debug("stratum connection to %s: write failed: %s", self.peer, error)
                    self._backlog = bytearray()
            if not self._backlog:  # under the lock: a write now would find it unwatched
                self._writer.unwatch(self)


class PoolWriter:
    """The one thread that flushes every backlogged :class:`Outlet` of a listener, and closes
    the connections whose backlog went over ``max_backlog`` bytes or stayed for ``drain_s``."""

    def __init__(
        self,
        slow_reader: SlowReader,
        *,
        max_backlog: int = MAX_BACKLOG_BYTES,
        drain_s: float = DRAIN_DEADLINE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_backlog = max_backlog
        self.clock = clock
        self._drain_s = drain_s
        self._slow_reader = slow_reader
        self._lock = threading.Lock()
        # Registered and unregistered from any thread under _lock, while the writer thread waits
        # in select: epoll and kqueue (the selectors of Linux and BSD/macOS) allow it.
        self._selector = selectors.DefaultSelector()
        self._backlogged: set[Outlet] = set()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.backlogs_started = 0
        """How many writes found the kernel's buffer full and left a backlog (a statistic)."""

    @property
    def backlogged(self) -> int:
        """How many connections hold a backlog now."""
        with self._lock:
            return len(self._backlogged)

    def outlet(self, sock: socket.socket) -> Outlet:
        """The output of a newly accepted connection, to hand to its ``NoiseSocket``."""
        try:
            peer = str(sock.getpeername()[0])
        except (OSError, IndexError, TypeError):
            peer = "(unknown)"
        return Outlet(self, sock, peer)

    def start(self, name: str = "sv2-writer") -> None:
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """End the writer thread (waiting up to ``timeout_s``); unsent backlogs are dropped."""
        with self._lock:
            self._stopping = True
            outlets = list(self._backlogged)
        for outlet in outlets:
            outlet.stop("the pool is stopping")
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                return
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    def watch(self, outlet: Outlet) -> None:
        """Flush ``outlet`` whenever its socket is writable (it has a backlog now)."""
        with self._lock:
            if self._stopping:
                raise BrokenPipeError(errno.EPIPE, "the pool is stopping")
            if outlet in self._backlogged:
                return
            self._selector.register(outlet.sock, selectors.EVENT_WRITE, outlet)
            self._backlogged.add(outlet)
            self.backlogs_started += 1
        self._wake()  # the nearest drain deadline may be this one

    def unwatch(self, outlet: Outlet) -> None:
        """Stop flushing ``outlet`` (its backlog is empty, or it is closing: call before the
        socket is closed, so the selector never holds a closed descriptor)."""
        with self._lock:
            if outlet not in self._backlogged:
                return
            self._backlogged.discard(outlet)
            with contextlib.suppress(KeyError, ValueError, OSError):
                self._selector.unregister(outlet.sock)

    def drop(self, outlet: Outlet, detail: str) -> None:
        """Close a connection that does not read: its socket is reset, which ends its reader
        thread (that thread runs the handler's ``closed`` and frees the slot)."""
        if not outlet.stop(SLOW_READER):
            return
        with contextlib.suppress(OSError):
            # Linger 0: closing sends a reset and frees what the kernel still holds for it.
            outlet.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            outlet.sock.shutdown(socket.SHUT_RDWR)
        self._slow_reader(outlet.peer, detail)

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def _run(self) -> None:
        while not self._stopping:
            try:
                self._turn()
            except Exception:  # one connection's surprise must not stop every connection's writes
                log.exception("pool writer: a turn failed")

    def _turn(self) -> None:
        events = self._selector.select(self._timeout())
        if self._stopping:
            return
        for key, _ in events:
            if key.data is None:
                with contextlib.suppress(OSError):
                    while self._wake_r.recv(4096):
                        pass
            else:
                key.data.flush()
        self._drop_stalled()

    def _timeout(self) -> float | None:
        """Seconds until the oldest backlog's drain deadline; ``None`` while there is none."""
        with self._lock:
            outlets = list(self._backlogged)
        since = [s for s in (o.stalled_since for o in outlets) if s is not None]
        if not since:
            return None
        return max(0.0, min(since) + self._drain_s - self.clock())

    def _drop_stalled(self) -> None:
        with self._lock:
            outlets = list(self._backlogged)
        now = self.clock()
        for outlet in outlets:
            since = outlet.stalled_since
            if since is not None and now - since >= self._drain_s:
                self.drop(outlet, f"its backlog did not drain in {self._drain_s:g} s")
