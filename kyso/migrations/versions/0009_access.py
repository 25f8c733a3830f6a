"""Access control: people who sign in, their sessions, service clients.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_ROLES = "'officer', 'clerk', 'unit-admin', 'auditor', 'system-admin'"


def upgrade() -> None:
    op.create_table(
        "access_users",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("unit_id", _ID, nullable=True, comment="null: whole system"),
        sa.Column("person_id", _ID, nullable=True),
        sa.Column(
            "password_hash", sa.String(length=256), nullable=False, comment="argon2id PHC string"
        ),
        sa.Column(
            "totp_secret", sa.String(length=64), nullable=False, comment="RFC 6238 secret, base32"
        ),
        sa.Column(
            "totp_last_step", sa.BigInteger(), nullable=True, comment="last accepted time step"
        ),
        sa.Column("failed_logins", sa.Integer(), nullable=False),
        sa.Column("locked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("password_changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(f"role IN ({_ROLES})", name=op.f("ck_access_users_role")),
        sa.CheckConstraint("failed_logins >= 0", name=op.f("ck_access_users_failed_logins")),
        sa.CheckConstraint(
            "role = 'system-admin' OR unit_id IS NOT NULL", name=op.f("ck_access_users_scoped")
        ),
        sa.ForeignKeyConstraint(
            ["unit_id"], ["pki_units.id"], name=op.f("fk_access_users_unit_id_pki_units")
        ),
        sa.ForeignKeyConstraint(
            ["person_id"], ["pki_people.id"], name=op.f("fk_access_users_person_id_pki_people")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_users")),
        sa.UniqueConstraint("username", name=op.f("uq_access_users_username")),
        comment="People who sign in: officers, clerks, unit admins, auditors, system admins.",
    )
    op.create_table(
        "access_sessions",
        sa.Column(
            "id", sa.String(length=64), nullable=False, comment="SHA-256 of the session secret, hex"
        ),
        sa.Column("user_id", _ID, nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column(
            "csrf_hash",
            sa.String(length=64),
            nullable=False,
            comment="SHA-256 of the CSRF secret, hex",
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("kind IN ('web', 'csc')", name=op.f("ck_access_sessions_kind")),
        sa.ForeignKeyConstraint(
            ["user_id"], ["access_users.id"], name=op.f("fk_access_sessions_user_id_access_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_sessions")),
        comment="Sign-ins of people; only hashes of their secrets are kept.",
    )
    op.create_table(
        "access_clients",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("unit_id", _ID, nullable=True, comment="null: whole system"),
        sa.Column(
            "scopes", sa.String(length=256), nullable=False, comment="space-separated OAuth2 scopes"
        ),
        sa.Column(
            "secret_hash",
            sa.String(length=64),
            nullable=False,
            comment="SHA-256 of the secret, hex",
        ),
        sa.Column("previous_secret_hash", sa.String(length=64), nullable=True),
        sa.Column(
            "previous_valid_until",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="the secret before the last rotation works until then",
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rotated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["unit_id"], ["pki_units.id"], name=op.f("fk_access_clients_unit_id_pki_units")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_clients")),
        sa.UniqueConstraint("client_id", name=op.f("uq_access_clients_client_id")),
        comment="Other systems that call Kyso with the OAuth2 client-credentials grant.",
    )
    op.create_index(op.f("ix_access_sessions_user_id"), "access_sessions", ["user_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_access_sessions_user_id"), table_name="access_sessions")
    op.drop_table("access_clients")
    op.drop_table("access_sessions")
    op.drop_table("access_users")
