"""The in-memory repositories: a first-class twin of the SQL adapter, for tests and simulations.

Implements every repository of :mod:`owm_core.ports.repositories` over plain dicts guarded by
one re-entrant lock, with the same semantics as the SQL adapter (the contract suite
``tests/adapters/storage/test_repositories_contract.py`` runs against both): the same orderings, the
same :class:`~owm_core.errors.Conflict` on duplicates, the same append-only slashing log.
:meth:`MemoryRepositories.atomic` holds the lock for the whole block and restores a snapshot
if the block raises, so multi-repository writes are all-or-nothing here too. Nothing survives
the process.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import attrs

from owm_core.access.api_keys import ApiKey
from owm_core.errors import Conflict, InvalidValue
from owm_core.fl.rounds import FlRound, RoundState, RoundUpdate, same_upload
from owm_core.governance.contributions import AnalysisRequest, Bounty, BountyStatus
from owm_core.governance.proposals import Proposal, ProposalStatus
from owm_core.identity.envelopes import CapabilityManifest, Envelope, EnvelopeKind, TaskProof
from owm_core.knowledge.datasets import DatasetRecord, Document
from owm_core.knowledge.retrieval import DataCredit
from owm_core.knowledge.routing import QueryAnswer
from owm_core.knowledge.submodels import SubModel
from owm_core.market.tasks import MAX_TASK_INPUT_BYTES, Task, TaskState
from owm_core.nodes.registry import Node
from owm_core.nodes.tiers import Tier
from owm_core.payments.records import PaymentAttempt, PaymentState, RewardPayment
from owm_core.pool.bitcoin import AcceptedShare
from owm_core.pool.stats import MiningPayout
from owm_core.ports.repositories import Repositories
from owm_core.provenance.releases import ModelRelease
from owm_core.stake.channel import Stake
from owm_core.stake.slashing import GENESIS_HASH, SlashingDecision, SlashingLogEntry, SlashingSignal


def manifest_of(envelope: Envelope) -> CapabilityManifest:
    """The decoded manifest of a capability-manifest envelope; InvalidValue for other kinds."""
    if envelope.kind is not EnvelopeKind.CAPABILITY_MANIFEST:
        raise InvalidValue("envelope", "is not a capability manifest")
    return CapabilityManifest.from_body(envelope.body)


def proof_of(envelope: Envelope) -> TaskProof:
    """The decoded proof of a task-proof envelope; InvalidValue for other kinds."""
    if envelope.kind is not EnvelopeKind.TASK_PROOF:
        raise InvalidValue("envelope", "is not a task proof")
    return TaskProof.from_body(envelope.body)


def check_chain(latest: SlashingLogEntry | None, entry: SlashingLogEntry) -> None:
    """Raise Conflict unless ``entry`` continues the log whose head is ``latest`` (SRS-STAKE-06)."""
    index = 0 if latest is None else latest.index + 1
    prev_hash = GENESIS_HASH if latest is None else latest.entry_hash()
    if entry.index != index:
        raise Conflict(f"slashing log entry has index {entry.index}, expected {index}")
    if entry.prev_hash != prev_hash:
        raise Conflict("slashing log entry does not chain to the latest entry (prev_hash)")
    if latest is not None and entry.at < latest.at:
        raise Conflict("slashing log entry is dated before the latest entry")


def merge_payment(stored: RewardPayment, incoming: RewardPayment) -> RewardPayment:
    """What an upsert keeps: refuse a different payment under the same hash; never go back.

    A stored success is final, and an incoming record with fewer attempts or an older
    ``updated_at`` than the stored one is stale (a retried enqueue), so the stored one stays.
    """
    for name in ("payment_id", "task_id", "node_id", "amount_msat", "created_at"):
        if getattr(stored, name) != getattr(incoming, name):
            raise Conflict(f"payment {incoming.payment_hash} is stored with another {name}")
    if stored.state is PaymentState.SUCCEEDED:
        return stored
    if (incoming.attempts, incoming.updated_at) < (stored.attempts, stored.updated_at):
        return stored
    return incoming


@attrs.define
class _State:
    """Everything the memory store holds; ``seq`` orders insertions like SQL's row ids."""

    seq: int = 0
    nodes: dict[str, Node] = attrs.Factory(dict)
    manifests: dict[str, Envelope] = attrs.Factory(dict)
    stakes: dict[str, Stake] = attrs.Factory(dict)
    tasks: dict[str, tuple[int, Task]] = attrs.Factory(dict)
    proofs: dict[tuple[str, str], Envelope] = attrs.Factory(dict)
    payments: dict[str, tuple[int, RewardPayment]] = attrs.Factory(dict)
    attempts: list[PaymentAttempt] = attrs.Factory(list)
    slashing_log: list[SlashingLogEntry] = attrs.Factory(list)
    # slashing evidence: values are replaced, never mutated, so snapshots stay independent
    slashing_signals: dict[tuple[str, str, str, str], tuple[int, SlashingSignal, int | None]] = (
        attrs.Factory(dict)
    )
    slashing_acks: dict[str, tuple[int, str, Envelope, int, int | None]] = attrs.Factory(dict)
    slashing_decisions: dict[int, tuple[SlashingDecision, int | None]] = attrs.Factory(dict)
    proposals: dict[str, Proposal] = attrs.Factory(dict)
    shares: dict[str, tuple[int, int, AcceptedShare]] = attrs.Factory(dict)
    api_keys: dict[str, tuple[int, ApiKey]] = attrs.Factory(dict)
    releases: dict[str, ModelRelease] = attrs.Factory(dict)
    bounties: dict[str, Bounty] = attrs.Factory(dict)
    analyses: dict[str, AnalysisRequest] = attrs.Factory(dict)
    mining_payouts: dict[str, MiningPayout] = attrs.Factory(dict)
    task_inputs: dict[str, bytes] = attrs.Factory(dict)
    task_outputs: dict[str, bytes] = attrs.Factory(dict)
    sub_models: dict[str, SubModel] = attrs.Factory(dict)
    datasets: dict[str, tuple[int, DatasetRecord, tuple[Document, ...]]] = attrs.Factory(dict)
    data_credits: dict[str, tuple[int, int, tuple[DataCredit, ...]]] = attrs.Factory(dict)
    query_answers: dict[str, QueryAnswer] = attrs.Factory(dict)
    fl_rounds: dict[int, FlRound] = attrs.Factory(dict)
    fl_updates: dict[tuple[int, str], tuple[int, RoundUpdate]] = attrs.Factory(dict)

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def snapshot(self) -> dict[str, Any]:
        return {
            a.name: (getattr(self, a.name).copy() if a.name != "seq" else self.seq)
            for a in attrs.fields(_State)
        }

    def restore(self, snapshot: dict[str, Any]) -> None:
        for name, value in snapshot.items():
            setattr(self, name, value)


