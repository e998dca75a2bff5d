"""The SQL repositories: every port of :mod:`owm_core.ports.repositories` on SQLAlchemy Core.

Rows become domain values (and values rows) only here, in the ``_row_*``/``_*_row``
functions; callers never see a row. Every statement is a SQLAlchemy Core expression whose
values travel as bound parameters, never formatted into SQL text (SRS-SEC-06).

Transactions: each repository call runs in its own transaction and commits before returning
(write transactions take SQLite's write lock up front). Inside
:meth:`SqlRepositories.atomic`, calls on the same thread share one transaction that commits
when the block ends; each call there runs in a savepoint, so a call that fails with
:class:`~owm_core.errors.Conflict` can be caught without spoiling the rest of the block.
Integrity errors from the database (duplicate keys, concurrent inserts) become ``Conflict``;
integers too large for a ``BIGINT`` become ``InvalidValue``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from fractions import Fraction
from typing import Any

import attrs
from sqlalchemy import (
    Connection,
    Engine,
    Row,
    Table,
    bindparam,
    delete,
    func,
    insert,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DataError, IntegrityError

from owm_adapters.storage.envelopes import manifest_of, proof_of
from owm_adapters.storage.sql import tables as t
from owm_adapters.storage.sql.engine import WRITE
from owm_core.access.api_keys import ApiKey, Plan
from owm_core.errors import Conflict, InvalidValue
from owm_core.fl.rounds import FlRound, RoundState, RoundUpdate, same_upload
from owm_core.fl.updates import SignedUpdate
from owm_core.governance.contributions import AnalysisRequest, AnalysisState, Bounty, BountyStatus
from owm_core.governance.proposals import Comment, Proposal, ProposalStatus, ProposalType
from owm_core.identity.envelopes import Envelope, from_bytes, to_bytes
from owm_core.knowledge.datasets import DatasetRecord, Document
from owm_core.knowledge.retrieval import DataCredit
from owm_core.knowledge.routing import QueryAnswer, answer_fields, answer_from_fields
from owm_core.knowledge.submodels import SubModel, SubModelKind
from owm_core.market.tasks import Task, TaskRequest, TaskState, check_task_input
from owm_core.nodes.registry import LnNodeUri, Node
from owm_core.nodes.tiers import Tier
from owm_core.payments.records import (
    AttemptOutcome,
    PaymentAttempt,
    PaymentState,
    RewardPayment,
    merge,
)
from owm_core.pool.bitcoin import AcceptedShare
from owm_core.pool.stats import MiningPayout
from owm_core.ports.repositories import Repositories
from owm_core.provenance.releases import ModelRelease
from owm_core.provenance.versions import ModelVersion, ProofStatus
from owm_core.stake.channel import Stake, StakeChannel, StakeStatus
from owm_core.stake.slashing import (
    SlashingDecision,
    SlashingLogEntry,
    SlashingReason,
    SlashingSignal,
    check_next_entry,
)

INT64_MAX = 2**63 - 1


class Database:
    """An engine plus the per-thread transaction that :meth:`atomic` opens."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._local = threading.local()

    def _current(self) -> Connection | None:
        conn: Connection | None = getattr(self._local, "conn", None)
        return conn

    @contextmanager
    def tx(self, write: bool = False) -> Iterator[Connection]:
        """A connection in a transaction: the atomic block's (in a savepoint) or a new one."""
        try:
            conn = self._current()
            if conn is not None:
                if write:
                    with conn.begin_nested():
                        yield conn
                else:
                    yield conn
                return
            with self.engine.connect() as fresh:
                if write:
                    fresh.execution_options(**{WRITE: True})
                with fresh.begin():
                    yield fresh
        except IntegrityError as exc:
            raise Conflict(f"the write clashes with a stored record ({_constraint(exc)})") from None
        except (DataError, OverflowError):
            raise InvalidValue("value", "does not fit the store's 64-bit columns") from None

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """One transaction for every call on this thread until the block ends (flat nesting)."""
        if self._current() is not None:
            yield
            return
        try:
            with self.engine.connect() as conn:
                conn.execution_options(**{WRITE: True})
                with conn.begin():
                    self._local.conn = conn
                    try:
                        yield
                    finally:
                        self._local.conn = None
        except IntegrityError as exc:
            raise Conflict(f"the write clashes with a stored record ({_constraint(exc)})") from None


def _constraint(exc: IntegrityError) -> str:
    """A short, secret-free description of the violated constraint."""
    return str(exc.orig).splitlines()[0][:200] if exc.orig is not None else "integrity"


def _int64(name: str, value: int) -> int:
    if value > INT64_MAX:
        raise InvalidValue(name, "does not fit the store's 64-bit columns")
    return value


def _upsert(
    conn: Connection, table: Table, row: dict[str, Any], key: str, only_if: Any = None
) -> bool:
    """INSERT … ON CONFLICT (key) DO UPDATE [WHERE only_if(excluded)]: one atomic statement on
    SQLite and PostgreSQL alike, so concurrent writers never clash. True if a row was written."""
    dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    statement = dialect_insert(table).values(row)
    excluded = statement.excluded
    upsert = statement.on_conflict_do_update(
        index_elements=[table.c[key]],
        set_={name: excluded[name] for name in row if name != key},
        where=None if only_if is None else only_if(excluded),
    ).returning(table.c[key])
    return conn.execute(upsert).first() is not None


@attrs.define
class _SqlRepo:
    _db: Database

    def _replace(
        self, table: Table, key: Any, value: str, row: dict[str, Any], missing: str
    ) -> None:
        """Overwrite the row whose ``key`` column equals ``value``; Conflict(``missing``) if
        there is none."""
        with self._db.tx(write=True) as conn:
            done = conn.execute(update(table).where(key == value).values(row))
        if done.rowcount == 0:
            raise Conflict(missing)


# --------------------------------------------------------------------------- nodes


def _node_row(node: Node) -> dict[str, Any]:
    return {
        "node_id": node.node_id,
        "public_key": node.public_key,
        "ln_pubkey": node.ln_node_uri.pubkey,
        "ln_host": node.ln_node_uri.host,
        "ln_port": node.ln_node_uri.port,
        "tier": node.tier.value,
        "vram_mb": node.vram_mb,
        "ram_mb": node.ram_mb,
        "bandwidth_mbps": node.bandwidth_mbps,
        "registered_at": node.registered_at,
        "last_heartbeat": node.last_heartbeat,
        "onion_address": node.onion_address,
        "reliability_ppm": node.reliability_ppm,
        "total_tasks_completed": node.total_tasks_completed,
        "total_sats_earned": node.total_sats_earned,
        "suspended": node.suspended,
    }


def _row_node(row: Row[Any]) -> Node:
    m = row._mapping
    return Node(
        node_id=m["node_id"],
        public_key=m["public_key"],
        ln_node_uri=LnNodeUri(pubkey=m["ln_pubkey"], host=m["ln_host"], port=m["ln_port"]),
        tier=Tier(m["tier"]),
        vram_mb=m["vram_mb"],
        ram_mb=m["ram_mb"],
        bandwidth_mbps=m["bandwidth_mbps"],
        registered_at=m["registered_at"],
        last_heartbeat=m["last_heartbeat"],
        onion_address=m["onion_address"],
        reliability_ppm=m["reliability_ppm"],
        total_tasks_completed=m["total_tasks_completed"],
        total_sats_earned=m["total_sats_earned"],
        suspended=bool(m["suspended"]),
    )


class SqlNodeRepository(_SqlRepo):
    """Nodes in the ``nodes`` table."""

    def add(self, node: Node) -> None:
        """Store a newly registered node; Conflict if its node_id or public key is taken."""
        with self._db.tx(write=True) as conn:
            conn.execute(insert(t.nodes).values(_node_row(node)))

    def save(self, node: Node) -> None:
        """Replace the stored record of an existing node; Conflict if it is unknown."""
        self._replace(
            t.nodes, t.nodes.c.node_id, node.node_id, _node_row(node),
            f"node {node.node_id} is not registered",
        )

    def get(self, node_id: str) -> Node | None:
        """The node with ``node_id``, or None."""
        with self._db.tx() as conn:
            row = conn.execute(select(t.nodes).where(t.nodes.c.node_id == node_id)).first()
        return None if row is None else _row_node(row)

    def get_by_public_key(self, public_key: str) -> Node | None:
        """The node registered with Ed25519 ``public_key`` (64 hex), or None."""
        with self._db.tx() as conn:
            row = conn.execute(select(t.nodes).where(t.nodes.c.public_key == public_key)).first()
        return None if row is None else _row_node(row)

    def list(self) -> Sequence[Node]:
        """Every node, ordered by node_id."""
        with self._db.tx() as conn:
            rows = conn.execute(select(t.nodes).order_by(t.nodes.c.node_id)).all()
        return [_row_node(r) for r in rows]

    def record_heartbeats(self, seen: Mapping[str, int]) -> int:
        """Batch-move ``last_heartbeat`` forward (node_id → at; never backwards); count updated."""
        if not seen:
            return 0
        c = t.nodes.c
        statement = (
            update(t.nodes)
            .where(c.node_id == bindparam("hb_node"), c.last_heartbeat < bindparam("hb_at"))
            .values(last_heartbeat=bindparam("hb_at"))
        )
        rows = [{"hb_node": node_id, "hb_at": at} for node_id, at in sorted(seen.items())]
        with self._db.tx(write=True) as conn:
            # One executemany round trip instead of a statement per node (SRS-PERF-04).
            return conn.execute(statement, rows).rowcount


