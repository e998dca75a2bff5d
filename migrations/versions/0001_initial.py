"""Initial schema: every table of the coordinator's store (owm_adapters.sql.tables).

Also installs triggers that make the database refuse UPDATE and DELETE on ``slashing_log``
(the public slashing log is append-only, SRS-STAKE-06). Dropping the tables drops indexes and
constraints with them; the PostgreSQL trigger function is dropped explicitly.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_REFUSAL = "slashing_log is append-only"


def _install_append_only_guard() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION owm_slashing_log_append_only() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ BEGIN "
            f"RAISE EXCEPTION '{_REFUSAL}' USING ERRCODE = 'integrity_constraint_violation'; "
            "END $$"
        )
        op.execute(
            "CREATE TRIGGER slashing_log_append_only BEFORE UPDATE OR DELETE ON slashing_log "
            "FOR EACH ROW EXECUTE FUNCTION owm_slashing_log_append_only()"
        )
        op.execute(
            "CREATE TRIGGER slashing_log_no_truncate BEFORE TRUNCATE ON slashing_log "
            "FOR EACH STATEMENT EXECUTE FUNCTION owm_slashing_log_append_only()"
        )
    else:
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER slashing_log_no_{event.lower()} BEFORE {event} ON slashing_log "
                f"BEGIN SELECT RAISE(ABORT, '{_REFUSAL}'); END"
            )


def _drop_append_only_guard() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS slashing_log_no_truncate ON slashing_log")
        op.execute("DROP TRIGGER IF EXISTS slashing_log_append_only ON slashing_log")
        op.execute("DROP FUNCTION IF EXISTS owm_slashing_log_append_only()")
    else:
        op.execute("DROP TRIGGER IF EXISTS slashing_log_no_update")
        op.execute("DROP TRIGGER IF EXISTS slashing_log_no_delete")


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("secret_sha256", sa.String(length=64), nullable=False),
        sa.Column("owner", sa.String(length=256), nullable=False),
        sa.Column("plan", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("revoked", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_id", name=op.f("uq_api_keys_key_id")),
        sa.UniqueConstraint("secret_sha256", name=op.f("uq_api_keys_secret_sha256")),
    )
    op.create_index(op.f("ix_api_keys_owner"), "api_keys", ["owner"])

    op.create_table(
        "manifests",
        sa.Column("node_id", sa.String(length=64), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("issued_at", sa.BigInteger(), nullable=False),
        sa.Column("tier", sa.String(length=8), nullable=False),
        sa.Column("tier_rank", sa.SmallInteger(), nullable=False),
        sa.Column("vram_mb", sa.BigInteger(), nullable=False),
        sa.Column("ram_mb", sa.BigInteger(), nullable=False),
        sa.Column("bandwidth_mbps", sa.BigInteger(), nullable=False),
        sa.Column("gpu_vendor", sa.String(length=32), nullable=False),
        sa.Column("gpu_count", sa.Integer(), nullable=False),
        sa.Column("envelope", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("node_id", name=op.f("pk_manifests")),
    )
    op.create_index(
        op.f("ix_manifests_tier_rank_vram_mb_ram_mb"),
        "manifests",
        ["tier_rank", "vram_mb", "ram_mb"],
    )

    op.create_table(
        "nodes",
        sa.Column("node_id", sa.String(length=64), nullable=False),
        sa.Column("public_key", sa.String(length=64), nullable=False),
        sa.Column("ln_pubkey", sa.String(length=66), nullable=False),
        sa.Column("ln_host", sa.String(length=253), nullable=False),
        sa.Column("ln_port", sa.Integer(), nullable=False),
        sa.Column("tier", sa.String(length=8), nullable=False),
        sa.Column("vram_mb", sa.BigInteger(), nullable=False),
        sa.Column("ram_mb", sa.BigInteger(), nullable=False),
        sa.Column("bandwidth_mbps", sa.BigInteger(), nullable=False),
        sa.Column("registered_at", sa.BigInteger(), nullable=False),
        sa.Column("last_heartbeat", sa.BigInteger(), nullable=False),
        sa.Column("onion_address", sa.String(length=62), nullable=True),
        sa.Column("reliability_ppm", sa.Integer(), nullable=False),
        sa.Column("total_tasks_completed", sa.BigInteger(), nullable=False),
        sa.Column("total_sats_earned", sa.BigInteger(), nullable=False),
        sa.Column("suspended", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("node_id", name=op.f("pk_nodes")),
        sa.UniqueConstraint("public_key", name=op.f("uq_nodes_public_key")),
    )
    op.create_table(
        "payment_attempts",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("payment_hash", sa.String(length=64), nullable=False),
        sa.Column("task_id", sa.String(length=128), nullable=False),
        sa.Column("node_id", sa.String(length=128), nullable=False),
        sa.Column("amount_msat", sa.BigInteger(), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_payment_attempts")),
    )
    op.create_index(op.f("ix_payment_attempts_payment_hash"), "payment_attempts", ["payment_hash"])

    op.create_table(
        "payments",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("payment_hash", sa.String(length=64), nullable=False),
        sa.Column("payment_id", sa.String(length=128), nullable=False),
        sa.Column("task_id", sa.String(length=128), nullable=False),
        sa.Column("node_id", sa.String(length=128), nullable=False),
        sa.Column("amount_msat", sa.BigInteger(), nullable=False),
        sa.Column("bolt11", sa.Text(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_payments")),
        sa.UniqueConstraint("payment_hash", name=op.f("uq_payments_payment_hash")),
        sa.UniqueConstraint("payment_id", name=op.f("uq_payments_payment_id")),
    )
    op.create_index(
        op.f("ix_payments_state_created_at_seq"), "payments", ["state", "created_at", "seq"]
    )
    op.create_index(op.f("ix_payments_task_id"), "payments", ["task_id"])

    op.create_table(
        "proofs",
        sa.Column("task_id", sa.String(length=128), nullable=False),
        sa.Column("node_id", sa.String(length=64), nullable=False),
        sa.Column("output_hash", sa.String(length=64), nullable=False),
        sa.Column("execution_ms", sa.BigInteger(), nullable=False),
        sa.Column("issued_at", sa.BigInteger(), nullable=False),
        sa.Column("envelope", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("task_id", "node_id", name=op.f("pk_proofs")),
    )
    op.create_table(
        "proposals",
        sa.Column("proposal_id", sa.String(length=128), nullable=False),
        sa.Column("author", sa.String(length=256), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("implementation_plan", sa.Text(), nullable=False),
        sa.Column("requested_sat", sa.BigInteger(), nullable=False),
        sa.Column("submitted_at", sa.BigInteger(), nullable=False),
        sa.Column("comment_deadline_at", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("txid", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("proposal_id", name=op.f("pk_proposals")),
    )
    op.create_index(op.f("ix_proposals_status"), "proposals", ["status"])

    op.create_table(
        "shares",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("hash_hex", sa.String(length=64), nullable=False),
        sa.Column("miner_id", sa.String(length=256), nullable=False),
        sa.Column("share_difficulty", sa.BigInteger(), nullable=False),
        sa.Column("credited_numerator", sa.Text(), nullable=False),
        sa.Column("credited_denominator", sa.Text(), nullable=False),
        sa.Column("is_block", sa.Boolean(), nullable=False),
        sa.Column("accepted_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_shares")),
        sa.UniqueConstraint("hash_hex", name=op.f("uq_shares_hash_hex")),
    )
    op.create_index(op.f("ix_shares_accepted_at_seq"), "shares", ["accepted_at", "seq"])
    op.create_index(op.f("ix_shares_miner_id_accepted_at"), "shares", ["miner_id", "accepted_at"])

    op.create_table(
        "slashing_log",
        sa.Column("entry_index", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("node_id", sa.String(length=64), nullable=False),
        sa.Column("channel_id", sa.String(length=128), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("evidence_hash", sa.String(length=64), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("signature", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("entry_index", name=op.f("pk_slashing_log")),
        sa.UniqueConstraint("prev_hash", name=op.f("uq_slashing_log_prev_hash")),
    )
    op.create_table(
        "stakes",
        sa.Column("public_key", sa.String(length=64), nullable=False),
        sa.Column("tier", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("required_sats", sa.BigInteger(), nullable=False),
        sa.Column("capacity_sat", sa.BigInteger(), nullable=False),
        sa.Column("bonus_bps", sa.Integer(), nullable=False),
        sa.Column("changed_at", sa.BigInteger(), nullable=False),
        sa.Column("next_verification_at", sa.BigInteger(), nullable=True),
        sa.Column("grace_until", sa.BigInteger(), nullable=True),
        sa.Column("cooldown_until", sa.BigInteger(), nullable=True),
        sa.Column("channel_id", sa.String(length=64), nullable=True),
        sa.Column("channel_point", sa.String(length=75), nullable=True),
        sa.Column("channel_peer_pubkey", sa.String(length=66), nullable=True),
        sa.Column("channel_capacity_sat", sa.BigInteger(), nullable=True),
        sa.Column("channel_local_balance_sat", sa.BigInteger(), nullable=True),
        sa.Column("channel_remote_balance_sat", sa.BigInteger(), nullable=True),
        sa.Column("channel_confirmations", sa.BigInteger(), nullable=True),
        sa.Column("channel_active", sa.Boolean(), nullable=True),
        sa.PrimaryKeyConstraint("public_key", name=op.f("pk_stakes")),
    )
    op.create_index(op.f("ix_stakes_next_verification_at"), "stakes", ["next_verification_at"])

    op.create_table(
        "tasks",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("task_id", sa.String(length=128), nullable=False),
        sa.Column("task_type", sa.String(length=64), nullable=False),
        sa.Column("input_schema_id", sa.String(length=128), nullable=False),
        sa.Column("input_schema_version", sa.Integer(), nullable=False),
        sa.Column("min_tier", sa.String(length=8), nullable=False),
        sa.Column("min_vram_mb", sa.BigInteger(), nullable=False),
        sa.Column("min_ram_mb", sa.BigInteger(), nullable=False),
        sa.Column("gpu_required", sa.Boolean(), nullable=False),
        sa.Column("max_price_msat", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("node_id", sa.String(length=128), nullable=True),
        sa.Column("price_msat", sa.BigInteger(), nullable=True),
        sa.Column("deadline_at", sa.BigInteger(), nullable=True),
        sa.Column("output_hash", sa.String(length=64), nullable=True),
        sa.Column("tried_node_ids", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_tasks")),
        sa.UniqueConstraint("task_id", name=op.f("uq_tasks_task_id")),
    )
    op.create_index(op.f("ix_tasks_node_id_state"), "tasks", ["node_id", "state"])
    op.create_index(op.f("ix_tasks_state_deadline_at"), "tasks", ["state", "deadline_at"])
    op.create_index(op.f("ix_tasks_state_seq"), "tasks", ["state", "seq"])

    op.create_table(
        "proposal_acknowledgements",
        sa.Column("proposal_id", sa.String(length=128), nullable=False),
        sa.Column("holder_key", sa.String(length=66), nullable=False),
        sa.ForeignKeyConstraint(
            ["proposal_id"],
            ["proposals.proposal_id"],
            name=op.f("fk_proposal_acknowledgements_proposal_id_proposals"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "proposal_id", "holder_key", name=op.f("pk_proposal_acknowledgements")
        ),
    )
    op.create_table(
        "proposal_comments",
        sa.Column("proposal_id", sa.String(length=128), nullable=False),
        sa.Column("position", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("author", sa.String(length=256), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["proposal_id"],
            ["proposals.proposal_id"],
            name=op.f("fk_proposal_comments_proposal_id_proposals"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("proposal_id", "position", name=op.f("pk_proposal_comments")),
    )
    _install_append_only_guard()


def downgrade() -> None:
    _drop_append_only_guard()
    op.drop_table("proposal_comments")
    op.drop_table("proposal_acknowledgements")
    op.drop_table("tasks")
    op.drop_table("stakes")
    op.drop_table("slashing_log")
    op.drop_table("shares")
    op.drop_table("proposals")
    op.drop_table("proofs")
    op.drop_table("payments")
    op.drop_table("payment_attempts")
    op.drop_table("nodes")
    op.drop_table("manifests")
    op.drop_table("api_keys")
