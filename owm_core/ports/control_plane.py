"""The control-plane port: what a node daemon needs from its coordinator (SRS-NODE-01/04).

The node proves who it is only with signatures: answering a challenge means signing
:func:`owm_core.coordination.challenges.challenge_message` with a :class:`ChallengeSigner`
(the node's identity), so the key never leaves the node (SRS-SEC-03). Adapters: the gRPC client
(``owm_adapters.control_plane.grpc_client``) and the in-process twin over the coordinator
application
(``owm_adapters.control_plane.in_process``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

import attrs

from owm_core.errors import DomainError
from owm_core.payments.invoices import PendingPayout


class ControlPlaneUnavailable(DomainError):
    """The coordinator cannot be reached right now (network, proxy, restart); retry later."""

    code = "control-plane-unavailable"


class ControlPlaneRefused(DomainError):
    """The coordinator refused a request; ``status`` is the coordinator's error code.

    ``status`` is the :class:`~owm_core.errors.DomainError` code the coordinator raised
    (``insufficient-stake``, ``invalid-transition``, ``signature-invalid``, ``not-found``, …),
    or the transport's status name when it sent none (``permission-denied``).
    """

    code = "control-plane-refused"

    def __init__(self, status: str, message: str) -> None:
        super().__init__(f"coordinator refused ({status}): {message}")
        self.status = status
        self.reason = message


class ChallengeSigner(Protocol):
    """Signs challenge answers; the node's :class:`owm_core.identity.keys.Identity` is one."""

    @property
    def public_key_hex(self) -> str:
        """The Ed25519 public key the coordinator checks the answer with."""
        ...

    def sign(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``message``."""
        ...


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
    """One assignment from the node's task feed."""

    task_id: str
    task_type: str
    input_schema_id: str
    input_schema_version: int
    price_msat: int
    deadline_at: int
    input: bytes
    assigned_at_ms: int


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
    """One replica of a submitted task, as the coordinator sees it."""

    replica_id: str
    state: str
    node_id: str
    price_msat: int
    output_hash: str


class TaskFeed(Protocol):
    """A node's open task stream: iterate for assignments; :meth:`cancel` ends it."""

    def __iter__(self) -> Iterator[AssignedTask]:
        """Assignments as they are pushed; ends when the stream closes (raises
        ControlPlaneUnavailable / ControlPlaneRefused when it breaks)."""
        ...

    def cancel(self) -> None:
        """Close the stream (the iterator then ends)."""
        ...


class ControlPlane(Protocol):
    """The coordinator as a node daemon sees it (gRPC Coordinator service)."""

    def register(
        self,
        signer: ChallengeSigner,
        manifest_envelope: bytes,
        manifest_digest: str,
        ln_node_uri: str,
        onion_address: str | None,
    ) -> RegisterReply:
        """Register with an answered challenge and a signed capability manifest."""
        ...

    def heartbeat(self, heartbeat_envelope: bytes, manifest_envelope: bytes = b"") -> str:
        """Send a signed heartbeat (and optionally a new signed manifest); the node's status."""
        ...

    def open_task_feed(
        self, signer: ChallengeSigner, capabilities: Sequence[str], ask_msat: int
    ) -> TaskFeed:
        """Open the task stream with the node's standing offer (answered challenge)."""
        ...

    def submit_proof(self, proof_envelope: bytes, output: bytes = b"") -> str:
        """Send a signed task proof and the canonical output it hashes; the replica's state
        after it (e.g. completed, settled)."""
        ...

    def stake_status(self, public_key: str) -> StakeView:
        """The node's stake record."""
        ...

    def stake_terms(self, tier: str) -> StakeTermsView:
        """The treasury's Lightning URI and the stake a node of ``tier`` needs (unregistered)."""
        ...

    def reject_task(self, rejection_envelope: bytes) -> str:
        """Send a signed task rejection (SRS-NODE-07); the replica's state after it."""
        ...

    def replicas(self, task_id: str) -> list[ReplicaView]:
        """The replicas of a submitted task (``task_id`` without the ``:i`` suffix)."""
        ...

    def deregister(self, signer: ChallengeSigner) -> str:
        """Leave the network cooperatively (answered challenge); the stake's new status."""
        ...

    def pending_payouts(self, query_envelope: bytes) -> list[PendingPayout]:
        """The payouts awaiting an invoice from the node's own Lightning node (signed
        PayoutQuery; SRS-LN-04)."""
        ...

    def submit_invoice(self, invoice_envelope: bytes) -> str:
        """Hand in a signed PayoutInvoice for one pending payout; the invoice's payment hash."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...
