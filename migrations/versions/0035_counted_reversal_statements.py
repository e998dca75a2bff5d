"""Which stored reversal statements a reversal entry counted (docs/slashing.md, "Checking a
reversal's statements"; SRS-STAKE-06, SRS-SEC-14).

``slashing_reversal_statements`` gains ``counted_in``: the index of the reversal entry that
counted the statement, written in the transaction that appends that entry. The coordinator
publishes exactly those statements for the reversal, so a maintainer's second statement stored
later (say by a second coordinator on the same database) can never be published in place of
the one the entry's ``statement_hash`` covers. Existing rows stay NULL: no reversal was carried
out before this revision on any production database (reversals shipped the same day).

Revision ID: 0035
Revises: 0034
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0035"
down_revision: str | None = "0034"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "slashing_reversal_statements", sa.Column("counted_in", sa.BigInteger(), nullable=True)
    )
    op.create_index(
        op.f("ix_slashing_reversal_statements_counted_in"),
        "slashing_reversal_statements",
        ["counted_in"],
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_slashing_reversal_statements_counted_in"),
        table_name="slashing_reversal_statements",
    )
    with op.batch_alter_table("slashing_reversal_statements") as batch:
        batch.drop_column("counted_in")
