"""The coordinator's SQL schema as SQLAlchemy Core tables (one ``MetaData``, no ORM mapping).

The domain values are frozen attrs classes, which SQLAlchemy cannot map; rows are turned into
values and back only in :mod:`owm_adapters.storage.sql.repositories`. The alembic migrations in
``migrations/`` create exactly these tables (a test compares them with alembic's
``compare_metadata``).

Column conventions (the same on SQLite and PostgreSQL):

- **Times** are ``BIGINT`` POSIX seconds (UTC), exactly the ints the domain passes around
  (``*_at``, ``last_heartbeat``, ``deadline_at``); no database time zones or clocks involved.
  Declared with ``_time``.
- **Money** is ``BIGINT`` sat or msat, named as in the values (``*_sat``, ``*_msat``).
  Declared with ``_money``.
- **Enums** are stored as their ``value`` strings (``"t2"``, ``"assigned"``), so rows read
  the same as the JSON the API publishes.
- **Signed envelopes** (manifests, task proofs) are stored as their canonical bytes
  (``envelope``), so a signature can be re-checked later; the columns next to them are decoded
  copies for queries only.
- ``seq`` columns are surrogate row ids that fix insertion order ("oldest first" listings).
- Difficulties that are exact fractions are stored as decimal-text numerator/denominator.

The slashing log, the governance log and proposal comments are append-only: the migrations
also install triggers that make the database itself refuse ``UPDATE`` and ``DELETE`` on
``slashing_log`` (SRS-STAKE-06), ``governance_log`` and ``proposal_comments`` (SRS-GOV-04).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    false,
    text,
)

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
Seq = BigInteger().with_variant(Integer(), "sqlite")


def _seq() -> Column[int]:
    return Column("seq", Seq, primary_key=True, autoincrement=True)


def _owned_by(parent: str, key: str, kind: String) -> Column[str]:
    """A child row's key column naming its ``parent`` row (by ``key``); deleted with it."""
    return Column(key, kind, ForeignKey(f"{parent}.{key}", ondelete="CASCADE"), primary_key=True)


def _time(name: str, *, nullable: bool = False, **options: Any) -> Column[int]:
    """A time: ``BIGINT`` POSIX seconds (UTC), as the domain passes it around."""
    return Column(name, BigInteger, nullable=nullable, **options)


def _money(name: str, *, nullable: bool = False, **options: Any) -> Column[int]:
    """An amount: ``BIGINT`` sat or msat, as its name says (``*_sat``, ``*_msat``)."""
    return Column(name, BigInteger, nullable=nullable, **options)


nodes = Table(
    "nodes",
    metadata,
    Column("node_id", String(64), primary_key=True),
    Column("public_key", String(64), nullable=False, unique=True),
    Column("ln_pubkey", String(66), nullable=False, index=True),
    Column("ln_host", String(253), nullable=False),
    Column("ln_port", Integer, nullable=False),
    Column("tier", String(8), nullable=False),
    Column("vram_mb", BigInteger, nullable=False),
    Column("ram_mb", BigInteger, nullable=False),
    Column("bandwidth_mbps", BigInteger, nullable=False),
    _time("registered_at"),
    _time("last_heartbeat"),
    Column("onion_address", String(62), nullable=True),
    Column("reliability_ppm", Integer, nullable=False),
    Column("total_tasks_completed", BigInteger, nullable=False),
    _money("total_sats_earned"),
    Column("suspended", Boolean, nullable=False),
)

manifests = Table(
    "manifests",
    metadata,
    Column("node_id", String(64), primary_key=True),
    Column("digest", String(64), nullable=False),
    _time("issued_at"),
    Column("tier", String(8), nullable=False),
    Column("tier_rank", SmallInteger, nullable=False),
    Column("vram_mb", BigInteger, nullable=False),
    Column("ram_mb", BigInteger, nullable=False),
    Column("bandwidth_mbps", BigInteger, nullable=False),
    Column("gpu_vendor", String(32), nullable=False),
    Column("gpu_count", Integer, nullable=False),
    Column("envelope", LargeBinary, nullable=False),
    Index(None, "tier_rank", "vram_mb", "ram_mb"),
)

