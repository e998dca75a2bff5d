"""Slashing reversals: an upheld appeal reverses a slashing in the public log (docs/slashing.md,
"Appeals"; SRS-STAKE-06/07, SRS-SEC-11).

``slashing_log`` gains two nullable columns for reversal entries, ``reverses`` (the index of
the slashing reversed) and ``maintainers`` (JSON list of the maintainer keys that upheld the
appeal); existing slashing rows keep NULL there and are read, hashed and verified exactly as
before. ``slashing_reversal_statements`` keeps the maintainers' signed ``slashing_reversal``
envelopes (canonical bytes, unique by signature) as they arrive, for the record.

Revision ID: 0032
Revises: 0031
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0032"
down_revision: str | None = "0031"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("slashing_log", sa.Column("reverses", sa.BigInteger(), nullable=True))
    op.add_column("slashing_log", sa.Column("maintainers", sa.Text(), nullable=True))
    op.create_table(
        "slashing_reversal_statements",
        sa.Column(
            "seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True,
            nullable=False,
        ),
        sa.Column("signature", sa.String(length=128), nullable=False),
        sa.Column("log_index", sa.BigInteger(), nullable=False),
        sa.Column("signer", sa.String(length=64), nullable=False),
        sa.Column("envelope", sa.LargeBinary(), nullable=False),
        sa.Column("received_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_slashing_reversal_statements")),
        sa.UniqueConstraint("signature", name=op.f("uq_slashing_reversal_statements_signature")),
    )
    op.create_index(
        op.f("ix_slashing_reversal_statements_log_index"),
        "slashing_reversal_statements",
        ["log_index"],
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_slashing_reversal_statements_log_index"),
        table_name="slashing_reversal_statements",
    )
    op.drop_table("slashing_reversal_statements")
    op.drop_column("slashing_log", "maintainers")
    op.drop_column("slashing_log", "reverses")
