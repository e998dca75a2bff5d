"""Indexes for the keyset pages the periodic sweeps walk: each page (rows in a state, after a
position, in position order, at most a page) is then one ordered index range that stops at the
page's size, instead of every row in that state read and sorted on each sweep.

* ``payments (state, seq)``: the payout dispatcher's in-flight and owed pages;
* ``top_ups (state, seq)``: the funding sweep's open top-ups;
* ``escrows (closed, seq)``: the funding sweep's open escrows, replacing ``escrows (closed)``,
  which it covers;
* ``bounties (status, bounty_id)``: the lapse worker's open and funding bounties.

Revision ID: 0039
Revises: 0038
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0039"
down_revision: str | None = "0038"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(op.f("ix_payments_state_seq"), "payments", ["state", "seq"])
    op.create_index(op.f("ix_top_ups_state_seq"), "top_ups", ["state", "seq"])
    op.create_index(op.f("ix_escrows_closed_seq"), "escrows", ["closed", "seq"])
    op.drop_index(op.f("ix_escrows_closed"), table_name="escrows")
    op.create_index(op.f("ix_bounties_status_bounty_id"), "bounties", ["status", "bounty_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_bounties_status_bounty_id"), table_name="bounties")
    op.create_index(op.f("ix_escrows_closed"), "escrows", ["closed"])
    op.drop_index(op.f("ix_escrows_closed_seq"), table_name="escrows")
    op.drop_index(op.f("ix_top_ups_state_seq"), table_name="top_ups")
    op.drop_index(op.f("ix_payments_state_seq"), table_name="payments")
