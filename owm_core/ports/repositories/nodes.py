"""The nodes' repositories: registered nodes and their signed capability manifests (SRS-COORD-01).

The semantics every store keeps are in :mod:`owm_core.ports.repositories`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Protocol

from owm_core.identity.envelopes import Envelope
from owm_core.nodes.activity import HeartbeatCount
from owm_core.nodes.registry import Node
from owm_core.nodes.tiers import Tier
from owm_core.stake.census import Presence


class NodeRepository(Protocol):
    """Registered nodes (spec §5.1, SRS-COORD-01), keyed by ``node_id``."""

    def add(self, node: Node) -> None:
        """Store a newly registered node; Conflict if its node_id or public key is taken."""
        ...

    def save(self, node: Node) -> None:
        """Replace the stored record of an existing node; Conflict if it is unknown."""
        ...

    def get(self, node_id: str) -> Node | None:
        """The node with ``node_id``, or None."""
        ...

    def get_many(self, node_ids: Collection[str]) -> Mapping[str, Node]:
        """The nodes of ``node_ids``, by node id (one not registered: absent)."""
        ...

    def get_by_public_key(self, public_key: str) -> Node | None:
        """The node registered with Ed25519 ``public_key`` (64 hex), or None."""
        ...

    def has_ln_pubkey(self, ln_pubkey: str) -> bool:
        """Whether a registered node names the Lightning node ``ln_pubkey`` in its
        ``ln_node_uri`` (such a node is paid by invoice, never keysend: SRS-LN-04)."""
        ...

    def presence(self, silent_before: int) -> Sequence[Presence]:
        """The registered nodes counted in groups alike in their stake's status, their own
        suspended mark and whether their last heartbeat came before ``silent_before``
        (:mod:`owm_core.stake.census`; SRS-COORD-01)."""
        ...

    def list(self) -> Sequence[Node]:
        """Every node, ordered by node_id."""
        ...

    def record_heartbeats(self, seen: Mapping[str, int]) -> int:
        """Batch-move ``last_heartbeat`` forward (node_id → at; never backwards); count updated."""
        ...


class HeartbeatActivityRepository(Protocol):
    """How many heartbeats each node sent per minute, for the operator's charts of online nodes
    and heartbeats over time (:mod:`owm_core.nodes.activity`)."""

    def add(self, counts: Mapping[tuple[int, str], int]) -> None:
        """Add ``count`` to the stored count of each (minute start, node_id); counts ≥ 1."""
        ...

    def since(self, start: int) -> Sequence[HeartbeatCount]:
        """Counts of minutes starting at or after ``start``, by minute then node_id."""
        ...

    def delete_older_than(self, cutoff: int) -> int:
        """Forget counts of minutes starting before ``cutoff``; how many were forgotten."""
        ...


class ManifestRepository(Protocol):
    """Each node's latest signed capability manifest (SRS-NODE-03, SRS-COORD-01).

    The envelope is stored verbatim (its canonical bytes, so its signature can be re-checked by
    anyone later) together with the decoded fields that queries need. Callers pass envelopes
    whose signature they have verified; the node is the envelope's signer.
    """

    def put(self, envelope: Envelope) -> bool:
        """Keep ``envelope`` as its signer's manifest unless a later one is stored; True if kept."""
        ...

    def get(self, node_id: str) -> Envelope | None:
        """The latest manifest envelope of ``node_id``, or None."""
        ...

    def get_by_digest(self, node_id: str, digest: str) -> Envelope | None:
        """The node's current manifest if its body digest is ``digest`` (heartbeats cite it)."""
        ...

    def matching(self, min_tier: Tier, min_vram_mb: int, min_ram_mb: int) -> Sequence[Envelope]:
        """Manifests of tier ≥ ``min_tier`` with at least this VRAM and RAM, by node_id."""
        ...

    def remove(self, node_id: str) -> bool:
        """Forget the node's manifest (deregistration); True if there was one."""
        ...
