"""Control-plane traffic through a SOCKS5 proxy, typically Tor at 127.0.0.1:9050 (SRS-NET-02).

gRPC's C core cannot dial through SOCKS5 (its ``grpc.http_proxy`` option speaks HTTP CONNECT
only), so :class:`Socks5Forwarder` listens on an ephemeral loopback port and carries each
connection accepted there through the proxy (RFC 1928 ``CONNECT`` through ``python-socks``,
the host name resolved by the proxy — required for ``.onion`` addresses) to the coordinator. The
gRPC channel dials the forwarder. Only the control plane uses this route: FL uploads and weight
downloads refuse proxies (:mod:`owm_adapters.node.weights`, SRS-NET-04).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading

from python_socks import ProxyConnectionError, ProxyError, ProxyTimeoutError, ProxyType
from python_socks.sync import Proxy

from owm_core.nodes.control_plane import ControlPlaneUnavailable

log = logging.getLogger(__name__)

def split_host_port(address: str, what: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` allowed) as a pair; ControlPlaneUnavailable if malformed."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ControlPlaneUnavailable(f"{what} {address!r} is not host:port")
    return host.strip("[]"), int(port)


def socks5_connect(proxy: str, host: str, port: int, timeout_s: float = 30.0) -> socket.socket:
    """A TCP connection to ``host:port`` through the SOCKS5 proxy at ``proxy`` (``host:port``),
    the name resolved by the proxy (``rdns``: required for ``.onion``), with ``python-socks``.

    Raises ControlPlaneUnavailable with the proxy's reason when it cannot connect.
    """
    proxy_host, proxy_port = split_host_port(proxy, "socks5_proxy")
    tunnel = Proxy(ProxyType.SOCKS5, proxy_host, proxy_port, rdns=True)
    try:
        sock = tunnel.connect(dest_host=host, dest_port=port, timeout=timeout_s)
    except ProxyConnectionError as exc:
        raise ControlPlaneUnavailable(f"SOCKS5 proxy {proxy} is unreachable: {exc}") from None
    except (ProxyError, ProxyTimeoutError, OSError, ValueError) as exc:
        reason = str(exc) or type(exc).__name__
        raise ControlPlaneUnavailable(
            f"SOCKS5 proxy {proxy} could not connect to {host}:{port}: {reason.lower()}"
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