stakes = Table(
    "stakes",
    metadata,
    Column("public_key", String(64), primary_key=True),
    Column("tier", String(8), nullable=False),
    Column("status", String(16), nullable=False),
    _money("required_sats"),
    _money("capacity_sat"),
    Column("bonus_bps", Integer, nullable=False),
    _time("changed_at"),
    _time("next_verification_at", nullable=True, index=True),
    _time("grace_until", nullable=True),
    _time("cooldown_until", nullable=True),
    Column("channel_id", String(64), nullable=True),
    Column("channel_point", String(75), nullable=True),
    Column("channel_peer_pubkey", String(66), nullable=True),
    _money("channel_capacity_sat", nullable=True),
    _money("channel_local_balance_sat", nullable=True),
    _money("channel_remote_balance_sat", nullable=True),
    Column("channel_confirmations", BigInteger, nullable=True),
    Column("channel_active", Boolean, nullable=True),
)

tasks = Table(
    "tasks",
    metadata,
    _seq(),
    Column("task_id", String(128), nullable=False, unique=True),
    Column("task_type", String(64), nullable=False),
    Column("input_schema_id", String(128), nullable=False),
    Column("input_schema_version", Integer, nullable=False),
    Column("min_tier", String(8), nullable=False),
    Column("min_vram_mb", BigInteger, nullable=False),
    Column("min_ram_mb", BigInteger, nullable=False),
    Column("gpu_required", Boolean, nullable=False),
    _money("max_price_msat"),
    Column("state", String(16), nullable=False),
    Column("node_id", String(128), nullable=True),
    _money("price_msat", nullable=True),
    _time("deadline_at", nullable=True),
    Column("output_hash", String(64), nullable=True),
    Column("tried_node_ids", Text, nullable=False),  # JSON list of node ids
    _time("expires_at", nullable=True),  # migration 0012
    Column("model_version", String(64), nullable=False, server_default=""),  # migration 0023
    Index(None, "state", "seq"),
    Index(None, "node_id", "state"),
    Index(None, "state", "deadline_at"),
    Index(None, "state", "expires_at", "seq"),  # the tick's expired pages (migration 0040)
)

proofs = Table(
    "proofs",
    metadata,
    Column("task_id", String(128), primary_key=True),
    Column("node_id", String(64), primary_key=True),
    Column("output_hash", String(64), nullable=False),
    Column("execution_ms", BigInteger, nullable=False),
    _time("issued_at"),
    Column("envelope", LargeBinary, nullable=False),
)

