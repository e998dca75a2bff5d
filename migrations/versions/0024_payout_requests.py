"""Payouts waiting for the payee node's invoice, and the invoices nodes handed in (SRS-LN-04),
kept in the database so that several coordinators share them (SRS-COORD-05): a node asks any
coordinator which payouts await its invoice and hands the invoice in at any, and the one that
pays finds it.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "payout_requests",
        sa.Column("payment_id", sa.String(length=32), nullable=False),
        sa.Column("payee_pubkey", sa.String(length=66), nullable=False),
        sa.Column("amount_msat", sa.BigInteger(), nullable=False),
        sa.Column("memo", sa.Text(), nullable=False),
        sa.Column("expiry_s", sa.BigInteger(), nullable=False),
        sa.Column("requested_at", sa.BigInteger(), nullable=False),
        sa.Column("bolt11", sa.Text(), nullable=True),
        sa.Column("payment_hash", sa.String(length=64), nullable=True),
        sa.Column("invoice_expiry_s", sa.BigInteger(), nullable=True),
        sa.Column("invoice_created_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("payment_id", name=op.f("pk_payout_requests")),
    )
    op.create_index(
        op.f("ix_payout_requests_payee_pubkey"), "payout_requests", ["payee_pubkey"]
    )
    op.create_index(
        op.f("ix_payout_requests_requested_at"), "payout_requests", ["requested_at"]
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_payout_requests_requested_at"), table_name="payout_requests")
    op.drop_index(op.f("ix_payout_requests_payee_pubkey"), table_name="payout_requests")
    op.drop_table("payout_requests")
