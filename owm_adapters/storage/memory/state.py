"""The state every in-memory repository shares, and their common base."""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection
from typing import Any, ClassVar, Generic, TypeVar

import attrs

from owm_core.access.api_keys import ApiKey
from owm_core.coordination.challenges import Challenge
from owm_core.coordination.governance_log import GovernanceLogEntry
from owm_core.errors import Conflict
from owm_core.fl.rounds import FlRound, RoundUpdate
from owm_core.governance.contributions import AnalysisRequest, Bounty
from owm_core.governance.github_app import HandlerRetry, WebhookEvent
from owm_core.governance.proposals import Proposal
from owm_core.governance.treasury import TreasurySpend
from owm_core.identity.envelopes import Envelope
from owm_core.knowledge.credit_payouts import DataPayee
from owm_core.knowledge.datasets import DatasetRecord, Document
from owm_core.knowledge.retrieval import DataCredit
from owm_core.knowledge.routing import QueryAnswer
from owm_core.knowledge.submodels import SubModel
from owm_core.market.commit_reveal import RecordedCommitment
from owm_core.market.funding import Balance, Escrow, PeriodBudget, TopUp
from owm_core.market.streams import OpenStream
from owm_core.market.tasks import Task
from owm_core.nodes.registry import Node
from owm_core.payments.invoices import PendingPayout
from owm_core.payments.lightning import Invoice
from owm_core.payments.payout_channels import PayoutChannelOpening
from owm_core.payments.records import PaymentAttempt, RewardPayment
from owm_core.pool.bitcoin import AcceptedShare
from owm_core.pool.fpps import MinerCredit
from owm_core.pool.stats import MiningPayout
from owm_core.provenance.releases import ModelRelease
from owm_core.stake.changes import StakeChange
from owm_core.stake.channel import Stake
from owm_core.stake.slashing import (
    SlashingDecision,
    SlashingLogRecord,
    SlashingSignal,
)


