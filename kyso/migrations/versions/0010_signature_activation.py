"""Signature activation: activation policies of credentials, signature activation data.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "access_activation",
        sa.Column("credential_id", _ID, autoincrement=False, nullable=False),
        sa.Column("policy", sa.String(length=8), nullable=False, comment="pin, or pin+otp"),
        sa.Column(
            "client_id",
            _ID,
            nullable=True,
            comment="a seal bound to this service client for automated sealing",
        ),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "policy IN ('pin', 'pin+otp')", name=op.f("ck_access_activation_policy")
        ),
        sa.ForeignKeyConstraint(
            ["credential_id"],
            ["pki_credentials.id"],
            name=op.f("fk_access_activation_credential_id_pki_credentials"),
        ),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["access_clients.id"],
            name=op.f("fk_access_activation_client_id_access_clients"),
        ),
        sa.PrimaryKeyConstraint("credential_id", name=op.f("pk_access_activation")),
        comment="How each signing credential is activated, when not by the default.",
    )
    op.create_table(
        "access_sads",
        sa.Column("id", sa.String(length=64), nullable=False, comment="SHA-256 of the SAD, hex"),
        sa.Column("credential_id", _ID, nullable=False),
        sa.Column(
            "principal",
            sa.String(length=128),
            nullable=False,
            comment="who authorised: user:… or client:…",
        ),
        sa.Column("hash_algorithm", sa.String(length=16), nullable=True),
        sa.Column(
            "bound_to", sa.Text(), nullable=False, comment="JSON: the hashes or document ids"
        ),
        sa.Column("max_count", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("max_count BETWEEN 1 AND 1000", name=op.f("ck_access_sads_max_count")),
        sa.ForeignKeyConstraint(
            ["credential_id"],
            ["pki_credentials.id"],
            name=op.f("fk_access_sads_credential_id_pki_credentials"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_sads")),
        comment="Signature activation data: single use, short-lived, bound to what it signs.",
    )


def downgrade() -> None:
    op.drop_table("access_sads")
    op.drop_table("access_activation")
