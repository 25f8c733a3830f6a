"""PKI: the chain of a certificate imported from an external CA.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("pki_certificates") as batch_op:
        batch_op.add_column(
            sa.Column(
                "chain",
                sa.LargeBinary(),
                nullable=True,
                comment="PEM of an external certificate's issuers, up to its trust anchor",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("pki_certificates") as batch_op:
        batch_op.drop_column("chain")