@attrs.define
class State:
    """Everything the memory store holds; ``seq`` orders insertions like SQL's row ids."""

    seq: int = 0
    nodes: dict[str, Node] = attrs.Factory(dict)
    #: Index: public key → node id, so that a key lookup is not a scan of every node.
    node_keys: dict[str, str] = attrs.Factory(dict)
    manifests: dict[str, Envelope] = attrs.Factory(dict)
    stakes: dict[str, Stake] = attrs.Factory(dict)
    stake_changes: list[StakeChange] = attrs.Factory(list)
    heartbeat_activity: dict[tuple[int, str], int] = attrs.Factory(dict)
    channel_bindings: dict[str, str] = attrs.Factory(dict)
    #: Index of ``channel_bindings``: node id → the one channel point it holds.
    bound_channels: dict[str, str] = attrs.Factory(dict)
    tasks: dict[str, tuple[int, Task]] = attrs.Factory(dict)
    proofs: dict[tuple[str, str], Envelope] = attrs.Factory(dict)
    payments: dict[str, tuple[int, RewardPayment]] = attrs.Factory(dict)
    payout_channels: dict[str, PayoutChannelOpening] = attrs.Factory(dict)
    #: Indexes of ``payments``: payment id → hash; node id → its hashes (tuples, replaced
    #: rather than mutated so that a snapshot stays independent).
    payment_ids: dict[str, str] = attrs.Factory(dict)
    payments_by_node: dict[str, tuple[str, ...]] = attrs.Factory(dict)
    attempts: list[PaymentAttempt] = attrs.Factory(list)
    slashing_log: list[SlashingLogRecord] = attrs.Factory(list)
    # slashing evidence: values are replaced, never mutated, so snapshots stay independent
    slashing_signals: dict[tuple[str, str, str, str], tuple[int, SlashingSignal, int | None]] = (
        attrs.Factory(dict)
    )
    slashing_acks: dict[str, tuple[int, str, Envelope, int, int | None]] = attrs.Factory(dict)
    slashing_decisions: dict[int, tuple[SlashingDecision, int | None]] = attrs.Factory(dict)
    # maintainers' reversal statements by signature: (seq, log index, envelope, received at,
    # index of the reversal entry that counted it or None)
    reversal_statements: dict[str, tuple[int, int, Envelope, int, int | None]] = attrs.Factory(
        dict
    )
    proposals: dict[str, Proposal] = attrs.Factory(dict)
    governance_log: list[GovernanceLogEntry] = attrs.Factory(list)
    treasury_spends: dict[str, TreasurySpend] = attrs.Factory(dict)
    shares: dict[str, tuple[int, int, AcceptedShare]] = attrs.Factory(dict)
    #: (miner id, reason code) → rejected shares; replaced, never mutated (snapshots).
    share_rejections: dict[tuple[str, str], int] = attrs.Factory(dict)
    api_keys: dict[str, tuple[int, ApiKey]] = attrs.Factory(dict)
    releases: dict[str, ModelRelease] = attrs.Factory(dict)
    bounties: dict[str, Bounty] = attrs.Factory(dict)
    analyses: dict[str, AnalysisRequest] = attrs.Factory(dict)
    webhook_events: dict[str, WebhookEvent] = attrs.Factory(dict)
    handler_retries: dict[tuple[str, str], HandlerRetry] = attrs.Factory(dict)
    mining_payouts: dict[str, MiningPayout] = attrs.Factory(dict)
    miner_credits: dict[str, MinerCredit] = attrs.Factory(dict)
    task_inputs: dict[str, bytes] = attrs.Factory(dict)
    task_outputs: dict[str, bytes] = attrs.Factory(dict)
    commitments: dict[str, RecordedCommitment] = attrs.Factory(dict)
    sub_models: dict[str, SubModel] = attrs.Factory(dict)
    datasets: dict[str, tuple[int, DatasetRecord, tuple[Document, ...]]] = attrs.Factory(dict)
    data_credits: dict[str, tuple[int, int, tuple[DataCredit, ...]]] = attrs.Factory(dict)
    data_payees: dict[str, DataPayee] = attrs.Factory(dict)
    query_answers: dict[str, QueryAnswer] = attrs.Factory(dict)
    fl_rounds: dict[int, FlRound] = attrs.Factory(dict)
    fl_updates: dict[tuple[int, str], tuple[int, RoundUpdate]] = attrs.Factory(dict)
    balances: dict[str, Balance] = attrs.Factory(dict)
    top_ups: dict[str, tuple[int, TopUp]] = attrs.Factory(dict)
    escrows: dict[str, tuple[int, Escrow]] = attrs.Factory(dict)
    budgets: dict[str, PeriodBudget] = attrs.Factory(dict)
    challenges: dict[str, Challenge] = attrs.Factory(dict)
    nonces: dict[tuple[str, str], int] = attrs.Factory(dict)
    rate_log: dict[tuple[str, str], list[int]] = attrs.Factory(dict)
    quotas: dict[tuple[str, str, int], int] = attrs.Factory(dict)
    task_streams: dict[str, OpenStream] = attrs.Factory(dict)
    token_credits: dict[str, tuple[int, int]] = attrs.Factory(dict)
    payout_requests: dict[str, tuple[PendingPayout, Invoice | None]] = attrs.Factory(dict)

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def snapshot(self) -> dict[str, Any]:
        return {
            a.name: (getattr(self, a.name).copy() if a.name != "seq" else self.seq)
            for a in attrs.fields(State)
        }

    def restore(self, snapshot: dict[str, Any]) -> None:
        for name, value in snapshot.items():
            setattr(self, name, value)


V = TypeVar("V")


