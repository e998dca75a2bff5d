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

from owm_core.nodes.control_plane import (
    AssignedTask,
    CommitReply,
    RegisterReply,
    ReplicaView,
    StakeTermsView,
    StakeView,
)
from owm_core.payments.invoices import PendingPayout


class ChallengeSigner(Protocol):
    """Signs challenge answers; the node's :class:`owm_core.identity.keys.Identity` is one."""

    @property
    def public_key_hex(self) -> str:
        """The Ed25519 public key the coordinator checks the answer with."""
        ...

    def sign(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``message``."""
        ...


class MessageSigner(Protocol):
    """Signs with the node's Lightning node (any :class:`~owm_core.ports.lightning.Lightning`)."""

    def sign_message(self, message: str) -> str:
        """The zbase32 Lightning message signature of ``message`` (LND/CLN ``signmessage``)."""
        ...


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
        ln_signer: MessageSigner | None = None,
    ) -> RegisterReply:
        """Register with an answered challenge and a signed capability manifest; ``ln_signer``
        (the Lightning node of ``ln_node_uri``) proves control of it (SRS-STAKE-01)."""
        ...

    def heartbeat(self, heartbeat_envelope: bytes, manifest_envelope: bytes = b"") -> str:
        """Send a signed heartbeat (and optionally a new signed manifest); the node's status."""
        ...

    def open_task_feed(
        self, signer: ChallengeSigner, capabilities: Sequence[str], ask_msat: int
    ) -> TaskFeed:
        """Open the task stream with the node's standing offer (answered challenge)."""
        ...

    def commit_result(self, commitment_envelope: bytes) -> CommitReply:
        """Send a signed commitment to a replica's result (phase one of commit–reveal)."""
        ...

    def submit_proof(self, proof_envelope: bytes, output: bytes, salt: bytes) -> str:
        """Reveal: send a signed task proof, the canonical output it hashes (sealed to the
        coordinator, SRS-SEC-02) and the salt of the commitment; the replica's state after it
        (e.g. completed, settled). Refused with code ``reveals-not-open`` while the other
        replicas have not committed (send it again)."""
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
