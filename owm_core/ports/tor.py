"""The Tor port: the coordinator's onion service and the node's SOCKS5 route (SRS-NET-01..07)."""

from __future__ import annotations

from typing import Protocol


class OnionService(Protocol):
    """A Tor v3 hidden service publishing a local-only port (SRS-COORD-07/08/09)."""

    def start(self, local_port: int) -> str:
        """Publish ``127.0.0.1:local_port`` and return the service's ``.onion`` hostname."""
        ...

    def stop(self) -> None:
        """Withdraw the service and stop the Tor process this adapter started, if any."""
        ...


class ControlPlaneRoute(Protocol):
    """How a node reaches the coordinator: clearnet, or through a SOCKS5 proxy (SRS-NET-02)."""

    def proxy(self) -> str | None:
        """``host:port`` of the SOCKS5 proxy for control-plane traffic, or None for clearnet."""
        ...