@attrs.define
class _Repo:
    _state: _State
    _lock: threading.RLock


class MemoryNodeRepository(_Repo):
    """Nodes in a dict."""

    def add(self, node: Node) -> None:
        """Store a newly registered node; Conflict if its node_id or public key is taken."""
        with self._lock:
            if node.node_id in self._state.nodes:
                raise Conflict(f"node {node.node_id} is already registered")
            if self._key_taken(node):
                raise Conflict("a node with this public key is already registered")
            self._state.nodes[node.node_id] = node

    def save(self, node: Node) -> None:
        """Replace the stored record of an existing node; Conflict if it is unknown."""
        with self._lock:
            if node.node_id not in self._state.nodes:
                raise Conflict(f"node {node.node_id} is not registered")
            if self._key_taken(node):
                raise Conflict("a node with this public key is already registered")
            self._state.nodes[node.node_id] = node

    def _key_taken(self, node: Node) -> bool:
        return any(
            n.public_key == node.public_key and n.node_id != node.node_id
            for n in self._state.nodes.values()
        )

    def get(self, node_id: str) -> Node | None:
        """The node with ``node_id``, or None."""
        with self._lock:
            return self._state.nodes.get(node_id)

    def get_by_public_key(self, public_key: str) -> Node | None:
        """The node registered with Ed25519 ``public_key`` (64 hex), or None."""
        with self._lock:
            return next((n for n in self._state.nodes.values() if n.public_key == public_key), None)

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


class MemoryManifestRepository(_Repo):
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


class MemoryStakeRepository(_Repo):
    """Stake records per public key in a dict."""

    def save(self, stake: Stake) -> None:
        """Insert or replace the stake record of ``stake.public_key``."""
        with self._lock:
            self._state.stakes[stake.public_key] = stake

    def get(self, public_key: str) -> Stake | None:
        """The stake record of ``public_key``, or None (keeps slashed keys for the cooldown)."""
        with self._lock:
            return self._state.stakes.get(public_key)

    def due_for_verification(self, now: int) -> Sequence[Stake]:
        """Stakes whose ``next_verification_at`` ≤ ``now``, earliest first (SRS-STAKE-03)."""
        with self._lock:
            due = [
                s
                for s in self._state.stakes.values()
                if s.next_verification_at is not None and s.next_verification_at <= now
            ]
            return sorted(due, key=lambda s: (s.next_verification_at or 0, s.public_key))


