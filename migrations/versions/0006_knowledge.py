"""Sub-model registry, contributed datasets and their documents, data contributors' credits
(SRS 2.1/2.2, issue 9 items 1-2).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "sub_models",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("version_digest", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("dataset_ids", sa.Text(), nullable=False),
        sa.Column("host_node_ids", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_sub_models")),
    )
    op.create_table(
        "datasets",
        sa.Column("seq", _SEQ, autoincrement=True, nullable=False),
        sa.Column("dataset_id", sa.String(length=27), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("contributor", sa.String(length=256), nullable=False),
        sa.Column("submitted_at", sa.BigInteger(), nullable=False),
        sa.Column("n_documents", sa.Integer(), nullable=False),
        sa.Column("n_passages", sa.Integer(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("licences", sa.Text(), nullable=False),
        sa.Column("sources", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("proof", sa.LargeBinary(), nullable=True),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_datasets")),
        sa.UniqueConstraint("dataset_id", name=op.f("uq_datasets_dataset_id")),
    )
    op.create_index(op.f("ix_datasets_contributor"), "datasets", ["contributor"])
    op.create_index(
        op.f("ix_datasets_submitted_at_dataset_id"), "datasets", ["submitted_at", "dataset_id"]
    )
    op.create_table(
        "dataset_sub_models",
        sa.Column("dataset_id", sa.String(length=27), nullable=False),
        sa.Column("sub_model", sa.String(length=64), nullable=False),
        sa.Column("position", sa.SmallInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["datasets.dataset_id"],
            name=op.f("fk_dataset_sub_models_dataset_id_datasets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("dataset_id", "sub_model", name=op.f("pk_dataset_sub_models")),
    )
    op.create_index(
        op.f("ix_dataset_sub_models_sub_model"), "dataset_sub_models", ["sub_model"]
    )
    op.create_table(
        "dataset_documents",
        sa.Column("dataset_id", sa.String(length=27), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("source", sa.String(length=300), nullable=False),
        sa.Column("licence", sa.String(length=200), nullable=False),
        sa.Column("url", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["datasets.dataset_id"],
            name=op.f("fk_dataset_documents_dataset_id_datasets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("dataset_id", "position", name=op.f("pk_dataset_documents")),
    )
    op.create_table(
        "data_credits",
        sa.Column("seq", _SEQ, autoincrement=True, nullable=False),
        sa.Column("query_id", sa.String(length=128), nullable=False),
        sa.Column("contributor", sa.String(length=256), nullable=False),
        sa.Column("dataset_id", sa.String(length=27), nullable=False),
        sa.Column("amount_msat", sa.BigInteger(), nullable=False),
        sa.Column("passages_used", sa.Integer(), nullable=False),
        sa.Column("credited_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_data_credits")),
    )
    op.create_index(
        op.f("ix_data_credits_query_id_contributor_dataset_id"),
        "data_credits",
        ["query_id", "contributor", "dataset_id"],
        unique=True,
    )
    op.create_index(
        op.f("ix_data_credits_contributor_credited_at"),
        "data_credits",
        ["contributor", "credited_at"],
    )


def downgrade() -> None:
    op.drop_table("data_credits")
    op.drop_table("dataset_documents")
    op.drop_table("dataset_sub_models")
    op.drop_table("datasets")
    op.drop_table("sub_models")
