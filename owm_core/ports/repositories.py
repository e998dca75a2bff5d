"""The repositories port: the coordinator's durable state, one repository per kind of record.

What the coordinator and the pool keep (SRS-COORD-01/05, SRS-LN-05, SRS-STAKE-06,
SRS-POOL-11, SRS-GOV-01, SRS-API-02): nodes, their signed capability manifests, stakes, tasks,
task proofs, reward payments and their log, the slashing log, governance proposals, mining
shares, API keys, and for the public API (SRS 4.8) published model releases with their OTS
proofs, GitHub bounties, repository analysis requests and mining payouts. Records are the
domain's own values (``owm_core.nodes.registry.Node``, ``owm_core.market.tasks.Task``,
``owm_core.identity.envelopes.Envelope``, …); how they become rows is each
adapter's business.

Semantics every adapter keeps (``tests/adapters/storage/test_repositories_contract.py`` checks them
against the in-memory twin, SQLite and PostgreSQL):

- **Durable on return.** A write method returns only after its data is committed — unless it
  runs inside :meth:`Repositories.atomic`, which commits all of its writes together when the
  block ends, or none of them if it raises. Use it for writes that must not half-happen, e.g.
  settling a task and enqueueing its payment (the outbox).
- **Conflicts are domain errors.** A duplicate id, a stale expected state or a broken slashing
  chain raises :class:`~owm_core.errors.Conflict`, never a driver's integrity error.
- **Missing is None.** ``get`` methods return ``None`` for unknown ids; updates of unknown
  records raise :class:`~owm_core.errors.Conflict`.
- **Lists are ordered** as each method says, so results are deterministic.
- **Times** are int POSIX seconds, **money** int sat/msat, exactly as in the values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Protocol

from owm_core.access.api_keys import ApiKey
from owm_core.fl.rounds import FlRound, RoundState, RoundUpdate
from owm_core.governance.contributions import AnalysisRequest, Bounty, BountyStatus
from owm_core.governance.proposals import Proposal, ProposalStatus
from owm_core.identity.envelopes import Envelope
from owm_core.knowledge.datasets import DatasetRecord, Document
from owm_core.knowledge.retrieval import DataCredit
from owm_core.knowledge.routing import QueryAnswer
from owm_core.knowledge.submodels import SubModel
from owm_core.market.tasks import Task, TaskState
from owm_core.nodes.registry import Node
from owm_core.nodes.tiers import Tier
from owm_core.payments.records import PaymentAttempt, PaymentState, RewardPayment
from owm_core.pool.bitcoin import AcceptedShare
from owm_core.pool.stats import MiningPayout
from owm_core.provenance.releases import ModelRelease
from owm_core.stake.channel import Stake
from owm_core.stake.slashing import SlashingDecision, SlashingLogEntry, SlashingSignal


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

    def get_by_public_key(self, public_key: str) -> Node | None:
        """The node registered with Ed25519 ``public_key`` (64 hex), or None."""
        ...

    def list(self) -> Sequence[Node]:
        """Every node, ordered by node_id."""
        ...

    def record_heartbeats(self, seen: Mapping[str, int]) -> int:
        """Batch-move ``last_heartbeat`` forward (node_id → at; never backwards); count updated."""
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


class StakeRepository(Protocol):
    """The latest stake record of each node key (spec 4.12, SRS-STAKE-01..10)."""

    def save(self, stake: Stake) -> None:
        """Insert or replace the stake record of ``stake.public_key``."""
        ...

    def get(self, public_key: str) -> Stake | None:
        """The stake record of ``public_key``, or None (keeps slashed keys for the cooldown)."""
        ...

    def due_for_verification(self, now: int) -> Sequence[Stake]:
        """Stakes whose ``next_verification_at`` ≤ ``now``, earliest first (SRS-STAKE-03)."""
        ...


class TaskRepository(Protocol):
    """Tasks of the market (data flow 3), keyed by task_id; a task is never lost."""

    def add(self, task: Task) -> None:
        """Store a submitted task, committed before returning; Conflict if the id exists."""
        ...

    def save(self, task: Task, expected_state: TaskState | None = None) -> None:
        """Replace a stored task; Conflict if unknown or its state is not ``expected_state``."""
        ...

    def get(self, task_id: str) -> Task | None:
        """The task with ``task_id``, or None."""
        ...

    def with_state(self, state: TaskState, limit: int = 100) -> Sequence[Task]:
        """Up to ``limit`` tasks in ``state``, oldest submission first."""
        ...

    def assigned_to(self, node_id: str) -> Sequence[Task]:
        """Tasks currently assigned to ``node_id`` (state assigned), oldest first."""
        ...

    def overdue(self, now: int, limit: int = 100) -> Sequence[Task]:
        """Assigned tasks whose ``deadline_at`` < ``now``, earliest deadline first."""
        ...


class ProofRepository(Protocol):
    """Signed task-proof envelopes (SRS-SEC-11), at most one per (task, node)."""

    def add(self, envelope: Envelope) -> None:
        """Store a verified task-proof envelope; Conflict if its signer already proved the task."""
        ...

    def get(self, task_id: str, node_id: str) -> Envelope | None:
        """The proof ``node_id`` sent for ``task_id``, or None."""
        ...

    def for_task(self, task_id: str) -> Sequence[Envelope]:
        """Every proof for ``task_id``, ordered by node_id."""
        ...


class PaymentRepository(Protocol):
    """Reward payments (the outbox) and the payment log (SRS-LN-04, SRS-LN-05)."""

    def upsert(self, payment: RewardPayment) -> RewardPayment:
        """Insert, or update state/attempts/error/bolt11 of the record with this payment_hash.

        Idempotent: the same value twice leaves one record. Conflict if the stored record
        with this hash is for another payment_id, task, node or amount. Returns what is stored.
        """
        ...

    def get(self, payment_hash: str) -> RewardPayment | None:
        """The payment with ``payment_hash``, or None."""
        ...

    def for_task(self, task_id: str) -> Sequence[RewardPayment]:
        """Payments for ``task_id``, oldest first."""
        ...

    def pending(self, limit: int = 100) -> Sequence[RewardPayment]:
        """Up to ``limit`` payments still owed (pending or failed), oldest first."""
        ...

    def with_state(self, state: PaymentState, limit: int = 100) -> Sequence[RewardPayment]:
        """Up to ``limit`` payments in ``state`` (e.g. in_flight after a restart), oldest first."""
        ...

    def log_attempt(self, attempt: PaymentAttempt) -> None:
        """Append one line to the payment log (SRS-LN-05)."""
        ...

    def attempts(self, payment_hash: str) -> Sequence[PaymentAttempt]:
        """The log lines of one payment, in the order they were logged."""
        ...

    def for_node(self, node_id: str, limit: int = 100) -> Sequence[RewardPayment]:
        """Up to ``limit`` payments owed or paid to ``node_id``, newest first (SRS-LN-10)."""
        ...


class SlashingLogRepository(Protocol):
    """The public, append-only, hash-chained slashing log (SRS-STAKE-06, SRS-LN-13).

    There is no update or delete: entries are immutable once appended (the SQL adapter also
    refuses UPDATE and DELETE in the database itself).
    """

    def append(self, entry: SlashingLogEntry) -> None:
        """Append ``entry``; Conflict unless its index and prev_hash continue the latest entry."""
        ...

    def entries(self, start: int = 0, limit: int | None = None) -> Sequence[SlashingLogEntry]:
        """Entries with index ≥ ``start``, in index order, at most ``limit`` of them."""
        ...

    def latest(self) -> SlashingLogEntry | None:
        """The last entry (the head of the chain), or None for an empty log."""
        ...


class ProposalRepository(Protocol):
    """Governance proposals with their comments and acknowledgements (SRS-GOV-01..06)."""

    def add(self, proposal: Proposal) -> None:
        """Store a new proposal; Conflict if its proposal_id exists."""
        ...

    def save(self, proposal: Proposal) -> None:
        """Replace a stored proposal (status, comments, acks, txid…); Conflict if unknown."""
        ...

    def get(self, proposal_id: str) -> Proposal | None:
        """The proposal with ``proposal_id``, or None."""
        ...

    def list(self, status: ProposalStatus | None = None) -> Sequence[Proposal]:
        """Proposals (of ``status`` if given), newest submission first, then by id."""
        ...


class ShareRepository(Protocol):
    """Accepted mining shares, kept 30 days for dispute resolution (SRS-POOL-06, SRS-POOL-11)."""

    def add(self, share: AcceptedShare, accepted_at: int) -> None:
        """Record an accepted share at ``accepted_at``; Conflict if its hash is already stored."""
        ...

    def contains(self, hash_hex: str) -> bool:
        """Whether a share with this header hash is stored (duplicate detection)."""
        ...

    def since(self, start: int, miner_id: str | None = None) -> Sequence[tuple[int, AcceptedShare]]:
        """(accepted_at, share) with accepted_at ≥ ``start`` (of one miner), in accepted order."""
        ...

    def delete_older_than(self, cutoff: int) -> int:
        """Delete shares accepted before ``cutoff`` (retention, SRS-POOL-11); count deleted."""
        ...


class ApiKeyRepository(Protocol):
    """API keys (SRS-API-02/03); only secret digests are stored."""

    def add(self, key: ApiKey) -> None:
        """Store a new key; Conflict if its key_id or secret digest exists."""
        ...

    def get(self, key_id: str) -> ApiKey | None:
        """The key with ``key_id``, or None."""
        ...

    def get_by_secret_sha256(self, secret_sha256: str) -> ApiKey | None:
        """The key whose secret hashes to ``secret_sha256``, or None (authentication)."""
        ...

    def revoke(self, key_id: str) -> bool:
        """Mark the key revoked; True if it existed."""
        ...

    def for_owner(self, owner: str) -> Sequence[ApiKey]:
        """The owner's keys, oldest first."""
        ...