class MemoryTaskRepository(_Repo):
    """Tasks in a dict, with their insertion order."""

    def add(self, task: Task) -> None:
        """Store a submitted task, committed before returning; Conflict if the id exists."""
        with self._lock:
            if task.task_id in self._state.tasks:
                raise Conflict(f"task {task.task_id} already exists")
            self._state.tasks[task.task_id] = (self._state.next_seq(), task)

    def save(self, task: Task, expected_state: TaskState | None = None) -> None:
        """Replace a stored task; Conflict if unknown or its state is not ``expected_state``."""
        with self._lock:
            stored = self._state.tasks.get(task.task_id)
            if stored is None:
                raise Conflict(f"task {task.task_id} does not exist")
            if expected_state is not None and stored[1].state is not expected_state:
                raise Conflict(
                    f"task {task.task_id} is {stored[1].state.value}, not {expected_state.value}"
                )
            self._state.tasks[task.task_id] = (stored[0], task)

    def get(self, task_id: str) -> Task | None:
        """The task with ``task_id``, or None."""
        with self._lock:
            stored = self._state.tasks.get(task_id)
            return None if stored is None else stored[1]

    def _ordered(self) -> list[Task]:
        return [t for _, t in sorted(self._state.tasks.values(), key=lambda st: st[0])]

    def with_state(self, state: TaskState, limit: int = 100) -> Sequence[Task]:
        """Up to ``limit`` tasks in ``state``, oldest submission first."""
        with self._lock:
            return [t for t in self._ordered() if t.state is state][:limit]

    def assigned_to(self, node_id: str) -> Sequence[Task]:
        """Tasks currently assigned to ``node_id`` (state assigned), oldest first."""
        with self._lock:
            return [
                t for t in self._ordered() if t.state is TaskState.ASSIGNED and t.node_id == node_id
            ]

    def overdue(self, now: int, limit: int = 100) -> Sequence[Task]:
        """Assigned tasks whose ``deadline_at`` < ``now``, earliest deadline first."""
        with self._lock:
            late = [
                (t.deadline_at, seq, t)
                for seq, t in self._state.tasks.values()
                if t.state is TaskState.ASSIGNED
                and t.deadline_at is not None
                and t.deadline_at < now
            ]
            return [t for _, _, t in sorted(late, key=lambda x: (x[0], x[1]))][:limit]


class MemoryProofRepository(_Repo):
    """Task-proof envelopes per (task, node) in a dict."""

    def add(self, envelope: Envelope) -> None:
        """Store a verified task-proof envelope; Conflict if its signer already proved the task."""
        key = (proof_of(envelope).task_id, envelope.signer_node_id)
        with self._lock:
            if key in self._state.proofs:
                raise Conflict(f"node {key[1]} already sent a proof for task {key[0]}")
            self._state.proofs[key] = envelope

    def get(self, task_id: str, node_id: str) -> Envelope | None:
        """The proof ``node_id`` sent for ``task_id``, or None."""
        with self._lock:
            return self._state.proofs.get((task_id, node_id))

    def for_task(self, task_id: str) -> Sequence[Envelope]:
        """Every proof for ``task_id``, ordered by node_id."""
        with self._lock:
            return [e for (t, _n), e in sorted(self._state.proofs.items()) if t == task_id]


class MemoryPaymentRepository(_Repo):
    """Reward payments per payment hash, and the payment log as a list."""

    def upsert(self, payment: RewardPayment) -> RewardPayment:
        """Insert, or update state/attempts/error/bolt11 of the record with this payment_hash."""
        with self._lock:
            stored = self._state.payments.get(payment.payment_hash)
            if stored is None:
                if any(
                    p.payment_id == payment.payment_id for _, p in self._state.payments.values()
                ):
                    raise Conflict(f"payment id {payment.payment_id} is used by another hash")
                self._state.payments[payment.payment_hash] = (self._state.next_seq(), payment)
                return payment
            kept = merge_payment(stored[1], payment)
            self._state.payments[payment.payment_hash] = (stored[0], kept)
            return kept

    def get(self, payment_hash: str) -> RewardPayment | None:
        """The payment with ``payment_hash``, or None."""
        with self._lock:
            stored = self._state.payments.get(payment_hash)
            return None if stored is None else stored[1]

    def _ordered(self) -> list[RewardPayment]:
        rows = sorted(self._state.payments.values(), key=lambda sp: (sp[1].created_at, sp[0]))
        return [p for _, p in rows]

    def for_task(self, task_id: str) -> Sequence[RewardPayment]:
        """Payments for ``task_id``, oldest first."""
        with self._lock:
            return [p for p in self._ordered() if p.task_id == task_id]

    def pending(self, limit: int = 100) -> Sequence[RewardPayment]:
        """Up to ``limit`` payments still owed (pending or failed), oldest first."""
        owed = (PaymentState.PENDING, PaymentState.FAILED)
        with self._lock:
            return [p for p in self._ordered() if p.state in owed][:limit]

    def with_state(self, state: PaymentState, limit: int = 100) -> Sequence[RewardPayment]:
        """Up to ``limit`` payments in ``state`` (e.g. in_flight after a restart), oldest first."""
        with self._lock:
            return [p for p in self._ordered() if p.state is state][:limit]

    def log_attempt(self, attempt: PaymentAttempt) -> None:
        """Append one line to the payment log (SRS-LN-05)."""
        with self._lock:
            self._state.attempts.append(attempt)

    def for_node(self, node_id: str, limit: int = 100) -> Sequence[RewardPayment]:
        """Up to ``limit`` payments owed or paid to ``node_id``, newest first (SRS-LN-10)."""
        with self._lock:
            rows = [r for r in self._state.payments.values() if r[1].node_id == node_id]
            rows.sort(key=lambda r: (r[1].created_at, r[0]), reverse=True)
            return [p for _, p in rows[:limit]]

    def attempts(self, payment_hash: str) -> Sequence[PaymentAttempt]:
        """The log lines of one payment, in the order they were logged."""
        with self._lock:
            return [a for a in self._state.attempts if a.payment_hash == payment_hash]


