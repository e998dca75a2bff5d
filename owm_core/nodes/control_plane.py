"""What a node hears from its coordinator: the control plane's answers and refusals.

The values a node daemon reads back from the :class:`~owm_core.ports.control_plane.ControlPlane`
port (registration, task assignments, stake and replica views; SRS-NODE-01/04/11/12) and the
two ways a call can fail: the coordinator is unreachable (retry later) or it refused (a
refusal with ``retry_after_s`` is a rate limit: the same request, signed afresh, may pass then).
"""

from __future__ import annotations

import attrs

from owm_core.errors import DomainError


class ControlPlaneUnavailable(DomainError):
    """The coordinator cannot be reached right now (network, proxy, restart); retry later."""

    code = "control-plane-unavailable"


class ControlPlaneRefused(DomainError):
    """The coordinator refused a request; ``status`` is the coordinator's error code.

    ``status`` is the :class:`~owm_core.errors.DomainError` code the coordinator raised
    (``insufficient-stake``, ``invalid-transition``, ``signature-invalid``, ``not-found``, …),
    or the transport's status name when it sent none (``permission-denied``).
    ``retry_after_s`` is set when the refusal is a rate limit (``rate-limited``, or
    ``replay-guard-full``: the coordinator's replay guard had no room for a fresh request):
    nothing is wrong with the request, and sending it again after that many seconds may pass.
    """

    code = "control-plane-refused"

    def __init__(self, status: str, message: str, retry_after_s: int | None = None) -> None:
        super().__init__(f"coordinator refused ({status}): {message}")
        self.status = status
        self.reason = message
        self.retry_after_s = retry_after_s


@attrs.frozen
class RegisterReply:
    """The coordinator's answer to a registration (spec 4.12.2)."""

    node_id: str
    tier: str
    stake_status: str
    required_sats: int
    capacity_sat: int


@attrs.frozen
class AssignedTask:
    """One assignment from the node's task feed.

    ``input`` arrives sealed to the node by the coordinator (:mod:`owm_core.identity.sealing`,
    SRS-SEC-02); the daemon opens it before anything else looks at it.
    """

    task_id: str
    task_type: str
    input_schema_id: str
    input_schema_version: int
    price_msat: int
    deadline_at: int
    input: bytes
    assigned_at_ms: int
    #: The coordinator's Ed25519 signature (``owm_core.identity.assignments``); nodes run
    #: only assignments whose signature verifies under ``[coordinator] public_key``.
    signature: bytes = b""
    #: The sub-model version this replica must run (``genesis`` or a release's version; empty
    #: for a task that runs no sub-model's weights), the same for every replica of the task
    #: and covered by the signature: a node runs exactly it, or rejects the replica.
    model_version: str = ""


@attrs.frozen
class StakeView:
    """Where the node's stake stands (spec 4.12; SRS-NODE-12)."""

    status: str
    tier: str
    required_sats: int
    capacity_sat: int
    channel_point: str
    cooldown_until: int


@attrs.frozen
class StakeTermsView:
    """What a node must lock before registering (spec 4.12.2; SRS-NODE-11)."""

    treasury_node_uri: str
    required_sats: int
    min_confirmations: int


@attrs.frozen
class ReplicaView:
    """One replica of a submitted task, as anyone may see it: no output hash (SRS-SEC-11)."""

    replica_id: str
    state: str
    node_id: str
    price_msat: int


@attrs.frozen
class CommitReply:
    """The coordinator stored a replica's commitment: may the node reveal now, or when?"""

    state: str
    reveals_open: bool
    retry_after_ms: int