class ModelReleaseRepository(Protocol):
    """Published model versions with their OTS proofs (SRS-NODE-10, GET /v1/model/versions)."""

    def add(self, release: ModelRelease) -> None:
        """Store a new release; Conflict if its release_id (sub_model@version) exists."""
        ...

    def save(self, release: ModelRelease) -> None:
        """Replace a release's proof and status (upgrade, verification); Conflict if unknown."""
        ...

    def get(self, release_id: str) -> ModelRelease | None:
        """The release with ``release_id``, or None."""
        ...

    def list(self) -> Sequence[ModelRelease]:
        """Every release, newest ``created_at`` first, then by release_id."""
        ...


class BountyRepository(Protocol):
    """GitHub bounties (seed 000/001, GET/POST /v1/github/bounties)."""

    def add(self, bounty: Bounty) -> None:
        """Store a new bounty; Conflict if its bounty_id exists."""
        ...

    def save(self, bounty: Bounty) -> None:
        """Replace a stored bounty (its status); Conflict if unknown."""
        ...

    def get(self, bounty_id: str) -> Bounty | None:
        """The bounty with ``bounty_id``, or None."""
        ...

    def list(self, status: BountyStatus | None = None, limit: int = 100) -> Sequence[Bounty]:
        """Up to ``limit`` bounties (of ``status`` if given), newest first, then by id."""
        ...


