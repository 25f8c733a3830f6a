"""Signer: officers' signature images and units' seal images for visible stamps.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stamp_images",
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column(
            "owner_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
            comment="pki_people.id or pki_units.id, by kind",
        ),
        sa.Column(
            "sha256", sa.String(length=64), nullable=False, comment="name of the blob with the PNG"
        ),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('officer', 'seal')", name=op.f("ck_stamp_images_kind")),
        sa.PrimaryKeyConstraint("kind", "owner_id", name=op.f("pk_stamp_images")),
        comment="The current signature image of each officer and seal image of each unit.",
    )


def downgrade() -> None:
    op.drop_table("stamp_images")
