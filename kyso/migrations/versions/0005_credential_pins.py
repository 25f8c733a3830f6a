"""PKI: a signing PIN per credential, with a consecutive-failure counter and a lock.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("pki_credentials") as batch_op:
        batch_op.add_column(
            sa.Column(
                "pin_hash",
                sa.String(length=256),
                nullable=True,
                comment="argon2id PHC string of the signing PIN; NULL until one is set",
            )
        )
        # The server default fills the rows that exist before this migration.
        batch_op.add_column(
            sa.Column(
                "pin_failures",
                sa.Integer(),
                nullable=False,
                server_default="0",
                comment="consecutive wrong PINs since the last right one or unlock",
            )
        )
        batch_op.add_column(
            sa.Column(
                "pin_locked_at",
                sa.DateTime(timezone=True),
                nullable=True,
                comment="set on the last allowed failure; only a unit admin clears it",
            )
        )
        batch_op.create_check_constraint(
            op.f("ck_pki_credentials_pin_failures_not_negative"), "pin_failures >= 0"
        )


def downgrade() -> None:
    with op.batch_alter_table("pki_credentials") as batch_op:
        batch_op.drop_constraint(
            op.f("ck_pki_credentials_pin_failures_not_negative"), type_="check"
        )
        batch_op.drop_column("pin_locked_at")
        batch_op.drop_column("pin_failures")
        batch_op.drop_column("pin_hash")
