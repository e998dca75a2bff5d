"""Private by default: the web dashboard and the live mining feed (SRS-POOL-09).

``/dashboard`` (page, fragments, script) and the WebSocket ``/v1/mining/dashboard`` show
per-node earnings and payment hashes that the public API hides, so :class:`PrivateRoutes`
answers them according to ``ApiConfig.dashboard_access``:

* ``"loopback"`` (the default): only a peer on the coordinator's own machine (127.0.0.0/8,
  ::1) — an operator's browser there or through an SSH tunnel. The peer is the TCP peer, or
  the client a trusted proxy names (``api_trusted_proxies``); a forged ``X-Forwarded-For``
  changes nothing. A Tor hidden service or a reverse proxy that forwards outsiders to the API
  port from loopback makes them loopback peers: list the proxy in ``api_trusted_proxies``, or
  set ``"off"``.
* ``"off"``: nobody (404).
* ``"public"``: everyone.

Anyone else gets a 403 ``forbidden`` problem document (a WebSocket is closed before it opens).
"""

from __future__ import annotations

import ipaddress

from starlette.types import ASGIApp, Receive, Scope, Send

from owm_server.http.problems import Problem, render

DASHBOARD_ACCESS = ("loopback", "off", "public")
_PRIVATE_PREFIXES = ("/dashboard",)
_PRIVATE_SOCKETS = ("/v1/mining/dashboard",)


def is_private(scope: Scope) -> bool:
    """Whether the request or socket in ``scope`` reaches the dashboard or the live feed."""
    path: str = scope.get("path", "")
    if scope["type"] == "websocket":
        return path in _PRIVATE_SOCKETS
    return scope["type"] == "http" and (
        path in _PRIVATE_PREFIXES or path.startswith(tuple(p + "/" for p in _PRIVATE_PREFIXES))
    )


def is_loopback(scope: Scope) -> bool:
    """Whether the peer of ``scope`` is on this machine (an unknown peer is not)."""
    client = scope.get("client")
    if not client:
        return False
    try:
        return ipaddress.ip_address(client[0]).is_loopback
    except ValueError:
        return False


class PrivateRoutes:
    """ASGI middleware that keeps the dashboard and the live feed private (module docstring)."""

    def __init__(self, app: ASGIApp, access: str) -> None:
        if access not in DASHBOARD_ACCESS:
            raise ValueError(f"dashboard access must be one of {DASHBOARD_ACCESS}, got {access!r}")
        self.app = app
        self.access = access

    def _refusal(self, scope: Scope) -> Problem | None:
        if self.access == "public" or not is_private(scope):
            return None
        if self.access == "off":
            return Problem(404, "not-found", "the dashboard is off on this coordinator")
        if is_loopback(scope):
            return None
        return Problem(
            403, "forbidden", "the dashboard and the live feed are for the coordinator's operator"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = self._refusal(scope)
        if refusal is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": refusal.detail})
        else:
            await render(refusal, scope.get("path"))(scope, receive, send)
