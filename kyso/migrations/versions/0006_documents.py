"""Documents: the registry of issued documents, their revisions, the per-unit yearly number
counters and the idempotency keys of requests.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "documents",
        sa.Column(
            "id",
            sa.String(length=26),
            nullable=False,
            comment="public, random and stable: part of the verification URL <public_url>/v/<id>",
        ),
        sa.Column(
            "document_type", sa.String(length=16), nullable=False, comment="form code, e.g. CT07"
        ),
        sa.Column("unit_id", _ID, nullable=False),
        sa.Column("service", sa.String(length=64), nullable=False, comment="requesting service"),
        sa.Column(
            "subject_person_id",
            sa.String(length=32),
            nullable=False,
            comment="whom the document is about (citizen id number)",
        ),
        sa.Column("title", sa.String(length=256), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column(
            "symbol", sa.String(length=64), nullable=False, comment="ký hiệu, e.g. XN-CAP-BT"
        ),
        sa.Column(
            "year",
            sa.Integer(),
            nullable=True,
            comment="year of issue in +07:00; null until issued",
        ),
        sa.Column(
            "number",
            sa.Integer(),
            nullable=True,
            comment="số, 1.. per unit and year; null until issued",
        ),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("officer_credential_id", _ID, nullable=True),
        sa.Column("seal_credential_id", _ID, nullable=True),
        sa.CheckConstraint(
            "status IN ('draft', 'signed', 'issued')", name=op.f("ck_documents_status")
        ),
        sa.CheckConstraint(
            "(status = 'issued') = (number IS NOT NULL AND year IS NOT NULL "
            "AND issued_at IS NOT NULL AND seal_credential_id IS NOT NULL)",
            name=op.f("ck_documents_issued_has_number"),
        ),
        sa.CheckConstraint(
            "number IS NULL OR number >= 1", name=op.f("ck_documents_number_positive")
        ),
        sa.ForeignKeyConstraint(
            ["unit_id"], ["pki_units.id"], name=op.f("fk_documents_unit_id_pki_units")
        ),
        sa.ForeignKeyConstraint(
            ["officer_credential_id"],
            ["pki_credentials.id"],
            name=op.f("fk_documents_officer_credential_id_pki_credentials"),
        ),
        sa.ForeignKeyConstraint(
            ["seal_credential_id"],
            ["pki_credentials.id"],
            name=op.f("fk_documents_seal_credential_id_pki_credentials"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_documents")),
        sa.UniqueConstraint("unit_id", "year", "number", name=op.f("uq_documents_unit_id")),
        comment="Documents issued through the officer → clerk-seal → issue workflow.",
    )
    op.create_table(
        "document_revisions",
        sa.Column("document_id", sa.String(length=26), nullable=False),
        sa.Column(
            "revision",
            sa.Integer(),
            nullable=False,
            comment="0 (draft), 1 (signed), 2 (sealed)",
        ),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column(
            "sha256", sa.String(length=64), nullable=False, comment="name of the blob with the PDF"
        ),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("credential_id", _ID, nullable=True),
        sa.CheckConstraint(
            "kind IN ('draft', 'signed', 'sealed')", name=op.f("ck_document_revisions_kind")
        ),
        sa.CheckConstraint(
            "revision >= 0", name=op.f("ck_document_revisions_revision_not_negative")
        ),
        sa.CheckConstraint("size >= 0", name=op.f("ck_document_revisions_size_not_negative")),
        sa.ForeignKeyConstraint(
            ["credential_id"],
            ["pki_credentials.id"],
            name=op.f("fk_document_revisions_credential_id_pki_credentials"),
        ),
        sa.ForeignKeyConstraint(
            ["document_id"],
            ["documents.id"],
            name=op.f("fk_document_revisions_document_id_documents"),
        ),
        sa.PrimaryKeyConstraint("document_id", "revision", name=op.f("pk_document_revisions")),
        comment="Every version of a document's PDF, oldest first; rows are only added.",
    )
    op.create_table(
        "document_counters",
        sa.Column("unit_id", _ID, nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("last_number", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "last_number >= 0", name=op.f("ck_document_counters_last_number_not_negative")
        ),
        sa.ForeignKeyConstraint(
            ["unit_id"], ["pki_units.id"], name=op.f("fk_document_counters_unit_id_pki_units")
        ),
        sa.PrimaryKeyConstraint("unit_id", "year", name=op.f("pk_document_counters")),
        comment="The last number issued per unit and year, taken in the issuing transaction.",
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("scope", sa.String(length=300), nullable=False, comment="operation and actor id"),
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column(
            "fingerprint", sa.String(length=64), nullable=False, comment="SHA-256 of the request"
        ),
        sa.Column("document_id", sa.String(length=26), nullable=False),
        sa.Column(
            "revision",
            sa.Integer(),
            nullable=False,
            comment="the revision the request produced",
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["document_id"],
            ["documents.id"],
            name=op.f("fk_idempotency_keys_document_id_documents"),
        ),
        sa.PrimaryKeyConstraint("scope", "key", name=op.f("pk_idempotency_keys")),
        comment="Requests made with an idempotency key and what they produced.",
    )


def downgrade() -> None:
    op.drop_table("idempotency_keys")
    op.drop_table("document_counters")
    op.drop_table("document_revisions")
    op.drop_table("documents")
