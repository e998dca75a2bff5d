"""The governance log (every governance action, hash-chained and signed; append-only in the
database itself), the treasury's spends on their way (one PSBT per proposal) and the payout
address of treasury proposals (SRS-GOV-01..06, SRS-LN-09).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_REFUSAL = "governance_log is append-only"


def _append_only() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION owm_governance_log_append_only() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ BEGIN "
            f"RAISE EXCEPTION '{_REFUSAL}' USING ERRCODE = 'integrity_constraint_violation'; "
            "END $$"
        )
        op.execute(
            "CREATE TRIGGER governance_log_append_only BEFORE UPDATE OR DELETE "
            "ON governance_log FOR EACH ROW EXECUTE FUNCTION owm_governance_log_append_only()"
        )
        return
    for event in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER governance_log_no_{event.lower()} BEFORE {event} "
            f"ON governance_log BEGIN SELECT RAISE(ABORT, '{_REFUSAL}'); END"
        )


def upgrade() -> None:
    with op.batch_alter_table("proposals") as batch:
        batch.add_column(
            sa.Column("payout_address", sa.String(length=90), nullable=False, server_default="")
        )
    op.create_table(
        "governance_log",
        sa.Column("entry_index", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("statement_hash", sa.String(length=64), nullable=True),
        sa.Column("entry", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("entry_index", name=op.f("pk_governance_log")),
        sa.UniqueConstraint("prev_hash", name=op.f("uq_governance_log_prev_hash")),
        sa.UniqueConstraint("statement_hash", name=op.f("uq_governance_log_statement_hash")),
    )
    op.create_table(
        "treasury_spends",
        sa.Column("proposal_id", sa.String(length=128), nullable=False),
        sa.Column("psbt", sa.Text(), nullable=False),
        sa.Column("signers", sa.Text(), nullable=False),
        sa.Column("txid", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("proposal_id", name=op.f("pk_treasury_spends")),
    )
    _append_only()


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS governance_log_append_only ON governance_log")
        op.execute("DROP FUNCTION IF EXISTS owm_governance_log_append_only()")
    else:
        op.execute("DROP TRIGGER IF EXISTS governance_log_no_update")
        op.execute("DROP TRIGGER IF EXISTS governance_log_no_delete")
    op.drop_table("treasury_spends")
    op.drop_table("governance_log")
    with op.batch_alter_table("proposals") as batch:
        batch.drop_column("payout_address")
