"""The pool's TCP listener: a Noise handshake per connection, then frames to a handler
(SRS-POOL-01, SRS-SEC-16).

One thread per connection reads frames and hands them to the connection's
:class:`FrameHandler` (the mining protocol, :mod:`owm_adapters.pool.mining`). Anything that is
not encrypted Stratum V2 — a Stratum V1 JSON line, plaintext V2 frames, a bad MAC, a truncated
or oversized frame, a message the protocol refuses — closes that connection, is logged with its
reason code and counted in :attr:`PoolServer.refusals`; the listener and the other miners carry
on.
"""

from __future__ import annotations

import collections
import logging
import os
import socket
import threading
from collections.abc import Callable, Sequence
from typing import Protocol

import attrs

from owm_adapters.pool.connection import ConnectionClosed, Entropy, NoiseSocket, accept
from owm_core.errors import DomainError
from owm_core.pool import noise
from owm_core.pool.sv2_frames import Frame

log = logging.getLogger(__name__)

DEFAULT_MAX_PAYLOAD = 65_535
"""No message the pool receives is larger; a declared length above this closes the connection."""


class FrameHandler(Protocol):
    """One connection's protocol: called with the frames received together (in order), then
    once when the connection closes."""

    def on_frames(self, frames: Sequence[Frame]) -> None: ...

    def closed(self) -> None: ...


@attrs.define(eq=False)
class PoolServer:
    """Accepts miners on a TCP port; each connection gets a handler from ``handlers``."""

    _static: noise.StaticKey
    _handlers: Callable[[NoiseSocket], FrameHandler]
    _entropy: Entropy = attrs.field(default=os.urandom, kw_only=True)
    _handshake_timeout_s: float = attrs.field(default=10.0, kw_only=True)
    _idle_timeout_s: float = attrs.field(default=600.0, kw_only=True)
    _max_payload: int = attrs.field(default=DEFAULT_MAX_PAYLOAD, kw_only=True)
    _listener: socket.socket | None = attrs.field(init=False, default=None)
    _threads: list[threading.Thread] = attrs.field(init=False, factory=list)
    _stopping: threading.Event = attrs.field(init=False, factory=threading.Event)
    refusals: collections.Counter[str] = attrs.field(init=False, factory=collections.Counter)
    _lock: threading.Lock = attrs.field(init=False, factory=threading.Lock)

    def start(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        """Listen on ``host:port`` (0: any free port); the address actually bound."""
        listener = socket.create_server((host, port))
        self._listener = listener
        thread = threading.Thread(target=self._accept_loop, name="sv2-accept", daemon=True)
        thread.start()
        self._threads.append(thread)
        address = listener.getsockname()
        return address[0], address[1]

    def stop(self) -> None:
        """Stop listening; open connections end when their sockets close."""
        self._stopping.set()
        if self._listener is not None:
            self._listener.close()

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                sock, peer = self._listener.accept()
            except OSError:
                return
            thread = threading.Thread(
                target=self._serve, args=(sock, peer), name="sv2-conn", daemon=True
            )
            thread.start()

    def _refuse(self, peer: object, reason: str, detail: str) -> None:
        with self._lock:
            self.refusals[reason] += 1
        log.info("stratum connection from %s closed: %s (%s)", peer, reason, detail)

    def _serve(self, sock: socket.socket, peer: object) -> None:
        try:
            connection = accept(
                sock,
                self._static,
                self._entropy,
                timeout_s=self._handshake_timeout_s,
                max_payload=self._max_payload,
            )
        except DomainError as error:
            self._refuse(peer, error.code, error.message)
            sock.close()
            return
        except (ConnectionClosed, OSError) as error:
            self._refuse(peer, "handshake-incomplete", str(error))
            sock.close()
            return
        sock.settimeout(self._idle_timeout_s)
        handler = self._handlers(connection)
        try:
            while True:
                handler.on_frames(connection.receive_batch())
        except DomainError as error:
            self._refuse(peer, error.code, error.message)
        except (ConnectionClosed, OSError) as error:
            log.debug("stratum connection from %s ended: %s", peer, error)
        finally:
            handler.closed()
            connection.close()