@attrs.define
class StateRepository:
    """Base of every memory repository: the shared state and the lock that guards it."""

    _state: State
    _lock: threading.RLock

    def _picked(self, table: str, keys: Collection[Any]) -> dict[Any, Any]:
        """The values of the state's ``table`` stored under ``keys`` (the twin of the SQL
        store's ``MappedRepository._by_keys``); a key with none: absent."""
        with self._lock:
            stored: dict[Any, Any] = getattr(self._state, table)
            return {k: stored[k] for k in keys if k in stored}

    def _insert_new(self, table: str, key: Any, value: Any, taken: str) -> None:
        """Store ``value`` under a new ``key`` of the state's ``table``; Conflict(``taken``)
        if the key is stored already (the SQL store's primary-key clash)."""
        with self._lock:
            stored: dict[Any, Any] = getattr(self._state, table)
            if key in stored:
                raise Conflict(taken)
            stored[key] = value

    def _replace_known(self, table: str, key: Any, value: Any, missing: str) -> None:
        """Replace the value under a stored ``key`` of the state's ``table``;
        Conflict(``missing``) if there is none (the SQL store's update of no row)."""
        with self._lock:
            stored: dict[Any, Any] = getattr(self._state, table)
            if key not in stored:
                raise Conflict(missing)
            stored[key] = value

    def _insert_in_order(self, table: str, key: Any, value: Any, taken: str) -> None:
        """:meth:`_insert_new` for a ``table`` of ``(seq, value)`` entries: ``value`` takes
        the next insertion position (the SQL store's ``seq`` column)."""
        with self._lock:
            self._insert_new(table, key, (self._state.next_seq(), value), taken)

    def _replace_in_order(self, table: str, key: Any, value: Any, missing: str) -> None:
        """:meth:`_replace_known` for a ``table`` of ``(seq, value)`` entries: ``value``
        keeps the insertion position of the value it replaces."""
        with self._lock:
            stored = getattr(self._state, table).get(key)
            self._replace_known(table, key, (stored[0] if stored else 0, value), missing)

    def _drop_where(self, table: str, gone: Callable[[Any, Any], bool]) -> int:
        """Delete the entries of the state's ``table`` for which ``gone(key, value)``
        (expiry, retention); how many."""
        with self._lock:
            stored: dict[Any, Any] = getattr(self._state, table)
            keys = [key for key, value in stored.items() if gone(key, value)]
            for key in keys:
                del stored[key]
            return len(keys)


class _ByKeyStateRepository(StateRepository, Generic[V]):
    """One kind of value in the state's dict ``_table``, keyed by the value's ``_key``
    attribute."""

    _table: ClassVar[str]
    _key: ClassVar[str]

    def get(self, key: Any) -> V | None:
        """The value stored under ``key``, or None."""
        with self._lock:
            found: V | None = getattr(self._state, self._table).get(key)
            return found

    def _in_key_order(self, limit: int, after: str = "") -> list[V]:
        """Up to ``limit`` stored values whose keys come after ``after``, by key."""
        with self._lock:
            stored: dict[Any, V] = getattr(self._state, self._table)
            return [stored[k] for k in sorted(stored) if k > after][:limit]


class KeyedStateRepository(_ByKeyStateRepository[V]):
    """The twin of the SQL ``KeyedRepository``. ``_taken`` and ``_unknown`` are the Conflict
    messages of adding a stored key and saving an unknown one (``{}``: the key)."""

    _taken: ClassVar[str]
    _unknown: ClassVar[str]

    def add(self, value: V) -> None:
        """Store a new value; Conflict if its key is stored already."""
        key = getattr(value, self._key)
        self._insert_new(self._table, key, value, self._taken.format(key))

    def save(self, value: V) -> None:
        """Replace the stored value with the same key; Conflict if there is none."""
        key = getattr(value, self._key)
        self._replace_known(self._table, key, value, self._unknown.format(key))


class PutStateRepository(_ByKeyStateRepository[V]):
    """The twin of the SQL ``PutRepository``: the latest value per key."""

    def put(self, value: V) -> None:
        """Store ``value`` under its key, replacing the value stored there."""
        with self._lock:
            getattr(self._state, self._table)[getattr(value, self._key)] = value