class AnalysisRepository(Protocol):
    """Repository analysis requests (POST /v1/github/analyze) and their outcomes."""

    def add(self, request: AnalysisRequest) -> None:
        """Store a new request; Conflict if its analysis_id exists."""
        ...

    def save(self, request: AnalysisRequest) -> None:
        """Replace a stored request (state, result); Conflict if unknown."""
        ...

    def get(self, analysis_id: str) -> AnalysisRequest | None:
        """The request with ``analysis_id``, or None."""
        ...


class MiningPayoutRepository(Protocol):
    """Lightning payouts the pool made to miners and the treasury (SRS-POOL-07/08/10)."""

    def add(self, payout: MiningPayout) -> None:
        """Record one payout; Conflict if its payment_hash is already recorded."""
        ...

    def recent(self, limit: int = 100, miner_id: str | None = None) -> Sequence[MiningPayout]:
        """Up to ``limit`` payouts (to one miner if given), newest first, then by hash."""
        ...


class TaskInputRepository(Protocol):
    """Each submitted task's input bytes, keyed by the submitted task_id (not per replica).

    Kept so that a task re-pushed after a coordinator restart still reaches its node with its
    input; deleted once the task's replicas are settled or forfeited. Data longer than
    :data:`~owm_core.market.tasks.MAX_TASK_INPUT_BYTES` is refused with InvalidValue(``input``).
    """

    def put(self, task_id: str, data: bytes) -> None:
        """Store ``data`` for ``task_id``; same data again is a no-op, other data a Conflict."""
        ...

    def get(self, task_id: str) -> bytes | None:
        """The input stored for ``task_id``, or None."""
        ...

    def delete(self, task_id: str) -> None:
        """Forget the input of ``task_id`` (nothing happens if none is stored)."""
        ...


