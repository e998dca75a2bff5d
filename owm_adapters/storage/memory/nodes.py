"""In-memory twin: nodes and their capability manifests (SRS-NODE)."""

from __future__ import annotations

import collections
from collections.abc import Collection, Mapping, Sequence

from owm_adapters.storage.envelopes import manifest_of
from owm_adapters.storage.memory.state import StateRepository
from owm_core.errors import Conflict
from owm_core.identity.envelopes import Envelope
from owm_core.nodes.activity import HeartbeatCount
from owm_core.nodes.registry import Node
from owm_core.nodes.tiers import Tier
from owm_core.stake.census import Presence


class MemoryNodeRepository(StateRepository):
    """Nodes in a dict."""

    def add(self, node: Node) -> None:
        """Store a newly registered node; Conflict if its node_id or public key is taken."""
        with self._lock:
            if node.node_id in self._state.nodes:
                raise Conflict(f"node {node.node_id} is already registered")
            if self._key_taken(node):
                raise Conflict("a node with this public key is already registered")
            self._state.nodes[node.node_id] = node
            self._state.node_keys[node.public_key] = node.node_id

    def save(self, node: Node) -> None:
        """Replace the stored record of an existing node; Conflict if it is unknown."""
        with self._lock:
            if node.node_id not in self._state.nodes:
                raise Conflict(f"node {node.node_id} is not registered")
            if self._key_taken(node):
                raise Conflict("a node with this public key is already registered")
            previous = self._state.nodes[node.node_id]
            if previous.public_key != node.public_key:
                del self._state.node_keys[previous.public_key]
            self._state.nodes[node.node_id] = node
            self._state.node_keys[node.public_key] = node.node_id

    def _key_taken(self, node: Node) -> bool:
        holder = self._state.node_keys.get(node.public_key)
        return holder is not None and holder != node.node_id

    def get(self, node_id: str) -> Node | None:
        """The node with ``node_id``, or None."""
        with self._lock:
            return self._state.nodes.get(node_id)

    def get_by_public_key(self, public_key: str) -> Node | None:
        """The node registered with Ed25519 ``public_key`` (64 hex), or None."""
        with self._lock:
            node_id = self._state.node_keys.get(public_key)
            return None if node_id is None else self._state.nodes[node_id]

    def get_many(self, node_ids: Collection[str]) -> Mapping[str, Node]:
        """The nodes of ``node_ids``, by node id (one not registered: absent)."""
        return self._picked("nodes", node_ids)

    def presence(self, silent_before: int) -> Sequence[Presence]:
        """The registered nodes counted by their stake's status, suspended mark and silence."""
        with self._lock:
            stakes = self._state.stakes
            groups = collections.Counter(
                (getattr(stakes.get(n.public_key), "status", None), n.suspended,
                 n.last_heartbeat < silent_before)
                for n in self._state.nodes.values()
            )  # fmt: skip
        return [Presence(*key, nodes=count) for key, count in groups.items()]

    def has_ln_pubkey(self, ln_pubkey: str) -> bool:
        """Whether a registered node names the Lightning node ``ln_pubkey``."""
        with self._lock:
            return any(n.ln_node_uri.pubkey == ln_pubkey for n in self._state.nodes.values())

    def list(self) -> Sequence[Node]:
        """Every node, ordered by node_id."""
        with self._lock:
            return [self._state.nodes[k] for k in sorted(self._state.nodes)]

    def record_heartbeats(self, seen: Mapping[str, int]) -> int:
        """Batch-move ``last_heartbeat`` forward (node_id → at; never backwards); count updated."""
        with self._lock:
            moved = 0
            for node_id, at in seen.items():
                node = self._state.nodes.get(node_id)
                if node is not None and at > node.last_heartbeat:
                    self._state.nodes[node_id] = node.heard_from(at)
                    moved += 1
            return moved


class MemoryHeartbeatActivityRepository(StateRepository):
    """Heartbeat counts per (minute, node) in a dict."""

    def add(self, counts: Mapping[tuple[int, str], int]) -> None:
        """Add ``count`` to the stored count of each (minute start, node_id); counts ≥ 1."""
        checked = [HeartbeatCount(minute, node_id, n) for (minute, node_id), n in counts.items()]
        with self._lock:
            stored = self._state.heartbeat_activity
            for c in checked:
                stored[(c.minute, c.node_id)] = stored.get((c.minute, c.node_id), 0) + c.count

    def since(self, start: int) -> Sequence[HeartbeatCount]:
        """Counts of minutes starting at or after ``start``, by minute then node_id."""
        with self._lock:
            return [
                HeartbeatCount(minute, node_id, n)
                for (minute, node_id), n in sorted(self._state.heartbeat_activity.items())
                if minute >= start
            ]

    def delete_older_than(self, cutoff: int) -> int:
        """Forget counts of minutes starting before ``cutoff``; how many were forgotten."""
        return self._drop_where("heartbeat_activity", lambda key, _n: key[0] < cutoff)


class MemoryManifestRepository(StateRepository):
    """Latest manifest envelope per node in a dict."""

    def put(self, envelope: Envelope) -> bool:
        """Keep ``envelope`` as its signer's manifest unless a later one is stored; True if kept."""
        manifest_of(envelope)
        node_id = envelope.signer_node_id
        with self._lock:
            stored = self._state.manifests.get(node_id)
            if stored is not None and stored.issued_at > envelope.issued_at:
                return False
            self._state.manifests[node_id] = envelope
            return True

    def get(self, node_id: str) -> Envelope | None:
        """The latest manifest envelope of ``node_id``, or None."""
        with self._lock:
            return self._state.manifests.get(node_id)

    def get_by_digest(self, node_id: str, digest: str) -> Envelope | None:
        """The node's current manifest if its body digest is ``digest`` (heartbeats cite it)."""
        envelope = self.get(node_id)
        if envelope is None or manifest_of(envelope).digest() != digest:
            return None
        return envelope

    def matching(self, min_tier: Tier, min_vram_mb: int, min_ram_mb: int) -> Sequence[Envelope]:
        """Manifests of tier ≥ ``min_tier`` with at least this VRAM and RAM, by node_id."""
        with self._lock:
            found = []
            for node_id in sorted(self._state.manifests):
                envelope = self._state.manifests[node_id]
                m = manifest_of(envelope)
                if (
                    m.tier.rank >= min_tier.rank
                    and m.vram_mb >= min_vram_mb
                    and m.ram_mb >= min_ram_mb
                ):
                    found.append(envelope)
            return found

    def remove(self, node_id: str) -> bool:
        """Forget the node's manifest (deregistration); True if there was one."""
        with self._lock:
            return self._state.manifests.pop(node_id, None) is not None
