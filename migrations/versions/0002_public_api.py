"""The public API's records: model releases with OTS proofs, bounties, analyses, payouts.

Adds the tables behind SRS 4.8's model, GitHub and mining endpoints (``model_releases``,
``bounties``, ``analyses``, ``mining_payouts``) and an index for a node's earnings history
(``payments`` by node and time, SRS-LN-10).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "model_releases",
        sa.Column("release_id", sa.String(length=130), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("sub_model", sa.String(length=64), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("parent", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("proof_status", sa.String(length=16), nullable=False),
        sa.Column("checked_at", sa.BigInteger(), nullable=False),
        sa.Column("ots_proof", sa.LargeBinary(), nullable=True),
        sa.PrimaryKeyConstraint("release_id", name=op.f("pk_model_releases")),
    )
    op.create_index(op.f("ix_model_releases_created_at"), "model_releases", ["created_at"])
    op.create_table(
        "bounties",
        sa.Column("bounty_id", sa.String(length=64), nullable=False),
        sa.Column("repository", sa.String(length=140), nullable=False),
        sa.Column("issue_number", sa.BigInteger(), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("amount_sat", sa.BigInteger(), nullable=False),
        sa.Column("created_by", sa.String(length=256), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("bounty_id", name=op.f("pk_bounties")),
    )
    op.create_index(
        op.f("ix_bounties_status_created_at"), "bounties", ["status", "created_at"]
    )
    op.create_table(
        "analyses",
        sa.Column("analysis_id", sa.String(length=64), nullable=False),
        sa.Column("repository", sa.String(length=140), nullable=False),
        sa.Column("requested_by", sa.String(length=256), nullable=False),
        sa.Column("requested_at", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=True),
        sa.Column("result", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("analysis_id", name=op.f("pk_analyses")),
    )
    op.create_table(
        "mining_payouts",
        sa.Column("payment_hash", sa.String(length=64), nullable=False),
        sa.Column("paid_at", sa.BigInteger(), nullable=False),
        sa.Column("amount_sat", sa.BigInteger(), nullable=False),
        sa.Column("miner_id", sa.String(length=256), nullable=True),
        sa.PrimaryKeyConstraint("payment_hash", name=op.f("pk_mining_payouts")),
    )
    op.create_index(op.f("ix_mining_payouts_paid_at"), "mining_payouts", ["paid_at"])
    op.create_index(
        op.f("ix_mining_payouts_miner_id_paid_at"), "mining_payouts", ["miner_id", "paid_at"]
    )
    op.create_index(
        op.f("ix_payments_node_id_created_at"), "payments", ["node_id", "created_at"]
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_payments_node_id_created_at"), table_name="payments")
    op.drop_table("mining_payouts")
    op.drop_table("analyses")
    op.drop_table("bounties")
    op.drop_table("model_releases")
