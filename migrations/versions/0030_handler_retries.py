"""The GitHub App's webhook handlers still to be run with a stored delivery (next attempt,
attempts, last failure, end), in the database, so that a coordinator's restart or crash loses
no merged pull request's bounty or reward and every coordinator on one PostgreSQL database
shares one list (SRS-LN-08, SRS-COORD-05).

Revision ID: 0030
Revises: 0029
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0030"
down_revision: str | None = "0029"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "handler_retries",
        sa.Column("delivery_id", sa.String(length=64), nullable=False),
        sa.Column("handler", sa.String(length=32), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("delivery_id", "handler", name=op.f("pk_handler_retries")),
    )
    op.create_index(op.f("ix_handler_retries_next_at"), "handler_retries", ["next_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_handler_retries_next_at"), table_name="handler_retries")
    op.drop_table("handler_retries")
