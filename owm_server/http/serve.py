"""Serving the public API with uvicorn beside the gRPC control plane (``owm-coordinator serve``).

:class:`ApiServer` runs one uvicorn server in a background thread of the coordinator process:
``start()`` returns once the socket is bound (``port`` tells which, so ``:0`` works in tests),
``stop(grace_s)`` stops accepting, lets in-flight requests finish for up to ``grace_s`` seconds
and joins the thread. :func:`api_server_for` builds one over the coordinator gRPC serves;
:func:`run_api` is the blocking form for a process that serves only HTTP.

Connection limits (:class:`~owm_server.http.limits.HttpLimits`): a client that opens
connections and never finishes its request headers (slowloris) is dropped after
``header_timeout_s``, one that trickles its body is answered 408 after ``body_timeout_s``,
one address holds at most ``max_connections_per_ip`` connections — uvicorn 0.49 has none of
these, so :class:`~owm_server.http.limits.LimitedHttpProtocol` adds them to its httptools
protocol; idle keep-alive connections close after ``keep_alive_s``; beyond
``max_connections`` open connections uvicorn answers 503 at once. ``X-Forwarded-For`` is
honoured only from the addresses in ``trusted_proxies`` (empty by default: the peer address
is the client), so a client on loopback cannot claim another IP and escape the per-IP
registration limit (SRS-SEC-04, SRS-NET-07).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import uvicorn
from starlette.applications import Starlette

from owm_adapters.bootstrap.api import build_api
from owm_adapters.bootstrap.coordinator import Coordinator
from owm_adapters.services.api import ApiConfig
from owm_adapters.services.queries import KnowledgeSource, QueryConfig
from owm_server.http.app import create_app
from owm_server.http.limits import DEFAULT_LIMITS, HttpLimits, protocol_for
from owm_server.http.metrics import HttpMetrics

DEFAULT_BACKLOG = 4096
"""Room for SRS-PERF-08's 1,000 concurrent clients connecting at once."""

__all__ = ["ApiServer", "HttpLimits", "api_config", "api_server_for", "run_api"]


def api_config(
    app: Starlette,
    host: str,
    port: int,
    grace_s: int = 10,
    limits: HttpLimits = DEFAULT_LIMITS,
) -> uvicorn.Config:
    """The uvicorn settings the API is served with (also used by bench/api_load.py)."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol_for(limits),
        backlog=DEFAULT_BACKLOG,
        timeout_graceful_shutdown=grace_s,
        timeout_keep_alive=limits.keep_alive_s,
        limit_concurrency=limits.max_connections,
        proxy_headers=bool(limits.trusted_proxies),
        forwarded_allow_ips=list(limits.trusted_proxies),
        log_level="warning",
        access_log=False,
        server_header=False,
        lifespan="off",
    )


class _ThreadServer(uvicorn.Server):
    def install_signal_handlers(self) -> None:
        """Signals belong to the coordinator's main thread, which calls :meth:`ApiServer.stop`."""


class ApiServer:
    """The public API served by uvicorn in a background thread (see the module docstring)."""

    def __init__(
        self, app: Starlette, listen: str, grace_s: int = 10, limits: HttpLimits = DEFAULT_LIMITS
    ) -> None:
        host, _, port = listen.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"listen address must be host:port, got {listen!r}")
        self.host = host.strip("[]")
        self._server = _ThreadServer(api_config(app, self.host, int(port), grace_s, limits))
        self._thread = threading.Thread(target=self._server.run, name="owm-http", daemon=True)

    def start(self, timeout_s: float = 10.0) -> None:
        """Start serving; return once the listening socket is bound (RuntimeError if not)."""
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the HTTP API did not start (is the port in use?)")
            time.sleep(0.01)

    @property
    def port(self) -> int:
        """The bound port (useful with ``:0``)."""
        servers = self._server.servers
        if not servers or not servers[0].sockets:
            raise RuntimeError("the HTTP API is not listening")
        return int(servers[0].sockets[0].getsockname()[1])

    def stop(self, grace_s: float | None = None) -> None:
        """Stop accepting, finish in-flight requests (≤ the configured grace), join the thread."""
        self._server.should_exit = True
        self._thread.join(grace_s if grace_s is not None else None)


def api_server_for(
    coordinator: Coordinator,
    listen: str,
    *,
    data_dir: Path | None = None,
    grace_s: int = 10,
    config: ApiConfig | None = None,
    knowledge: KnowledgeSource | None = None,
    limits: HttpLimits = DEFAULT_LIMITS,
    metrics: HttpMetrics | None = None,
    query_config: QueryConfig | None = None,
) -> ApiServer:
    """The public API over ``coordinator`` (the one gRPC serves), ready to ``start()``.

    This is what ``owm-coordinator serve`` calls: the API and the control plane share the
    coordinator's store, treasury Lightning node, clock and registration use cases; the L402
    secret is kept in ``data_dir``. With a ``knowledge`` base the conglomerate answers queries;
    ``limits`` bound connections and name the trusted proxies; ``metrics`` counts and times
    requests by route.
    """
    api = build_api(
        coordinator, data_dir=data_dir, config=config, knowledge=knowledge,
        query_config=query_config,
    )
    return ApiServer(
        create_app(api.services, metrics, api.readiness), listen, grace_s, limits
    )


def run_api(app: Starlette, host: str, port: int, limits: HttpLimits = DEFAULT_LIMITS) -> None:
    """Serve ``app`` in the foreground until SIGINT/SIGTERM (graceful shutdown)."""
    uvicorn.Server(api_config(app, host, port, limits=limits)).run()
