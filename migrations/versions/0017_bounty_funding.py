"""Bounties are funded (the treasury's budget, or a sponsor's invoice paid first), claimed by a
contributor naming a Lightning node, and tied to the GitHub App installation of their
repository (SRS-LN-08).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TEXT = (
    ("funding", 16, "treasury"),
    ("sponsor_payee", 66, ""),
    ("sponsor_invoice_hash", 64, ""),
    ("claimant", 64, ""),
    ("claimant_payee", 66, ""),
)


def upgrade() -> None:
    with op.batch_alter_table("bounties") as batch:
        for name, length, default in _TEXT:
            batch.add_column(
                sa.Column(name, sa.String(length=length), nullable=False, server_default=default)
            )
        batch.add_column(sa.Column("installation_id", sa.BigInteger(), nullable=True))
        batch.create_index("ix_bounties_repository_issue", ["repository", "issue_number"])


def downgrade() -> None:
    with op.batch_alter_table("bounties") as batch:
        batch.drop_index("ix_bounties_repository_issue")
        batch.drop_column("installation_id")
        for name, _length, _default in reversed(_TEXT):
            batch.drop_column(name)
