"""A payout's record names which of its replaced hashes were keysend hashes, so the dispatcher
looks those up as keysend attempts (``Lightning.lookup_keysend``) and every other hash by the
hash alone (SRS-LN-04, SRS-LN-08). On Core Lightning a keysend attempt is found only by its
label, through a read of every payment the node made; before this revision every lookup of a
hash CLN did not know did that read, so each new invoice payout cost one.

``payments`` gains ``replaced_keysend`` (a JSON array, like ``replaced_hashes``). Existing rows:
before this revision a keysend hash was replaced only when its payee refused keysend, and every
refusal was logged in ``payment_attempts`` as a failed attempt of that hash whose error starts
with "keysend refused by the payee"; the replaced hashes with such a line are filled in.

Revision ID: 0036
Revises: 0035
Create Date: 2026-12-07
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0036"
down_revision: str | None = "0035"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEYSEND_REFUSED = "keysend refused by the payee"
"""How a refused keysend's failed attempt began its error (owm_core.payments.keysend)."""


def upgrade() -> None:
    with op.batch_alter_table("payments") as batch:
        batch.add_column(
            sa.Column("replaced_keysend", sa.Text(), nullable=False, server_default="[]")
        )
    conn = op.get_bind()
    refused = {
        str(h) for h in conn.execute(
            sa.text("SELECT DISTINCT payment_hash FROM payment_attempts"
                    " WHERE substr(error, 1, :n) = :marker"),
            {"n": len(KEYSEND_REFUSED), "marker": KEYSEND_REFUSED},
        ).scalars()
    }
    if not refused:
        return
    rows = conn.execute(
        sa.text("SELECT seq, replaced_hashes FROM payments WHERE replaced_hashes <> '[]'")
    ).all()
    for seq, replaced in rows:
        keysend = [h for h in json.loads(replaced) if h in refused]
        if keysend:
            conn.execute(
                sa.text("UPDATE payments SET replaced_keysend = :keysend WHERE seq = :seq"),
                {"keysend": json.dumps(keysend), "seq": seq},
            )


def downgrade() -> None:
    with op.batch_alter_table("payments") as batch:
        batch.drop_column("replaced_keysend")