class MemorySlashingLogRepository(_Repo):
    """The slashing log as an append-only list."""

    def append(self, entry: SlashingLogEntry) -> None:
        """Append ``entry``; Conflict unless its index and prev_hash continue the latest entry."""
        with self._lock:
            check_chain(self.latest(), entry)
            self._state.slashing_log.append(entry)

    def entries(self, start: int = 0, limit: int | None = None) -> Sequence[SlashingLogEntry]:
        """Entries with index ≥ ``start``, in index order, at most ``limit`` of them."""
        with self._lock:
            chosen = [e for e in self._state.slashing_log if e.index >= start]
            return chosen if limit is None else chosen[:limit]

    def latest(self) -> SlashingLogEntry | None:
        """The last entry (the head of the chain), or None for an empty log."""
        with self._lock:
            return self._state.slashing_log[-1] if self._state.slashing_log else None


class MemorySlashingEvidenceRepository(_Repo):
    """Open slashing signals, acknowledgements and decisions in dicts (closed ones are kept)."""

    def add_signal(self, signal: SlashingSignal) -> bool:
        """Store an open signal; False if the same evidence from the same reporter is known."""
        key = (signal.node_id, signal.reporter, signal.reason.value, signal.evidence_hash)
        with self._lock:
            if key in self._state.slashing_signals:
                return False
            self._state.slashing_signals[key] = (self._state.next_seq(), signal, None)
            return True

    def add_acknowledgement(self, node_id: str, envelope: Envelope, received_at: int) -> bool:
        """Store an open acknowledgement envelope; False if its signature is already known."""
        with self._lock:
            if envelope.signature in self._state.slashing_acks:
                return False
            row = (self._state.next_seq(), node_id, envelope, received_at, None)
            self._state.slashing_acks[envelope.signature] = row
            return True

    def open_signals(self, node_id: str) -> Sequence[SlashingSignal]:
        """The open signals about ``node_id``, oldest first."""
        with self._lock:
            rows = [
                (seq, s)
                for seq, s, closed in self._state.slashing_signals.values()
                if s.node_id == node_id and closed is None
            ]
        return [s for _, s in sorted(rows, key=lambda r: (r[1].at, r[0]))]

    def open_acknowledgements(self, node_id: str) -> Sequence[Envelope]:
        """The open acknowledgement envelopes about ``node_id``, oldest first."""
        with self._lock:
            rows = [
                (at, seq, e)
                for seq, n, e, at, closed in self._state.slashing_acks.values()
                if n == node_id and closed is None
            ]
        return [e for _, _, e in sorted(rows, key=lambda r: (r[0], r[1]))]

    def open_node_ids(self, limit: int = 100) -> Sequence[str]:
        """Nodes with open evidence, by their oldest open evidence (then node id)."""
        oldest: dict[str, int] = {}
        with self._lock:
            for _seq, s, closed in self._state.slashing_signals.values():
                if closed is None:
                    oldest[s.node_id] = min(oldest.get(s.node_id, s.at), s.at)
            for _seq, n, _e, at, closed in self._state.slashing_acks.values():
                if closed is None:
                    oldest[n] = min(oldest.get(n, at), at)
        return sorted(oldest, key=lambda n: (oldest[n], n))[:limit]

    def begin_decision(self, decision: SlashingDecision) -> SlashingDecision:
        """Record ``decision`` before it is carried out; an unfinished one of the node wins."""
        with self._lock:
            for stored, finished in self._state.slashing_decisions.values():
                if stored.node_id == decision.node_id and finished is None:
                    return stored
            self._state.slashing_decisions[self._state.next_seq()] = (decision, None)
            return decision

    def unfinished_decisions(self) -> Sequence[SlashingDecision]:
        """Decisions begun and not finished, oldest first."""
        with self._lock:
            return [d for _, (d, f) in sorted(self._state.slashing_decisions.items()) if f is None]

    def finish_decision(self, node_id: str, finished_at: int) -> None:
        """Mark the node's unfinished decision done and close its open evidence, together."""
        with self._lock:
            for seq, (stored, finished) in list(self._state.slashing_decisions.items()):
                if stored.node_id == node_id and finished is None:
                    self._state.slashing_decisions[seq] = (stored, finished_at)
            self.close_evidence(node_id, finished_at)

    def close_evidence(self, node_id: str, closed_at: int) -> int:
        """Close the node's open evidence without a decision; returns how many were open."""
        closed = 0
        with self._lock:
            signals = self._state.slashing_signals
            for key, (seq, s, was) in list(signals.items()):
                if s.node_id == node_id and was is None:
                    signals[key] = (seq, s, closed_at)
                    closed += 1
            acks = self._state.slashing_acks
            for sig, (seq, n, e, at, was) in list(acks.items()):
                if n == node_id and was is None:
                    acks[sig] = (seq, n, e, at, closed_at)
                    closed += 1
        return closed


