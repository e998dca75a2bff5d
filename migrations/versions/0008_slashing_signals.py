"""Persisted slashing signals and maintainer acknowledgements (SRS-STAKE-04, SRS-SEC-14).

Adds ``slashing_signals`` (one row per distinct signal: node, reporter, reason, evidence hash),
``slashing_acks`` (maintainer acknowledgement envelopes, canonical bytes, unique by signature)
and ``slashing_decisions`` (a decision is written before it is carried out and marked finished
after, so a restart finishes it instead of deciding again). Evidence stays in the tables once
a decision closes it (``closed_at``), so the same evidence never counts twice.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _seq() -> sa.Column[int]:
    return sa.Column(
        "seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True,
        nullable=False,
    )  # fmt: skip


def upgrade() -> None:
    op.create_table(
        "slashing_signals",
        _seq(),
        sa.Column("node_id", sa.String(length=64), nullable=False),
        sa.Column("reporter", sa.String(length=128), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("evidence_hash", sa.String(length=64), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("closed_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_slashing_signals")),
    )
    op.create_index(
        op.f("ix_slashing_signals_node_id_reporter_reason_evidence_hash"),
        "slashing_signals",
        ["node_id", "reporter", "reason", "evidence_hash"],
        unique=True,
    )
    op.create_index(
        op.f("ix_slashing_signals_closed_at_at"), "slashing_signals", ["closed_at", "at"]
    )

    op.create_table(
        "slashing_acks",
        _seq(),
        sa.Column("signature", sa.String(length=128), nullable=False),
        sa.Column("node_id", sa.String(length=64), nullable=False),
        sa.Column("signer", sa.String(length=64), nullable=False),
        sa.Column("envelope", sa.LargeBinary(), nullable=False),
        sa.Column("received_at", sa.BigInteger(), nullable=False),
        sa.Column("closed_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_slashing_acks")),
        sa.UniqueConstraint("signature", name=op.f("uq_slashing_acks_signature")),
    )
    op.create_index(
        op.f("ix_slashing_acks_node_id_closed_at"), "slashing_acks", ["node_id", "closed_at"]
    )

    op.create_table(
        "slashing_decisions",
        _seq(),
        sa.Column("node_id", sa.String(length=64), nullable=False),
        sa.Column("channel_id", sa.String(length=128), nullable=False),
        sa.Column("tier", sa.String(length=8), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("evidence_hash", sa.String(length=64), nullable=False),
        sa.Column("decided_at", sa.BigInteger(), nullable=False),
        sa.Column("supporters", sa.Text(), nullable=False),
        sa.Column("cooldown_s", sa.BigInteger(), nullable=False),
        sa.Column("finished_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_slashing_decisions")),
    )
    op.create_index(
        op.f("ix_slashing_decisions_node_id_finished_at"),
        "slashing_decisions",
        ["node_id", "finished_at"],
    )


def downgrade() -> None:
    op.drop_table("slashing_decisions")
    op.drop_table("slashing_acks")
    op.drop_table("slashing_signals")
