"""The coordinator's SQL schema as SQLAlchemy Core tables (one ``MetaData``, no ORM mapping).

The domain values are frozen attrs classes, which SQLAlchemy cannot map; rows are turned into
values and back only in :mod:`owm_adapters.storage.sql.repositories`. The alembic migrations in
``migrations/`` create exactly these tables (a test compares them with alembic's
``compare_metadata``).

Column conventions (the same on SQLite and PostgreSQL):

- **Times** are ``BIGINT`` POSIX seconds (UTC), exactly the ints the domain passes around
  (``*_at``, ``last_heartbeat``, ``deadline_at``); no database time zones or clocks involved.
- **Money** is ``BIGINT`` sat or msat, named as in the values (``*_sat``, ``*_msat``).
- **Enums** are stored as their ``value`` strings (``"t2"``, ``"assigned"``), so rows read
  the same as the JSON the API publishes.
- **Signed envelopes** (manifests, task proofs) are stored as their canonical bytes
  (``envelope``), so a signature can be re-checked later; the columns next to them are decoded
  copies for queries only.
- ``seq`` columns are surrogate row ids that fix insertion order ("oldest first" listings).
- Difficulties that are exact fractions are stored as decimal-text numerator/denominator.

The slashing log and proposal comments are append-only: the migrations also install triggers
that make the database itself refuse ``UPDATE`` and ``DELETE`` on ``slashing_log``
(SRS-STAKE-06) and on ``proposal_comments`` (SRS-GOV-04).
"""

from __future__ import annotations

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


nodes = Table(
    "nodes",
    metadata,
    Column("node_id", String(64), primary_key=True),
    Column("public_key", String(64), nullable=False, unique=True),
    Column("ln_pubkey", String(66), nullable=False),
    Column("ln_host", String(253), nullable=False),
    Column("ln_port", Integer, nullable=False),
    Column("tier", String(8), nullable=False),
    Column("vram_mb", BigInteger, nullable=False),
    Column("ram_mb", BigInteger, nullable=False),
    Column("bandwidth_mbps", BigInteger, nullable=False),
    Column("registered_at", BigInteger, nullable=False),
    Column("last_heartbeat", BigInteger, nullable=False),
    Column("onion_address", String(62), nullable=True),
    Column("reliability_ppm", Integer, nullable=False),
    Column("total_tasks_completed", BigInteger, nullable=False),
    Column("total_sats_earned", BigInteger, nullable=False),
    Column("suspended", Boolean, nullable=False),
)

manifests = Table(
    "manifests",
    metadata,
    Column("node_id", String(64), primary_key=True),
    Column("digest", String(64), nullable=False),
    Column("issued_at", BigInteger, nullable=False),
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
    Column("required_sats", BigInteger, nullable=False),
    Column("capacity_sat", BigInteger, nullable=False),
    Column("bonus_bps", Integer, nullable=False),
    Column("changed_at", BigInteger, nullable=False),
    Column("next_verification_at", BigInteger, nullable=True, index=True),
    Column("grace_until", BigInteger, nullable=True),
    Column("cooldown_until", BigInteger, nullable=True),
    Column("channel_id", String(64), nullable=True),
    Column("channel_point", String(75), nullable=True),
    Column("channel_peer_pubkey", String(66), nullable=True),
    Column("channel_capacity_sat", BigInteger, nullable=True),
    Column("channel_local_balance_sat", BigInteger, nullable=True),
    Column("channel_remote_balance_sat", BigInteger, nullable=True),
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
    Column("max_price_msat", BigInteger, nullable=False),
    Column("state", String(16), nullable=False),
    Column("node_id", String(128), nullable=True),
    Column("price_msat", BigInteger, nullable=True),
    Column("deadline_at", BigInteger, nullable=True),
    Column("output_hash", String(64), nullable=True),
    Column("tried_node_ids", Text, nullable=False),  # JSON list of node ids
    Index(None, "state", "seq"),
    Index(None, "node_id", "state"),
    Index(None, "state", "deadline_at"),
)

proofs = Table(
    "proofs",
    metadata,
    Column("task_id", String(128), primary_key=True),
    Column("node_id", String(64), primary_key=True),
    Column("output_hash", String(64), nullable=False),
    Column("execution_ms", BigInteger, nullable=False),
    Column("issued_at", BigInteger, nullable=False),
    Column("envelope", LargeBinary, nullable=False),
)

