"""The document registry's tables: documents, their revisions, the per-unit yearly number
counters and the idempotency keys of requests.

A document's bytes are not here: each revision names its blob by SHA-256 (see
:mod:`signer.blobs`). Revisions are only ever added; a document row changes status
``draft → signed → issued`` and nothing else.

Foreign keys to the PKI's tables name their columns (not ``"table.column"`` text), since
those tables live on :data:`pki.store.metadata`.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Iterator

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    UniqueConstraint,
)
from sqlalchemy.exc import SQLAlchemyError

from audit.store import NAMING_CONVENTION
from pki.store import pki_credentials, pki_units
from signer.errors import StorageError

metadata = MetaData(naming_convention=NAMING_CONVENTION)


@contextlib.contextmanager
def database_errors(what: str) -> Iterator[None]:
    """Database failures as :class:`~signer.errors.StorageError` (first line only: the
    statement and its parameters stay out of the message)."""
    try:
        yield
    except SQLAlchemyError as ex:
        original = getattr(ex, "orig", None) or ex
        text = str(original).strip()
        first = text.splitlines()[0][:200] if text else type(original).__name__
        raise StorageError(f"{what} failed in the database: {first}") from ex


# SQLite only autoincrements an INTEGER PRIMARY KEY (the rowid alias), not a BIGINT one.
_Id = BigInteger().with_variant(Integer(), "sqlite")

DOCUMENT_ID_LENGTH = 26
"""Characters of a document's public id (128 random bits in Crockford base32)."""

MAX_TYPE = 16
MAX_SERVICE = 64
MAX_PERSON_ID = 32
MAX_TITLE = 256
MAX_SYMBOL = 64
MAX_IDEMPOTENCY_KEY = 128
MAX_SCOPE = 300
"""An operation name, ``:`` and an actor id of at most 256 characters."""


class DocumentStatus(enum.Enum):
    DRAFT = "draft"
    """Uploaded, not signed yet."""
    SIGNED = "signed"
    """Signed by the competent officer, waiting for the agency seal."""
    ISSUED = "issued"
    """Sealed by the clerk, numbered and issued: final."""


class RevisionKind(enum.Enum):
    DRAFT = "draft"
    SIGNED = "signed"
    SEALED = "sealed"


def _values(kind: type[enum.Enum]) -> str:
    return ", ".join(f"'{member.value}'" for member in kind)


