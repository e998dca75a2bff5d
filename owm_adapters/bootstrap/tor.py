"""The coordinator's onion service of ``[tor]`` (SRS-COORD-07/08/09): where the gRPC server's
local-only onion port listens, and the :class:`~owm_adapters.tor.onion.OnionService` that
publishes it."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from owm_adapters.bootstrap.settings import ConfigError, CoordinatorSettings
from owm_adapters.tor.onion import OnionService

DEFAULT_ONION_LISTEN = "127.0.0.1:9002"


def onion_listen_of(settings: CoordinatorSettings) -> str:
    """``[coordinator] onion_listen``, ``127.0.0.1:9002`` when ``[tor]`` is enabled without it;
    ConfigError for a non-loopback address with Tor on (the port must be local-only, or its
    per-node-key limits would apply to strangers: SRS-COORD-08, SRS-NET-07)."""
    listen = settings.coordinator.onion_listen
    if not settings.tor.enabled:
        return listen
    listen = listen or DEFAULT_ONION_LISTEN
    host = listen.rpartition(":")[0].strip("[]")
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise ConfigError(
            f"coordinator.onion_listen: {listen!r} must be a loopback address (local-only, "
            "SRS-COORD-08)"
        )
    return listen


def onion_service_of(settings: CoordinatorSettings, data_dir: Path) -> OnionService | None:
    """The onion service forwarding to ``onion_listen``'s host (its ``start`` takes the port
    the gRPC server bound); None when ``[tor] enabled`` is off."""
    tor = settings.tor
    if not tor.enabled:
        return None
    if not 1 <= tor.virtual_port <= 65535:
        raise ConfigError("tor.virtual_port: out of range")
    host = onion_listen_of(settings).rpartition(":")[0]
    hidden = Path(tor.hidden_service_dir).expanduser() if tor.hidden_service_dir \
        else data_dir / "tor" / "hidden_service"
    return OnionService(
        hidden, host, virtual_port=tor.virtual_port,
        control_socket=tor.control_socket, control_port=tor.control_port, launch=tor.launch,
        tor_binary=tor.tor_binary, data_dir=data_dir / "tor" / "daemon",
        disable_network=tor.disable_network,
    )
