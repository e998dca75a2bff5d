"""Control-plane gRPC through a SOCKS5 proxy (SRS-NET-02), against a tiny local SOCKS5 server."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import struct
import threading

import pytest

from owm_adapters.control_plane.grpc_client import GrpcControlPlane
from owm_adapters.control_plane.socks import socks5_connect
from owm_core.identity import envelopes
from owm_core.identity.envelopes import EnvelopeKind
from owm_core.nodes.control_plane import ControlPlaneUnavailable
from tests.node.conftest import MANIFEST
from tests.reveals import COORDINATOR_KEY_HEX
from tests.tls_support import client_tls


class TinySocks5:
    """RFC 1928 CONNECT without authentication; ``names`` maps host names (e.g. .onion)."""

    def __init__(self, names: dict[str, tuple[str, int]] | None = None, refuse: bool = False):
        self.names = names or {}
        self.refuse = refuse
        self.connects: list[tuple[str, int]] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    @staticmethod
    def _exact(sock: socket.socket, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError
            data += chunk
        return data

    def _serve(self, client: socket.socket) -> None:
        try:
            _, count = self._exact(client, 2)
            self._exact(client, count)
            client.sendall(b"\x05\x00")
            _, command, _, kind = self._exact(client, 4)
            assert command == 1  # CONNECT
            if kind == 3:  # a host name, resolved here (remote resolution: .onion works)
                host = self._exact(client, self._exact(client, 1)[0]).decode()
            else:  # an IP literal (1: IPv4, 4: IPv6), as python-socks sends one
                host = str(ipaddress.ip_address(self._exact(client, {1: 4, 4: 16}[kind])))
            (port,) = struct.unpack(">H", self._exact(client, 2))
            self.connects.append((host, port))
            if self.refuse:
                client.sendall(b"\x05\x05\x00\x01" + bytes(6))
                client.close()
                return
            upstream = socket.create_connection(self.names.get(host, (host, port)))
            client.sendall(b"\x05\x00\x00\x01" + bytes(6))
        except (ConnectionError, OSError, AssertionError):
            client.close()
            return
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.listener.close()


def manifest_envelope(identity) -> bytes:
    import time

    env = envelopes.seal(identity, EnvelopeKind.CAPABILITY_MANIFEST, MANIFEST, os.urandom(16),
                         int(time.time()), audience=COORDINATOR_KEY_HEX)
    return envelopes.to_bytes(env)


def test_registration_reaches_an_onion_coordinator_through_the_socks5_proxy(network):
    onion = "owmcoordinatorxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.onion"
    proxy = TinySocks5({onion: ("127.0.0.1", network.server.port)})
    node = network.node("via-tor")
    plane = GrpcControlPlane(f"{onion}:50051", socks5_proxy=f"127.0.0.1:{proxy.port}",
                             tls=client_tls(node.identity),
                             coordinator_public_key=network.coordinator_key)
    try:
        reply = plane.register(node.identity, manifest_envelope(node.identity), MANIFEST.digest(),
                               node.ln_node_uri, None, node.ln_signer)
        assert reply.stake_status == "active" and plane.via_proxy
        assert (onion, 50051) in proxy.connects
    finally:
        plane.close()
        proxy.close()


def test_a_proxy_that_refuses_the_connection_makes_the_coordinator_unavailable(network):
    proxy = TinySocks5(refuse=True)
    plane = GrpcControlPlane(network.url, socks5_proxy=f"127.0.0.1:{proxy.port}", timeout_s=3,
                             tls=client_tls(), coordinator_public_key=network.coordinator_key)
    try:
        with pytest.raises(ControlPlaneUnavailable):
            plane.stake_status("ab" * 32)
        with pytest.raises(ControlPlaneUnavailable, match="connection refused"):
            socks5_connect(f"127.0.0.1:{proxy.port}", "127.0.0.1", network.server.port)
    finally:
        plane.close()
        proxy.close()


def test_a_proxy_that_is_not_listening_is_reported_by_address():
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    with pytest.raises(ControlPlaneUnavailable, match=f"SOCKS5 proxy 127.0.0.1:{port}"):
        socks5_connect(f"127.0.0.1:{port}", "example.org", 443, timeout_s=2)