class MemoryProposalRepository(_Repo):
    """Proposals in a dict."""

    def add(self, proposal: Proposal) -> None:
        """Store a new proposal; Conflict if its proposal_id exists."""
        with self._lock:
            if proposal.proposal_id in self._state.proposals:
                raise Conflict(f"proposal {proposal.proposal_id} already exists")
            self._state.proposals[proposal.proposal_id] = proposal

    def save(self, proposal: Proposal) -> None:
        """Replace a stored proposal (status, comments, acks, txid…); Conflict if unknown."""
        with self._lock:
            if proposal.proposal_id not in self._state.proposals:
                raise Conflict(f"proposal {proposal.proposal_id} does not exist")
            self._state.proposals[proposal.proposal_id] = proposal

    def get(self, proposal_id: str) -> Proposal | None:
        """The proposal with ``proposal_id``, or None."""
        with self._lock:
            return self._state.proposals.get(proposal_id)

    def list(self, status: ProposalStatus | None = None) -> Sequence[Proposal]:
        """Proposals (of ``status`` if given), newest submission first, then by id."""
        with self._lock:
            chosen = [
                p for p in self._state.proposals.values() if status is None or p.status is status
            ]
            return sorted(chosen, key=lambda p: (-p.submitted_at, p.proposal_id))


class MemoryShareRepository(_Repo):
    """Accepted shares per header hash, with their acceptance time and order."""

    def add(self, share: AcceptedShare, accepted_at: int) -> None:
        """Record an accepted share at ``accepted_at``; Conflict if its hash is already stored."""
        with self._lock:
            if share.hash_hex in self._state.shares:
                raise Conflict(f"share {share.hash_hex} is already recorded")
            self._state.shares[share.hash_hex] = (self._state.next_seq(), accepted_at, share)

    def contains(self, hash_hex: str) -> bool:
        """Whether a share with this header hash is stored (duplicate detection)."""
        with self._lock:
            return hash_hex in self._state.shares

    def since(self, start: int, miner_id: str | None = None) -> Sequence[tuple[int, AcceptedShare]]:
        """(accepted_at, share) with accepted_at ≥ ``start`` (of one miner), in accepted order."""
        with self._lock:
            rows = sorted(self._state.shares.values(), key=lambda r: (r[1], r[0]))
            return [
                (at, s)
                for _, at, s in rows
                if at >= start and (miner_id is None or s.miner_id == miner_id)
            ]

    def delete_older_than(self, cutoff: int) -> int:
        """Delete shares accepted before ``cutoff`` (retention, SRS-POOL-11); count deleted."""
        with self._lock:
            old = [h for h, (_, at, _s) in self._state.shares.items() if at < cutoff]
            for h in old:
                del self._state.shares[h]
            return len(old)


class MemoryApiKeyRepository(_Repo):
    """API keys per key id."""

    def add(self, key: ApiKey) -> None:
        """Store a new key; Conflict if its key_id or secret digest exists."""
        with self._lock:
            if key.key_id in self._state.api_keys:
                raise Conflict(f"API key {key.key_id} already exists")
            if any(k.secret_sha256 == key.secret_sha256 for _, k in self._state.api_keys.values()):
                raise Conflict("an API key with this secret already exists")
            self._state.api_keys[key.key_id] = (self._state.next_seq(), key)

    def get(self, key_id: str) -> ApiKey | None:
        """The key with ``key_id``, or None."""
        with self._lock:
            stored = self._state.api_keys.get(key_id)
            return None if stored is None else stored[1]

    def get_by_secret_sha256(self, secret_sha256: str) -> ApiKey | None:
        """The key whose secret hashes to ``secret_sha256``, or None (authentication)."""
        with self._lock:
            return next(
                (k for _, k in self._state.api_keys.values() if k.secret_sha256 == secret_sha256),
                None,
            )

    def revoke(self, key_id: str) -> bool:
        """Mark the key revoked; True if it existed."""
        with self._lock:
            stored = self._state.api_keys.get(key_id)
            if stored is None:
                return False
            self._state.api_keys[key_id] = (stored[0], stored[1].revoke())
            return True

    def for_owner(self, owner: str) -> Sequence[ApiKey]:
        """The owner's keys, oldest first."""
        with self._lock:
            rows = sorted(self._state.api_keys.values(), key=lambda r: (r[1].created_at, r[0]))
            return [k for _, k in rows if k.owner == owner]


class MemoryModelReleaseRepository(_Repo):
    """Published model releases per release id."""

    def add(self, release: ModelRelease) -> None:
        """Store a new release; Conflict if its release_id (sub_model@version) exists."""
        with self._lock:
            if release.release_id in self._state.releases:
                raise Conflict(f"model release {release.release_id} already exists")
            self._state.releases[release.release_id] = release

    def save(self, release: ModelRelease) -> None:
        """Replace a release's proof and status (upgrade, verification); Conflict if unknown."""
        with self._lock:
            stored = self._state.releases.get(release.release_id)
            if stored is None:
                raise Conflict(f"model release {release.release_id} is unknown")
            if stored.version != release.version:
                raise Conflict(f"model release {release.release_id} has another digest")
            self._state.releases[release.release_id] = release

    def get(self, release_id: str) -> ModelRelease | None:
        """The release with ``release_id``, or None."""
        with self._lock:
            return self._state.releases.get(release_id)

    def list(self) -> Sequence[ModelRelease]:
        """Every release, newest ``created_at`` first, then by release_id."""
        with self._lock:
            releases = sorted(self._state.releases.values(), key=lambda r: r.release_id)
            return sorted(releases, key=lambda r: r.version.created_at, reverse=True)


