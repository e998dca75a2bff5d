"""Funded work only: prepaid balances, their top-up invoices, task escrows, budget draws.

Adds ``balances`` (one row per submitter key), ``top_ups`` (treasury invoices that credit a
balance once paid), ``escrows`` (each task's money: funded, held, paid, refunded) and
``budgets`` (what each network budget drew in its current period), so a coordinator restart
loses no balance and pays nothing twice.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _seq() -> sa.Column[int]:
    return sa.Column(
        "seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True,
        nullable=False,
    )  # fmt: skip


def _msat(name: str) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger(), nullable=False)


def upgrade() -> None:
    op.create_table(
        "balances",
        sa.Column("public_key", sa.String(length=64), nullable=False),
        _msat("funded_msat"),
        _msat("escrowed_msat"),
        _msat("refunded_msat"),
        _msat("available_msat"),
        sa.PrimaryKeyConstraint("public_key", name=op.f("pk_balances")),
    )
    op.create_table(
        "top_ups",
        _seq(),
        sa.Column("payment_hash", sa.String(length=64), nullable=False),
        sa.Column("public_key", sa.String(length=64), nullable=False),
        _msat("amount_msat"),
        sa.Column("bolt11", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_top_ups")),
        sa.UniqueConstraint("payment_hash", name=op.f("uq_top_ups_payment_hash")),
    )
    op.create_index(op.f("ix_top_ups_state_public_key"), "top_ups", ["state", "public_key"])
    op.create_table(
        "escrows",
        _seq(),
        sa.Column("task_id", sa.String(length=128), nullable=False),
        sa.Column("payer", sa.String(length=16), nullable=False),
        sa.Column("funder", sa.String(length=128), nullable=False),
        sa.Column("opened_at", sa.BigInteger(), nullable=False),
        _msat("price_msat"),
        _msat("share_msat"),
        sa.Column("replicas", sa.Integer(), nullable=False),
        _msat("funded_msat"),
        _msat("held_msat"),
        _msat("paid_to_nodes_msat"),
        _msat("treasury_share_msat"),
        _msat("refunded_msat"),
        sa.Column("settled_replica_ids", sa.Text(), nullable=False),
        sa.Column("closed", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_escrows")),
        sa.UniqueConstraint("task_id", name=op.f("uq_escrows_task_id")),
    )
    op.create_index(op.f("ix_escrows_closed"), "escrows", ["closed"])
    op.create_table(
        "budgets",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("period", sa.BigInteger(), nullable=False),
        _msat("drawn_msat"),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_budgets")),
    )


def downgrade() -> None:
    op.drop_table("budgets")
    op.drop_index(op.f("ix_escrows_closed"), table_name="escrows")
    op.drop_table("escrows")
    op.drop_index(op.f("ix_top_ups_state_public_key"), table_name="top_ups")
    op.drop_table("top_ups")
    op.drop_table("balances")
