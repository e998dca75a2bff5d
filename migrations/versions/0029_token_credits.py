"""What each L402 token's payment still covers under per-query pricing (SRS-API-03), in the
database, so that several coordinators on one PostgreSQL database spend one credit per token,
not one each (SRS-COORD-05).

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0029"
down_revision: str | None = "0028"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "token_credits",
        sa.Column("token", sa.String(length=64), nullable=False),
        sa.Column("left_msat", sa.BigInteger(), nullable=False),
        sa.Column("until", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("token", name=op.f("pk_token_credits")),
    )
    op.create_index(op.f("ix_token_credits_until"), "token_credits", ["until"])


def downgrade() -> None:
    op.drop_index(op.f("ix_token_credits_until"), table_name="token_credits")
    op.drop_table("token_credits")