stake_changes = Table(
    "stake_changes",
    metadata,
    _seq(),
    Column("public_key", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    _time("at", index=True),
)

heartbeat_activity = Table(
    "heartbeat_activity",
    metadata,
    _time("minute", primary_key=True),
    Column("node_id", String(128), primary_key=True),
    Column("heartbeats", BigInteger, nullable=False),
)

payments = Table(
    "payments",
    metadata,
    _seq(),
    Column("payment_hash", String(64), nullable=False, unique=True),
    Column("payment_id", String(128), nullable=False, unique=True),
    Column("task_id", String(128), nullable=False, index=True),
    Column("node_id", String(128), nullable=False),
    _money("amount_msat"),
    Column("bolt11", Text, nullable=True),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("last_error", Text, nullable=True),
    _time("created_at"),
    _time("updated_at"),
    # How the invoice was obtained, its expiry, the expired ones it replaced (migration 0031).
    Column("payee_pubkey", String(66), nullable=True),
    Column("memo", Text, nullable=True),
    _time("invoice_expires_at", nullable=True),
    Column("replaced_hashes", Text, nullable=False, server_default="[]"),
    # By invoice or by keysend to a bare node (migration 0033).
    Column("method", String(16), nullable=False, server_default="invoice"),
    # Which replaced hashes were keysend hashes, looked up as keysend attempts (migration 0036).
    Column("replaced_keysend", Text, nullable=False, server_default="[]"),
    # A keysend payout whose payee refused keysend: it waits for an invoice (migration 0037).
    Column("keysend_refused", Boolean, nullable=False, server_default=false()),
    Index(None, "state", "created_at", "seq"),
    Index(None, "state", "seq"),  # the payout sweep's keyset pages (migration 0039)
    Index(None, "node_id", "created_at"),
    Index(None, "state", "updated_at"),
)

payment_attempts = Table(
    "payment_attempts",
    metadata,
    _seq(),
    Column("payment_hash", String(64), nullable=False, index=True),
    Column("task_id", String(128), nullable=False),
    Column("node_id", String(128), nullable=False),
    _money("amount_msat"),
    _time("at", index=True),
    Column("outcome", String(16), nullable=False),
    Column("error", Text, nullable=True),
)

# -- the treasury's payout-channel openings, the latest per node (migration 0020) ------------

payout_channels = Table(
    "payout_channels",
    metadata,
    Column("node_id", String(128), primary_key=True),
    _money("amount_sat"),
    _time("started_at", index=True),
    Column("channel_point", String(128), nullable=False),
)

slashing_log = Table(
    "slashing_log",
    metadata,
    Column("entry_index", BigInteger, primary_key=True, autoincrement=False),
    Column("prev_hash", String(64), nullable=False, unique=True),
    Column("node_id", String(64), nullable=False),
    Column("channel_id", String(128), nullable=False),
    Column("reason", String(32), nullable=False),
    Column("evidence_hash", String(64), nullable=False),
    _time("at"),
    Column("signature", String(128), nullable=False),
    # a reversal (migration 0032): the slashing it reverses and its maintainers (JSON list);
    # its statement hash is kept in ``evidence_hash``. NULL on slashing entries.
    Column("reverses", BigInteger, nullable=True),
    Column("maintainers", Text, nullable=True),
)

proposals = Table(
    "proposals",
    metadata,
    Column("proposal_id", String(128), primary_key=True),
    Column("author", String(256), nullable=False),
    Column("title", String(200), nullable=False),
    Column("description", Text, nullable=False),
    Column("type", String(16), nullable=False),
    Column("implementation_plan", Text, nullable=False),
    _money("requested_sat"),
    _time("submitted_at"),
    _time("comment_deadline_at"),
    Column("status", String(16), nullable=False, index=True),
    Column("txid", String(64), nullable=True),
    Column("payout_address", String(90), nullable=False, server_default=""),
)

governance_log = Table(
    "governance_log",
    metadata,
    Column("entry_index", BigInteger, primary_key=True, autoincrement=False),
    Column("prev_hash", String(64), nullable=False, unique=True),
    Column("statement_hash", String(64), nullable=True, unique=True),
    Column("entry", LargeBinary, nullable=False),
)

treasury_spends = Table(
    "treasury_spends",
    metadata,
    Column("proposal_id", String(128), primary_key=True),
    Column("psbt", Text, nullable=False),
    Column("signers", Text, nullable=False),
    Column("txid", String(64), nullable=True),
    _time("created_at"),
)

proposal_comments = Table(
    "proposal_comments",
    metadata,
    _owned_by("proposals", "proposal_id", String(128)),
    Column("position", Integer, primary_key=True, autoincrement=False),
    Column("author", String(256), nullable=False),
    Column("text", Text, nullable=False),
    _time("at"),
)

proposal_acknowledgements = Table(
    "proposal_acknowledgements",
    metadata,
    _owned_by("proposals", "proposal_id", String(128)),
    Column("holder_key", String(66), primary_key=True),
)

shares = Table(
    "shares",
    metadata,
    _seq(),
    Column("hash_hex", String(64), nullable=False, unique=True),
    Column("miner_id", String(256), nullable=False),
    Column("share_difficulty", BigInteger, nullable=False),
    Column("credited_numerator", Text, nullable=False),
    Column("credited_denominator", Text, nullable=False),
    Column("is_block", Boolean, nullable=False),
    _time("accepted_at"),
    Index(None, "accepted_at", "seq"),
    Index(None, "miner_id", "accepted_at"),
    # The dashboard's hourly sums read only the index (migration 0021, SRS-POOL-10)...
    Index("ix_shares_accepted_at_work", "accepted_at", "miner_id", "share_difficulty"),
    # ...and blocks found in 30 days, or the newest (SRS-LN-14), only the few block rows.
    Index(
        "ix_shares_blocks",
        "accepted_at",
        postgresql_where=text("is_block"),
        sqlite_where=text("is_block"),
    ),
)

# -- shares rejected per miner and reason code (migration 0021) -------------------------------

share_rejections = Table(
    "share_rejections",
    metadata,
    Column("miner_id", String(256), primary_key=True),
    Column("code", String(64), primary_key=True),
    Column("rejected", BigInteger, nullable=False),
    _time("updated_at"),
)

api_keys = Table(
    "api_keys",
    metadata,
    _seq(),
    Column("key_id", String(64), nullable=False, unique=True),
    Column("secret_sha256", String(64), nullable=False, unique=True),
    Column("owner", String(256), nullable=False, index=True),
    Column("plan", String(16), nullable=False),
    _time("created_at"),
    Column("revoked", Boolean, nullable=False),
)

# -- the public API's records (migration 0002) ---------------------------------------------

model_releases = Table(
    "model_releases",
    metadata,
    Column("release_id", String(130), primary_key=True),
    Column("version", String(64), nullable=False),
    Column("sub_model", String(64), nullable=False),
    Column("digest", String(64), nullable=False),
    Column("parent", String(64), nullable=True),
    _time("created_at", index=True),
    Column("proof_status", String(16), nullable=False),
    _time("checked_at"),
    Column("ots_proof", LargeBinary, nullable=True),
)

bounties = Table(
    "bounties",
    metadata,
    Column("bounty_id", String(64), primary_key=True),
    Column("repository", String(140), nullable=False),
    Column("issue_number", BigInteger, nullable=False),
    Column("title", String(200), nullable=False),
    _money("amount_sat"),
    Column("created_by", String(256), nullable=False),
    _time("created_at"),
    Column("status", String(16), nullable=False),
    Column("funding", String(16), nullable=False, server_default="treasury"),
    Column("sponsor_payee", String(66), nullable=False, server_default=""),
    Column("sponsor_invoice_hash", String(64), nullable=False, server_default=""),
    Column("claimant", String(64), nullable=False, server_default=""),
    Column("claimant_payee", String(66), nullable=False, server_default=""),
    Column("installation_id", BigInteger, nullable=True),
    _time("issue_closed_at", nullable=True),
    Index(None, "status", "created_at"),
    Index(None, "status", "bounty_id"),  # the lapse worker's keyset pages (migration 0039)
    Index("ix_bounties_repository_issue", "repository", "issue_number"),
)

analyses = Table(
    "analyses",
    metadata,
    Column("analysis_id", String(64), primary_key=True),
    Column("repository", String(140), nullable=False),
    Column("requested_by", String(256), nullable=False),
    _time("requested_at"),
    Column("state", String(16), nullable=False),
    _time("updated_at", nullable=True),
    Column("result", Text, nullable=True),
    Column("pull_request", BigInteger, nullable=True),
)

webhook_events = Table(
    "webhook_events",
    metadata,
    Column("delivery_id", String(64), primary_key=True),
    Column("event", String(64), nullable=False),
    Column("action", String(64), nullable=False),
    Column("repository", String(140), nullable=False),
    Column("installation_id", BigInteger, nullable=True),
    _time("received_at", index=True),
    Column("body_sha256", String(64), nullable=False),
    Column("payload", Text, nullable=False),
    Index(None, "repository", "received_at"),  # a repository's App installation (0041)
)

# -- the webhook handlers still to be run with a stored delivery (migration 0030) ------------

handler_retries = Table(
    "handler_retries",
    metadata,
    Column("delivery_id", String(64), primary_key=True),
    Column("handler", String(32), primary_key=True),
    Column("attempts", Integer, nullable=False),
    _time("next_at", index=True),
    _time("expires_at"),
    Column("reason", String(200), nullable=False),
)

mining_payouts = Table(
    "mining_payouts",
    metadata,
    Column("payment_hash", String(64), primary_key=True),
    _time("paid_at", index=True),
    _money("amount_sat"),
    Column("miner_id", String(256), nullable=True),
    Index(None, "miner_id", "paid_at"),
)

# -- what each miner has earned at the FPPS rate (migration 0019) ----------------------------

miner_credits = Table(
    "miner_credits",
    metadata,
    Column("miner_id", String(256), primary_key=True),
    _money("credited_msat"),
    Column("carry", Text, nullable=False),
    _time("updated_at"),
)

# -- task inputs, durable across coordinator restarts (migration 0003) -----------------------

task_inputs = Table(
    "task_inputs",
    metadata,
    Column("task_id", String(128), primary_key=True),
    Column("data", LargeBinary, nullable=False),
)

# -- task outputs delivered with proofs, per replica (migration 0004) -------------------------

task_outputs = Table(
    "task_outputs",
    metadata,
    Column("task_id", String(128), primary_key=True),
    Column("data", LargeBinary, nullable=False),
)

# -- replicas' commitments of rounds not judged yet, commit–reveal (migration 0013) -----------

task_commitments = Table(
    "task_commitments",
    metadata,
    Column("replica_id", String(128), primary_key=True),
    Column("round_id", String(128), nullable=False, index=True),
    Column("node_id", String(128), nullable=False),
    Column("digest", String(64), nullable=False),
    _time("committed_at", index=True),
)

# -- the knowledge side of the conglomerate: sub-models, datasets, credits (migration 0006) ---

sub_models = Table(
    "sub_models",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("description", Text, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("version", String(64), nullable=False),
    Column("version_digest", String(64), nullable=True),
    _time("created_at"),
    Column("dataset_ids", Text, nullable=False),  # JSON list, sorted
    Column("host_node_ids", Text, nullable=False),  # JSON list, sorted
)

datasets = Table(
    "datasets",
    metadata,
    _seq(),
    Column("dataset_id", String(27), nullable=False, unique=True),
    Column("digest", String(64), nullable=False),
    Column("name", String(64), nullable=False),
    Column("contributor", String(256), nullable=False, index=True),
    _time("submitted_at"),
    Column("n_documents", Integer, nullable=False),
    Column("n_passages", Integer, nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("licences", Text, nullable=False),  # JSON list
    Column("sources", Text, nullable=False),  # JSON list
    Column("description", Text, nullable=False),
    Column("proof", LargeBinary, nullable=True),
    Index(None, "submitted_at", "dataset_id"),
)

dataset_sub_models = Table(
    "dataset_sub_models",
    metadata,
    _owned_by("datasets", "dataset_id", String(27)),
    Column("sub_model", String(64), primary_key=True, index=True),
    Column("position", SmallInteger, nullable=False),
)

dataset_documents = Table(
    "dataset_documents",
    metadata,
    _owned_by("datasets", "dataset_id", String(27)),
    Column("position", Integer, primary_key=True),
    Column("title", String(300), nullable=False),
    Column("text", Text, nullable=False),
    Column("source", String(300), nullable=False),
    Column("licence", String(200), nullable=False),
    Column("url", Text, nullable=True),
)

data_credits = Table(
    "data_credits",
    metadata,
    _seq(),
    Column("query_id", String(128), nullable=False),
    Column("contributor", String(256), nullable=False),
    Column("dataset_id", String(27), nullable=False),
    _money("amount_msat"),
    Column("passages_used", Integer, nullable=False),
    _time("credited_at"),
    Index(None, "query_id", "contributor", "dataset_id", unique=True),
    Index(None, "contributor", "credited_at"),
)

data_payees = Table(
    "data_payees",
    metadata,
    Column("contributor", String(256), primary_key=True),
    Column("ln_pubkey", String(66), nullable=False),
    _time("registered_at"),
)

# -- slashing evidence waiting for a decision, and decisions under way (migration 0008) -------

slashing_signals = Table(
    "slashing_signals",
    metadata,
    _seq(),
    Column("node_id", String(64), nullable=False),
    Column("reporter", String(128), nullable=False),
    Column("reason", String(32), nullable=False),
    Column("evidence_hash", String(64), nullable=False),
    _time("at"),
    _time("closed_at", nullable=True),
    Index(None, "node_id", "reporter", "reason", "evidence_hash", unique=True),
    Index(None, "closed_at", "at"),
)

slashing_acks = Table(
    "slashing_acks",
    metadata,
    _seq(),
    Column("signature", String(128), nullable=False, unique=True),
    Column("node_id", String(64), nullable=False),
    Column("signer", String(64), nullable=False),
    Column("envelope", LargeBinary, nullable=False),
    _time("received_at"),
    _time("closed_at", nullable=True),
    Index(None, "node_id", "closed_at"),
)

slashing_decisions = Table(
    "slashing_decisions",
    metadata,
    _seq(),
    Column("node_id", String(64), nullable=False),
    Column("channel_id", String(128), nullable=False),
    Column("tier", String(8), nullable=False),
    Column("reason", String(32), nullable=False),
    Column("evidence_hash", String(64), nullable=False),
    _time("decided_at"),
    Column("supporters", Text, nullable=False),
    Column("cooldown_s", BigInteger, nullable=False),
    _time("finished_at", nullable=True),
    Index(None, "node_id", "finished_at"),
)

slashing_reversal_statements = Table(
    "slashing_reversal_statements",
    metadata,
    _seq(),
    Column("signature", String(128), nullable=False, unique=True),
    Column("log_index", BigInteger, nullable=False, index=True),
    Column("signer", String(64), nullable=False),
    Column("envelope", LargeBinary, nullable=False),
    _time("received_at"),
    # the reversal entry (its log index) that counted this statement, set in the transaction
    # that appends it; NULL while not counted, and for ever for one that never was (0035)
    Column("counted_in", BigInteger, nullable=True, index=True),
)

# -- answered conglomerate queries, for GET /v1/query/{query_id} (migration 0007) --------------

query_answers = Table(
    "query_answers",
    metadata,
    Column("query_id", String(64), primary_key=True),
    _time("created_at"),
    Column("answer", Text, nullable=False),  # JSON: owm_core.knowledge.routing.answer_fields
)

# -- federated-learning rounds and their uploaded updates (migration 0005) -------------------

fl_rounds = Table(
    "fl_rounds",
    metadata,
    Column("number", BigInteger, primary_key=True, autoincrement=False),
    Column("sub_model", String(64), nullable=False),
    Column("state", String(16), nullable=False, index=True),
    _time("started_at"),
    _time("closed_at", nullable=True),
    Column("rule", String(16), nullable=False),
    Column("f", Integer, nullable=False),
    Column("task_ids", Text, nullable=False),  # JSON list
    Column("base_version", String(130), nullable=False),
    Column("participants", Integer, nullable=False),
    Column("accepted", Text, nullable=False),  # JSON list of node ids
    Column("rejected", Text, nullable=False),  # JSON list of reasons
    Column("flagged", Text, nullable=False),  # JSON list of node ids
    Column("accuracy_ppm", Integer, nullable=True),
    Column("loss", Float, nullable=True),
    Column("version_id", String(130), nullable=True),
    Column("failure", Text, nullable=False),
    Column("max_examples", BigInteger, nullable=False, server_default="0"),
)

channel_bindings = Table(
    "channel_bindings",
    metadata,
    Column("channel_point", String(75), primary_key=True),
    Column("node_id", String(64), nullable=False),
    Column("bound_at", BigInteger, nullable=False),
    Index(None, "node_id", unique=True),  # a node's stake is one channel at a time
)

fl_updates = Table(
    "fl_updates",
    metadata,
    _seq(),
    Column(
        "round_number", BigInteger, ForeignKey("fl_rounds.number", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("node_id", String(64), nullable=False),
    Column("task_id", String(128), nullable=False),
    Column("sub_model", String(64), nullable=False),
    Column("public_key", String(64), nullable=False),
    Column("digest", String(64), nullable=False),
    Column("signature", String(128), nullable=False),
    Column("weights", LargeBinary, nullable=False),  # float32 little-endian
    Column("num_examples", BigInteger, nullable=False),
    Column("loss", Float, nullable=False),
    _time("received_at"),
    Column("anomaly_score", Float, nullable=True),
    Column("flagged", Boolean, nullable=False),
    Index(None, "round_number", "node_id", unique=True),
)

# -- funded work only: balances, top-ups, escrows, network budgets (migration 0011) -----------

balances = Table(
    "balances",
    metadata,
    Column("public_key", String(64), primary_key=True),
    Column("funded_msat", BigInteger, nullable=False),
    Column("escrowed_msat", BigInteger, nullable=False),
    Column("refunded_msat", BigInteger, nullable=False),
    Column("available_msat", BigInteger, nullable=False),
)

top_ups = Table(
    "top_ups",
    metadata,
    _seq(),
    Column("payment_hash", String(64), nullable=False, unique=True),
    Column("public_key", String(64), nullable=False),
    Column("amount_msat", BigInteger, nullable=False),
    Column("bolt11", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Column("state", String(16), nullable=False),
    Index(None, "state", "public_key"),
    Index(None, "state", "seq"),  # the funding sweep's keyset pages (migration 0039)
)

escrows = Table(
    "escrows",
    metadata,
    _seq(),
    Column("task_id", String(128), nullable=False, unique=True),
    Column("payer", String(16), nullable=False),
    Column("funder", String(128), nullable=False),
    Column("opened_at", BigInteger, nullable=False),
    Column("price_msat", BigInteger, nullable=False),
    Column("share_msat", BigInteger, nullable=False),
    Column("replicas", Integer, nullable=False),
    Column("funded_msat", BigInteger, nullable=False),
    Column("held_msat", BigInteger, nullable=False),
    Column("paid_to_nodes_msat", BigInteger, nullable=False),
    Column("treasury_share_msat", BigInteger, nullable=False),
    Column("refunded_msat", BigInteger, nullable=False),
    Column("settled_replica_ids", Text, nullable=False),  # JSON list
    Column("closed", Boolean, nullable=False),
    Index(None, "closed", "seq"),  # the funding sweep's keyset pages (migration 0039)
)

budgets = Table(
    "budgets",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("period", BigInteger, nullable=False),
    Column("drawn_msat", BigInteger, nullable=False),
)

# -- state several coordinators share (migration 0022, SRS-COORD-05) ------------------------

challenges = Table(
    "challenges",
    metadata,
    Column("nonce", String(64), primary_key=True),
    Column("public_key", String(64), nullable=False),
    Column("purpose", String(16), nullable=False),
    _time("issued_at"),
    _time("expires_at", index=True),
)

seen_nonces = Table(
    "seen_nonces",
    metadata,
    Column("signer", String(64), primary_key=True),
    Column("nonce", String(64), primary_key=True),
    _time("expires_at", index=True),
)

rate_hits = Table(
    "rate_hits",
    metadata,
    _seq(),
    Column("scope", String(64), nullable=False),
    Column("key", String(512), nullable=False),
    _time("at"),
    Index(None, "scope", "key", "at"),
)

quota_counts = Table(
    "quota_counts",
    metadata,
    Column("scope", String(64), primary_key=True),
    Column("key", String(512), primary_key=True),
    Column("period", BigInteger, primary_key=True),
    Column("used", BigInteger, nullable=False),
)

token_credits = Table(
    "token_credits",
    metadata,
    Column("token", String(64), primary_key=True),
    _money("left_msat"),
    _time("until", index=True),
)

task_streams = Table(
    "task_streams",
    metadata,
    Column("node_id", String(128), primary_key=True),
    Column("stream_id", String(64), nullable=False),
    Column("coordinator", String(255), nullable=False),
    Column("capabilities", Text, nullable=False),
    Column("tier", String(8), nullable=False),
    Column("has_gpu", Boolean, nullable=False),
    Column("vram_mb", BigInteger, nullable=False),
    Column("ram_mb", BigInteger, nullable=False),
    _money("ask_msat"),
    Column("reliability_ppm", Integer, nullable=False),
    _time("opened_at"),
    _time("seen_at", index=True),
)

payout_requests = Table(
    "payout_requests",
    metadata,
    Column("payment_id", String(32), primary_key=True),
    Column("payee_pubkey", String(66), nullable=False, index=True),
    _money("amount_msat"),
    Column("memo", Text, nullable=False),
    Column("expiry_s", BigInteger, nullable=False),
    _time("requested_at", index=True),
    Column("bolt11", Text, nullable=True),
    Column("payment_hash", String(64), nullable=True),
    Column("invoice_expiry_s", BigInteger, nullable=True),
    _time("invoice_created_at", nullable=True),
)
