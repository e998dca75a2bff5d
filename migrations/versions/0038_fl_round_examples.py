"""What an FL round's task assigned each replica to train on is a column of the round
(SRS-SEC-05): an update claiming more examples than that is refused, so no node outweighs the
honest ones in FedAvg or Multi-Krum by inflating its ``num_examples``.

``fl_rounds`` gains ``max_examples`` (0 for rounds stored before this revision: the
coordinator's configured cap applies to them).

Revision ID: 0038
Revises: 0037
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0038"
down_revision: str | None = "0037"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("fl_rounds") as batch:
        batch.add_column(
            sa.Column("max_examples", sa.BigInteger(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("fl_rounds") as batch:
        batch.drop_column("max_examples")
