"""Federated-learning rounds and their uploaded client updates (SRS-COORD-03).

Adds ``fl_rounds`` (one row per round: state, rule, tasks, results, the version it produced)
and ``fl_updates`` (each node's signed update of a round: weights as float32 little-endian
bytes, signature, anomaly score; one per node and round).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "fl_rounds",
        sa.Column("number", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("sub_model", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.BigInteger(), nullable=False),
        sa.Column("closed_at", sa.BigInteger(), nullable=True),
        sa.Column("rule", sa.String(length=16), nullable=False),
        sa.Column("f", sa.Integer(), nullable=False),
        sa.Column("task_ids", sa.Text(), nullable=False),
        sa.Column("base_version", sa.String(length=130), nullable=False),
        sa.Column("participants", sa.Integer(), nullable=False),
        sa.Column("accepted", sa.Text(), nullable=False),
        sa.Column("rejected", sa.Text(), nullable=False),
        sa.Column("flagged", sa.Text(), nullable=False),
        sa.Column("accuracy_ppm", sa.Integer(), nullable=True),
        sa.Column("loss", sa.Float(), nullable=True),
        sa.Column("version_id", sa.String(length=130), nullable=True),
        sa.Column("failure", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("number", name=op.f("pk_fl_rounds")),
    )
    op.create_index(op.f("ix_fl_rounds_state"), "fl_rounds", ["state"])
    op.create_table(
        "fl_updates",
        sa.Column("seq", _SEQ, autoincrement=True, nullable=False),
        sa.Column("round_number", sa.BigInteger(), nullable=False),
        sa.Column("node_id", sa.String(length=64), nullable=False),
        sa.Column("task_id", sa.String(length=128), nullable=False),
        sa.Column("sub_model", sa.String(length=64), nullable=False),
        sa.Column("public_key", sa.String(length=64), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("signature", sa.String(length=128), nullable=False),
        sa.Column("weights", sa.LargeBinary(), nullable=False),
        sa.Column("num_examples", sa.BigInteger(), nullable=False),
        sa.Column("loss", sa.Float(), nullable=False),
        sa.Column("received_at", sa.BigInteger(), nullable=False),
        sa.Column("anomaly_score", sa.Float(), nullable=True),
        sa.Column("flagged", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["round_number"],
            ["fl_rounds.number"],
            name=op.f("fk_fl_updates_round_number_fl_rounds"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_fl_updates")),
    )
    op.create_index(
        op.f("ix_fl_updates_round_number_node_id"),
        "fl_updates",
        ["round_number", "node_id"],
        unique=True,
    )


def downgrade() -> None:
    op.drop_table("fl_updates")
    op.drop_table("fl_rounds")