payments = Table(
    "payments",
    metadata,
    _seq(),
    Column("payment_hash", String(64), nullable=False, unique=True),
    Column("payment_id", String(128), nullable=False, unique=True),
    Column("task_id", String(128), nullable=False, index=True),
    Column("node_id", String(128), nullable=False),
    Column("amount_msat", BigInteger, nullable=False),
    Column("bolt11", Text, nullable=True),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("last_error", Text, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Index(None, "state", "created_at", "seq"),
    Index(None, "node_id", "created_at"),
)

payment_attempts = Table(
    "payment_attempts",
    metadata,
    _seq(),
    Column("payment_hash", String(64), nullable=False, index=True),
    Column("task_id", String(128), nullable=False),
    Column("node_id", String(128), nullable=False),
    Column("amount_msat", BigInteger, nullable=False),
    Column("at", BigInteger, nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("error", Text, nullable=True),
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
    Column("at", BigInteger, nullable=False),
    Column("signature", String(128), nullable=False),
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
    Column("requested_sat", BigInteger, nullable=False),
    Column("submitted_at", BigInteger, nullable=False),
    Column("comment_deadline_at", BigInteger, nullable=False),
    Column("status", String(16), nullable=False, index=True),
    Column("txid", String(64), nullable=True),
)

proposal_comments = Table(
    "proposal_comments",
    metadata,
    Column(
        "proposal_id",
        String(128),
        ForeignKey("proposals.proposal_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("position", Integer, primary_key=True, autoincrement=False),
    Column("author", String(256), nullable=False),
    Column("text", Text, nullable=False),
    Column("at", BigInteger, nullable=False),
)

proposal_acknowledgements = Table(
    "proposal_acknowledgements",
    metadata,
    Column(
        "proposal_id",
        String(128),
        ForeignKey("proposals.proposal_id", ondelete="CASCADE"),
        primary_key=True,
    ),
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
    Column("accepted_at", BigInteger, nullable=False),
    Index(None, "accepted_at", "seq"),
    Index(None, "miner_id", "accepted_at"),
)

api_keys = Table(
    "api_keys",
    metadata,
    _seq(),
    Column("key_id", String(64), nullable=False, unique=True),
    Column("secret_sha256", String(64), nullable=False, unique=True),
    Column("owner", String(256), nullable=False, index=True),
    Column("plan", String(16), nullable=False),
    Column("created_at", BigInteger, nullable=False),
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
    Column("created_at", BigInteger, nullable=False, index=True),
    Column("proof_status", String(16), nullable=False),
    Column("checked_at", BigInteger, nullable=False),
    Column("ots_proof", LargeBinary, nullable=True),
)

bounties = Table(
    "bounties",
    metadata,
    Column("bounty_id", String(64), primary_key=True),
    Column("repository", String(140), nullable=False),
    Column("issue_number", BigInteger, nullable=False),
    Column("title", String(200), nullable=False),
    Column("amount_sat", BigInteger, nullable=False),
    Column("created_by", String(256), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Index(None, "status", "created_at"),
)

analyses = Table(
    "analyses",
    metadata,
    Column("analysis_id", String(64), primary_key=True),
    Column("repository", String(140), nullable=False),
    Column("requested_by", String(256), nullable=False),
    Column("requested_at", BigInteger, nullable=False),
    Column("state", String(16), nullable=False),
    Column("updated_at", BigInteger, nullable=True),
    Column("result", Text, nullable=True),
)

mining_payouts = Table(
    "mining_payouts",
    metadata,
    Column("payment_hash", String(64), primary_key=True),
    Column("paid_at", BigInteger, nullable=False, index=True),
    Column("amount_sat", BigInteger, nullable=False),
    Column("miner_id", String(256), nullable=True),
    Index(None, "miner_id", "paid_at"),
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

# -- the knowledge side of the conglomerate: sub-models, datasets, credits (migration 0006) ---

sub_models = Table(
    "sub_models",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("description", Text, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("version", String(64), nullable=False),
    Column("version_digest", String(64), nullable=True),
    Column("created_at", BigInteger, nullable=False),
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
    Column("submitted_at", BigInteger, nullable=False),
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
    Column(
        "dataset_id", String(27), ForeignKey("datasets.dataset_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("sub_model", String(64), primary_key=True, index=True),
    Column("position", SmallInteger, nullable=False),
)

dataset_documents = Table(
    "dataset_documents",
    metadata,
    Column(
        "dataset_id", String(27), ForeignKey("datasets.dataset_id", ondelete="CASCADE"),
        primary_key=True,
    ),
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
    Column("amount_msat", BigInteger, nullable=False),
    Column("passages_used", Integer, nullable=False),
    Column("credited_at", BigInteger, nullable=False),
    Index(None, "query_id", "contributor", "dataset_id", unique=True),
    Index(None, "contributor", "credited_at"),
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
    Column("at", BigInteger, nullable=False),
    Column("closed_at", BigInteger, nullable=True),
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
    Column("received_at", BigInteger, nullable=False),
    Column("closed_at", BigInteger, nullable=True),
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
    Column("decided_at", BigInteger, nullable=False),
    Column("supporters", Text, nullable=False),
    Column("cooldown_s", BigInteger, nullable=False),
    Column("finished_at", BigInteger, nullable=True),
    Index(None, "node_id", "finished_at"),
)

# -- answered conglomerate queries, for GET /v1/query/{query_id} (migration 0007) --------------

query_answers = Table(
    "query_answers",
    metadata,
    Column("query_id", String(64), primary_key=True),
    Column("created_at", BigInteger, nullable=False),
    Column("answer", Text, nullable=False),  # JSON: owm_core.knowledge.routing.answer_fields
)

# -- federated-learning rounds and their uploaded updates (migration 0005) -------------------

fl_rounds = Table(
    "fl_rounds",
    metadata,
    Column("number", BigInteger, primary_key=True, autoincrement=False),
    Column("sub_model", String(64), nullable=False),
    Column("state", String(16), nullable=False, index=True),
    Column("started_at", BigInteger, nullable=False),
    Column("closed_at", BigInteger, nullable=True),
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
    Column("received_at", BigInteger, nullable=False),
    Column("anomaly_score", Float, nullable=True),
    Column("flagged", Boolean, nullable=False),
    Index(None, "round_number", "node_id", unique=True),
)
