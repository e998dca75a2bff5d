"""State several coordinators on one database share (SRS-COORD-05): outstanding challenges,
the nonces the replay guard has seen (until they expire) and the requests each sliding-window
rate limit counted, so a challenge issued by one coordinator is redeemed at another, a nonce
used at one is refused at all, and a limit holds across them.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "challenges",
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("public_key", sa.String(length=64), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("issued_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("nonce", name=op.f("pk_challenges")),
    )
    op.create_index(op.f("ix_challenges_expires_at"), "challenges", ["expires_at"])
    op.create_table(
        "seen_nonces",
        sa.Column("signer", sa.String(length=64), nullable=False),
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("signer", "nonce", name=op.f("pk_seen_nonces")),
    )
    op.create_index(op.f("ix_seen_nonces_expires_at"), "seen_nonces", ["expires_at"])
    op.create_table(
        "rate_hits",
        sa.Column("seq", SEQ, autoincrement=True, nullable=False),
        sa.Column("scope", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=512), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_rate_hits")),
    )
    op.create_index(
        op.f("ix_rate_hits_scope_key_at"), "rate_hits", ["scope", "key", "at"]
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_rate_hits_scope_key_at"), table_name="rate_hits")
    op.drop_table("rate_hits")
    op.drop_index(op.f("ix_seen_nonces_expires_at"), table_name="seen_nonces")
    op.drop_table("seen_nonces")
    op.drop_index(op.f("ix_challenges_expires_at"), table_name="challenges")
    op.drop_table("challenges")
