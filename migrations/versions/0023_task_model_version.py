"""The sub-model version a task is pinned to.

Adds ``tasks.model_version``: ``genesis`` or a release's version for a task that runs a
sub-model's weights, empty for the others and for tasks stored before this migration (their
nodes run the version they have installed, as before). Every replica of a task carries the
same pin, so honest replicas on nodes that installed different versions agree (SRS-SEC-11).

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(
            sa.Column("model_version", sa.String(length=64), nullable=False, server_default="")
        )


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("model_version")
