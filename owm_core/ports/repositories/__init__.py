"""The repositories port: the coordinator's durable state, one repository per kind of record.

One module per bounded context declares its repositories (``nodes``, ``market``, ``payments``,
``stake``, ``governance``, ``pool``, ``access``, ``knowledge``, ``provenance``, ``fl``,
``coordination``); this
package re-exports them and declares :class:`Repositories`, the whole store.

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

from contextlib import AbstractContextManager
from typing import Protocol

from owm_core.ports.repositories.access import (
    ApiKeyRepository as ApiKeyRepository,
)
from owm_core.ports.repositories.coordination import (
    ChallengeRepository as ChallengeRepository,
)
from owm_core.ports.repositories.coordination import (
    NonceRepository as NonceRepository,
)
from owm_core.ports.repositories.coordination import (
    QuotaRepository as QuotaRepository,
)
from owm_core.ports.repositories.coordination import (
    RateLogRepository as RateLogRepository,
)
from owm_core.ports.repositories.coordination import (
    TaskStreamRepository as TaskStreamRepository,
)
from owm_core.ports.repositories.coordination import (
    TokenCreditRepository as TokenCreditRepository,
)
from owm_core.ports.repositories.fl import (
    FlRoundRepository as FlRoundRepository,
)
from owm_core.ports.repositories.governance import (
    AnalysisRepository as AnalysisRepository,
)
from owm_core.ports.repositories.governance import (
    BountyRepository as BountyRepository,
)
from owm_core.ports.repositories.governance import (
    GovernanceLogRepository as GovernanceLogRepository,
)
from owm_core.ports.repositories.governance import (
    HandlerRetryRepository as HandlerRetryRepository,
)
from owm_core.ports.repositories.governance import (
    ProposalRepository as ProposalRepository,
)
from owm_core.ports.repositories.governance import (
    TreasurySpendRepository as TreasurySpendRepository,
)
from owm_core.ports.repositories.governance import (
    WebhookEventRepository as WebhookEventRepository,
)
from owm_core.ports.repositories.knowledge import (
    DataCreditRepository as DataCreditRepository,
)
from owm_core.ports.repositories.knowledge import (
    DataPayeeRepository as DataPayeeRepository,
)
from owm_core.ports.repositories.knowledge import (
    DatasetRepository as DatasetRepository,
)
from owm_core.ports.repositories.knowledge import (
    QueryAnswerRepository as QueryAnswerRepository,
)
from owm_core.ports.repositories.knowledge import (
    SubModelRepository as SubModelRepository,
)
from owm_core.ports.repositories.market import (
    CommitmentRepository as CommitmentRepository,
)
from owm_core.ports.repositories.market import (
    FundingRepository as FundingRepository,
)
from owm_core.ports.repositories.market import (
    ProofRepository as ProofRepository,
)
from owm_core.ports.repositories.market import (
    TaskInputRepository as TaskInputRepository,
)
from owm_core.ports.repositories.market import (
    TaskRepository as TaskRepository,
)
from owm_core.ports.repositories.nodes import (
    HeartbeatActivityRepository as HeartbeatActivityRepository,
)
from owm_core.ports.repositories.nodes import (
    ManifestRepository as ManifestRepository,
)
from owm_core.ports.repositories.nodes import (
    NodeRepository as NodeRepository,
)
from owm_core.ports.repositories.payments import (
    PaymentRepository as PaymentRepository,
)
from owm_core.ports.repositories.payments import (
    PayoutChannelRepository as PayoutChannelRepository,
)
from owm_core.ports.repositories.payments import (
    PayoutRequestRepository as PayoutRequestRepository,
)
from owm_core.ports.repositories.pool import (
    MinerCreditRepository as MinerCreditRepository,
)
from owm_core.ports.repositories.pool import (
    MiningPayoutRepository as MiningPayoutRepository,
)
from owm_core.ports.repositories.pool import (
    ShareRejectionRepository as ShareRejectionRepository,
)
from owm_core.ports.repositories.pool import (
    ShareRepository as ShareRepository,
)
from owm_core.ports.repositories.provenance import (
    ModelReleaseRepository as ModelReleaseRepository,
)
from owm_core.ports.repositories.stake import (
    ChannelBindingRepository as ChannelBindingRepository,
)
from owm_core.ports.repositories.stake import (
    SlashingEvidenceRepository as SlashingEvidenceRepository,
)
from owm_core.ports.repositories.stake import (
    SlashingLogRepository as SlashingLogRepository,
)
from owm_core.ports.repositories.stake import (
    StakeRepository as StakeRepository,
)


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
    def heartbeat_activity(self) -> HeartbeatActivityRepository:
        """Heartbeats per node and minute (the dashboard's activity charts)."""
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
    def payout_channels(self) -> PayoutChannelRepository:
        """The treasury's payout-channel openings (SRS-LN-03)."""
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
    def governance_log(self) -> GovernanceLogRepository:
        """The governance log repository."""
        ...

    @property
    def treasury_spends(self) -> TreasurySpendRepository:
        """The treasury spends repository."""
        ...

    @property
    def shares(self) -> ShareRepository:
        """The shares repository."""
        ...

    @property
    def share_rejections(self) -> ShareRejectionRepository:
        """Rejected shares per miner and reason code (SRS-POOL-06/09)."""
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
    def webhook_events(self) -> WebhookEventRepository:
        """The GitHub App's webhook deliveries (a stored delivery id is a replay)."""
        ...

    @property
    def handler_retries(self) -> HandlerRetryRepository:
        """The webhook handlers still to be run with a stored delivery (shared, durable)."""
        ...

    @property
    def mining_payouts(self) -> MiningPayoutRepository:
        """The mining payouts repository."""
        ...

    @property
    def miner_credits(self) -> MinerCreditRepository:
        """What each miner has earned at the FPPS rate (SRS-POOL-04)."""
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
    def commitments(self) -> CommitmentRepository:
        """Replicas' commitments of rounds not judged yet (commit–reveal)."""
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
    def data_payees(self) -> DataPayeeRepository:
        """Where data contributors are paid (SRS 2.2)."""
        ...

    @property
    def channel_bindings(self) -> ChannelBindingRepository:
        """Which node each stake channel backs (one channel, one node)."""
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

    @property
    def funding(self) -> FundingRepository:
        """Prepaid balances, top-ups, task escrows and network budget draws."""
        ...

    @property
    def payout_requests(self) -> PayoutRequestRepository:
        """Payouts awaiting the payee node's invoice and the invoices handed in (SRS-LN-04)."""
        ...

    @property
    def challenges(self) -> ChallengeRepository:
        """Challenges issued and not yet answered (shared by coordinators, SRS-COORD-05)."""
        ...

    @property
    def nonces(self) -> NonceRepository:
        """Envelope nonces already used, until they expire (SRS-SEC-03, SRS-COORD-05)."""
        ...

    @property
    def rate_log(self) -> RateLogRepository:
        """What each sliding-window rate limit admitted, per key (SRS-COORD-05)."""
        ...

    @property
    def quotas(self) -> QuotaRepository:
        """What each daily quota counted, per key and day (SRS-API-03, SRS-COORD-05)."""
        ...

    @property
    def token_credits(self) -> TokenCreditRepository:
        """What each L402 token's payment still covers (SRS-API-03, SRS-COORD-05)."""
        ...

    @property
    def task_streams(self) -> TaskStreamRepository:
        """The task streams open at every coordinator, with their offers (SRS-COORD-05)."""
        ...

    def atomic(self) -> AbstractContextManager[None]:
        """A block whose writes (on this thread) commit together, or not at all if it raises."""
        ...

    def close(self) -> None:
        """Release connections; the repositories must not be used afterwards."""
        ...