class MemoryBountyRepository(_Repo):
    """GitHub bounties per bounty id."""

    def add(self, bounty: Bounty) -> None:
        """Store a new bounty; Conflict if its bounty_id exists."""
        with self._lock:
            if bounty.bounty_id in self._state.bounties:
                raise Conflict(f"bounty {bounty.bounty_id} already exists")
            self._state.bounties[bounty.bounty_id] = bounty

    def save(self, bounty: Bounty) -> None:
        """Replace a stored bounty (its status); Conflict if unknown."""
        with self._lock:
            if bounty.bounty_id not in self._state.bounties:
                raise Conflict(f"bounty {bounty.bounty_id} is unknown")
            self._state.bounties[bounty.bounty_id] = bounty

    def get(self, bounty_id: str) -> Bounty | None:
        """The bounty with ``bounty_id``, or None."""
        with self._lock:
            return self._state.bounties.get(bounty_id)

    def list(self, status: BountyStatus | None = None, limit: int = 100) -> Sequence[Bounty]:
        """Up to ``limit`` bounties (of ``status`` if given), newest first, then by id."""
        with self._lock:
            chosen = [b for b in self._state.bounties.values() if status in (None, b.status)]
            chosen.sort(key=lambda b: (-b.created_at, b.bounty_id))
            return chosen[:limit]


class MemoryAnalysisRepository(_Repo):
    """Repository analysis requests per analysis id."""

    def add(self, request: AnalysisRequest) -> None:
        """Store a new request; Conflict if its analysis_id exists."""
        with self._lock:
            if request.analysis_id in self._state.analyses:
                raise Conflict(f"analysis {request.analysis_id} already exists")
            self._state.analyses[request.analysis_id] = request

    def save(self, request: AnalysisRequest) -> None:
        """Replace a stored request (state, result); Conflict if unknown."""
        with self._lock:
            if request.analysis_id not in self._state.analyses:
                raise Conflict(f"analysis {request.analysis_id} is unknown")
            self._state.analyses[request.analysis_id] = request

    def get(self, analysis_id: str) -> AnalysisRequest | None:
        """The request with ``analysis_id``, or None."""
        with self._lock:
            return self._state.analyses.get(analysis_id)


class MemoryMiningPayoutRepository(_Repo):
    """Mining payouts per payment hash."""

    def add(self, payout: MiningPayout) -> None:
        """Record one payout; Conflict if its payment_hash is already recorded."""
        with self._lock:
            if payout.payment_hash in self._state.mining_payouts:
                raise Conflict(f"payout {payout.payment_hash} is already recorded")
            self._state.mining_payouts[payout.payment_hash] = payout

    def recent(self, limit: int = 100, miner_id: str | None = None) -> Sequence[MiningPayout]:
        """Up to ``limit`` payouts (to one miner if given), newest first, then by hash."""
        with self._lock:
            chosen = [
                p for p in self._state.mining_payouts.values()
                if miner_id is None or p.miner_id == miner_id
            ]
            chosen.sort(key=lambda p: (-p.paid_at, p.payment_hash))
            return chosen[:limit]


