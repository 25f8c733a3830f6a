"""Audit log: entries, pending queue, leaves, subtree nodes, checkpoints; append-only triggers.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

from audit.store import (
    create_append_only_triggers,
    drop_append_only_triggers,
    drop_enqueue_ddl,
    enqueue_ddl,
)

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# SQLite only autoincrements an INTEGER PRIMARY KEY (the rowid alias), not a BIGINT one.
_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "audit_entries",
        sa.Column("id", _Id, autoincrement=True, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "leaf", sa.LargeBinary(), nullable=False, comment="canonical (RFC 8785) event JSON"
        ),
        sa.Column("leaf_hash", sa.LargeBinary(32), nullable=False, comment="SHA-256(0x00 || leaf)"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_entries")),
        comment="Admitted audit events; append-only.",
    )
    op.create_table(
        "audit_pending",
        sa.Column("entry_id", _Id, autoincrement=False, nullable=False),
        sa.ForeignKeyConstraint(
            ["entry_id"],
            ["audit_entries.id"],
            name=op.f("fk_audit_pending_entry_id_audit_entries"),
        ),
        sa.PrimaryKeyConstraint("entry_id", name=op.f("pk_audit_pending")),
        comment="Admitted entries not yet sequenced; the sequencer deletes what it places.",
    )
    op.create_table(
        "audit_leaves",
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("entry_id", _Id, nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary(32), nullable=False),
        sa.ForeignKeyConstraint(
            ["entry_id"],
            ["audit_entries.id"],
            name=op.f("fk_audit_leaves_entry_id_audit_entries"),
        ),
        sa.PrimaryKeyConstraint("idx", name=op.f("pk_audit_leaves")),
        sa.UniqueConstraint("entry_id", name=op.f("uq_audit_leaves_entry_id")),
        comment="Tree indices 0..n-1 without gaps; level 0 of the Merkle tree; append-only.",
    )
    op.create_index("ix_audit_leaves_leaf_hash", "audit_leaves", ["leaf_hash"])
    op.create_table(
        "audit_nodes",
        sa.Column("level", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
        sa.PrimaryKeyConstraint("level", "idx", name=op.f("pk_audit_nodes")),
        comment="Hash of every complete aligned subtree of level >= 1; append-only.",
    )
    op.create_table(
        "audit_checkpoints",
        sa.Column("size", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("root_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("note", sa.Text(), nullable=False, comment="the signed checkpoint note"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("size", name=op.f("pk_audit_checkpoints")),
        comment="Signed checkpoints, one per published tree size; append-only.",
    )
    create_append_only_triggers(op.get_bind())
    for statement in enqueue_ddl(op.get_bind().dialect.name):
        op.execute(statement)


def downgrade() -> None:
    for statement in drop_enqueue_ddl(op.get_bind().dialect.name):
        op.execute(statement)
    drop_append_only_triggers(op.get_bind())
    op.drop_index("ix_audit_leaves_leaf_hash", table_name="audit_leaves")
    op.drop_table("audit_checkpoints")
    op.drop_table("audit_nodes")
    op.drop_table("audit_leaves")
    op.drop_table("audit_pending")
    op.drop_table("audit_entries")
