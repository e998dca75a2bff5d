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
from collections.abc import Iterator
from contextlib import contextmanager

import attrs

from owm_adapters.storage.memory.access import MemoryApiKeyRepository
from owm_adapters.storage.memory.coordination import (
    MemoryChallengeRepository,
    MemoryNonceRepository,
    MemoryQuotaRepository,
    MemoryRateLogRepository,
    MemoryTaskStreamRepository,
    MemoryTokenCreditRepository,
)
from owm_adapters.storage.memory.fl import MemoryFlRoundRepository
from owm_adapters.storage.memory.funding import MemoryFundingRepository
from owm_adapters.storage.memory.governance import (
    MemoryAnalysisRepository,
    MemoryBountyRepository,
    MemoryGovernanceLogRepository,
    MemoryHandlerRetryRepository,
    MemoryProposalRepository,
    MemoryTreasurySpendRepository,
    MemoryWebhookEventRepository,
)
from owm_adapters.storage.memory.knowledge import (
    MemoryDataCreditRepository,
    MemoryDataPayeeRepository,
    MemoryDatasetRepository,
    MemoryQueryAnswerRepository,
    MemorySubModelRepository,
)
from owm_adapters.storage.memory.market import (
    MemoryCommitmentRepository,
    MemoryProofRepository,
    MemoryTaskInputRepository,
    MemoryTaskOutputRepository,
    MemoryTaskRepository,
)
from owm_adapters.storage.memory.nodes import (
    MemoryHeartbeatActivityRepository,
    MemoryManifestRepository,
    MemoryNodeRepository,
)
from owm_adapters.storage.memory.payments import (
    MemoryPaymentRepository,
    MemoryPayoutChannelRepository,
    MemoryPayoutRequestRepository,
)
from owm_adapters.storage.memory.pool import (
    MemoryMinerCreditRepository,
    MemoryMiningPayoutRepository,
    MemoryShareRejectionRepository,
    MemoryShareRepository,
)
from owm_adapters.storage.memory.provenance import MemoryModelReleaseRepository
from owm_adapters.storage.memory.stake import (
    MemoryChannelBindingRepository,
    MemorySlashingEvidenceRepository,
    MemorySlashingLogRepository,
    MemoryStakeRepository,
)
from owm_adapters.storage.memory.state import State
from owm_core.ports.repositories import Repositories


@attrs.define
class MemoryRepositories:
    """Every in-memory repository over one shared state (the ``Repositories`` port)."""

    nodes: MemoryNodeRepository
    heartbeat_activity: MemoryHeartbeatActivityRepository
    manifests: MemoryManifestRepository
    stakes: MemoryStakeRepository
    tasks: MemoryTaskRepository
    proofs: MemoryProofRepository
    payments: MemoryPaymentRepository
    payout_channels: MemoryPayoutChannelRepository
    slashing_log: MemorySlashingLogRepository
    slashing_evidence: MemorySlashingEvidenceRepository
    channel_bindings: MemoryChannelBindingRepository
    proposals: MemoryProposalRepository
    governance_log: MemoryGovernanceLogRepository
    treasury_spends: MemoryTreasurySpendRepository
    shares: MemoryShareRepository
    share_rejections: MemoryShareRejectionRepository
    api_keys: MemoryApiKeyRepository
    releases: MemoryModelReleaseRepository
    bounties: MemoryBountyRepository
    analyses: MemoryAnalysisRepository
    webhook_events: MemoryWebhookEventRepository
    handler_retries: MemoryHandlerRetryRepository
    mining_payouts: MemoryMiningPayoutRepository
    miner_credits: MemoryMinerCreditRepository
    task_inputs: MemoryTaskInputRepository
    task_outputs: MemoryTaskOutputRepository
    commitments: MemoryCommitmentRepository
    sub_models: MemorySubModelRepository
    datasets: MemoryDatasetRepository
    data_credits: MemoryDataCreditRepository
    data_payees: MemoryDataPayeeRepository
    query_answers: MemoryQueryAnswerRepository
    fl_rounds: MemoryFlRoundRepository
    funding: MemoryFundingRepository
    payout_requests: MemoryPayoutRequestRepository
    challenges: MemoryChallengeRepository
    nonces: MemoryNonceRepository
    rate_log: MemoryRateLogRepository
    quotas: MemoryQuotaRepository
    task_streams: MemoryTaskStreamRepository
    token_credits: MemoryTokenCreditRepository
    _state: State
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
    state = State()
    lock = threading.RLock()
    return MemoryRepositories(
        nodes=MemoryNodeRepository(state, lock),
        heartbeat_activity=MemoryHeartbeatActivityRepository(state, lock),
        manifests=MemoryManifestRepository(state, lock),
        stakes=MemoryStakeRepository(state, lock),
        tasks=MemoryTaskRepository(state, lock),
        proofs=MemoryProofRepository(state, lock),
        payments=MemoryPaymentRepository(state, lock),
        payout_channels=MemoryPayoutChannelRepository(state, lock),
        slashing_log=MemorySlashingLogRepository(state, lock),
        slashing_evidence=MemorySlashingEvidenceRepository(state, lock),
        channel_bindings=MemoryChannelBindingRepository(state, lock),
        proposals=MemoryProposalRepository(state, lock),
        governance_log=MemoryGovernanceLogRepository(state, lock),
        treasury_spends=MemoryTreasurySpendRepository(state, lock),
        shares=MemoryShareRepository(state, lock),
        share_rejections=MemoryShareRejectionRepository(state, lock),
        api_keys=MemoryApiKeyRepository(state, lock),
        releases=MemoryModelReleaseRepository(state, lock),
        bounties=MemoryBountyRepository(state, lock),
        analyses=MemoryAnalysisRepository(state, lock),
        webhook_events=MemoryWebhookEventRepository(state, lock),
        handler_retries=MemoryHandlerRetryRepository(state, lock),
        mining_payouts=MemoryMiningPayoutRepository(state, lock),
        miner_credits=MemoryMinerCreditRepository(state, lock),
        task_inputs=MemoryTaskInputRepository(state, lock),
        task_outputs=MemoryTaskOutputRepository(state, lock),
        commitments=MemoryCommitmentRepository(state, lock),
        sub_models=MemorySubModelRepository(state, lock),
        datasets=MemoryDatasetRepository(state, lock),
        data_credits=MemoryDataCreditRepository(state, lock),
        data_payees=MemoryDataPayeeRepository(state, lock),
        query_answers=MemoryQueryAnswerRepository(state, lock),
        fl_rounds=MemoryFlRoundRepository(state, lock),
        funding=MemoryFundingRepository(state, lock),
        payout_requests=MemoryPayoutRequestRepository(state, lock),
        challenges=MemoryChallengeRepository(state, lock),
        nonces=MemoryNonceRepository(state, lock),
        rate_log=MemoryRateLogRepository(state, lock),
        quotas=MemoryQuotaRepository(state, lock),
        task_streams=MemoryTaskStreamRepository(state, lock),
        token_credits=MemoryTokenCreditRepository(state, lock),
        state=state,
        lock=lock,
    )


def _conforms(store: MemoryRepositories) -> Repositories:
    """Never called: makes mypy check that the bundle implements the port."""
    return store


__all__ = ["MemoryRepositories", "memory_repositories"]
