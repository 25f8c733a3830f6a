"""Registry of keys generated on the HSM.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hsm_keys",
        sa.Column(
            "key_id", sa.String(128), nullable=False, comment="CKA_ID in hex (the key's SKI)"
        ),
        sa.Column("token_serial", sa.String(64), nullable=False),
        sa.Column("label", sa.String(256), nullable=False),
        sa.Column("spec", sa.String(16), nullable=False),
        sa.Column(
            "public_key", sa.LargeBinary(), nullable=False, comment="DER SubjectPublicKeyInfo"
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key_id", name=op.f("pk_hsm_keys")),
        comment="Keys Kyso generated on an HSM token; the token stays the source of truth.",
    )


def downgrade() -> None:
    op.drop_table("hsm_keys")
