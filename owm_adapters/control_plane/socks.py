"""Control-plane traffic through a SOCKS5 proxy, typically Tor at 127.0.0.1:9050 (SRS-NET-02).

gRPC's C core cannot dial through SOCKS5 (its ``grpc.http_proxy`` option speaks HTTP CONNECT
only), so :class:`Socks5Forwarder` listens on an ephemeral loopback port and carries each
connection accepted there through the proxy (RFC 1928 ``CONNECT``, no authentication, the
host name resolved by the proxy — required for ``.onion`` addresses) to the coordinator. The
gRPC channel dials the forwarder. Only the control plane uses this route: FL uploads and weight
downloads refuse proxies (:mod:`owm_adapters.node.weights`, SRS-NET-04).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import threading

from owm_core.nodes.control_plane import ControlPlaneUnavailable

log = logging.getLogger(__name__)

_REPLIES = {
    1: "general SOCKS server failure",
    2: "connection not allowed by ruleset",
    3: "network unreachable",
    4: "host unreachable",
    5: "connection refused",
    6: "TTL expired",
    7: "command not supported",
    8: "address type not supported",
}


def split_host_port(address: str, what: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` allowed) as a pair; ControlPlaneUnavailable if malformed."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ControlPlaneUnavailable(f"{what} {address!r} is not host:port")
    return host.strip("[]"), int(port)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("the SOCKS5 proxy closed the connection")
        data += chunk
    return data


def socks5_connect(proxy: str, host: str, port: int, timeout_s: float = 30.0) -> socket.socket:
    """A TCP connection to ``host:port`` through the SOCKS5 proxy at ``proxy`` (``host:port``).

    Raises ControlPlaneUnavailable with the proxy's reason when it cannot connect.
    """
    proxy_host, proxy_port = split_host_port(proxy, "socks5_proxy")
    try:
        sock = socket.create_connection((proxy_host, proxy_port), timeout=timeout_s)
    except OSError as exc:
        raise ControlPlaneUnavailable(f"SOCKS5 proxy {proxy} is unreachable: {exc}") from None
    try:
        sock.sendall(b"\x05\x01\x00")
        version, method = _recv_exact(sock, 2)
        if version != 5 or method != 0:
            raise ConnectionError("the proxy wants authentication, which is not supported")
        name = host.encode("idna")
        sock.sendall(b"\x05\x01\x00\x03" + bytes([len(name)]) + name + struct.pack(">H", port))
        version, reply, _, address_type = _recv_exact(sock, 4)
        if version != 5 or reply != 0:
            raise ConnectionError(_REPLIES.get(reply, f"reply code {reply}"))
        skip = {1: 4, 4: 16}.get(address_type)
        if skip is None:
            skip = _recv_exact(sock, 1)[0]
        _recv_exact(sock, skip + 2)
    except (OSError, ConnectionError, ValueError) as exc:
        sock.close()
        raise ControlPlaneUnavailable(
            f"SOCKS5 proxy {proxy} could not connect to {host}:{port}: {exc}"
        ) from None
    sock.settimeout(None)
    return sock


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while True:
            data = source.recv(65536)
            if not data:
                break
            sink.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


class Socks5Forwarder:
    """Listens on ``127.0.0.1:<ephemeral>`` and tunnels each connection to ``target`` through
    the SOCKS5 ``proxy`` (module docstring)."""

    def __init__(self, proxy: str, target: str) -> None:
        split_host_port(proxy, "socks5_proxy")
        self.proxy = proxy
        self.target_host, self.target_port = split_host_port(target, "coordinator url")
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="owm-socks5", daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        """Where the gRPC channel should dial (``127.0.0.1:port``)."""
        return f"127.0.0.1:{self._listener.getsockname()[1]}"

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socks5_connect(self.proxy, self.target_host, self.target_port)
        except ControlPlaneUnavailable as exc:
            log.warning("%s", exc.message)
            client.close()
            return
        back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
        back.start()
        _pump(client, upstream)
        back.join()
        client.close()
        upstream.close()

    def close(self) -> None:
        """Stop accepting; open tunnels end with their connections."""
        self._closed.set()
        with contextlib.suppress(OSError):
            self._listener.close()
