"""The Tor port: the coordinator's onion service (SRS-NET-01..07). The node's SOCKS5 route is
configuration, not a port: ``owm_adapters.control_plane`` dials through it."""

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

