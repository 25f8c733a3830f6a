"""Tables owned by the composition root: the HSM key inventory and access control (people
who sign in, their sessions, service clients). Domain packages have their own metadata;
the Alembic environment combines them."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

from audit.store import NAMING_CONVENTION
from pki.store import pki_credentials, pki_people, pki_units

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

_Id = BigInteger().with_variant(Integer(), "sqlite")

ROLES = ("officer", "clerk", "unit-admin", "auditor", "system-admin")
"""Every role a person can hold (``kyso.access.model.Role``)."""

access_users = Table(
    "access_users",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("username", String(64), nullable=False, unique=True),
    Column("role", String(16), nullable=False),
    Column("unit_id", _Id, ForeignKey(pki_units.c.id), nullable=True, comment="null: whole system"),
    Column("person_id", _Id, ForeignKey(pki_people.c.id), nullable=True),
    Column("password_hash", String(256), nullable=False, comment="argon2id PHC string"),
    Column(
        "totp_secret",
        String(256),
        nullable=False,
        comment="RFC 6238 secret: v1: + base64 of it sealed on the HSM, or base32 (legacy)",
    ),
    Column("totp_last_step", BigInteger, nullable=True, comment="last accepted time step"),
    Column("failed_logins", Integer, nullable=False),
    Column("locked_at", DateTime(timezone=True), nullable=True),
    Column("disabled_at", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("password_changed_at", DateTime(timezone=True), nullable=False),
    CheckConstraint(f"role IN ({', '.join(repr(r) for r in ROLES)})", name="role"),
    CheckConstraint("failed_logins >= 0", name="failed_logins"),
    CheckConstraint("role = 'system-admin' OR unit_id IS NOT NULL", name="scoped"),
    comment="People who sign in: officers, clerks, unit admins, auditors, system admins.",
)

access_sessions = Table(
    "access_sessions",
    metadata,
    Column("id", String(64), primary_key=True, comment="SHA-256 of the session secret, hex"),
    Column("user_id", _Id, ForeignKey("access_users.id"), nullable=False, index=True),
    Column("kind", String(8), nullable=False),
    Column("csrf_hash", String(64), nullable=False, comment="SHA-256 of the CSRF secret, hex"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    CheckConstraint("kind IN ('web', 'csc')", name="kind"),
    comment="Sign-ins of people; only hashes of their secrets are kept.",
)

access_clients = Table(
    "access_clients",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("client_id", String(64), nullable=False, unique=True),
    Column("name", String(128), nullable=False),
    Column("unit_id", _Id, ForeignKey(pki_units.c.id), nullable=True, comment="null: whole system"),
    Column("scopes", String(256), nullable=False, comment="space-separated OAuth2 scopes"),
    Column("secret_hash", String(64), nullable=False, comment="SHA-256 of the secret, hex"),
    Column("previous_secret_hash", String(64), nullable=True),
    Column(
        "previous_valid_until",
        DateTime(timezone=True),
        nullable=True,
        comment="the secret before the last rotation works until then",
    ),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("rotated_at", DateTime(timezone=True), nullable=True),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    comment="Other systems that call Kyso with the OAuth2 client-credentials grant.",
)

access_activation = Table(
    "access_activation",
    metadata,
    Column("credential_id", _Id, ForeignKey(pki_credentials.c.id), primary_key=True),
    Column("policy", String(8), nullable=False, comment="pin, or pin+otp"),
    Column(
        "client_id",
        _Id,
        ForeignKey(access_clients.c.id),
        nullable=True,
        comment="a seal bound to this service client for automated sealing",
    ),
    Column("changed_at", DateTime(timezone=True), nullable=False),
    CheckConstraint("policy IN ('pin', 'pin+otp')", name="policy"),
    comment="How each signing credential is activated, when not by the default.",
)

access_sads = Table(
    "access_sads",
    metadata,
    Column("id", String(64), primary_key=True, comment="SHA-256 of the SAD, hex"),
    Column("credential_id", _Id, ForeignKey(pki_credentials.c.id), nullable=False),
    Column("principal", String(128), nullable=False, comment="who authorised: user:… or client:…"),
    Column("hash_algorithm", String(16), nullable=True),
    Column("bound_to", Text, nullable=False, comment="JSON: the hashes or document ids"),
    Column("max_count", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("used_at", DateTime(timezone=True), nullable=True),
    CheckConstraint("max_count BETWEEN 1 AND 1000", name="max_count"),
    comment="Signature activation data: single use, short-lived, bound to what it signs.",
)
