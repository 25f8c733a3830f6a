"""Tables owned by the composition root. Domain packages add their own metadata later;
the Alembic environment combines them."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, LargeBinary, MetaData, String, Table

from audit.store import NAMING_CONVENTION

# One schema, one naming convention: the audit tables' own.
metadata = MetaData(naming_convention=NAMING_CONVENTION)

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
