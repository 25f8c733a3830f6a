"""The PKI's tables: the unit tree, people, signing credentials, certificates, CRLs and
timestamp serials. Key-free: the verifier reads certificate status from here.

Certificates are stored as issued (DER) and never rewritten; their status columns change
with suspension, resumption and revocation, and every change bumps ``pki_state.generation``
so that every process drops the OCSP responses it cached before the change.
"""

from __future__ import annotations

import enum

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    UniqueConstraint,
)

from audit.store import NAMING_CONVENTION

metadata = MetaData(naming_convention=NAMING_CONVENTION)

# SQLite only autoincrements an INTEGER PRIMARY KEY (the rowid alias), not a BIGINT one.
_Id = BigInteger().with_variant(Integer(), "sqlite")

MAX_SUBJECT = 1024
"""Characters of a certificate subject as :func:`pki.names.display_name` renders it."""


class UnitKind(enum.Enum):
    MINISTRY = "ministry"
    PROVINCE = "province"
    COMMUNE = "commune"


class PersonRole(enum.Enum):
    OFFICER = "officer"
    CLERK = "clerk"


class CredentialKind(enum.Enum):
    ROOT_CA = "root-ca"
    ISSUING_CA = "issuing-ca"
    OCSP = "ocsp"
    TSA = "tsa"
    OFFICER = "officer"
    SEAL = "seal"


class CredentialStatus(enum.Enum):
    PENDING = "pending"
    """Key generated, certificate not issued or imported yet."""
    ACTIVE = "active"
    SUSPENDED = "suspended"
    REVOKED = "revoked"
    SUPERSEDED = "superseded"
    """Replaced by a renewal or re-key (the new credential's ``replaces_id``). After a re-key
    its certificate is revoked as superseded; after a renewal (same key) it stays valid until
    it expires, so that documents already signed with it keep verifying."""


class CertificateStatus(enum.Enum):
    GOOD = "good"
    ON_HOLD = "on-hold"
    REVOKED = "revoked"


def _values(kind: type[enum.Enum]) -> str:
    return ", ".join(f"'{member.value}'" for member in kind)


pki_units = Table(
    "pki_units",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("parent_id", _Id, ForeignKey("pki_units.id"), nullable=True),
    Column("kind", String(16), nullable=False),
    Column("code", String(32), nullable=False, unique=True, comment="short stable identifier"),
    Column("name", String(200), nullable=False),
    Column("province", String(128), nullable=False, comment="ST of certificate subjects"),
    Column("locality", String(128), nullable=False, comment="L of certificate subjects"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    CheckConstraint(f"kind IN ({_values(UnitKind)})", name="kind"),
    UniqueConstraint("parent_id", "name"),
    comment="Ministry → province police → commune/ward police.",
)

pki_people = Table(
    "pki_people",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("unit_id", _Id, ForeignKey("pki_units.id"), nullable=False),
    Column("role", String(16), nullable=False),
    Column("full_name", String(64), nullable=False),
    Column("position", String(128), nullable=False, comment="title, e.g. Trưởng Công an xã"),
    Column("cccd", String(12), nullable=False, unique=True),
    Column("email", String(254), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    CheckConstraint(f"role IN ({_values(PersonRole)})", name="role"),
    comment="Officers and clerks (văn thư) of a unit.",
)

pki_credentials = Table(
    "pki_credentials",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("unit_id", _Id, ForeignKey("pki_units.id"), nullable=True),
    Column("person_id", _Id, ForeignKey("pki_people.id"), nullable=True),
    Column("key_id", String(128), nullable=False, comment="CKA_ID (SKI) in hex of the HSM key"),
    Column("key_spec", String(16), nullable=False),
    Column("external", Boolean, nullable=False, comment="certificate from an external CA"),
    Column("replaces_id", _Id, ForeignKey("pki_credentials.id"), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column(
        "pin_hash",
        String(256),
        nullable=True,
        comment="argon2id PHC string of the signing PIN; NULL until one is set",
    ),
    Column(
        "pin_failures",
        Integer,
        nullable=False,
        default=0,
        server_default="0",
        comment="consecutive wrong PINs since the last right one or unlock",
    ),
    Column(
        "pin_locked_at",
        DateTime(timezone=True),
        nullable=True,
        comment="set on the last allowed failure; only a unit admin clears it",
    ),
    CheckConstraint(f"kind IN ({_values(CredentialKind)})", name="kind"),
    CheckConstraint(f"status IN ({_values(CredentialStatus)})", name="status"),
    CheckConstraint("pin_failures >= 0", name="pin_failures_not_negative"),
    comment="A signing credential: HSM key + certificate + status, owned by a unit or person.",
)

pki_certificates = Table(
    "pki_certificates",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("credential_id", _Id, ForeignKey("pki_credentials.id"), nullable=False),
    Column("issuer_key_id", String(128), nullable=False, comment="AKI in hex"),
    Column("serial", String(42), nullable=False, comment="lower-case hex, no leading zeros"),
    Column("subject", String(MAX_SUBJECT), nullable=False),
    Column("not_before", DateTime(timezone=True), nullable=False),
    Column("not_after", DateTime(timezone=True), nullable=False),
    Column("der", LargeBinary, nullable=False),
    Column(
        "chain",
        LargeBinary,
        nullable=True,
        comment="PEM of an external certificate's issuers, up to its trust anchor",
    ),
    Column("status", String(16), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    Column("reason", String(32), nullable=True, comment="asn1crypto CRLReason name"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    CheckConstraint(f"status IN ({_values(CertificateStatus)})", name="status"),
    UniqueConstraint("issuer_key_id", "serial"),
    comment="Every certificate issued by Kyso's CA or imported for a credential.",
)

pki_crls = Table(
    "pki_crls",
    metadata,
    Column("issuer_key_id", String(128), primary_key=True),
    Column("number", BigInteger, primary_key=True, autoincrement=False),
    Column("this_update", DateTime(timezone=True), nullable=False),
    Column("next_update", DateTime(timezone=True), nullable=False),
    Column("der", LargeBinary, nullable=False),
    comment="Every CRL published; the primary key keeps CRL numbers unique and monotonic.",
)

pki_timestamps = Table(
    "pki_timestamps",
    metadata,
    Column("serial", _Id, primary_key=True, autoincrement=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    comment="One row per timestamp token: the serial is unique across processes.",
)

pki_state = Table(
    "pki_state",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("generation", BigInteger, nullable=False),
    CheckConstraint("id = 1", name="single_row"),
    comment="Bumped on every certificate status change (OCSP cache invalidation).",
)
