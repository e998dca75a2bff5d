"""An index on the Lightning node each registered node names, so that deciding whether a payee
is a registered node's Lightning node (keysend is never used for those, SRS-LN-04) is one index
lookup, not a scan of every node.

Revision ID: 0034
Revises: 0033
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0034"
down_revision: str | None = "0033"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(op.f("ix_nodes_ln_pubkey"), "nodes", ["ln_pubkey"])


def downgrade() -> None:
    op.drop_index(op.f("ix_nodes_ln_pubkey"), table_name="nodes")
