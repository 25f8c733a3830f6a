"""Tables owned by the composition root. Domain packages add their own metadata later;
the Alembic environment combines them."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, LargeBinary, MetaData, String, Table

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

hsm_keys = Table(
    "hsm_keys",
    metadata,
    Column("key_id", String(128), primary_key=True, comment="CKA_ID in hex (the key's SKI)"),
    Column("token_serial", String(64), nullable=False),
    Column("label", String(256), nullable=False),
    Column("spec", String(16), nullable=False),
    Column("public_key", LargeBinary, nullable=False, comment="DER SubjectPublicKeyInfo"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    comment="Keys Kyso generated on an HSM token; the token stays the source of truth.",
)
