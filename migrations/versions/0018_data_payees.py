"""Where data contributors are paid their credits: one Lightning node per contributor.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "data_payees",
        sa.Column("contributor", sa.String(length=256), nullable=False),
        sa.Column("ln_pubkey", sa.String(length=66), nullable=False),
        sa.Column("registered_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("contributor", name=op.f("pk_data_payees")),
    )


def downgrade() -> None:
    op.drop_table("data_payees")
