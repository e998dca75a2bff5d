"""Whether a keysend payout's payee refused keysend is a column of its record, not the start of
its last error (SRS-LN-08): a refused keysend waits for an invoice and is never sent by keysend
again, and that state no longer lives inside an error message.

``payments`` gains ``keysend_refused`` (false by default). Existing rows: a keysend payout whose
``last_error`` starts with "keysend refused by the payee" (how the refusal was recorded before
this revision) is refused.

Revision ID: 0037
Revises: 0036
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0037"
down_revision: str | None = "0036"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEYSEND_REFUSED = "keysend refused by the payee"
"""How a refused keysend's last error began (owm_core.payments.keysend)."""


def upgrade() -> None:
    with op.batch_alter_table("payments") as batch:
        batch.add_column(
            sa.Column("keysend_refused", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    payments = sa.table(
        "payments",
        sa.column("keysend_refused", sa.Boolean()),
        sa.column("method", sa.String()),
        sa.column("last_error", sa.Text()),
    )
    op.execute(
        payments.update()
        .where(
            payments.c.method == "keysend",
            sa.func.substr(payments.c.last_error, 1, len(KEYSEND_REFUSED)) == KEYSEND_REFUSED,
        )
        .values(keysend_refused=True)
    )


def downgrade() -> None:
    with op.batch_alter_table("payments") as batch:
        batch.drop_column("keysend_refused")