documents = Table(
    "documents",
    metadata,
    Column(
        "id",
        String(DOCUMENT_ID_LENGTH),
        primary_key=True,
        comment="public, random and stable: part of the verification URL <public_url>/v/<id>",
    ),
    Column("document_type", String(MAX_TYPE), nullable=False, comment="form code, e.g. CT07"),
    Column("unit_id", _Id, ForeignKey(pki_units.c.id), nullable=False),
    Column("service", String(MAX_SERVICE), nullable=False, comment="requesting service"),
    Column(
        "subject_person_id",
        String(MAX_PERSON_ID),
        nullable=False,
        comment="whom the document is about (citizen id number)",
    ),
    Column("title", String(MAX_TITLE), nullable=False),
    Column("status", String(16), nullable=False),
    Column("symbol", String(MAX_SYMBOL), nullable=False, comment="ký hiệu, e.g. XN-CAP-BT"),
    Column("year", Integer, nullable=True, comment="year of issue in +07:00; null until issued"),
    Column(
        "number", Integer, nullable=True, comment="số, 1.. per unit and year; null until issued"
    ),
    Column("issued_at", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("officer_credential_id", _Id, ForeignKey(pki_credentials.c.id), nullable=True),
    Column("seal_credential_id", _Id, ForeignKey(pki_credentials.c.id), nullable=True),
    CheckConstraint(f"status IN ({_values(DocumentStatus)})", name="status"),
    CheckConstraint(
        "(status = 'issued') = (number IS NOT NULL AND year IS NOT NULL "
        "AND issued_at IS NOT NULL AND seal_credential_id IS NOT NULL)",
        name="issued_has_number",
    ),
    CheckConstraint("number IS NULL OR number >= 1", name="number_positive"),
    # The counter makes numbers gap-free; this makes a duplicate impossible whatever happens.
    UniqueConstraint("unit_id", "year", "number"),
    comment="Documents issued through the officer → clerk-seal → issue workflow.",
)

document_revisions = Table(
    "document_revisions",
    metadata,
    Column("document_id", String(DOCUMENT_ID_LENGTH), nullable=False),
    Column("revision", Integer, nullable=False, comment="0 (draft), 1 (signed), 2 (sealed)"),
    Column("kind", String(16), nullable=False),
    Column("sha256", String(64), nullable=False, comment="name of the blob with the PDF"),
    Column("size", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("credential_id", _Id, ForeignKey(pki_credentials.c.id), nullable=True),
    PrimaryKeyConstraint("document_id", "revision"),
    ForeignKeyConstraint(["document_id"], ["documents.id"]),
    CheckConstraint(f"kind IN ({_values(RevisionKind)})", name="kind"),
    CheckConstraint("revision >= 0", name="revision_not_negative"),
    CheckConstraint("size >= 0", name="size_not_negative"),
    comment="Every version of a document's PDF, oldest first; rows are only added.",
)

document_counters = Table(
    "document_counters",
    metadata,
    Column("unit_id", _Id, ForeignKey(pki_units.c.id), nullable=False),
    Column("year", Integer, nullable=False),
    Column("last_number", Integer, nullable=False),
    PrimaryKeyConstraint("unit_id", "year"),
    CheckConstraint("last_number >= 0", name="last_number_not_negative"),
    comment="The last number issued per unit and year, taken in the issuing transaction.",
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("scope", String(MAX_SCOPE), nullable=False, comment="operation and actor id"),
    Column("key", String(MAX_IDEMPOTENCY_KEY), nullable=False),
    Column("fingerprint", String(64), nullable=False, comment="SHA-256 of the request"),
    Column("document_id", String(DOCUMENT_ID_LENGTH), nullable=False),
    Column("revision", Integer, nullable=False, comment="the revision the request produced"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("scope", "key"),
    ForeignKeyConstraint(["document_id"], ["documents.id"]),
    comment="Requests made with an idempotency key and what they produced.",
)


class StampImageKind(enum.Enum):
    OFFICER = "officer"
    """An officer's handwritten signature (transparent PNG, blue ink); owner: a person."""
    SEAL = "seal"
    """A unit's red seal (transparent PNG at a known DPI); owner: a unit."""


stamp_images = Table(
    "stamp_images",
    metadata,
    Column("kind", String(16), nullable=False),
    Column("owner_id", _Id, nullable=False, comment="pki_people.id or pki_units.id, by kind"),
    Column("sha256", String(64), nullable=False, comment="name of the blob with the PNG"),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("kind", "owner_id"),
    CheckConstraint(f"kind IN ({_values(StampImageKind)})", name="kind"),
    comment="The current signature image of each officer and seal image of each unit.",
)


# -- signing batches (signer.batches) ---------------------------------------------------------

MAX_BATCH_ITEMS = 1000
"""Most documents in one batch."""

MAX_ERROR_MESSAGE = 500
"""Longest error message kept for a failed batch item (longer ones are cut)."""


class BatchAction(enum.Enum):
    SIGN = "sign"
    """The competent officer signs each draft (:meth:`DocumentRegistry.sign`)."""
    SEAL = "seal"
    """The clerk seals and issues each signed document (:meth:`DocumentRegistry.seal`)."""


class BatchStatus(enum.Enum):
    RUNNING = "running"
    """Items are still pending."""
    DONE = "done"
    """Every item was signed."""
    FAILED_PARTLY = "failed-partly"
    """Every item was tried and at least one failed (each item says why)."""


class BatchItemStatus(enum.Enum):
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"


signing_batches = Table(
    "signing_batches",
    metadata,
    Column("id", String(DOCUMENT_ID_LENGTH), primary_key=True, comment="random public id"),
    Column("action", String(8), nullable=False),
    Column("credential_id", _Id, ForeignKey(pki_credentials.c.id), nullable=False),
    Column("actor_id", String(256), nullable=True, comment="items are signed in its name"),
    Column("actor_role", String(256), nullable=True),
    Column("actor_unit", String(256), nullable=True),
    Column("status", String(16), nullable=False, index=True),
    Column("total", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Column("worker", String(64), nullable=True, comment="the process working on it, if any"),
    Column(
        "heartbeat_at",
        DateTime(timezone=True),
        nullable=True,
        comment="the worker's last sign of life; null when no process holds the batch",
    ),
    CheckConstraint(f"action IN ({_values(BatchAction)})", name="action"),
    CheckConstraint(f"status IN ({_values(BatchStatus)})", name="status"),
    CheckConstraint(f"total BETWEEN 1 AND {MAX_BATCH_ITEMS}", name="total"),
    comment="Batches of sign or seal steps, authorised once and worked through in the background.",
)

signing_batch_items = Table(
    "signing_batch_items",
    metadata,
    Column("batch_id", String(DOCUMENT_ID_LENGTH), nullable=False),
    Column("position", Integer, nullable=False, comment="0.., the order of the request"),
    Column(
        "document_id",
        String(DOCUMENT_ID_LENGTH),
        nullable=False,
        comment="as requested; not a foreign key: an unknown document fails its item only",
    ),
    Column("placement", String(512), nullable=True, comment="JSON, for a sign batch"),
    Column("status", String(16), nullable=False),
    Column("revision", Integer, nullable=True, comment="the revision the step produced"),
    Column("error_code", String(64), nullable=True),
    Column("error_message", String(MAX_ERROR_MESSAGE), nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("batch_id", "position"),
    ForeignKeyConstraint(["batch_id"], ["signing_batches.id"]),
    CheckConstraint(f"status IN ({_values(BatchItemStatus)})", name="status"),
    CheckConstraint(
        "(status = 'done') = (revision IS NOT NULL)"
        " AND (status = 'failed') = (error_code IS NOT NULL)",
        name="result",
    ),
    comment="One document of a batch and what became of it.",
)
