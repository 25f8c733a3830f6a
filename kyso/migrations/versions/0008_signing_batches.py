"""Signer: batches of sign or seal steps and their items.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "signing_batches",
        sa.Column("id", sa.String(length=26), nullable=False, comment="random public id"),
        sa.Column("action", sa.String(length=8), nullable=False),
        sa.Column("credential_id", _ID, nullable=False),
        sa.Column(
            "actor_id", sa.String(length=256), nullable=True, comment="items are signed in its name"
        ),
        sa.Column("actor_role", sa.String(length=256), nullable=True),
        sa.Column("actor_unit", sa.String(length=256), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "worker",
            sa.String(length=64),
            nullable=True,
            comment="the process working on it, if any",
        ),
        sa.Column(
            "heartbeat_at",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="the worker's last sign of life; null when no process holds the batch",
        ),
        sa.CheckConstraint("action IN ('sign', 'seal')", name=op.f("ck_signing_batches_action")),
        sa.CheckConstraint(
            "status IN ('running', 'done', 'failed-partly')",
            name=op.f("ck_signing_batches_status"),
        ),
        sa.CheckConstraint("total BETWEEN 1 AND 1000", name=op.f("ck_signing_batches_total")),
        sa.ForeignKeyConstraint(
            ["credential_id"],
            ["pki_credentials.id"],
            name=op.f("fk_signing_batches_credential_id_pki_credentials"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signing_batches")),
        comment="Batches of sign or seal steps, authorised once and worked through in the "
        "background.",
    )
    op.create_table(
        "signing_batch_items",
        sa.Column("batch_id", sa.String(length=26), nullable=False),
        sa.Column(
            "position", sa.Integer(), nullable=False, comment="0.., the order of the request"
        ),
        sa.Column(
            "document_id",
            sa.String(length=26),
            nullable=False,
            comment="as requested; not a foreign key: an unknown document fails its item only",
        ),
        sa.Column(
            "placement", sa.String(length=512), nullable=True, comment="JSON, for a sign batch"
        ),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column(
            "revision", sa.Integer(), nullable=True, comment="the revision the step produced"
        ),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("error_message", sa.String(length=500), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'done', 'failed')", name=op.f("ck_signing_batch_items_status")
        ),
        sa.CheckConstraint(
            "(status = 'done') = (revision IS NOT NULL)"
            " AND (status = 'failed') = (error_code IS NOT NULL)",
            name=op.f("ck_signing_batch_items_result"),
        ),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["signing_batches.id"],
            name=op.f("fk_signing_batch_items_batch_id_signing_batches"),
        ),
        sa.PrimaryKeyConstraint("batch_id", "position", name=op.f("pk_signing_batch_items")),
        comment="One document of a batch and what became of it.",
    )
    # The resumption scan looks for running batches only.
    op.create_index(op.f("ix_signing_batches_status"), "signing_batches", ["status"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_signing_batches_status"), table_name="signing_batches")
    op.drop_table("signing_batch_items")
    op.drop_table("signing_batches")