class SubModelRepository(Protocol):
    """The conglomerate's sub-model registry (SRS 2.1), keyed by name."""

    def add(self, sub_model: SubModel) -> None:
        """Register a new sub-model; Conflict if its name is taken."""
        ...

    def save(self, sub_model: SubModel) -> None:
        """Replace a registered sub-model (version, datasets, hosts); Conflict if unknown."""
        ...

    def get(self, name: str) -> SubModel | None:
        """The sub-model called ``name``, or None."""
        ...

    def list(self) -> Sequence[SubModel]:
        """Every sub-model, ordered by name."""
        ...


class DatasetRepository(Protocol):
    """Contributed datasets with their documents (SRS 2.2), keyed by dataset id."""

    def add(self, record: DatasetRecord, documents: Sequence[Document]) -> None:
        """Store a contribution and its documents in order; Conflict if its id exists."""
        ...

    def save(self, record: DatasetRecord) -> None:
        """Replace a stored record (its proof); Conflict if unknown or its digest differs."""
        ...

    def get(self, dataset_id: str) -> DatasetRecord | None:
        """The contribution with ``dataset_id``, or None."""
        ...

    def documents(self, dataset_id: str) -> Sequence[Document]:
        """The dataset's documents in submission order (empty if unknown)."""
        ...

    def list(
        self, sub_model: str | None = None, contributor: str | None = None, limit: int = 100
    ) -> Sequence[DatasetRecord]:
        """Up to ``limit`` records (filtered if asked), oldest ``submitted_at`` first, then id."""
        ...


class DataCreditRepository(Protocol):
    """Credits owed to data contributors per answered query (SRS 2.2)."""

    def add(self, query_id: str, credits: Sequence[DataCredit], at: int) -> None:
        """Record the credits of one query (none: nothing); Conflict if already credited."""
        ...

    def for_contributor(
        self, contributor: str, limit: int = 100
    ) -> Sequence[tuple[str, int, DataCredit]]:
        """Up to ``limit`` (query_id, at, credit) of ``contributor``, newest first, then query."""
        ...

    def for_query(self, query_id: str) -> Sequence[DataCredit]:
        """The credits recorded for ``query_id``, by contributor then dataset id."""
        ...

    def total_msat(self, contributor: str) -> int:
        """Everything credited to ``contributor`` so far, in msat."""
        ...


class SlashingEvidenceRepository(Protocol):
    """Slashing signals and maintainer acknowledgements waiting for a decision, and decisions
    being carried out (SRS-STAKE-04, SRS-SEC-14), so a coordinator restart loses none of them.

    Evidence is *open* until a decision about its node finishes (or the node turns out to be
    slashed already); then it is *closed*, kept for the record, and never counted again. The
    same evidence reported twice is stored once.
    """

    def add_signal(self, signal: SlashingSignal) -> bool:
        """Store an open signal; False (nothing stored) if node, reporter, reason and evidence
        hash are already known, open or closed."""
        ...

    def add_acknowledgement(self, node_id: str, envelope: Envelope, received_at: int) -> bool:
        """Store an open maintainer_ack envelope about ``node_id``; False if its signature is
        already known."""
        ...

    def open_signals(self, node_id: str) -> Sequence[SlashingSignal]:
        """The open signals about ``node_id``, oldest first."""
        ...

    def open_acknowledgements(self, node_id: str) -> Sequence[Envelope]:
        """The open acknowledgement envelopes about ``node_id``, oldest first."""
        ...

    def open_node_ids(self, limit: int = 100) -> Sequence[str]:
        """Nodes with open evidence, by their oldest open evidence (then node id)."""
        ...

    def begin_decision(self, decision: SlashingDecision) -> SlashingDecision:
        """Record ``decision`` as being carried out, before anything is done (write-ahead);
        if the node already has an unfinished decision, store nothing and return that one."""
        ...

    def unfinished_decisions(self) -> Sequence[SlashingDecision]:
        """Decisions begun and not finished (a crash in between), oldest first."""
        ...

    def finish_decision(self, node_id: str, finished_at: int) -> None:
        """Mark the node's unfinished decision done and close its open evidence, together."""
        ...

    def close_evidence(self, node_id: str, closed_at: int) -> int:
        """Close the node's open evidence without a decision; returns how many were open."""
        ...


class QueryAnswerRepository(Protocol):
    """Answered conglomerate queries, kept for ``GET /v1/query/{query_id}`` (SRS 4.8.2)."""

    def add(self, answer: QueryAnswer) -> None:
        """Store an answer; Conflict if its query id is already stored."""
        ...

    def get(self, query_id: str) -> QueryAnswer | None:
        """The stored answer of ``query_id``, or None."""
        ...


