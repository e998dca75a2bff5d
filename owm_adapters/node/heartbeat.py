"""Signed heartbeats, each with a freshly signed capability manifest (SRS-NODE-04)."""

from __future__ import annotations

import logging

from owm_adapters.node.context import NodeContext
from owm_adapters.node.registration import Registration
from owm_core.identity.envelopes import EnvelopeKind, Heartbeat
from owm_core.nodes.control_plane import ControlPlaneRefused, ControlPlaneUnavailable

log = logging.getLogger(__name__)


class Heartbeats:
    """Every ``heartbeat_interval_s`` (60 s) one heartbeat; a forgotten node registers again.

    A heartbeat refused as a rate limit (``retry_after_s``: the coordinator's replay guard was
    full) is logged as deferred, not as a fault: the next heartbeat is its retry.
    """

    def __init__(self, ctx: NodeContext, registration: Registration) -> None:
        self.ctx = ctx
        self.registration = registration
        self._seq = ctx.clock.now() * 1000

    def heartbeat_once(self) -> str | None:
        """Send one signed heartbeat with a freshly signed manifest (SRS-NODE-04)."""
        ctx = self.ctx
        self._seq += 1
        body = Heartbeat(
            node_id=ctx.identity.node_id, seq=self._seq, manifest_digest=ctx.manifest.digest()
        )
        now = ctx.clock.now()
        signed = ctx.seal(EnvelopeKind.HEARTBEAT, body, now)
        try:
            status = ctx.control.heartbeat(signed, ctx.manifest_envelope())
        except ControlPlaneUnavailable as exc:
            ctx.count("heartbeats_failed")
            ctx.disconnected(exc.message)
            return None
        except ControlPlaneRefused as exc:
            ctx.count("heartbeats_failed")
            ctx.last_error = exc.message
            if exc.retry_after_s is not None:  # a busy coordinator, not a bad heartbeat
                log.info("heartbeat %d deferred, the next one goes out as usual: %s",
                         self._seq, exc.message,
                         extra={"node_id": ctx.identity.node_id, "seq": self._seq,
                                "error": exc.message, "retry_after_s": exc.retry_after_s})
                return None
            log.warning("heartbeat %d refused: %s", self._seq, exc.message,
                        extra={"node_id": ctx.identity.node_id, "seq": self._seq,
                               "error": exc.message})
            if exc.status == "not-found":  # the coordinator forgot us: register again
                self.registration.register_until_done()
            return None
        ctx.count("heartbeats_accepted")
        ctx.reconnected("heartbeat")
        ctx.last_heartbeat_at = now
        ctx.node_status = status
        return status

    def loop(self) -> None:
        """The ``owm-heartbeat`` thread."""
        self.ctx.every(self.ctx.settings.heartbeat_interval_s, self.heartbeat_once)


__all__ = ["Heartbeats"]
