"""A payout's record says how it is sent: by paying the payee's invoice, or by keysend to a bare
Lightning node that hands in no invoice (SRS-LN-04, SRS-LN-08).

Rows stored before are invoice payouts.

Revision ID: 0033
Revises: 0032
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0033"
down_revision: str | None = "0032"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("payments") as batch:
        batch.add_column(
            sa.Column("method", sa.String(length=16), nullable=False, server_default="invoice")
        )


def downgrade() -> None:
    with op.batch_alter_table("payments") as batch:
        batch.drop_column("method")
