"""A claimed bounty whose issue closed keeps the time it closed: it waits that long for its
claimant's merged pull request, whose webhook delivery GitHub may send after the issue's
(SRS-LN-08).

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0026"
down_revision: str | None = "0025"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("bounties") as batch:
        batch.add_column(sa.Column("issue_closed_at", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("bounties") as batch:
        batch.drop_column("issue_closed_at")
