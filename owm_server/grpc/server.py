"""The coordinator's gRPC server: one ``grpc.server`` serving the clearnet and onion ports.

Both listeners are ports of one ``grpc.server`` instance (SRS-COORD-08: two
``add_secure_port`` calls, one thread pool, one set of limits, one shutdown). A request's
transport decides its registration rate-limit key (SRS-NET-07). ``grpc.server`` cannot tell a
handler which local port a call arrived on, but Tor delivers every onion connection from the
loopback address to the local-only onion port, so with an onion port configured a call from a
loopback peer counts as an onion call (:func:`~owm_server.grpc.servicer.transport_of`): its
registrations and heartbeat streams are limited per node key, never per IP. A clearnet client
on the coordinator's own machine is counted the same way — per-IP limits mean nothing for
peers that all share 127.0.0.1 anyway.

Both listeners speak mTLS only (SRS-SEC-01): the coordinator presents its pinned certificate and
requires a client certificate from the node issuer (``control_plane.tls``); there is no plaintext
port. Who the client is comes from the identity binding in its certificate, which the servicer
checks on every call against the key the request speaks for.

Both also serve the standard gRPC health service (``grpc.health.v1.Health``, from
``grpcio-health-checking``), over the same mTLS: ``SERVING`` for the whole server (``""``) and
for :data:`SERVICE_NAME` once :meth:`CoordinatorServer.start` returns, ``NOT_SERVING`` from
the moment :meth:`CoordinatorServer.stop` begins, so load balancers drain it before it closes.
"""

from __future__ import annotations

from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from owm_adapters.bootstrap.settings import ConfigError
from owm_adapters.control_plane.grpc_gen.owm.coordinator.v1 import coordinator_pb2_grpc as pb_grpc
from owm_adapters.control_plane.tls import PeerIdentities, TlsCredentials, server_credentials
from owm_adapters.services.coordinator.service import CoordinatorService
from owm_adapters.services.payouts import NodeInvoiceDesk
from owm_core.access.ratelimit import Transport
from owm_server.grpc.limits import GrpcLimits, StreamLimiter
from owm_server.grpc.servicer import CoordinatorServicer

DEFAULT_MAX_WORKERS = 64
"""Threads serving RPCs; each open stream holds one for its lifetime (capped: see limits)."""
SERVICE_NAME = "owm.coordinator.v1.Coordinator"
"""The service name the gRPC health service reports on (besides ``""``, the whole server)."""


class CoordinatorServer:
    """Serves a :class:`CoordinatorService` over mTLS gRPC on ``listen`` (and ``onion_listen``),
    presenting the coordinator's certificate ``tls``; ``rpc_metrics`` (the interceptor of
    ``owm_server.grpc.metrics``) counts and times every RPC."""

    def __init__(
        self,
        service: CoordinatorService,
        listen: str,
        *,
        tls: TlsCredentials,
        onion_listen: str = "",
        max_workers: int = DEFAULT_MAX_WORKERS,
        invoices: NodeInvoiceDesk | None = None,
        limits: GrpcLimits | None = None,
        rpc_metrics: grpc.ServerInterceptor | None = None,
    ) -> None:
        self.service = service
        self.limits = limits or GrpcLimits()
        self.ports: dict[Transport, int] = {}
        self.tls = tls
        self.health = health.HealthServicer()
        for name in ("", SERVICE_NAME):
            self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        onion = bool(onion_listen)
        self.limiter = StreamLimiter(self.limits, max_workers, onion=onion)
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="owm-rpc"),
            interceptors=[*([rpc_metrics] if rpc_metrics else []), self.limiter],
            options=[("grpc.so_reuseport", 0), *self.limits.server_options()],
        )
        servicer = CoordinatorServicer(
            service, invoices=invoices, peers=PeerIdentities(), onion=onion,
            liveness_check_s=self.limits.liveness_check_s,
        )
        pb_grpc.add_CoordinatorServicer_to_server(servicer, self.server)  # type: ignore[no-untyped-call]
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        credentials = server_credentials(tls)
        for transport, address in ((Transport.CLEARNET, listen), (Transport.ONION, onion_listen)):
            if not address:
                continue
            try:
                self.ports[transport] = self.server.add_secure_port(address, credentials)
            except RuntimeError:
                raise ConfigError(
                    f"cannot listen on {address!r} for gRPC: address in use or invalid"
                ) from None

    @property
    def port(self) -> int:
        """The bound clearnet port (useful when listening on port 0)."""
        return self.ports[Transport.CLEARNET]

    def start(self) -> None:
        """Accept RPCs (the service runs already: ``Coordinator.running()`` starts it)."""
        self.server.start()
        for name in ("", SERVICE_NAME):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)

    def stop(self, grace_s: float = 10.0) -> None:
        """Graceful stop: refuse new RPCs, end task streams, let in-flight RPCs finish (up to
        ``grace_s``). The service itself is stopped by whoever started it, after this."""
        self.health.enter_graceful_shutdown()  # every service NOT_SERVING; watchers told
        event = self.server.stop(grace_s)
        self.service.market.end_streams()
        event.wait(grace_s + 1)
        self.limiter.stop()

    def wait(self) -> None:
        """Block until the server stops."""
        self.server.wait_for_termination()