def check_task_input(data: bytes, field: str = "input") -> bytes:
    """``data`` as immutable bytes; InvalidValue(``field``) beyond MAX_TASK_INPUT_BYTES."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InvalidValue(field, "must be bytes")
    if len(data) > MAX_TASK_INPUT_BYTES:
        raise InvalidValue(field, f"is longer than {MAX_TASK_INPUT_BYTES} bytes")
    return bytes(data)


class MemoryTaskInputRepository(_Repo):
    """Task input bytes per submitted task id."""

    FIELD = "input"

    def _blobs(self) -> dict[str, bytes]:
        return self._state.task_inputs

    def put(self, task_id: str, data: bytes) -> None:
        """Store ``data`` for ``task_id``; same data again is a no-op, other data a Conflict."""
        data = check_task_input(data, self.FIELD)
        with self._lock:
            stored = self._blobs().get(task_id)
            if stored is not None and stored != data:
                raise Conflict(f"task {task_id} already has another {self.FIELD}")
            self._blobs()[task_id] = data

    def get(self, task_id: str) -> bytes | None:
        """The data stored for ``task_id``, or None."""
        with self._lock:
            return self._blobs().get(task_id)

    def delete(self, task_id: str) -> None:
        """Forget the data of ``task_id`` (nothing happens if none is stored)."""
        with self._lock:
            self._blobs().pop(task_id, None)


class MemoryTaskOutputRepository(MemoryTaskInputRepository):
    """Task outputs delivered with proofs, per replica id."""

    FIELD = "output"

    def _blobs(self) -> dict[str, bytes]:
        return self._state.task_outputs


class MemorySubModelRepository(_Repo):
    """The sub-model registry per name."""

    def add(self, sub_model: SubModel) -> None:
        """Register a new sub-model; Conflict if its name is taken."""
        with self._lock:
            if sub_model.name in self._state.sub_models:
                raise Conflict(f"sub-model {sub_model.name} already exists")
            self._state.sub_models[sub_model.name] = sub_model

    def save(self, sub_model: SubModel) -> None:
        """Replace a registered sub-model; Conflict if unknown."""
        with self._lock:
            if sub_model.name not in self._state.sub_models:
                raise Conflict(f"sub-model {sub_model.name} is unknown")
            self._state.sub_models[sub_model.name] = sub_model

    def get(self, name: str) -> SubModel | None:
        """The sub-model called ``name``, or None."""
        with self._lock:
            return self._state.sub_models.get(name)

    def list(self) -> Sequence[SubModel]:
        """Every sub-model, ordered by name."""
        with self._lock:
            return [self._state.sub_models[n] for n in sorted(self._state.sub_models)]


class MemoryDatasetRepository(_Repo):
    """Contributed datasets and their documents per dataset id."""

    def add(self, record: DatasetRecord, documents: Sequence[Document]) -> None:
        """Store a contribution and its documents; Conflict if its id exists."""
        with self._lock:
            if record.dataset_id in self._state.datasets:
                raise Conflict(f"dataset {record.dataset_id} already exists")
            seq = self._state.next_seq()
            self._state.datasets[record.dataset_id] = (seq, record, tuple(documents))

    def save(self, record: DatasetRecord) -> None:
        """Replace a stored record (its proof); Conflict if unknown or its digest differs."""
        with self._lock:
            stored = self._state.datasets.get(record.dataset_id)
            if stored is None:
                raise Conflict(f"dataset {record.dataset_id} is unknown")
            if stored[1].digest != record.digest:
                raise Conflict(f"dataset {record.dataset_id} has another digest")
            self._state.datasets[record.dataset_id] = (stored[0], record, stored[2])

    def get(self, dataset_id: str) -> DatasetRecord | None:
        """The contribution with ``dataset_id``, or None."""
        with self._lock:
            stored = self._state.datasets.get(dataset_id)
            return None if stored is None else stored[1]

    def documents(self, dataset_id: str) -> Sequence[Document]:
        """The dataset's documents in submission order (empty if unknown)."""
        with self._lock:
            stored = self._state.datasets.get(dataset_id)
            return [] if stored is None else list(stored[2])

    def list(
        self, sub_model: str | None = None, contributor: str | None = None, limit: int = 100
    ) -> Sequence[DatasetRecord]:
        """Up to ``limit`` records (filtered if asked), oldest first, then by id."""
        with self._lock:
            chosen = [
                r for _, r, _ in self._state.datasets.values()
                if (sub_model is None or sub_model in r.sub_models)
                and (contributor is None or r.contributor == contributor)
            ]
            chosen.sort(key=lambda r: (r.submitted_at, r.dataset_id))
            return chosen[:limit]


class MemoryDataCreditRepository(_Repo):
    """Data contributors' credits per query id."""

    def add(self, query_id: str, credits: Sequence[DataCredit], at: int) -> None:
        """Record the credits of one query (none: nothing); Conflict if already credited."""
        if not credits:
            return
        with self._lock:
            if query_id in self._state.data_credits:
                raise Conflict(f"query {query_id} is already credited")
            ordered = tuple(sorted(credits, key=lambda c: (c.contributor, c.dataset_id)))
            self._state.data_credits[query_id] = (self._state.next_seq(), at, ordered)

    def for_contributor(
        self, contributor: str, limit: int = 100
    ) -> Sequence[tuple[str, int, DataCredit]]:
        """Up to ``limit`` (query_id, at, credit) of ``contributor``, newest first, then query."""
        with self._lock:
            rows = [
                (q, at, c)
                for q, (_, at, credits) in self._state.data_credits.items()
                for c in credits
                if c.contributor == contributor
            ]
            rows.sort(key=lambda r: (-r[1], r[0], r[2].dataset_id))
            return rows[:limit]

    def for_query(self, query_id: str) -> Sequence[DataCredit]:
        """The credits recorded for ``query_id``, by contributor then dataset id."""
        with self._lock:
            stored = self._state.data_credits.get(query_id)
            return [] if stored is None else list(stored[2])

    def total_msat(self, contributor: str) -> int:
        """Everything credited to ``contributor`` so far, in msat."""
        with self._lock:
            return sum(
                c.amount_msat
                for _, _, credits in self._state.data_credits.values()
                for c in credits
                if c.contributor == contributor
            )


class MemoryQueryAnswerRepository(_Repo):
    """Answered queries by query id."""

    def add(self, answer: QueryAnswer) -> None:
        """Store an answer; Conflict if its query id is already stored."""
        with self._lock:
            if answer.query_id in self._state.query_answers:
                raise Conflict(f"query {answer.query_id} is already stored")
            self._state.query_answers[answer.query_id] = answer

    def get(self, query_id: str) -> QueryAnswer | None:
        """The stored answer of ``query_id``, or None."""
        with self._lock:
            return self._state.query_answers.get(query_id)