class FlRoundRepository(Protocol):
    """Coordinator FL rounds and the signed updates uploaded into them (SRS-COORD-03).

    Rounds are keyed by their number (unique across sub-models); updates by (round, node id),
    one per node and round, kept in arrival order.
    """

    def add_round(self, fl_round: FlRound) -> None:
        """Store a new round; Conflict if its number exists."""
        ...

    def save_round(self, fl_round: FlRound) -> None:
        """Replace a stored round (state, results); Conflict if unknown."""
        ...

    def get_round(self, number: int) -> FlRound | None:
        """The round ``number``, or None."""
        ...

    def rounds(self, limit: int = 100, state: RoundState | None = None) -> Sequence[FlRound]:
        """Rounds (in ``state`` if given), newest (highest number) first, at most ``limit``."""
        ...

    def add_update(self, update: RoundUpdate) -> bool:
        """Store an upload: True if new, False if the same update is stored already (idempotent);
        Conflict if the node stored a different one for the round or the round is unknown."""
        ...

    def updates(self, number: int) -> Sequence[RoundUpdate]:
        """The round's updates in arrival order."""
        ...

    def score_updates(self, number: int, scores: Mapping[str, tuple[float, bool]]) -> None:
        """Record ``node_id → (anomaly score, flagged)``; Conflict if a node has no update."""
        ...


class Repositories(Protocol):
    """Every repository of one store, and the store's transaction boundary.

    ``owm_adapters.storage.memory.memory_repositories()`` and
    ``owm_adapters.storage.sql.open_repositories(url)``
    both return this shape.
    """

    @property
    def nodes(self) -> NodeRepository:
        """The nodes repository."""
        ...

    @property
    def manifests(self) -> ManifestRepository:
        """The manifests repository."""
        ...

    @property
    def stakes(self) -> StakeRepository:
        """The stakes repository."""
        ...

    @property
    def tasks(self) -> TaskRepository:
        """The tasks repository."""
        ...

    @property
    def proofs(self) -> ProofRepository:
        """The proofs repository."""
        ...

    @property
    def payments(self) -> PaymentRepository:
        """The payments repository."""
        ...

    @property
    def slashing_log(self) -> SlashingLogRepository:
        """The slashing log repository."""
        ...

    @property
    def proposals(self) -> ProposalRepository:
        """The proposals repository."""
        ...

    @property
    def shares(self) -> ShareRepository:
        """The shares repository."""
        ...

    @property
    def api_keys(self) -> ApiKeyRepository:
        """The api keys repository."""
        ...

    @property
    def releases(self) -> ModelReleaseRepository:
        """The model releases repository."""
        ...

    @property
    def bounties(self) -> BountyRepository:
        """The GitHub bounties repository."""
        ...

    @property
    def analyses(self) -> AnalysisRepository:
        """The repository analysis requests repository."""
        ...

    @property
    def mining_payouts(self) -> MiningPayoutRepository:
        """The mining payouts repository."""
        ...

    @property
    def task_inputs(self) -> TaskInputRepository:
        """The task inputs repository."""
        ...

    @property
    def task_outputs(self) -> TaskInputRepository:
        """Outputs nodes delivered with their proofs, keyed by replica id (same shape as inputs;
        too long an output is InvalidValue(``output``))."""
        ...

    @property
    def sub_models(self) -> SubModelRepository:
        """The sub-model registry."""
        ...

    @property
    def datasets(self) -> DatasetRepository:
        """The contributed datasets repository."""
        ...

    @property
    def data_credits(self) -> DataCreditRepository:
        """The data contributors' credits repository."""
        ...

    @property
    def slashing_evidence(self) -> SlashingEvidenceRepository:
        """Open slashing signals, acknowledgements and unfinished decisions."""
        ...

    @property
    def query_answers(self) -> QueryAnswerRepository:
        """The answered queries repository."""
        ...

    @property
    def fl_rounds(self) -> FlRoundRepository:
        """The coordinator's FL rounds and their uploaded updates."""
        ...

    def atomic(self) -> AbstractContextManager[None]:
        """A block whose writes (on this thread) commit together, or not at all if it raises."""
        ...

    def close(self) -> None:
        """Release connections; the repositories must not be used afterwards."""
        ...