# --------------------------------------------------------------------------- manifests


def _manifest_row(envelope: Envelope) -> dict[str, Any]:
    manifest = manifest_of(envelope)
    return {
        "node_id": envelope.signer_node_id,
        "digest": manifest.digest(),
        "issued_at": envelope.issued_at,
        "tier": manifest.tier.value,
        "tier_rank": manifest.tier.rank,
        "vram_mb": manifest.vram_mb,
        "ram_mb": manifest.ram_mb,
        "bandwidth_mbps": manifest.bandwidth_mbps,
        "gpu_vendor": manifest.gpu_vendor,
        "gpu_count": manifest.gpu_count,
        "envelope": to_bytes(envelope),
    }


def _row_envelope(row: Row[Any]) -> Envelope:
    return from_bytes(bytes(row._mapping["envelope"]))


class SqlManifestRepository(_SqlRepo):
    """Manifest envelopes (canonical bytes plus query columns) in the ``manifests`` table."""

    def put(self, envelope: Envelope) -> bool:
        """Keep ``envelope`` as its signer's manifest unless a later one is stored; True if kept."""
        row = _manifest_row(envelope)
        with self._db.tx(write=True) as conn:
            return _upsert(
                conn,
                t.manifests,
                row,
                "node_id",
                only_if=lambda new: t.manifests.c.issued_at <= new.issued_at,
            )

    def get(self, node_id: str) -> Envelope | None:
        """The latest manifest envelope of ``node_id``, or None."""
        with self._db.tx() as conn:
            row = conn.execute(
                select(t.manifests.c.envelope).where(t.manifests.c.node_id == node_id)
            ).first()
        return None if row is None else _row_envelope(row)

    def get_by_digest(self, node_id: str, digest: str) -> Envelope | None:
        """The node's current manifest if its body digest is ``digest`` (heartbeats cite it)."""
        c = t.manifests.c
        with self._db.tx() as conn:
            row = conn.execute(
                select(c.envelope).where(c.node_id == node_id, c.digest == digest)
            ).first()
        return None if row is None else _row_envelope(row)

    def matching(self, min_tier: Tier, min_vram_mb: int, min_ram_mb: int) -> Sequence[Envelope]:
        """Manifests of tier ≥ ``min_tier`` with at least this VRAM and RAM, by node_id."""
        c = t.manifests.c
        query = (
            select(c.envelope)
            .where(
                c.tier_rank >= min_tier.rank,
                c.vram_mb >= _int64("min_vram_mb", min_vram_mb),
                c.ram_mb >= _int64("min_ram_mb", min_ram_mb),
            )
            .order_by(c.node_id)
        )
        with self._db.tx() as conn:
            rows = conn.execute(query).all()
        return [_row_envelope(r) for r in rows]

    def remove(self, node_id: str) -> bool:
        """Forget the node's manifest (deregistration); True if there was one."""
        with self._db.tx(write=True) as conn:
            done = conn.execute(delete(t.manifests).where(t.manifests.c.node_id == node_id))
        return done.rowcount > 0


# --------------------------------------------------------------------------- stakes


def _stake_row(stake: Stake) -> dict[str, Any]:
    ch = stake.channel
    return {
        "public_key": stake.public_key,
        "tier": stake.tier.value,
        "status": stake.status.value,
        "required_sats": stake.required_sats,
        "capacity_sat": stake.capacity_sat,
        "bonus_bps": stake.bonus_bps,
        "changed_at": stake.changed_at,
        "next_verification_at": stake.next_verification_at,
        "grace_until": stake.grace_until,
        "cooldown_until": stake.cooldown_until,
        "channel_id": None if ch is None else ch.channel_id,
        "channel_point": None if ch is None else ch.channel_point,
        "channel_peer_pubkey": None if ch is None else ch.peer_pubkey,
        "channel_capacity_sat": None if ch is None else ch.capacity_sat,
        "channel_local_balance_sat": None if ch is None else ch.local_balance_sat,
        "channel_remote_balance_sat": None if ch is None else ch.remote_balance_sat,
        "channel_confirmations": None if ch is None else ch.confirmations,
        "channel_active": None if ch is None else ch.active,
    }


def _row_stake(row: Row[Any]) -> Stake:
    m = row._mapping
    channel = None
    if m["channel_id"] is not None:
        channel = StakeChannel(
            channel_id=m["channel_id"],
            channel_point=m["channel_point"],
            peer_pubkey=m["channel_peer_pubkey"],
            capacity_sat=m["channel_capacity_sat"],
            local_balance_sat=m["channel_local_balance_sat"],
            remote_balance_sat=m["channel_remote_balance_sat"],
            confirmations=m["channel_confirmations"],
            active=bool(m["channel_active"]),
        )
    return Stake(
        public_key=m["public_key"],
        tier=Tier(m["tier"]),
        status=StakeStatus(m["status"]),
        required_sats=m["required_sats"],
        capacity_sat=m["capacity_sat"],
        bonus_bps=m["bonus_bps"],
        changed_at=m["changed_at"],
        channel=channel,
        next_verification_at=m["next_verification_at"],
        grace_until=m["grace_until"],
        cooldown_until=m["cooldown_until"],
    )


class SqlStakeRepository(_SqlRepo):
    """Stake records (with their channel flattened) in the ``stakes`` table."""

    def save(self, stake: Stake) -> None:
        """Insert or replace the stake record of ``stake.public_key``."""
        with self._db.tx(write=True) as conn:
            _upsert(conn, t.stakes, _stake_row(stake), "public_key")

    def get(self, public_key: str) -> Stake | None:
        """The stake record of ``public_key``, or None (keeps slashed keys for the cooldown)."""
        with self._db.tx() as conn:
            row = conn.execute(select(t.stakes).where(t.stakes.c.public_key == public_key)).first()
        return None if row is None else _row_stake(row)

    def due_for_verification(self, now: int) -> Sequence[Stake]:
        """Stakes whose ``next_verification_at`` ≤ ``now``, earliest first (SRS-STAKE-03)."""
        c = t.stakes.c
        query = (
            select(t.stakes)
            .where(c.next_verification_at.is_not(None), c.next_verification_at <= now)
            .order_by(c.next_verification_at, c.public_key)
        )
        with self._db.tx() as conn:
            rows = conn.execute(query).all()
        return [_row_stake(r) for r in rows]


# --------------------------------------------------------------------------- tasks


def _task_row(task: Task) -> dict[str, Any]:
    r = task.request
    return {
        "task_id": r.task_id,
        "task_type": r.task_type,
        "input_schema_id": r.input_schema_id,
        "input_schema_version": r.input_schema_version,
        "min_tier": r.min_tier.value,
        "min_vram_mb": r.min_vram_mb,
        "min_ram_mb": r.min_ram_mb,
        "gpu_required": r.gpu_required,
        "max_price_msat": r.max_price_msat,
        "state": task.state.value,
        "node_id": task.node_id,
        "price_msat": task.price_msat,
        "deadline_at": task.deadline_at,
        "output_hash": task.output_hash,
        "tried_node_ids": json.dumps(list(task.tried_node_ids)),
    }


def _row_task(row: Row[Any]) -> Task:
    m = row._mapping
    request = TaskRequest(
        task_id=m["task_id"],
        task_type=m["task_type"],
        input_schema_id=m["input_schema_id"],
        input_schema_version=m["input_schema_version"],
        min_tier=Tier(m["min_tier"]),
        min_vram_mb=m["min_vram_mb"],
        min_ram_mb=m["min_ram_mb"],
        gpu_required=bool(m["gpu_required"]),
        max_price_msat=m["max_price_msat"],
    )
    return Task(
        request=request,
        state=TaskState(m["state"]),
        node_id=m["node_id"],
        price_msat=m["price_msat"],
        deadline_at=m["deadline_at"],
        output_hash=m["output_hash"],
        tried_node_ids=tuple(json.loads(m["tried_node_ids"])),
    )


