"""A payout's record says how its invoice was obtained (the payee's Lightning node asked and
the memo), when it expires, and which expired invoices it replaced, so that an invoice that
expired unpaid is asked for again and the payout paid exactly once (SRS-LN-04, SRS-LN-08).

Rows stored before have NULLs and no replaced hashes; the dispatcher reads their invoices.

Revision ID: 0031
Revises: 0030
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0031"
down_revision: str | None = "0030"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("payments") as batch:
        batch.add_column(sa.Column("payee_pubkey", sa.String(length=66), nullable=True))
        batch.add_column(sa.Column("memo", sa.Text(), nullable=True))
        batch.add_column(sa.Column("invoice_expires_at", sa.BigInteger(), nullable=True))
        batch.add_column(
            sa.Column("replaced_hashes", sa.Text(), nullable=False, server_default="[]")
        )


def downgrade() -> None:
    with op.batch_alter_table("payments") as batch:
        batch.drop_column("replaced_hashes")
        batch.drop_column("invoice_expires_at")
        batch.drop_column("memo")
        batch.drop_column("payee_pubkey")
