"""Channel bindings: one stake channel backs at most one node (SRS-STAKE-01, SRS-LN-11).

Adds ``channel_bindings``: the channel point (``txid:index``) is the primary key, so two node
ids can never hold the same channel, and ``node_id`` is unique, since a node's stake is one
channel at a time.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "channel_bindings",
        sa.Column("channel_point", sa.String(length=75), nullable=False),
        sa.Column("node_id", sa.String(length=64), nullable=False),
        sa.Column("bound_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("channel_point", name=op.f("pk_channel_bindings")),
    )
    op.create_index(
        op.f("ix_channel_bindings_node_id"), "channel_bindings", ["node_id"], unique=True
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_channel_bindings_node_id"), table_name="channel_bindings")
    op.drop_table("channel_bindings")