class SqlTaskRepository(_SqlRepo):
    """Tasks (request flattened, state, assignment) in the ``tasks`` table."""

    def add(self, task: Task) -> None:
        """Store a submitted task, committed before returning; Conflict if the id exists."""
        with self._db.tx(write=True) as conn:
            conn.execute(insert(t.tasks).values(_task_row(task)))

    def save(self, task: Task, expected_state: TaskState | None = None) -> None:
        """Replace a stored task; Conflict if unknown or its state is not ``expected_state``."""
        c = t.tasks.c
        condition = [c.task_id == task.task_id]
        if expected_state is not None:
            condition.append(c.state == expected_state.value)
        with self._db.tx(write=True) as conn:
            done = conn.execute(update(t.tasks).where(*condition).values(_task_row(task)))
            if done.rowcount == 1:
                return
            state = conn.execute(select(c.state).where(c.task_id == task.task_id)).scalar()
        if state is None:
            raise Conflict(f"task {task.task_id} does not exist")
        expected = expected_state.value if expected_state is not None else "?"
        raise Conflict(f"task {task.task_id} is {state}, not {expected}")

    def get(self, task_id: str) -> Task | None:
        """The task with ``task_id``, or None."""
        with self._db.tx() as conn:
            row = conn.execute(select(t.tasks).where(t.tasks.c.task_id == task_id)).first()
        return None if row is None else _row_task(row)

    def with_state(self, state: TaskState, limit: int = 100) -> Sequence[Task]:
        """Up to ``limit`` tasks in ``state``, oldest submission first."""
        c = t.tasks.c
        query = select(t.tasks).where(c.state == state.value).order_by(c.seq).limit(limit)
        with self._db.tx() as conn:
            return [_row_task(r) for r in conn.execute(query).all()]

    def assigned_to(self, node_id: str) -> Sequence[Task]:
        """Tasks currently assigned to ``node_id`` (state assigned), oldest first."""
        c = t.tasks.c
        query = (
            select(t.tasks)
            .where(c.node_id == node_id, c.state == TaskState.ASSIGNED.value)
            .order_by(c.seq)
        )
        with self._db.tx() as conn:
            return [_row_task(r) for r in conn.execute(query).all()]

    def overdue(self, now: int, limit: int = 100) -> Sequence[Task]:
        """Assigned tasks whose ``deadline_at`` < ``now``, earliest deadline first."""
        c = t.tasks.c
        query = (
            select(t.tasks)
            .where(c.state == TaskState.ASSIGNED.value, c.deadline_at < now)
            .order_by(c.deadline_at, c.seq)
            .limit(limit)
        )
        with self._db.tx() as conn:
            return [_row_task(r) for r in conn.execute(query).all()]


# --------------------------------------------------------------------------- proofs


class SqlProofRepository(_SqlRepo):
    """Task-proof envelopes (canonical bytes plus query columns) in the ``proofs`` table."""

    def add(self, envelope: Envelope) -> None:
        """Store a verified task-proof envelope; Conflict if its signer already proved the task."""
        proof = proof_of(envelope)
        row = {
            "task_id": proof.task_id,
            "node_id": envelope.signer_node_id,
            "output_hash": proof.output_hash,
            "execution_ms": proof.execution_ms,
            "issued_at": envelope.issued_at,
            "envelope": to_bytes(envelope),
        }
        with self._db.tx(write=True) as conn:
            conn.execute(insert(t.proofs).values(row))

    def get(self, task_id: str, node_id: str) -> Envelope | None:
        """The proof ``node_id`` sent for ``task_id``, or None."""
        c = t.proofs.c
        with self._db.tx() as conn:
            row = conn.execute(
                select(c.envelope).where(c.task_id == task_id, c.node_id == node_id)
            ).first()
        return None if row is None else _row_envelope(row)

    def for_task(self, task_id: str) -> Sequence[Envelope]:
        """Every proof for ``task_id``, ordered by node_id."""
        c = t.proofs.c
        query = select(c.envelope).where(c.task_id == task_id).order_by(c.node_id)
        with self._db.tx() as conn:
            return [_row_envelope(r) for r in conn.execute(query).all()]


# --------------------------------------------------------------------------- payments


def _payment_row(p: RewardPayment) -> dict[str, Any]:
    return {
        "payment_hash": p.payment_hash,
        "payment_id": p.payment_id,
        "task_id": p.task_id,
        "node_id": p.node_id,
        "amount_msat": p.amount_msat,
        "bolt11": p.bolt11,
        "state": p.state.value,
        "attempts": p.attempts,
        "last_error": p.last_error,
        "created_at": p.created_at,
        "updated_at": p.updated_at,
    }


