"""PKI: units, people, credentials, certificates, CRLs, timestamp serials, status generation.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pki_crls",
        sa.Column("issuer_key_id", sa.String(length=128), nullable=False),
        sa.Column("number", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("this_update", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_update", sa.DateTime(timezone=True), nullable=False),
        sa.Column("der", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("issuer_key_id", "number", name=op.f("pk_pki_crls")),
        comment="Every CRL published; the primary key keeps CRL numbers unique and monotonic.",
    )
    op.create_table(
        "pki_state",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_pki_state_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pki_state")),
        comment="Bumped on every certificate status change (OCSP cache invalidation).",
    )
    op.create_table(
        "pki_timestamps",
        sa.Column(
            "serial",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("serial", name=op.f("pk_pki_timestamps")),
        comment="One row per timestamp token: the serial is unique across processes.",
    )
    op.create_table(
        "pki_units",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("parent_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False, comment="short stable identifier"),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column(
            "province", sa.String(length=128), nullable=False, comment="ST of certificate subjects"
        ),
        sa.Column(
            "locality", sa.String(length=128), nullable=False, comment="L of certificate subjects"
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "kind IN ('ministry', 'province', 'commune')", name=op.f("ck_pki_units_kind")
        ),
        sa.ForeignKeyConstraint(
            ["parent_id"], ["pki_units.id"], name=op.f("fk_pki_units_parent_id_pki_units")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pki_units")),
        sa.UniqueConstraint("code", name=op.f("uq_pki_units_code")),
        sa.UniqueConstraint("parent_id", "name", name=op.f("uq_pki_units_parent_id")),
        comment="Ministry → province police → commune/ward police.",
    )
    op.create_table(
        "pki_people",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("unit_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("full_name", sa.String(length=64), nullable=False),
        sa.Column(
            "position",
            sa.String(length=128),
            nullable=False,
            comment="title, e.g. Trưởng Công an xã",
        ),
        sa.Column("cccd", sa.String(length=12), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("role IN ('officer', 'clerk')", name=op.f("ck_pki_people_role")),
        sa.ForeignKeyConstraint(
            ["unit_id"], ["pki_units.id"], name=op.f("fk_pki_people_unit_id_pki_units")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pki_people")),
        sa.UniqueConstraint("cccd", name=op.f("uq_pki_people_cccd")),
        comment="Officers and clerks (văn thư) of a unit.",
    )
    op.create_table(
        "pki_credentials",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("unit_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("person_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column(
            "key_id",
            sa.String(length=128),
            nullable=False,
            comment="CKA_ID (SKI) in hex of the HSM key",
        ),
        sa.Column("key_spec", sa.String(length=16), nullable=False),
        sa.Column(
            "external", sa.Boolean(), nullable=False, comment="certificate from an external CA"
        ),
        sa.Column(
            "replaces_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "kind IN ('root-ca', 'issuing-ca', 'ocsp', 'tsa', 'officer', 'seal')",
            name=op.f("ck_pki_credentials_kind"),
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'active', 'suspended', 'revoked', 'superseded')",
            name=op.f("ck_pki_credentials_status"),
        ),
        sa.ForeignKeyConstraint(
            ["person_id"], ["pki_people.id"], name=op.f("fk_pki_credentials_person_id_pki_people")
        ),
        sa.ForeignKeyConstraint(
            ["replaces_id"],
            ["pki_credentials.id"],
            name=op.f("fk_pki_credentials_replaces_id_pki_credentials"),
        ),
        sa.ForeignKeyConstraint(
            ["unit_id"], ["pki_units.id"], name=op.f("fk_pki_credentials_unit_id_pki_units")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pki_credentials")),
        comment="A signing credential: HSM key + certificate + status, owned by a unit or person.",
    )
    op.create_table(
        "pki_certificates",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "credential_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("issuer_key_id", sa.String(length=128), nullable=False, comment="AKI in hex"),
        sa.Column(
            "serial",
            sa.String(length=42),
            nullable=False,
            comment="lower-case hex, no leading zeros",
        ),
        sa.Column("subject", sa.String(length=1024), nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("not_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column("der", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "reason", sa.String(length=32), nullable=True, comment="asn1crypto CRLReason name"
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('good', 'on-hold', 'revoked')", name=op.f("ck_pki_certificates_status")
        ),
        sa.ForeignKeyConstraint(
            ["credential_id"],
            ["pki_credentials.id"],
            name=op.f("fk_pki_certificates_credential_id_pki_credentials"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pki_certificates")),
        sa.UniqueConstraint(
            "issuer_key_id", "serial", name=op.f("uq_pki_certificates_issuer_key_id")
        ),
        comment="Every certificate issued by Kyso's CA or imported for a credential.",
    )
    op.execute(sa.text("INSERT INTO pki_state (id, generation) VALUES (1, 0)"))


def downgrade() -> None:
    op.drop_table("pki_certificates")
    op.drop_table("pki_credentials")
    op.drop_table("pki_people")
    op.drop_table("pki_units")
    op.drop_table("pki_timestamps")
    op.drop_table("pki_state")
    op.drop_table("pki_crls")
