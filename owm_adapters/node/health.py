"""The node's local health endpoints: ``GET http://127.0.0.1:8080/health`` (SRS-NODE-08) and
``/ready``.

A stdlib ``ThreadingHTTPServer`` bound to the loopback address only — the host is not
configurable, only the port — answering ``/health`` with the JSON the daemon's ``report``
callable returns (state, coordinator connectivity, tier, current tasks, stake). HTTP 200 while
the daemon is serving, 503 while it is starting, draining or disconnected, so that process
supervisors can probe it. ``/metrics`` answers the Prometheus text format that ``metrics``
returns (``owm_adapters.node.metrics``; 404 when there is none). ``/ready`` answers the
daemon's readiness probes (:meth:`~owm_adapters.node.daemon.NodeDaemon.readiness_probes`, each
bounded by a timeout): 200 ``{"status": "ready", "parts": {...}}`` when all are ``ok``, else
503 with ``"status": "not_ready"`` and the ``failing`` parts named. Every other path is 404.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from owm_adapters.probes import Readiness, failing

LOOPBACK = "127.0.0.1"
HEALTHY_STATES = frozenset({"serving"})
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class HealthServer:
    """Serves ``report()`` on ``127.0.0.1:port`` (port 0: a free one) from a daemon thread."""

    def __init__(
        self,
        port: int,
        report: Callable[[], dict[str, Any]],
        metrics: Callable[[], bytes] | None = None,
        readiness: Readiness | None = None,
    ) -> None:
        self._report = report
        self._metrics = metrics
        self._readiness = readiness or Readiness({})
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics" and outer._metrics is not None:
                    self._send_bytes(200, outer._metrics(), METRICS_CONTENT_TYPE)
                    return
                if path == "/ready":
                    self._send(*outer._ready())
                    return
                if path != "/health":
                    self._send(404, {"error": "not found; try /health, /ready or /metrics"})
                    return
                body = outer._report()
                self._send(200 if body.get("state") in HEALTHY_STATES else 503, body)

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body, sort_keys=True).encode("utf-8")
                self._send_bytes(status, data, "application/json")

            def _send_bytes(self, status: int, data: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((LOOPBACK, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="owm-node-health", daemon=True
        )

    def _ready(self) -> tuple[int, dict[str, Any]]:
        parts = self._readiness.check()
        down = failing(parts)
        if not down:
            return 200, {"status": "ready", "parts": parts}
        return 503, {"status": "not_ready", "failing": down, "parts": parts}

    @property
    def port(self) -> int:
        """The bound port."""
        return int(self._server.server_address[1])

    @property
    def host(self) -> str:
        """The bound address (always 127.0.0.1)."""
        return str(self._server.server_address[0])

    def start(self) -> None:
        """Start answering."""
        self._thread.start()

    def close(self) -> None:
        """Stop answering and release the port."""
        self._server.shutdown()
        self._server.server_close()
