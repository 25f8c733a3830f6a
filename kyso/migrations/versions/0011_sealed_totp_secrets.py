"""Access: room for TOTP secrets sealed by a key on the HSM (``v1:`` + base64).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_SEALED = "RFC 6238 secret: v1: + base64 of it sealed on the HSM, or base32 (legacy)"
_CLEAR = "RFC 6238 secret, base32"


def upgrade() -> None:
    with op.batch_alter_table("access_users") as batch_op:
        batch_op.alter_column(
            "totp_secret",
            existing_type=sa.String(length=64),
            type_=sa.String(length=256),
            existing_nullable=False,
            comment=_SEALED,
            existing_comment=_CLEAR,
        )


def downgrade() -> None:
    # PostgreSQL refuses this while sealed secrets are stored: the older release could not
    # read them anyway.
    with op.batch_alter_table("access_users") as batch_op:
        batch_op.alter_column(
            "totp_secret",
            existing_type=sa.String(length=256),
            type_=sa.String(length=64),
            existing_nullable=False,
            comment=_CLEAR,
            existing_comment=_SEALED,
        )
