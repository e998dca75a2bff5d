"""OWM's embedded calendar and chain served over real HTTP on 127.0.0.1, for the calendar
client and reference-client tests (what ``[provenance] calendar_listen`` serves)."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import attrs

from owm_adapters.provenance.embedded import EmbeddedProvenance
from owm_server.http.ots_calendar import create_calendar_app
from owm_server.http.serve import ApiServer


@attrs.frozen
class ServedCalendar:
    provenance: EmbeddedProvenance
    url: str
    """``http://127.0.0.1:PORT``: the calendar protocol and the JSON-RPC of its chain."""


@contextmanager
def served_calendar(directory: Path) -> Iterator[ServedCalendar]:
    """The embedded calendar under ``directory``, its URL the served one (flushed by hand)."""
    server: ApiServer | None = None
    provenance: EmbeddedProvenance | None = None
    # The URL goes into pending attestations, so it must be known before the calendar opens:
    # bind a port first, then hand it to uvicorn.
    probe = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    port = probe.server_address[1]
    probe.server_close()
    url = f"http://127.0.0.1:{port}"
    provenance = EmbeddedProvenance(directory, interval_s=3600, url=url, poll_s=3600)
    try:
        server = ApiServer(create_calendar_app(provenance.endpoints()), f"127.0.0.1:{port}")
        server.start()
        yield ServedCalendar(provenance, url)
    finally:
        if server is not None:
            server.stop(1)
        provenance.stop()


@contextmanager
def silent_server(respond: bytes | None) -> Iterator[str]:
    """An HTTP server that answers every request with ``respond`` as a 302 redirect target
    (when given) or never answers at all (None); yields its URL."""
    release = threading.Event()

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *_args: object) -> None:
            return

        def _any(self) -> None:
            if respond is None:
                release.wait(10)
                return
            self.send_response(302)
            self.send_header("Location", respond.decode())
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = _any

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        release.set()
        server.shutdown()
        server.server_close()
