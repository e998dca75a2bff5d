"""The SQL store: every repository over one database (the ``Repositories`` port).

Rows become domain values (and values rows) only inside this package (:mod:`.rows` and the
repositories); callers never see a row. Every statement is a SQLAlchemy Core expression whose
values travel as bound parameters, never formatted into SQL text (SRS-SEC-06).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import attrs
from sqlalchemy import Engine

from owm_adapters.storage.sql.database import Database
from owm_adapters.storage.sql.repositories.access import SqlApiKeyRepository
from owm_adapters.storage.sql.repositories.coordination import (
    SqlChallengeRepository,
    SqlNonceRepository,
    SqlQuotaRepository,
    SqlRateLogRepository,
)
from owm_adapters.storage.sql.repositories.credits import SqlTokenCreditRepository
from owm_adapters.storage.sql.repositories.fl import SqlFlRoundRepository
from owm_adapters.storage.sql.repositories.funding import SqlFundingRepository
from owm_adapters.storage.sql.repositories.governance import (
    SqlAnalysisRepository,
    SqlBountyRepository,
    SqlGovernanceLogRepository,
    SqlHandlerRetryRepository,
    SqlProposalRepository,
    SqlTreasurySpendRepository,
    SqlWebhookEventRepository,
)
from owm_adapters.storage.sql.repositories.knowledge import (
    SqlDatasetRepository,
    SqlSubModelRepository,
)
from owm_adapters.storage.sql.repositories.market import (
    SqlCommitmentRepository,
    SqlProofRepository,
    SqlTaskInputRepository,
    SqlTaskOutputRepository,
    SqlTaskRepository,
)
from owm_adapters.storage.sql.repositories.nodes import (
    SqlHeartbeatActivityRepository,
    SqlManifestRepository,
    SqlNodeRepository,
)
from owm_adapters.storage.sql.repositories.payments import (
    SqlPaymentRepository,
    SqlPayoutChannelRepository,
    SqlPayoutRequestRepository,
)
from owm_adapters.storage.sql.repositories.pool import (
    SqlMinerCreditRepository,
    SqlMiningPayoutRepository,
    SqlShareRejectionRepository,
    SqlShareRepository,
)
from owm_adapters.storage.sql.repositories.provenance import SqlModelReleaseRepository
from owm_adapters.storage.sql.repositories.retrieval import (
    SqlDataCreditRepository,
    SqlDataPayeeRepository,
    SqlQueryAnswerRepository,
)
from owm_adapters.storage.sql.repositories.slashing import (
    SqlSlashingEvidenceRepository,
    SqlSlashingLogRepository,
)
from owm_adapters.storage.sql.repositories.stake import (
    SqlChannelBindingRepository,
    SqlStakeRepository,
)
from owm_adapters.storage.sql.repositories.streams import SqlTaskStreamRepository
from owm_core.ports.repositories import Repositories


@attrs.define
class SqlRepositories:
    """Every SQL repository over one engine (the ``Repositories`` port)."""

    nodes: SqlNodeRepository
    heartbeat_activity: SqlHeartbeatActivityRepository
    manifests: SqlManifestRepository
    stakes: SqlStakeRepository
    tasks: SqlTaskRepository
    proofs: SqlProofRepository
    payments: SqlPaymentRepository
    payout_channels: SqlPayoutChannelRepository
    slashing_log: SqlSlashingLogRepository
    slashing_evidence: SqlSlashingEvidenceRepository
    channel_bindings: SqlChannelBindingRepository
    proposals: SqlProposalRepository
    governance_log: SqlGovernanceLogRepository
    treasury_spends: SqlTreasurySpendRepository
    shares: SqlShareRepository
    share_rejections: SqlShareRejectionRepository
    api_keys: SqlApiKeyRepository
    releases: SqlModelReleaseRepository
    bounties: SqlBountyRepository
    analyses: SqlAnalysisRepository
    webhook_events: SqlWebhookEventRepository
    handler_retries: SqlHandlerRetryRepository
    mining_payouts: SqlMiningPayoutRepository
    miner_credits: SqlMinerCreditRepository
    task_inputs: SqlTaskInputRepository
    task_outputs: SqlTaskOutputRepository
    commitments: SqlCommitmentRepository
    sub_models: SqlSubModelRepository
    datasets: SqlDatasetRepository
    data_credits: SqlDataCreditRepository
    data_payees: SqlDataPayeeRepository
    query_answers: SqlQueryAnswerRepository
    fl_rounds: SqlFlRoundRepository
    funding: SqlFundingRepository
    payout_requests: SqlPayoutRequestRepository
    challenges: SqlChallengeRepository
    nonces: SqlNonceRepository
    rate_log: SqlRateLogRepository
    quotas: SqlQuotaRepository
    task_streams: SqlTaskStreamRepository
    token_credits: SqlTokenCreditRepository
    database: Database

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """A block whose writes (on this thread) commit together, or not at all if it raises."""
        with self.database.atomic():
            yield

    def close(self) -> None:
        """Dispose of the engine's connection pool."""
        self.database.engine.dispose()


def sql_repositories(engine: Engine) -> SqlRepositories:
    """Every repository over ``engine``, whose schema must be migrated to head already."""
    db = Database(engine)
    return SqlRepositories(
        nodes=SqlNodeRepository(db),
        heartbeat_activity=SqlHeartbeatActivityRepository(db),
        manifests=SqlManifestRepository(db),
        stakes=SqlStakeRepository(db),
        tasks=SqlTaskRepository(db),
        proofs=SqlProofRepository(db),
        payments=SqlPaymentRepository(db),
        payout_channels=SqlPayoutChannelRepository(db),
        slashing_log=SqlSlashingLogRepository(db),
        slashing_evidence=SqlSlashingEvidenceRepository(db),
        channel_bindings=SqlChannelBindingRepository(db),
        proposals=SqlProposalRepository(db),
        governance_log=SqlGovernanceLogRepository(db),
        treasury_spends=SqlTreasurySpendRepository(db),
        shares=SqlShareRepository(db),
        share_rejections=SqlShareRejectionRepository(db),
        api_keys=SqlApiKeyRepository(db),
        releases=SqlModelReleaseRepository(db),
        bounties=SqlBountyRepository(db),
        analyses=SqlAnalysisRepository(db),
        webhook_events=SqlWebhookEventRepository(db),
        handler_retries=SqlHandlerRetryRepository(db),
        mining_payouts=SqlMiningPayoutRepository(db),
        miner_credits=SqlMinerCreditRepository(db),
        task_inputs=SqlTaskInputRepository(db),
        task_outputs=SqlTaskOutputRepository(db),
        commitments=SqlCommitmentRepository(db),
        sub_models=SqlSubModelRepository(db),
        datasets=SqlDatasetRepository(db),
        data_credits=SqlDataCreditRepository(db),
        data_payees=SqlDataPayeeRepository(db),
        query_answers=SqlQueryAnswerRepository(db),
        fl_rounds=SqlFlRoundRepository(db),
        funding=SqlFundingRepository(db),
        payout_requests=SqlPayoutRequestRepository(db),
        challenges=SqlChallengeRepository(db),
        nonces=SqlNonceRepository(db),
        rate_log=SqlRateLogRepository(db),
        quotas=SqlQuotaRepository(db),
        task_streams=SqlTaskStreamRepository(db),
        token_credits=SqlTokenCreditRepository(db),
        database=db,
    )


def _conforms(store: SqlRepositories) -> Repositories:
    """Never called: makes mypy check that the bundle implements the port."""
    return store