class MemoryFlRoundRepository(_Repo):
    """FL rounds per number and their updates per (round, node id), in arrival order."""

    def add_round(self, fl_round: FlRound) -> None:
        """Store a new round; Conflict if its number exists."""
        with self._lock:
            if fl_round.number in self._state.fl_rounds:
                raise Conflict(f"FL round {fl_round.number} already exists")
            self._state.fl_rounds[fl_round.number] = fl_round

    def save_round(self, fl_round: FlRound) -> None:
        """Replace a stored round (state, results); Conflict if unknown."""
        with self._lock:
            if fl_round.number not in self._state.fl_rounds:
                raise Conflict(f"FL round {fl_round.number} is unknown")
            self._state.fl_rounds[fl_round.number] = fl_round

    def get_round(self, number: int) -> FlRound | None:
        """The round ``number``, or None."""
        with self._lock:
            return self._state.fl_rounds.get(number)

    def rounds(self, limit: int = 100, state: RoundState | None = None) -> Sequence[FlRound]:
        """Rounds (in ``state`` if given), newest (highest number) first, at most ``limit``."""
        with self._lock:
            chosen = [r for r in self._state.fl_rounds.values() if state in (None, r.state)]
        return sorted(chosen, key=lambda r: r.number, reverse=True)[:limit]

    def add_update(self, update: RoundUpdate) -> bool:
        """Store an upload: True if new, False if the same update is stored already."""
        key = (update.round, update.node_id)
        with self._lock:
            if update.round not in self._state.fl_rounds:
                raise Conflict(f"FL round {update.round} is unknown")
            stored = self._state.fl_updates.get(key)
            if stored is not None and same_upload(stored[1], update):
                return False
            self._state.fl_updates[key] = (self._state.next_seq(), update)
            return True

    def updates(self, number: int) -> Sequence[RoundUpdate]:
        """The round's updates in arrival order."""
        with self._lock:
            rows = [v for (r, _), v in self._state.fl_updates.items() if r == number]
        return [u for _, u in sorted(rows, key=lambda row: row[0])]

    def score_updates(self, number: int, scores: Mapping[str, tuple[float, bool]]) -> None:
        """Record ``node_id → (anomaly score, flagged)``; Conflict if a node has no update."""
        with self._lock:
            for node_id in scores:
                if (number, node_id) not in self._state.fl_updates:
                    raise Conflict(f"node {node_id} has no update in FL round {number}")
            for node_id, (score, flagged) in scores.items():
                seq, stored = self._state.fl_updates[(number, node_id)]
                scored = attrs.evolve(stored, anomaly_score=float(score), flagged=bool(flagged))
                self._state.fl_updates[(number, node_id)] = (seq, scored)


@attrs.define
class MemoryRepositories:
    """Every in-memory repository over one shared state (the ``Repositories`` port)."""

    nodes: MemoryNodeRepository
    manifests: MemoryManifestRepository
    stakes: MemoryStakeRepository
    tasks: MemoryTaskRepository
    proofs: MemoryProofRepository
    payments: MemoryPaymentRepository
    slashing_log: MemorySlashingLogRepository
    slashing_evidence: MemorySlashingEvidenceRepository
    proposals: MemoryProposalRepository
    shares: MemoryShareRepository
    api_keys: MemoryApiKeyRepository
    releases: MemoryModelReleaseRepository
    bounties: MemoryBountyRepository
    analyses: MemoryAnalysisRepository
    mining_payouts: MemoryMiningPayoutRepository
    task_inputs: MemoryTaskInputRepository
    task_outputs: MemoryTaskOutputRepository
    sub_models: MemorySubModelRepository
    datasets: MemoryDatasetRepository
    data_credits: MemoryDataCreditRepository
    query_answers: MemoryQueryAnswerRepository
    fl_rounds: MemoryFlRoundRepository
    _state: _State
    _lock: threading.RLock

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """A block whose writes commit together, or not at all if it raises (holds the lock)."""
        with self._lock:
            snapshot = self._state.snapshot()
            try:
                yield
            except BaseException:
                self._state.restore(snapshot)
                raise

    def close(self) -> None:
        """Nothing to release; present for symmetry with the SQL adapter."""


def memory_repositories() -> MemoryRepositories:
    """A fresh, empty in-memory store with every repository."""
    state = _State()
    lock = threading.RLock()
    return MemoryRepositories(
        nodes=MemoryNodeRepository(state, lock),
        manifests=MemoryManifestRepository(state, lock),
        stakes=MemoryStakeRepository(state, lock),
        tasks=MemoryTaskRepository(state, lock),
        proofs=MemoryProofRepository(state, lock),
        payments=MemoryPaymentRepository(state, lock),
        slashing_log=MemorySlashingLogRepository(state, lock),
        slashing_evidence=MemorySlashingEvidenceRepository(state, lock),
        proposals=MemoryProposalRepository(state, lock),
        shares=MemoryShareRepository(state, lock),
        api_keys=MemoryApiKeyRepository(state, lock),
        releases=MemoryModelReleaseRepository(state, lock),
        bounties=MemoryBountyRepository(state, lock),
        analyses=MemoryAnalysisRepository(state, lock),
        mining_payouts=MemoryMiningPayoutRepository(state, lock),
        task_inputs=MemoryTaskInputRepository(state, lock),
        task_outputs=MemoryTaskOutputRepository(state, lock),
        sub_models=MemorySubModelRepository(state, lock),
        datasets=MemoryDatasetRepository(state, lock),
        data_credits=MemoryDataCreditRepository(state, lock),
        query_answers=MemoryQueryAnswerRepository(state, lock),
        fl_rounds=MemoryFlRoundRepository(state, lock),
        state=state,
        lock=lock,
    )


def _conforms(store: MemoryRepositories) -> Repositories:
    """Never called: makes mypy check that the bundle implements the port."""
    return store
