"""The node's local health endpoint: ``GET http://127.0.0.1:8080/health`` (SRS-NODE-08).

A stdlib ``ThreadingHTTPServer`` bound to the loopback address only — the host is not
configurable, only the port — answering ``/health`` with the JSON the daemon's ``report``
callable returns (state, coordinator connectivity, tier, current tasks, stake). HTTP 200 while
the daemon is serving, 503 while it is starting, draining or disconnected, so that process
supervisors can probe it. Every other path is 404.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

LOOPBACK = "127.0.0.1"
HEALTHY_STATES = frozenset({"serving"})


class HealthServer:
    """Serves ``report()`` on ``127.0.0.1:port`` (port 0: a free one) from a daemon thread."""

    def __init__(self, port: int, report: Callable[[], dict[str, Any]]) -> None:
        self._report = report
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] != "/health":
                    self._send(404, {"error": "not found; try /health"})
                    return
                body = outer._report()
                self._send(200 if body.get("state") in HEALTHY_STATES else 503, body)

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body, sort_keys=True).encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
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