def _row_payment(row: Row[Any]) -> RewardPayment:
    m = row._mapping
    return RewardPayment(
        payment_id=m["payment_id"],
        task_id=m["task_id"],
        node_id=m["node_id"],
        amount_msat=m["amount_msat"],
        payment_hash=m["payment_hash"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        bolt11=m["bolt11"],
        state=PaymentState(m["state"]),
        attempts=m["attempts"],
        last_error=m["last_error"],
    )


def _attempt_row(a: PaymentAttempt) -> dict[str, Any]:
    return {
        "payment_hash": a.payment_hash,
        "task_id": a.task_id,
        "node_id": a.node_id,
        "amount_msat": a.amount_msat,
        "at": a.at,
        "outcome": a.outcome.value,
        "error": a.error,
    }


def _row_attempt(row: Row[Any]) -> PaymentAttempt:
    m = row._mapping
    return PaymentAttempt(
        payment_hash=m["payment_hash"],
        task_id=m["task_id"],
        node_id=m["node_id"],
        amount_msat=m["amount_msat"],
        at=m["at"],
        outcome=AttemptOutcome(m["outcome"]),
        error=m["error"],
    )


class SqlPaymentRepository(_SqlRepo):
    """Reward payments (``payments``) and the payment log (``payment_attempts``)."""

    def upsert(self, payment: RewardPayment) -> RewardPayment:
        """Insert, or update state/attempts/error/bolt11 of the record with this payment_hash."""
        c = t.payments.c
        by_hash = select(t.payments).where(c.payment_hash == payment.payment_hash)
        with self._db.tx(write=True) as conn:
            row = conn.execute(by_hash.with_for_update()).first()
            if row is None:
                try:
                    with conn.begin_nested():
                        conn.execute(insert(t.payments).values(_payment_row(payment)))
                    return payment
                except IntegrityError:  # another writer inserted this hash (or payment_id) first
                    row = conn.execute(by_hash.with_for_update()).first()
                    if row is None:
                        raise Conflict(
                            f"payment id {payment.payment_id} is used by another hash"
                        ) from None
            kept = merge(_row_payment(row), payment)
            if kept is payment:
                conn.execute(
                    update(t.payments)
                    .where(c.payment_hash == payment.payment_hash)
                    .values(_payment_row(payment))
                )
            return kept

    def get(self, payment_hash: str) -> RewardPayment | None:
        """The payment with ``payment_hash``, or None."""
        with self._db.tx() as conn:
            row = conn.execute(
                select(t.payments).where(t.payments.c.payment_hash == payment_hash)
            ).first()
        return None if row is None else _row_payment(row)

    def _listed(self, *condition: Any, limit: int | None = None) -> list[RewardPayment]:
        c = t.payments.c
        query = select(t.payments).where(*condition).order_by(c.created_at, c.seq).limit(limit)
        with self._db.tx() as conn:
            return [_row_payment(r) for r in conn.execute(query).all()]

    def for_task(self, task_id: str) -> Sequence[RewardPayment]:
        """Payments for ``task_id``, oldest first."""
        return self._listed(t.payments.c.task_id == task_id)

    def pending(self, limit: int = 100) -> Sequence[RewardPayment]:
        """Up to ``limit`` payments still owed (pending or failed), oldest first."""
        owed = [PaymentState.PENDING.value, PaymentState.FAILED.value]
        return self._listed(t.payments.c.state.in_(owed), limit=limit)

    def with_state(self, state: PaymentState, limit: int = 100) -> Sequence[RewardPayment]:
        """Up to ``limit`` payments in ``state`` (e.g. in_flight after a restart), oldest first."""
        return self._listed(t.payments.c.state == state.value, limit=limit)

    def log_attempt(self, attempt: PaymentAttempt) -> None:
        """Append one line to the payment log (SRS-LN-05)."""
        with self._db.tx(write=True) as conn:
            conn.execute(insert(t.payment_attempts).values(_attempt_row(attempt)))

    def for_node(self, node_id: str, limit: int = 100) -> Sequence[RewardPayment]:
        """Up to ``limit`` payments owed or paid to ``node_id``, newest first (SRS-LN-10)."""
        c = t.payments.c
        query = (
            select(t.payments)
            .where(c.node_id == node_id)
            .order_by(c.created_at.desc(), c.seq.desc())
            .limit(limit)
        )
        with self._db.tx() as conn:
            return [_row_payment(r) for r in conn.execute(query).all()]

    def attempts(self, payment_hash: str) -> Sequence[PaymentAttempt]:
        """The log lines of one payment, in the order they were logged."""
        c = t.payment_attempts.c
        query = select(t.payment_attempts).where(c.payment_hash == payment_hash).order_by(c.seq)
        with self._db.tx() as conn:
            return [_row_attempt(r) for r in conn.execute(query).all()]


# --------------------------------------------------------------------------- slashing log


def _entry_row(e: SlashingLogEntry) -> dict[str, Any]:
    return {
        "entry_index": e.index,
        "prev_hash": e.prev_hash,
        "node_id": e.node_id,
        "channel_id": e.channel_id,
        "reason": e.reason.value,
        "evidence_hash": e.evidence_hash,
        "at": e.at,
        "signature": e.signature,
    }


def _row_entry(row: Row[Any]) -> SlashingLogEntry:
    m = row._mapping
    return SlashingLogEntry(
        index=m["entry_index"],
        prev_hash=m["prev_hash"],
        node_id=m["node_id"],
        channel_id=m["channel_id"],
        reason=SlashingReason(m["reason"]),
        evidence_hash=m["evidence_hash"],
        at=m["at"],
        signature=m["signature"],
    )


class SqlSlashingLogRepository(_SqlRepo):
    """The slashing log in ``slashing_log``: insert only (the database refuses UPDATE/DELETE)."""

    def append(self, entry: SlashingLogEntry) -> None:
        """Append ``entry``; Conflict unless its index and prev_hash continue the latest entry."""
        with self._db.tx(write=True) as conn:
            check_next_entry(self._latest(conn), entry)
            conn.execute(insert(t.slashing_log).values(_entry_row(entry)))

    def entries(self, start: int = 0, limit: int | None = None) -> Sequence[SlashingLogEntry]:
        """Entries with index ≥ ``start``, in index order, at most ``limit`` of them."""
        c = t.slashing_log.c
        query = (
            select(t.slashing_log)
            .where(c.entry_index >= start)
            .order_by(c.entry_index)
            .limit(limit)
        )
        with self._db.tx() as conn:
            return [_row_entry(r) for r in conn.execute(query).all()]

    def latest(self) -> SlashingLogEntry | None:
        """The last entry (the head of the chain), or None for an empty log."""
        with self._db.tx() as conn:
            return self._latest(conn)

    @staticmethod
    def _latest(conn: Connection) -> SlashingLogEntry | None:
        query = select(t.slashing_log).order_by(t.slashing_log.c.entry_index.desc()).limit(1)
        row = conn.execute(query).first()
        return None if row is None else _row_entry(row)


# --------------------------------------------------------------------------- slashing evidence


def _row_signal(row: Row[Any]) -> SlashingSignal:
    m = row._mapping
    return SlashingSignal(
        node_id=m["node_id"],
        reporter=m["reporter"],
        reason=SlashingReason(m["reason"]),
        evidence_hash=m["evidence_hash"],
        at=m["at"],
    )


def _decision_row(d: SlashingDecision) -> dict[str, Any]:
    return {
        "node_id": d.node_id,
        "channel_id": d.channel_id,
        "tier": d.tier.value,
        "reason": d.reason.value,
        "evidence_hash": d.evidence_hash,
        "decided_at": _int64("decided_at", d.decided_at),
        "supporters": json.dumps(list(d.supporters)),
        "cooldown_s": _int64("cooldown_s", d.cooldown_s),
    }


def _row_decision(row: Row[Any]) -> SlashingDecision:
    m = row._mapping
    return SlashingDecision(
        node_id=m["node_id"],
        channel_id=m["channel_id"],
        tier=Tier(m["tier"]),
        reason=SlashingReason(m["reason"]),
        evidence_hash=m["evidence_hash"],
        decided_at=m["decided_at"],
        supporters=tuple(json.loads(m["supporters"])),
        cooldown_s=m["cooldown_s"],
    )


class SqlSlashingEvidenceRepository(_SqlRepo):
    """Open slashing signals (``slashing_signals``), acknowledgements (``slashing_acks``) and
    decisions under way (``slashing_decisions``); closed rows are kept for the record."""

    def _insert_new(self, table: Table, row: dict[str, Any], unique: list[str]) -> bool:
        with self._db.tx(write=True) as conn:
            dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
            statement = (
                dialect_insert(table)
                .values(row)
                .on_conflict_do_nothing(index_elements=[table.c[n] for n in unique])
                .returning(table.c.seq)
            )
            return conn.execute(statement).first() is not None

    def add_signal(self, signal: SlashingSignal) -> bool:
        """Store an open signal; False if the same evidence from the same reporter is known."""
        row = {
            "node_id": signal.node_id,
            "reporter": signal.reporter,
            "reason": signal.reason.value,
            "evidence_hash": signal.evidence_hash,
            "at": _int64("at", signal.at),
        }
        unique = ["node_id", "reporter", "reason", "evidence_hash"]
        return self._insert_new(t.slashing_signals, row, unique)

    def add_acknowledgement(self, node_id: str, envelope: Envelope, received_at: int) -> bool:
        """Store an open acknowledgement envelope; False if its signature is already known."""
        row = {
            "signature": envelope.signature,
            "node_id": node_id,
            "signer": envelope.signer,
            "envelope": to_bytes(envelope),
            "received_at": _int64("received_at", received_at),
        }
        return self._insert_new(t.slashing_acks, row, ["signature"])

    def open_signals(self, node_id: str) -> Sequence[SlashingSignal]:
        """The open signals about ``node_id``, oldest first."""
        c = t.slashing_signals.c
        query = (
            select(t.slashing_signals)
            .where(c.node_id == node_id, c.closed_at.is_(None))
            .order_by(c.at, c.seq)
        )
        with self._db.tx() as conn:
            return [_row_signal(r) for r in conn.execute(query).all()]

    def open_acknowledgements(self, node_id: str) -> Sequence[Envelope]:
        """The open acknowledgement envelopes about ``node_id``, oldest first."""
        c = t.slashing_acks.c
        query = (
            select(c.envelope)
            .where(c.node_id == node_id, c.closed_at.is_(None))
            .order_by(c.received_at, c.seq)
        )
        with self._db.tx() as conn:
            return [from_bytes(bytes(raw)) for raw in conn.execute(query).scalars().all()]

    def open_node_ids(self, limit: int = 100) -> Sequence[str]:
        """Nodes with open evidence, by their oldest open evidence (then node id)."""
        s, a = t.slashing_signals.c, t.slashing_acks.c
        signals = select(s.node_id, func.min(s.at).label("oldest")).where(
            s.closed_at.is_(None)
        ).group_by(s.node_id)
        acks = select(a.node_id, func.min(a.received_at).label("oldest")).where(
            a.closed_at.is_(None)
        ).group_by(a.node_id)
        both = union_all(signals, acks).subquery()
        query = (
            select(both.c.node_id, func.min(both.c.oldest).label("first"))
            .group_by(both.c.node_id)
            .order_by(func.min(both.c.oldest), both.c.node_id)
            .limit(limit)
        )
        with self._db.tx() as conn:
            return [r.node_id for r in conn.execute(query).all()]

    def begin_decision(self, decision: SlashingDecision) -> SlashingDecision:
        """Record ``decision`` before it is carried out; an unfinished one of the node wins."""
        c = t.slashing_decisions.c
        with self._db.tx(write=True) as conn:
            row = conn.execute(
                select(t.slashing_decisions)
                .where(c.node_id == decision.node_id, c.finished_at.is_(None))
                .order_by(c.seq)
                .limit(1)
            ).first()
            if row is not None:
                return _row_decision(row)
            conn.execute(insert(t.slashing_decisions).values(_decision_row(decision)))
            return decision

    def unfinished_decisions(self) -> Sequence[SlashingDecision]:
        """Decisions begun and not finished, oldest first."""
        c = t.slashing_decisions.c
        query = select(t.slashing_decisions).where(c.finished_at.is_(None)).order_by(c.seq)
        with self._db.tx() as conn:
            return [_row_decision(r) for r in conn.execute(query).all()]

    def finish_decision(self, node_id: str, finished_at: int) -> None:
        """Mark the node's unfinished decision done and close its open evidence, together."""
        c = t.slashing_decisions.c
        with self._db.tx(write=True) as conn:
            conn.execute(
                update(t.slashing_decisions)
                .where(c.node_id == node_id, c.finished_at.is_(None))
                .values(finished_at=_int64("finished_at", finished_at))
            )
            self._close(conn, node_id, finished_at)

    def close_evidence(self, node_id: str, closed_at: int) -> int:
        """Close the node's open evidence without a decision; returns how many were open."""
        with self._db.tx(write=True) as conn:
            return self._close(conn, node_id, closed_at)

    @staticmethod
    def _close(conn: Connection, node_id: str, closed_at: int) -> int:
        closed = 0
        for table in (t.slashing_signals, t.slashing_acks):
            done = conn.execute(
                update(table)
                .where(table.c.node_id == node_id, table.c.closed_at.is_(None))
                .values(closed_at=_int64("closed_at", closed_at))
            )
            closed += done.rowcount
        return closed


# --------------------------------------------------------------------------- proposals


def _proposal_row(p: Proposal) -> dict[str, Any]:
    return {
        "proposal_id": p.proposal_id,
        "author": p.author,
        "title": p.title,
        "description": p.description,
        "type": p.type.value,
        "implementation_plan": p.implementation_plan,
        "requested_sat": p.requested_sat,
        "submitted_at": p.submitted_at,
        "comment_deadline_at": p.comment_deadline_at,
        "status": p.status.value,
        "txid": p.txid,
    }


def _row_proposal(
    row: Row[Any], comments: Sequence[Comment], acknowledgements: Sequence[str]
) -> Proposal:
    m = row._mapping
    return Proposal(
        proposal_id=m["proposal_id"],
        author=m["author"],
        title=m["title"],
        description=m["description"],
        type=ProposalType(m["type"]),
        implementation_plan=m["implementation_plan"],
        requested_sat=m["requested_sat"],
        submitted_at=m["submitted_at"],
        comment_deadline_at=m["comment_deadline_at"],
        status=ProposalStatus(m["status"]),
        comments=tuple(comments),
        acknowledgements=frozenset(acknowledgements),
        txid=m["txid"],
    )


class SqlProposalRepository(_SqlRepo):
    """Proposals in ``proposals``, their comments and holder acknowledgements in child tables."""

    def add(self, proposal: Proposal) -> None:
        """Store a new proposal; Conflict if its proposal_id exists."""
        with self._db.tx(write=True) as conn:
            conn.execute(insert(t.proposals).values(_proposal_row(proposal)))
            self._write_children(conn, proposal)

    def save(self, proposal: Proposal) -> None:
        """Replace a stored proposal (status, comments, acks, txid…); Conflict if unknown."""
        pid = proposal.proposal_id
        with self._db.tx(write=True) as conn:
            done = conn.execute(
                update(t.proposals)
                .where(t.proposals.c.proposal_id == pid)
                .values(_proposal_row(proposal))
            )
            if done.rowcount == 0:
                raise Conflict(f"proposal {pid} does not exist")
            conn.execute(
                delete(t.proposal_comments).where(t.proposal_comments.c.proposal_id == pid)
            )
            conn.execute(
                delete(t.proposal_acknowledgements).where(
                    t.proposal_acknowledgements.c.proposal_id == pid
                )
            )
            self._write_children(conn, proposal)

    @staticmethod
    def _write_children(conn: Connection, proposal: Proposal) -> None:
        pid = proposal.proposal_id
        if proposal.comments:
            conn.execute(
                insert(t.proposal_comments),
                [
                    {
                        "proposal_id": pid,
                        "position": i,
                        "author": c.author,
                        "text": c.text,
                        "at": c.at,
                    }
                    for i, c in enumerate(proposal.comments)
                ],
            )
        if proposal.acknowledgements:
            conn.execute(
                insert(t.proposal_acknowledgements),
                [{"proposal_id": pid, "holder_key": k} for k in sorted(proposal.acknowledgements)],
            )

    def get(self, proposal_id: str) -> Proposal | None:
        """The proposal with ``proposal_id``, or None."""
        found = self._load(t.proposals.c.proposal_id == proposal_id)
        return found[0] if found else None

    def list(self, status: ProposalStatus | None = None) -> Sequence[Proposal]:
        """Proposals (of ``status`` if given), newest submission first, then by id."""
        if status is None:
            return self._load()
        return self._load(t.proposals.c.status == status.value)

    def _load(self, *condition: Any) -> Sequence[Proposal]:
        p, pc, pa = t.proposals, t.proposal_comments, t.proposal_acknowledgements
        with self._db.tx() as conn:
            rows = conn.execute(
                select(p).where(*condition).order_by(p.c.submitted_at.desc(), p.c.proposal_id)
            ).all()
            comment_rows = conn.execute(
                select(pc)
                .join(p, p.c.proposal_id == pc.c.proposal_id)
                .where(*condition)
                .order_by(pc.c.proposal_id, pc.c.position)
            ).all()
            ack_rows = conn.execute(
                select(pa).join(p, p.c.proposal_id == pa.c.proposal_id).where(*condition)
            ).all()
        comments: dict[str, list[Comment]] = {}
        for r in comment_rows:
            m = r._mapping
            comments.setdefault(m["proposal_id"], []).append(
                Comment(author=m["author"], text=m["text"], at=m["at"])
            )
        acks: dict[str, list[str]] = {}
        for r in ack_rows:
            acks.setdefault(r._mapping["proposal_id"], []).append(r._mapping["holder_key"])
        return [
            _row_proposal(r, comments.get(r.proposal_id, []), acks.get(r.proposal_id, []))
            for r in rows
        ]


# --------------------------------------------------------------------------- shares


class SqlShareRepository(_SqlRepo):
    """Accepted shares in ``shares`` (credited difficulty as an exact fraction in text)."""

    def add(self, share: AcceptedShare, accepted_at: int) -> None:
        """Record an accepted share at ``accepted_at``; Conflict if its hash is already stored."""
        credited = Fraction(share.credited_difficulty)
        row = {
            "hash_hex": share.hash_hex,
            "miner_id": share.miner_id,
            "share_difficulty": _int64("share_difficulty", share.share_difficulty),
            "credited_numerator": str(credited.numerator),
            "credited_denominator": str(credited.denominator),
            "is_block": share.is_block,
            "accepted_at": accepted_at,
        }
        with self._db.tx(write=True) as conn:
            conn.execute(insert(t.shares).values(row))

    def contains(self, hash_hex: str) -> bool:
        """Whether a share with this header hash is stored (duplicate detection)."""
        with self._db.tx() as conn:
            row = conn.execute(
                select(t.shares.c.seq).where(t.shares.c.hash_hex == hash_hex)
            ).first()
        return row is not None

    def since(self, start: int, miner_id: str | None = None) -> Sequence[tuple[int, AcceptedShare]]:
        """(accepted_at, share) with accepted_at ≥ ``start`` (of one miner), in accepted order."""
        c = t.shares.c
        condition = [c.accepted_at >= start]
        if miner_id is not None:
            condition.append(c.miner_id == miner_id)
        query = select(t.shares).where(*condition).order_by(c.accepted_at, c.seq)
        with self._db.tx() as conn:
            rows = conn.execute(query).all()
        found = []
        for r in rows:
            m = r._mapping
            share = AcceptedShare(
                miner_id=m["miner_id"],
                share_difficulty=m["share_difficulty"],
                credited_difficulty=Fraction(
                    int(m["credited_numerator"]), int(m["credited_denominator"])
                ),
                hash_hex=m["hash_hex"],
                is_block=bool(m["is_block"]),
            )
            found.append((int(m["accepted_at"]), share))
        return found

    def delete_older_than(self, cutoff: int) -> int:
        """Delete shares accepted before ``cutoff`` (retention, SRS-POOL-11); count deleted."""
        with self._db.tx(write=True) as conn:
            done = conn.execute(delete(t.shares).where(t.shares.c.accepted_at < cutoff))
        return int(done.rowcount)


# --------------------------------------------------------------------------- API keys


def _row_api_key(row: Row[Any]) -> ApiKey:
    m = row._mapping
    return ApiKey(
        key_id=m["key_id"],
        secret_sha256=m["secret_sha256"],
        owner=m["owner"],
        plan=Plan(m["plan"]),
        created_at=m["created_at"],
        revoked=bool(m["revoked"]),
    )


class SqlApiKeyRepository(_SqlRepo):
    """API keys (secret digests only) in ``api_keys``."""

    def add(self, key: ApiKey) -> None:
        """Store a new key; Conflict if its key_id or secret digest exists."""
        row = {
            "key_id": key.key_id,
            "secret_sha256": key.secret_sha256,
            "owner": key.owner,
            "plan": key.plan.value,
            "created_at": key.created_at,
            "revoked": key.revoked,
        }
        with self._db.tx(write=True) as conn:
            conn.execute(insert(t.api_keys).values(row))

    def get(self, key_id: str) -> ApiKey | None:
        """The key with ``key_id``, or None."""
        with self._db.tx() as conn:
            row = conn.execute(select(t.api_keys).where(t.api_keys.c.key_id == key_id)).first()
        return None if row is None else _row_api_key(row)

    def get_by_secret_sha256(self, secret_sha256: str) -> ApiKey | None:
        """The key whose secret hashes to ``secret_sha256``, or None (authentication)."""
        with self._db.tx() as conn:
            row = conn.execute(
                select(t.api_keys).where(t.api_keys.c.secret_sha256 == secret_sha256)
            ).first()
        return None if row is None else _row_api_key(row)

    def revoke(self, key_id: str) -> bool:
        """Mark the key revoked; True if it existed."""
        with self._db.tx(write=True) as conn:
            done = conn.execute(
                update(t.api_keys).where(t.api_keys.c.key_id == key_id).values(revoked=True)
            )
        return done.rowcount > 0

    def for_owner(self, owner: str) -> Sequence[ApiKey]:
        """The owner's keys, oldest first."""
        c = t.api_keys.c
        query = select(t.api_keys).where(c.owner == owner).order_by(c.created_at, c.seq)
        with self._db.tx() as conn:
            return [_row_api_key(r) for r in conn.execute(query).all()]


# --------------------------------------------------------------------------- model releases


def _release_row(r: ModelRelease) -> dict[str, Any]:
    return {
        "release_id": r.release_id,
        "version": r.version.version,
        "sub_model": r.version.sub_model,
        "digest": r.version.digest,
        "parent": r.version.parent,
        "created_at": _int64("created_at", r.version.created_at),
        "proof_status": r.proof_status.value,
        "checked_at": _int64("checked_at", r.checked_at),
        "ots_proof": r.ots_proof,
    }


def _row_release(row: Row[Any]) -> ModelRelease:
    m = row._mapping
    version = ModelVersion(
        version=m["version"],
        sub_model=m["sub_model"],
        digest=m["digest"],
        created_at=m["created_at"],
        parent=m["parent"],
    )
    proof = m["ots_proof"]
    return ModelRelease(
        version=version,
        proof_status=ProofStatus(m["proof_status"]),
        checked_at=m["checked_at"],
        ots_proof=None if proof is None else bytes(proof),
    )


class SqlModelReleaseRepository(_SqlRepo):
    """Published model releases in ``model_releases``."""

    def add(self, release: ModelRelease) -> None:
        """Store a new release; Conflict if its release_id (sub_model@version) exists."""
        with self._db.tx(write=True) as conn:
            conn.execute(insert(t.model_releases).values(_release_row(release)))

    def save(self, release: ModelRelease) -> None:
        """Replace a release's proof and status (upgrade, verification); Conflict if unknown."""
        c = t.model_releases.c
        row = _release_row(release)
        with self._db.tx(write=True) as conn:
            done = conn.execute(
                update(t.model_releases)
                .where(c.release_id == release.release_id, c.digest == release.version.digest)
                .values(row)
            )
        if done.rowcount == 0:
            raise Conflict(f"model release {release.release_id} is unknown or has another digest")

    def get(self, release_id: str) -> ModelRelease | None:
        """The release with ``release_id``, or None."""
        query = select(t.model_releases).where(t.model_releases.c.release_id == release_id)
        with self._db.tx() as conn:
            row = conn.execute(query).first()
        return None if row is None else _row_release(row)

    def list(self) -> Sequence[ModelRelease]:
        """Every release, newest ``created_at`` first, then by release_id."""
        c = t.model_releases.c
        query = select(t.model_releases).order_by(c.created_at.desc(), c.release_id)
        with self._db.tx() as conn:
            return [_row_release(r) for r in conn.execute(query).all()]


# --------------------------------------------------------------------------- GitHub


def _bounty_row(b: Bounty) -> dict[str, Any]:
    return {
        "bounty_id": b.bounty_id,
        "repository": b.repository,
        "issue_number": b.issue_number,
        "title": b.title,
        "amount_sat": _int64("amount_sat", b.amount_sat),
        "created_by": b.created_by,
        "created_at": _int64("created_at", b.created_at),
        "status": b.status.value,
    }


def _row_bounty(row: Row[Any]) -> Bounty:
    m = row._mapping
    return Bounty(
        bounty_id=m["bounty_id"],
        repository=m["repository"],
        issue_number=m["issue_number"],
        title=m["title"],
        amount_sat=m["amount_sat"],
        created_by=m["created_by"],
        created_at=m["created_at"],
        status=BountyStatus(m["status"]),
    )


class SqlBountyRepository(_SqlRepo):
    """GitHub bounties in ``bounties``."""

    def add(self, bounty: Bounty) -> None:
        """Store a new bounty; Conflict if its bounty_id exists."""
        with self._db.tx(write=True) as conn:
            conn.execute(insert(t.bounties).values(_bounty_row(bounty)))

    def save(self, bounty: Bounty) -> None:
        """Replace a stored bounty (its status); Conflict if unknown."""
        self._replace(
            t.bounties, t.bounties.c.bounty_id, bounty.bounty_id, _bounty_row(bounty),
            f"bounty {bounty.bounty_id} is unknown",
        )

    def get(self, bounty_id: str) -> Bounty | None:
        """The bounty with ``bounty_id``, or None."""
        with self._db.tx() as conn:
            query = select(t.bounties).where(t.bounties.c.bounty_id == bounty_id)
            row = conn.execute(query).first()
        return None if row is None else _row_bounty(row)

    def list(self, status: BountyStatus | None = None, limit: int = 100) -> Sequence[Bounty]:
        """Up to ``limit`` bounties (of ``status`` if given), newest first, then by id."""
        c = t.bounties.c
        query = select(t.bounties).order_by(c.created_at.desc(), c.bounty_id).limit(limit)
        if status is not None:
            query = query.where(c.status == status.value)
        with self._db.tx() as conn:
            return [_row_bounty(r) for r in conn.execute(query).all()]


def _analysis_row(a: AnalysisRequest) -> dict[str, Any]:
    return {
        "analysis_id": a.analysis_id,
        "repository": a.repository,
        "requested_by": a.requested_by,
        "requested_at": _int64("requested_at", a.requested_at),
        "state": a.state.value,
        "updated_at": None if a.updated_at is None else _int64("updated_at", a.updated_at),
        "result": a.result,
    }


def _row_analysis(row: Row[Any]) -> AnalysisRequest:
    m = row._mapping
    return AnalysisRequest(
        analysis_id=m["analysis_id"],
        repository=m["repository"],
        requested_by=m["requested_by"],
        requested_at=m["requested_at"],
        state=AnalysisState(m["state"]),
        updated_at=m["updated_at"],
        result=m["result"],
    )


class SqlAnalysisRepository(_SqlRepo):
    """Repository analysis requests in ``analyses``."""

    def add(self, request: AnalysisRequest) -> None:
        """Store a new request; Conflict if its analysis_id exists."""
        with self._db.tx(write=True) as conn:
            conn.execute(insert(t.analyses).values(_analysis_row(request)))

    def save(self, request: AnalysisRequest) -> None:
        """Replace a stored request (state, result); Conflict if unknown."""
        self._replace(
            t.analyses, t.analyses.c.analysis_id, request.analysis_id, _analysis_row(request),
            f"analysis {request.analysis_id} is unknown",
        )

    def get(self, analysis_id: str) -> AnalysisRequest | None:
        """The request with ``analysis_id``, or None."""
        query = select(t.analyses).where(t.analyses.c.analysis_id == analysis_id)
        with self._db.tx() as conn:
            row = conn.execute(query).first()
        return None if row is None else _row_analysis(row)


# --------------------------------------------------------------------------- mining payouts


def _row_payout(row: Row[Any]) -> MiningPayout:
    m = row._mapping
    return MiningPayout(
        paid_at=m["paid_at"],
        amount_sat=m["amount_sat"],
        payment_hash=m["payment_hash"],
        miner_id=m["miner_id"],
    )


class SqlMiningPayoutRepository(_SqlRepo):
    """Mining payouts in ``mining_payouts``."""

    def add(self, payout: MiningPayout) -> None:
        """Record one payout; Conflict if its payment_hash is already recorded."""
        row = {
            "payment_hash": payout.payment_hash,
            "paid_at": _int64("paid_at", payout.paid_at),
            "amount_sat": _int64("amount_sat", payout.amount_sat),
            "miner_id": payout.miner_id,
        }
        with self._db.tx(write=True) as conn:
            conn.execute(insert(t.mining_payouts).values(row))

    def recent(self, limit: int = 100, miner_id: str | None = None) -> Sequence[MiningPayout]:
        """Up to ``limit`` payouts (to one miner if given), newest first, then by hash."""
        c = t.mining_payouts.c
        query = select(t.mining_payouts).order_by(c.paid_at.desc(), c.payment_hash).limit(limit)
        if miner_id is not None:
            query = query.where(c.miner_id == miner_id)
        with self._db.tx() as conn:
            return [_row_payout(r) for r in conn.execute(query).all()]


# --------------------------------------------------------------------------- task inputs


class SqlTaskInputRepository(_SqlRepo):
    """Task input bytes in ``task_inputs``."""

    FIELD = "input"

    @property
    def _table(self) -> Table:
        return t.task_inputs

    def put(self, task_id: str, data: bytes) -> None:
        """Store ``data`` for ``task_id``; same data again is a no-op, other data a Conflict."""
        data = check_task_input(data, self.FIELD)
        c = self._table.c
        with self._db.tx(write=True) as conn:
            dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
            statement = (
                dialect_insert(self._table)
                .values(task_id=task_id, data=data)
                .on_conflict_do_nothing(index_elements=[c.task_id])
                .returning(c.task_id)
            )
            if conn.execute(statement).first() is not None:
                return
            stored = conn.execute(select(c.data).where(c.task_id == task_id)).scalar()
        if stored is None or bytes(stored) != data:
            raise Conflict(f"task {task_id} already has another {self.FIELD}")

    def get(self, task_id: str) -> bytes | None:
        """The data stored for ``task_id``, or None."""
        c = self._table.c
        with self._db.tx() as conn:
            stored = conn.execute(select(c.data).where(c.task_id == task_id)).scalar()
        return None if stored is None else bytes(stored)

    def delete(self, task_id: str) -> None:
        """Forget the data of ``task_id`` (nothing happens if none is stored)."""
        with self._db.tx(write=True) as conn:
            conn.execute(delete(self._table).where(self._table.c.task_id == task_id))


class SqlTaskOutputRepository(SqlTaskInputRepository):
    """Task outputs delivered with proofs, per replica id, in ``task_outputs``."""

    FIELD = "output"

    @property
    def _table(self) -> Table:
        return t.task_outputs


# --------------------------------------------------------------------------- knowledge


def _sub_model_row(m: SubModel) -> dict[str, Any]:
    return {
        "name": m.name,
        "description": m.description,
        "kind": m.kind.value,
        "version": m.version,
        "version_digest": m.version_digest,
        "created_at": _int64("created_at", m.created_at),
        "dataset_ids": json.dumps(list(m.dataset_ids)),
        "host_node_ids": json.dumps(list(m.host_node_ids)),
    }


def _row_sub_model(row: Row[Any]) -> SubModel:
    m = row._mapping
    return SubModel(
        name=m["name"],
        description=m["description"],
        kind=SubModelKind(m["kind"]),
        version=m["version"],
        version_digest=m["version_digest"],
        created_at=m["created_at"],
        dataset_ids=tuple(json.loads(m["dataset_ids"])),
        host_node_ids=tuple(json.loads(m["host_node_ids"])),
    )


class SqlSubModelRepository(_SqlRepo):
    """The sub-model registry in ``sub_models``."""

    def add(self, sub_model: SubModel) -> None:
        """Register a new sub-model; Conflict if its name is taken."""
        with self._db.tx(write=True) as conn:
            conn.execute(insert(t.sub_models).values(_sub_model_row(sub_model)))

    def save(self, sub_model: SubModel) -> None:
        """Replace a registered sub-model; Conflict if unknown."""
        self._replace(
            t.sub_models, t.sub_models.c.name, sub_model.name, _sub_model_row(sub_model),
            f"sub-model {sub_model.name} is unknown",
        )

    def get(self, name: str) -> SubModel | None:
        """The sub-model called ``name``, or None."""
        with self._db.tx() as conn:
            row = conn.execute(select(t.sub_models).where(t.sub_models.c.name == name)).first()
        return None if row is None else _row_sub_model(row)

    def list(self) -> Sequence[SubModel]:
        """Every sub-model, ordered by name."""
        with self._db.tx() as conn:
            rows = conn.execute(select(t.sub_models).order_by(t.sub_models.c.name)).all()
        return [_row_sub_model(r) for r in rows]


def _dataset_row(r: DatasetRecord) -> dict[str, Any]:
    return {
        "dataset_id": r.dataset_id,
        "digest": r.digest,
        "name": r.name,
        "contributor": r.contributor,
        "submitted_at": _int64("submitted_at", r.submitted_at),
        "n_documents": r.n_documents,
        "n_passages": r.n_passages,
        "size_bytes": _int64("size_bytes", r.size_bytes),
        "licences": json.dumps(list(r.licences)),
        "sources": json.dumps(list(r.sources)),
        "description": r.description,
        "proof": r.proof,
    }


def _row_dataset(row: Row[Any], sub_models: Sequence[str]) -> DatasetRecord:
    m = row._mapping
    proof = m["proof"]
    return DatasetRecord(
        dataset_id=m["dataset_id"],
        digest=m["digest"],
        name=m["name"],
        sub_models=tuple(sub_models),
        contributor=m["contributor"],
        submitted_at=m["submitted_at"],
        n_documents=m["n_documents"],
        n_passages=m["n_passages"],
        size_bytes=m["size_bytes"],
        licences=tuple(json.loads(m["licences"])),
        sources=tuple(json.loads(m["sources"])),
        description=m["description"],
        proof=None if proof is None else bytes(proof),
    )


class SqlDatasetRepository(_SqlRepo):
    """Contributed datasets in ``datasets``, ``dataset_sub_models`` and ``dataset_documents``."""

    def add(self, record: DatasetRecord, documents: Sequence[Document]) -> None:
        """Store a contribution and its documents; Conflict if its id exists."""
        with self._db.tx(write=True) as conn:
            conn.execute(insert(t.datasets).values(_dataset_row(record)))
            conn.execute(
                insert(t.dataset_sub_models),
                [
                    {"dataset_id": record.dataset_id, "sub_model": name, "position": i}
                    for i, name in enumerate(record.sub_models)
                ],
            )
            if documents:
                conn.execute(
                    insert(t.dataset_documents),
                    [
                        {
                            "dataset_id": record.dataset_id,
                            "position": i,
                            "title": d.title,
                            "text": d.text,
                            "source": d.source,
                            "licence": d.licence,
                            "url": d.url,
                        }
                        for i, d in enumerate(documents)
                    ],
                )

    def save(self, record: DatasetRecord) -> None:
        """Replace a stored record (its proof); Conflict if unknown or its digest differs."""
        c = t.datasets.c
        row = _dataset_row(record)
        with self._db.tx(write=True) as conn:
            done = conn.execute(
                update(t.datasets)
                .where(c.dataset_id == record.dataset_id, c.digest == record.digest)
                .values(row)
            )
        if done.rowcount == 0:
            raise Conflict(f"dataset {record.dataset_id} is unknown or has another digest")

    @staticmethod
    def _sub_models_of(conn: Connection, ids: Sequence[str]) -> dict[str, list[str]]:
        c = t.dataset_sub_models.c
        found: dict[str, list[str]] = {i: [] for i in ids}
        if not ids:
            return found
        query = (
            select(c.dataset_id, c.sub_model)
            .where(c.dataset_id.in_(list(ids)))
            .order_by(c.dataset_id, c.position)
        )
        for dataset_id, name in conn.execute(query).all():
            found[dataset_id].append(name)
        return found

    def get(self, dataset_id: str) -> DatasetRecord | None:
        """The contribution with ``dataset_id``, or None."""
        with self._db.tx() as conn:
            row = conn.execute(
                select(t.datasets).where(t.datasets.c.dataset_id == dataset_id)
            ).first()
            if row is None:
                return None
            names = self._sub_models_of(conn, [dataset_id])[dataset_id]
        return _row_dataset(row, names)

    def documents(self, dataset_id: str) -> Sequence[Document]:
        """The dataset's documents in submission order (empty if unknown)."""
        c = t.dataset_documents.c
        query = select(t.dataset_documents).where(c.dataset_id == dataset_id).order_by(c.position)
        with self._db.tx() as conn:
            rows = conn.execute(query).all()
        return [
            Document(
                title=r.title, text=r.text, source=r.source, licence=r.licence, url=r.url
            )
            for r in rows
        ]

    def list(
        self, sub_model: str | None = None, contributor: str | None = None, limit: int = 100
    ) -> Sequence[DatasetRecord]:
        """Up to ``limit`` records (filtered if asked), oldest first, then by id."""
        c = t.datasets.c
        query = select(t.datasets).order_by(c.submitted_at, c.dataset_id).limit(limit)
        if contributor is not None:
            query = query.where(c.contributor == contributor)
        if sub_model is not None:
            s = t.dataset_sub_models.c
            query = query.where(
                c.dataset_id.in_(select(s.dataset_id).where(s.sub_model == sub_model))
            )
        with self._db.tx() as conn:
            rows = conn.execute(query).all()
            names = self._sub_models_of(conn, [r.dataset_id for r in rows])
        return [_row_dataset(r, names[r.dataset_id]) for r in rows]


def _row_credit(row: Row[Any]) -> DataCredit:
    m = row._mapping
    return DataCredit(
        contributor=m["contributor"],
        dataset_id=m["dataset_id"],
        amount_msat=m["amount_msat"],
        passages_used=m["passages_used"],
    )


class SqlDataCreditRepository(_SqlRepo):
    """Data contributors' credits in ``data_credits``."""

    def add(self, query_id: str, credits: Sequence[DataCredit], at: int) -> None:
        """Record the credits of one query; Conflict if that query was already credited."""
        if not credits:
            return
        c = t.data_credits.c
        with self._db.tx(write=True) as conn:
            taken = conn.execute(select(c.seq).where(c.query_id == query_id).limit(1)).first()
            if taken is not None:
                raise Conflict(f"query {query_id} is already credited")
            conn.execute(
                insert(t.data_credits),
                [
                    {
                        "query_id": query_id,
                        "contributor": k.contributor,
                        "dataset_id": k.dataset_id,
                        "amount_msat": _int64("amount_msat", k.amount_msat),
                        "passages_used": k.passages_used,
                        "credited_at": _int64("credited_at", at),
                    }
                    for k in sorted(credits, key=lambda k: (k.contributor, k.dataset_id))
                ],
            )

    def for_contributor(
        self, contributor: str, limit: int = 100
    ) -> Sequence[tuple[str, int, DataCredit]]:
        """Up to ``limit`` (query_id, at, credit) of ``contributor``, newest first, then query."""
        c = t.data_credits.c
        query = (
            select(t.data_credits)
            .where(c.contributor == contributor)
            .order_by(c.credited_at.desc(), c.query_id, c.dataset_id)
            .limit(limit)
        )
        with self._db.tx() as conn:
            rows = conn.execute(query).all()
        return [(r.query_id, r.credited_at, _row_credit(r)) for r in rows]

    def for_query(self, query_id: str) -> Sequence[DataCredit]:
        """The credits recorded for ``query_id``, by contributor then dataset id."""
        c = t.data_credits.c
        query = (
            select(t.data_credits)
            .where(c.query_id == query_id)
            .order_by(c.contributor, c.dataset_id)
        )
        with self._db.tx() as conn:
            return [_row_credit(r) for r in conn.execute(query).all()]

    def total_msat(self, contributor: str) -> int:
        """Everything credited to ``contributor`` so far, in msat."""
        c = t.data_credits.c
        query = select(func.coalesce(func.sum(c.amount_msat), 0)).where(
            c.contributor == contributor
        )
        with self._db.tx() as conn:
            return int(conn.execute(query).scalar_one())


# --------------------------------------------------------------------------- query answers


class SqlQueryAnswerRepository(_SqlRepo):
    """Answered queries in ``query_answers`` (the answer's fields as JSON text)."""

    def add(self, answer: QueryAnswer) -> None:
        """Store an answer; Conflict if its query id is already stored."""
        row = {
            "query_id": answer.query_id,
            "created_at": answer.created_at,
            "answer": json.dumps(answer_fields(answer), sort_keys=True, ensure_ascii=False),
        }
        with self._db.tx(write=True) as conn:
            conn.execute(insert(t.query_answers).values(row))

    def get(self, query_id: str) -> QueryAnswer | None:
        """The stored answer of ``query_id``, or None."""
        c = t.query_answers.c
        with self._db.tx() as conn:
            stored = conn.execute(select(c.answer).where(c.query_id == query_id)).scalar()
        return None if stored is None else answer_from_fields(json.loads(stored))


# --------------------------------------------------------------------------- FL rounds


def _fl_round_row(r: FlRound) -> dict[str, Any]:
    return {
        "number": r.number,
        "sub_model": r.sub_model,
        "state": r.state.value,
        "started_at": _int64("started_at", r.started_at),
        "closed_at": None if r.closed_at is None else _int64("closed_at", r.closed_at),
        "rule": r.rule,
        "f": r.f,
        "task_ids": json.dumps(list(r.task_ids)),
        "base_version": r.base_version,
        "participants": r.participants,
        "accepted": json.dumps(list(r.accepted)),
        "rejected": json.dumps(list(r.rejected)),
        "flagged": json.dumps(list(r.flagged)),
        "accuracy_ppm": r.accuracy_ppm,
        "loss": r.loss,
        "version_id": r.version_id,
        "failure": r.failure,
    }


def _row_fl_round(row: Row[Any]) -> FlRound:
    m = row._mapping
    return FlRound(
        number=m["number"],
        sub_model=m["sub_model"],
        state=RoundState(m["state"]),
        started_at=m["started_at"],
        closed_at=m["closed_at"],
        rule=m["rule"],
        f=m["f"],
        task_ids=tuple(json.loads(m["task_ids"])),
        base_version=m["base_version"],
        participants=m["participants"],
        accepted=tuple(json.loads(m["accepted"])),
        rejected=tuple(json.loads(m["rejected"])),
        flagged=tuple(json.loads(m["flagged"])),
        accuracy_ppm=m["accuracy_ppm"],
        loss=None if m["loss"] is None else float(m["loss"]),
        version_id=m["version_id"],
        failure=m["failure"],
    )


def _fl_update_row(u: RoundUpdate) -> dict[str, Any]:
    signed = u.update
    return {
        "round_number": signed.round,
        "node_id": signed.node_id,
        "task_id": signed.task_id,
        "sub_model": signed.sub_model,
        "public_key": signed.public_key,
        "digest": signed.digest,
        "signature": signed.signature,
        "weights": signed.weights,
        "num_examples": _int64("num_examples", signed.num_examples),
        "loss": float(signed.loss),
        "received_at": _int64("received_at", u.received_at),
        "anomaly_score": u.anomaly_score,
        "flagged": u.flagged,
    }


def _row_fl_update(row: Row[Any]) -> RoundUpdate:
    m = row._mapping
    signed = SignedUpdate(  # re-verifies the node's signature over the stored weights
        round=m["round_number"],
        sub_model=m["sub_model"],
        task_id=m["task_id"],
        public_key=m["public_key"],
        num_examples=m["num_examples"],
        loss=float(m["loss"]),
        weights=bytes(m["weights"]),
        signature=m["signature"],
    )
    score = m["anomaly_score"]
    return RoundUpdate(
        update=signed,
        received_at=m["received_at"],
        anomaly_score=None if score is None else float(score),
        flagged=bool(m["flagged"]),
    )


class SqlFlRoundRepository(_SqlRepo):
    """FL rounds in ``fl_rounds``, their updates in ``fl_updates``."""

    def add_round(self, fl_round: FlRound) -> None:
        """Store a new round; Conflict if its number exists."""
        with self._db.tx(write=True) as conn:
            conn.execute(insert(t.fl_rounds).values(_fl_round_row(fl_round)))

    def save_round(self, fl_round: FlRound) -> None:
        """Replace a stored round (state, results); Conflict if unknown."""
        c = t.fl_rounds.c
        with self._db.tx(write=True) as conn:
            done = conn.execute(
                update(t.fl_rounds)
                .where(c.number == fl_round.number)
                .values(_fl_round_row(fl_round))
            )
        if done.rowcount == 0:
            raise Conflict(f"FL round {fl_round.number} is unknown")

    def get_round(self, number: int) -> FlRound | None:
        """The round ``number``, or None."""
        query = select(t.fl_rounds).where(t.fl_rounds.c.number == number)
        with self._db.tx() as conn:
            row = conn.execute(query).first()
        return None if row is None else _row_fl_round(row)

    def rounds(self, limit: int = 100, state: RoundState | None = None) -> Sequence[FlRound]:
        """Rounds (in ``state`` if given), newest (highest number) first, at most ``limit``."""
        c = t.fl_rounds.c
        query = select(t.fl_rounds).order_by(c.number.desc()).limit(limit)
        if state is not None:
            query = query.where(c.state == state.value)
        with self._db.tx() as conn:
            return [_row_fl_round(r) for r in conn.execute(query).all()]

    def _stored_update(self, number: int, node_id: str) -> RoundUpdate | None:
        c = t.fl_updates.c
        query = select(t.fl_updates).where(c.round_number == number, c.node_id == node_id)
        with self._db.tx() as conn:
            row = conn.execute(query).first()
        return None if row is None else _row_fl_update(row)

    def add_update(self, update: RoundUpdate) -> bool:
        """Store an upload: True if new, False if the same update is stored already."""
        c = t.fl_updates.c
        try:
            with self._db.tx(write=True) as conn:
                known = select(t.fl_rounds.c.number).where(t.fl_rounds.c.number == update.round)
                if conn.execute(known).first() is None:
                    raise Conflict(f"FL round {update.round} is unknown")
                row = conn.execute(
                    select(t.fl_updates).where(
                        c.round_number == update.round, c.node_id == update.node_id
                    )
                ).first()
                if row is not None:
                    return not same_upload(_row_fl_update(row), update)
                conn.execute(insert(t.fl_updates).values(_fl_update_row(update)))
                return True
        except Conflict:
            stored = self._stored_update(update.round, update.node_id)  # lost an insert race?
            if stored is not None and same_upload(stored, update):
                return False
            raise

    def updates(self, number: int) -> Sequence[RoundUpdate]:
        """The round's updates in arrival order."""
        c = t.fl_updates.c
        query = select(t.fl_updates).where(c.round_number == number).order_by(c.seq)
        with self._db.tx() as conn:
            return [_row_fl_update(r) for r in conn.execute(query).all()]

    def score_updates(self, number: int, scores: Mapping[str, tuple[float, bool]]) -> None:
        """Record ``node_id → (anomaly score, flagged)``; Conflict if a node has no update."""
        c = t.fl_updates.c
        with self._db.tx(write=True) as conn:
            for node_id, (score, flagged) in scores.items():
                done = conn.execute(
                    update(t.fl_updates)
                    .where(c.round_number == number, c.node_id == node_id)
                    .values(anomaly_score=float(score), flagged=bool(flagged))
                )
                if done.rowcount == 0:
                    raise Conflict(f"node {node_id} has no update in FL round {number}")


# --------------------------------------------------------------------------- the bundle


@attrs.define
class SqlRepositories:
    """Every SQL repository over one engine (the ``Repositories`` port)."""

    nodes: SqlNodeRepository
    manifests: SqlManifestRepository
    stakes: SqlStakeRepository
    tasks: SqlTaskRepository
    proofs: SqlProofRepository
    payments: SqlPaymentRepository
    slashing_log: SqlSlashingLogRepository
    slashing_evidence: SqlSlashingEvidenceRepository
    proposals: SqlProposalRepository
    shares: SqlShareRepository
    api_keys: SqlApiKeyRepository
    releases: SqlModelReleaseRepository
    bounties: SqlBountyRepository
    analyses: SqlAnalysisRepository
    mining_payouts: SqlMiningPayoutRepository
    task_inputs: SqlTaskInputRepository
    task_outputs: SqlTaskOutputRepository
    sub_models: SqlSubModelRepository
    datasets: SqlDatasetRepository
    data_credits: SqlDataCreditRepository
    query_answers: SqlQueryAnswerRepository
    fl_rounds: SqlFlRoundRepository
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
        manifests=SqlManifestRepository(db),
        stakes=SqlStakeRepository(db),
        tasks=SqlTaskRepository(db),
        proofs=SqlProofRepository(db),
        payments=SqlPaymentRepository(db),
        slashing_log=SqlSlashingLogRepository(db),
        slashing_evidence=SqlSlashingEvidenceRepository(db),
        proposals=SqlProposalRepository(db),
        shares=SqlShareRepository(db),
        api_keys=SqlApiKeyRepository(db),
        releases=SqlModelReleaseRepository(db),
        bounties=SqlBountyRepository(db),
        analyses=SqlAnalysisRepository(db),
        mining_payouts=SqlMiningPayoutRepository(db),
        task_inputs=SqlTaskInputRepository(db),
        task_outputs=SqlTaskOutputRepository(db),
        sub_models=SqlSubModelRepository(db),
        datasets=SqlDatasetRepository(db),
        data_credits=SqlDataCreditRepository(db),
        query_answers=SqlQueryAnswerRepository(db),
        fl_rounds=SqlFlRoundRepository(db),
        database=db,
    )


def _conforms(store: SqlRepositories) -> Repositories:
    """Never called: makes mypy check that the bundle implements the port."""
    return store
