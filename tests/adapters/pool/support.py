"""Shared pieces of the pool adapter tests: a certified static key and a connected miner."""

from __future__ import annotations

import os
import socket
import time

from owm_adapters.pool.connection import NoiseSocket, connect
from owm_core.pool import noise, secp256k1

AUTHORITY_SECRET = b"\x07" * 32
AUTHORITY = secp256k1.xonly_public_key(AUTHORITY_SECRET)


def static_key() -> noise.StaticKey:
    secret = os.urandom(32)
    ellswift = secp256k1.ellswift_create(secret, os.urandom(32))
    now = int(time.time())
    certificate = noise.sign_certificate(
        AUTHORITY_SECRET, ellswift, now - 60, now + 3600, os.urandom(32)
    )
    return noise.StaticKey(secret, ellswift, certificate)


def dial(
    address: tuple[str, int], authority: bytes = AUTHORITY, source: str | None = None
) -> NoiseSocket:
    """A miner's connection after the handshake, from the loopback address ``source`` if given
    (127.0.0.2, …: another address to the pool's per-address cap)."""
    sock = socket.create_connection(
        address, timeout=5, source_address=None if source is None else (source, 0)
    )
    connection, _static = connect(
        sock, authority, os.urandom, int(time.time()), max_payload=1 << 20
    )
    return connection


def closed_by_peer(sock: socket.socket) -> bool:
    """True once the peer has closed ``sock``; a socket left open raises ``TimeoutError``."""
    try:
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        return True
    return True
