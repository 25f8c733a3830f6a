"""The document registry: draft upload → officer signature → clerk's seal and issue.

Every document has a random public id (it goes into the verification URL
``<public_url>/v/<id>``), a status (``draft → signed → issued``) and its revisions: the
uploaded draft (0), the officer-signed PDF (1) and the sealed, numbered PDF (2), each kept in
a :class:`~signer.blobs.BlobStore` under its SHA-256. Each revision is an incremental update
of the one before, byte for byte, so earlier signatures stay valid.

Consistency rules:

* Every step writes its audit event in the same transaction as its state change; a revision
  (hence a signed PDF) is readable only once that transaction has committed.
* Sealing takes the unit's next number for the year of issue (in +07:00) in the same
  transaction that stores the sealed revision; if anything fails, the transaction rolls back
  and the number is not consumed, so numbers are gap-free (Nghị định 30/2020, Điều 15: from
  01 on 1 January, one sequence per agency and year).
* A request repeated with the same idempotency key (same actor and operation) and the same
  content returns what the first produced and signs nothing again; with other content it is
  refused (``signer.idempotency_conflict``).

Concurrency. On PostgreSQL a sign or seal step locks the document row (and, to seal, the
unit's counter row) with ``SELECT … FOR UPDATE`` and keeps the transaction open while the
HSM signs, so concurrent steps on one document or one unit's numbers wait for each other,
across processes. On SQLite the database has a single write lock that other components (the
TSA's serials, PIN counters) need while a signature is made, so the signature is made
outside it: the step reads the state, signs, then takes the write lock (``BEGIN
IMMEDIATE``), checks that nothing it read has changed and commits — or discards its
signature and starts again. Within one process a lock per document (signing) or per unit
(sealing) makes such restarts happen only between processes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import re
import secrets
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from io import BytesIO
from types import MappingProxyType
from typing import Any, Protocol

from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.misc import PdfError
from pyhanko.pdf_utils.reader import PdfFileReader
from sqlalchemy import Connection, Engine, Row, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from audit.events import Action, Actor, DetailValue, Subject
from audit.log import AuditLog
from audit.store import aware
from pki.authority import Authority, Credential
from pki.errors import NotFoundError
from pki.store import CredentialKind, pki_units
from signer.blobs import BlobStore, blob_name
from signer.errors import (
    BusyError,
    DocumentNotFoundError,
    DocumentTooLargeError,
    IdempotencyConflictError,
    InvalidDocumentError,
    InvalidRequestError,
    InvalidStateError,
    SignerError,
    StorageError,
    TooManyPagesError,
    UnknownDocumentTypeError,
    WrongCredentialError,
)
from signer.pades import MAX_DOCUMENT_SIZE
from signer.store import (
    DOCUMENT_ID_LENGTH,
    MAX_IDEMPOTENCY_KEY,
    MAX_PERSON_ID,
    MAX_SERVICE,
    MAX_TITLE,
    DocumentStatus,
    RevisionKind,
    database_errors,
    document_counters,
    document_revisions,
    documents,
    idempotency_keys,
)

VIETNAM_TIME = timezone(timedelta(hours=7), "+07:00")
"""Asia/Ho_Chi_Minh: +07:00 all year (no daylight saving time since 1975)."""

DEFAULT_MAX_PAGES = 1000
"""Default bound on the pages of an uploaded PDF."""

MAX_PAGE_TREE_DEPTH = 32
"""Deepest page tree accepted; real files have 2 to 4 levels."""

MAX_LISTED = 500
"""Most documents one listing returns (pages go on with ``before``)."""

MAX_ATTEMPTS = 16
"""Restarts of one step that lost a race with another process (SQLite) before ``signer.busy``;
each after a random pause that grows with the attempt (up to 10 ms × attempts), so two
processes that keep invalidating each other's work fall out of step."""

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32: no i, l, o, u
_DOCUMENT_ID = re.compile(r"[0-7][0-9a-hjkmnp-tv-z]{25}", re.ASCII)
_IDEMPOTENCY_KEY = re.compile(rf"[\x21-\x7e]{{1,{MAX_IDEMPOTENCY_KEY}}}", re.ASCII)
_SERVICE = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._:-]{{0,{MAX_SERVICE - 1}}}", re.ASCII)
_PERSON_ID = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._:-]{{0,{MAX_PERSON_ID - 1}}}", re.ASCII)
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_LOCK_STRIPES = 64

# Whatever pyHanko may raise on a malformed file while it is read (it asserts some of the
# structure and indexes into what it parsed).
_PARSE_ERRORS = (
    PdfError,
    KeyError,
    TypeError,
    ValueError,
    IndexError,
    AttributeError,
    AssertionError,
    RecursionError,
)


# -- document types and numbers ---------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class DocumentType:
    """A kind of document the registry issues."""

    code: str
    """Form code (mẫu), e.g. ``CT07``."""

    abbreviation: str
    """Abbreviation of the document kind in the symbol (Nghị định 30/2020, Phụ lục III),
    e.g. ``XN`` for a confirmation (giấy xác nhận)."""

    name: str
    """Vietnamese name; the default title of a document of this type."""


DOCUMENT_TYPES: Mapping[str, DocumentType] = MappingProxyType(
    {
        "CT07": DocumentType(code="CT07", abbreviation="XN", name="Xác nhận thông tin về cư trú"),
        "CT08": DocumentType(
            code="CT08",
            abbreviation="TB",
            name="Thông báo về kết quả giải quyết, hủy bỏ đăng ký cư trú",
        ),
    }
)
"""The types issued by default (Thông tư 66/2023/TT-BCA residence forms), by code."""


def document_symbol(document_type: DocumentType, unit_code: str) -> str:
    """The symbol (ký hiệu) of a unit's documents of one type: ``XN-CAP-BT``."""
    return f"{document_type.abbreviation}-{unit_code}"


def format_number(number: int, symbol: str) -> str:
    """``Số: 05/XN-CAP-BT``. Numbers below 10 get a leading zero: the sequence starts at
    "số 01" (Nghị định 30/2020, Điều 15)."""
    return f"Số: {number:02d}/{symbol}"


def new_document_id() -> str:
    """A fresh public id: 128 random bits as 26 lower-case Crockford base32 characters."""
    value = secrets.randbits(128)
    return "".join(_ALPHABET[(value >> shift) & 31] for shift in range(125, -1, -5))


def _document_id(value: object) -> str:
    if isinstance(value, str) and len(value) == DOCUMENT_ID_LENGTH:
        normalised = value.lower()
        if _DOCUMENT_ID.fullmatch(normalised):
            return normalised
    raise DocumentNotFoundError(f"no document {value!r:.40}")


# -- what callers hand in and get back --------------------------------------------------------


def _invalid(message: str) -> InvalidRequestError:
    return InvalidRequestError(message)


def _pattern(value: object, pattern: re.Pattern[str], what: str, rule: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise _invalid(f"{what} must be {rule}, got {value!r:.60}")
    return value


@dataclass(frozen=True, kw_only=True)
class DraftMetadata:
    """What a draft is, as the requesting service states it. Validated on construction
    (:class:`~signer.errors.InvalidRequestError`); the type is checked by the registry."""

    document_type: str
    """Form code, e.g. ``CT07`` (case-insensitive)."""

    unit_id: int
    """The issuing unit (``pki_units.id``): its officers sign, its seal seals, its
    sequence numbers the document."""

    service: str
    """The requesting service, e.g. ``residence``: 1 to 64 ASCII letters, digits, ``._:-``."""

    subject_person_id: str
    """Whom the document is about (the citizen's id number): 1 to 32 ASCII letters, digits,
    ``._:-``. Stored with the document, never written to the audit log."""

    title: str | None = None
    """Title; the type's name when None. 1 to 256 characters, no control characters."""

    def __post_init__(self) -> None:
        if not isinstance(self.document_type, str) or not 0 < len(self.document_type) <= 16:
            raise _invalid("document_type must be a form code such as CT07")
        object.__setattr__(self, "document_type", self.document_type.upper())
        if isinstance(self.unit_id, bool) or not isinstance(self.unit_id, int) or self.unit_id < 1:
            raise _invalid("unit_id must be a positive integer")
        _pattern(self.service, _SERVICE, "service", "1 to 64 ASCII letters, digits or ._:-")
        _pattern(
            self.subject_person_id,
            _PERSON_ID,
            "subject_person_id",
            "1 to 32 ASCII letters, digits or ._:-",
        )
        if self.title is not None:
            if not isinstance(self.title, str) or len(self.title) > 4 * MAX_TITLE:
                raise _invalid(f"title must be text of at most {MAX_TITLE} characters")
            title = unicodedata.normalize("NFC", self.title).strip()
            if not 0 < len(title) <= MAX_TITLE or _CONTROL.search(title):
                raise _invalid(
                    f"title must be 1 to {MAX_TITLE} characters without control characters"
                )
            object.__setattr__(self, "title", title)


@dataclass(frozen=True, kw_only=True)
class Revision:
    """One stored version of a document's PDF."""

    revision: int
    """0 for the draft, then 1, 2, … in order."""

    kind: RevisionKind
    """Draft, officer-signed or sealed."""

    sha256: str
    """SHA-256 of the PDF, lower-case hex (its blob's name)."""

    size: int
    """Bytes."""

    created_at: datetime
    """When the revision was stored (UTC)."""

    credential_id: int | None
    """The credential that signed it; None for the draft."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "revision": self.revision,
            "kind": self.kind.value,
            "sha256": self.sha256,
            "size": self.size,
            "created_at": self.created_at.isoformat(),
            "credential_id": self.credential_id,
        }


@dataclass(frozen=True, kw_only=True)
class Document:
    """A document as the registry holds it now."""

    id: str
    """Public id, 26 characters; stable for the document's life."""

    document_type: str
    """Form code, e.g. ``CT07``."""

    unit_id: int
    """The issuing unit."""

    service: str
    """The requesting service."""

    subject_person_id: str
    """Whom the document is about (citizen id number)."""

    title: str
    """Title."""

    status: DocumentStatus
    """Where the document is in the workflow."""

    symbol: str
    """Ký hiệu, e.g. ``XN-CAP-BT``."""

    number: int | None
    """Số, from 1 per unit and year; None until issued."""

    year: int | None
    """Year of issue (in +07:00) the number belongs to; None until issued."""

    issued_at: datetime | None
    """Time of issue, +07:00, whole seconds; None until issued."""

    created_at: datetime
    """When the draft was uploaded (UTC)."""

    officer_credential_id: int | None
    """The officer credential that signed it; None while a draft."""

    seal_credential_id: int | None
    """The unit seal credential that sealed it; None until issued."""

    verify_url: str
    """Where anyone can check the document: ``<public_url>/v/<id>``."""

    revisions: tuple[Revision, ...]
    """Every stored version, oldest first."""

    @property
    def number_text(self) -> str | None:
        """``Số: 05/XN-CAP-BT`` once issued, else None."""
        return None if self.number is None else format_number(self.number, self.symbol)

    @property
    def latest(self) -> Revision:
        """The newest revision."""
        return self.revisions[-1]

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "document_type": self.document_type,
            "unit_id": self.unit_id,
            "service": self.service,
            "subject_person_id": self.subject_person_id,
            "title": self.title,
            "status": self.status.value,
            "symbol": self.symbol,
            "number": self.number,
            "number_text": self.number_text,
            "year": self.year,
            "issued_at": self.issued_at.isoformat() if self.issued_at else None,
            "created_at": self.created_at.isoformat(),
            "officer_credential_id": self.officer_credential_id,
            "seal_credential_id": self.seal_credential_id,
            "verify_url": self.verify_url,
            "revisions": [revision.as_dict() for revision in self.revisions],
        }


class DocumentSigning(Protocol):
    """How the registry has a document signed: the composition root supplies visible
    stamps and the PAdES level. Both methods return the whole new PDF, which must be an
    incremental update of ``pdf`` (it starts with ``pdf``'s bytes); they are called with no
    lock the signing itself needs, and may block."""

    def officer(
        self, pdf: bytes, credential_id: int, *, placement: object | None, document_id: str
    ) -> bytes:
        """The competent officer's signature on the draft. ``placement`` is passed through
        from :meth:`DocumentRegistry.sign` (its ``repr`` is part of the request's
        idempotency fingerprint, so it should be a frozen dataclass)."""
        ...

    def seal(
        self,
        pdf: bytes,
        credential_id: int,
        *,
        number: str,
        issued_at: datetime,
        verify_url: str,
    ) -> bytes:
        """The unit's seal signature on the officer-signed PDF. ``number`` is the number
        text (``Số: 05/XN-CAP-BT``), ``issued_at`` the time of issue in +07:00 and
        ``verify_url`` the link for the QR code."""
        ...


# -- PDF checks --------------------------------------------------------------------------------


def inspect_pdf(data: bytes, *, max_size: int, max_pages: int) -> int:
    """Check that ``data`` is a PDF the registry accepts; returns its page count.

    Refused: over ``max_size`` bytes (``signer.too_large``), not a PDF (``signer.not_pdf``),
    unreadable by a strict parser — truncated, or a cross-reference table that only a
    repairing reader could use (``signer.damaged_pdf``), encrypted (``signer.encrypted_pdf``),
    over ``max_pages`` pages (``signer.too_many_pages``). A damaged file is refused rather
    than repaired: a repair guesses, different readers guess differently, and a signature
    must cover exactly what every reader shows.
    """
    if not isinstance(data, bytes):
        raise InvalidDocumentError("the document must be bytes", code="signer.not_pdf")
    if len(data) > max_size:
        raise DocumentTooLargeError(
            f"the PDF is {len(data)} bytes; the limit is {max_size} bytes", limit=max_size
        )
    if b"%PDF-" not in data[:1024]:
        raise InvalidDocumentError("the file is not a PDF (no %PDF- header)", code="signer.not_pdf")
    try:
        reader = PdfFileReader(BytesIO(data), strict=True)
        encrypted = reader.security_handler is not None
    except _PARSE_ERRORS as ex:
        raise _damaged(ex) from ex
    if encrypted:
        raise InvalidDocumentError(
            "the PDF is encrypted; upload it unencrypted (Kyso never decrypts documents)",
            code="signer.encrypted_pdf",
        )
    try:
        return _count_pages(reader, max_pages)
    except _PARSE_ERRORS as ex:
        raise _damaged(ex) from ex


def _damaged(cause: BaseException) -> InvalidDocumentError:
    detail = str(cause).splitlines()[0][:200] if str(cause) else type(cause).__name__
    return InvalidDocumentError(
        f"the PDF is truncated or damaged ({detail}); Kyso does not repair PDFs: save it "
        "again from its source application (or rewrite it with qpdf) and upload that",
        code="signer.damaged_pdf",
    )


def _count_pages(reader: PdfFileReader, max_pages: int) -> int:
    tree = reader.root.raw_get("/Pages")
    declared = reader.root["/Pages"]["/Count"]
    if not isinstance(declared, int) or declared < 1:
        raise PdfError("the page tree's /Count is not a positive integer")
    if declared > max_pages:
        raise TooManyPagesError(
            f"the PDF has {declared} pages; the limit is {max_pages}", limit=max_pages
        )
    pages = 0
    seen: set[object] = set()
    pending: list[tuple[object, int]] = [(tree, 0)]
    while pending:
        node_ref, depth = pending.pop()
        if not isinstance(node_ref, generic.IndirectObject):
            raise PdfError("a page tree node is not an indirect object")
        if node_ref.reference in seen:
            raise PdfError("the page tree has a cycle")
        if depth > MAX_PAGE_TREE_DEPTH:
            raise PdfError(f"the page tree is deeper than {MAX_PAGE_TREE_DEPTH} levels")
        seen.add(node_ref.reference)
        node = node_ref.get_object()  # type: ignore[no-untyped-call]
        kind = node.get("/Type")
        if kind == "/Pages":
            pending.extend((kid, depth + 1) for kid in reversed(node["/Kids"]))
        elif kind == "/Page":
            pages += 1
            if pages > max_pages:
                raise TooManyPagesError(
                    f"the PDF has more than {max_pages} pages; the limit is {max_pages}",
                    limit=max_pages,
                )
        else:
            raise PdfError(f"a page tree node has /Type {kind!r:.40}")
    if pages != declared:
        raise PdfError(f"the page tree declares {declared} pages but holds {pages}")
    return pages


# -- the registry ----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class _Request:
    operation: str
    scope: str
    key: str | None
    fingerprint: str


@dataclass(frozen=True, kw_only=True)
class _Step:
    operation: str
    source: DocumentStatus
    target: DocumentStatus
    kind: RevisionKind
    credential_kind: CredentialKind


_SIGN = _Step(
    operation="sign",
    source=DocumentStatus.DRAFT,
    target=DocumentStatus.SIGNED,
    kind=RevisionKind.SIGNED,
    credential_kind=CredentialKind.OFFICER,
)
_SEAL = _Step(
    operation="seal",
    source=DocumentStatus.SIGNED,
    target=DocumentStatus.ISSUED,
    kind=RevisionKind.SEALED,
    credential_kind=CredentialKind.SEAL,
)


@dataclass(frozen=True, kw_only=True)
class _Plan:
    """What a step read before signing; on SQLite it must read the same again before it
    may commit."""

    document_id: str
    unit_id: int
    symbol: str
    revision: int
    """The latest revision, which the step signs."""
    sha256: str
    number: int | None = None
    year: int | None = None
    issued_at: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class _Replay:
    document_id: str


class _Changed(Exception):
    """The state a SQLite step read changed before it could commit."""


class DocumentRegistry:
    """Documents, their revisions and their workflow over one database and one blob
    store. Thread-safe; every method blocks (run it in a thread from async code)."""

    def __init__(
        self,
        *,
        engine: Engine,
        blobs: BlobStore,
        signing: DocumentSigning,
        authority: Authority,
        public_url: str,
        max_size: int = MAX_DOCUMENT_SIZE,
        max_pages: int = DEFAULT_MAX_PAGES,
        document_types: Mapping[str, DocumentType] = DOCUMENT_TYPES,
        max_concurrent: int = 4,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        """``max_concurrent`` bounds the sign and seal steps in progress at once: on
        PostgreSQL each holds a pooled connection while the HSM signs and the signing
        needs connections of its own, so it must stay well under the pool size.
        ``clock`` (aware datetimes) is for tests of the year boundary."""
        if not public_url.startswith(("https://", "http://")):
            raise ValueError("public_url must be an http(s) URL")
        for name, value in (("max_size", max_size), ("max_pages", max_pages)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer")
        if max_size > blobs.max_size:
            raise ValueError("max_size is above what the blob store accepts")
        self._engine = engine
        self._blobs = blobs
        self._signing = signing
        self._authority = authority
        self._public_url = public_url.rstrip("/")
        self._max_size = max_size
        self._max_pages = max_pages
        self._types = MappingProxyType(dict(document_types))
        self._clock = clock or (lambda: datetime.now(UTC))
        self._sqlite = engine.dialect.name == "sqlite"
        self._stripes = [threading.Lock() for _ in range(_LOCK_STRIPES)]
        self._slots = threading.BoundedSemaphore(max_concurrent)

    @property
    def max_size(self) -> int:
        return self._max_size

    @property
    def max_pages(self) -> int:
        return self._max_pages

    def verify_url(self, document_id: str) -> str:
        """The public verification link of a document (in its QR code)."""
        return f"{self._public_url}/v/{document_id}"

    # -- reading ---------------------------------------------------------------------------

    def document(self, document_id: str) -> Document:
        """The document's status, metadata and revisions."""
        identifier = _document_id(document_id)
        with database_errors("reading a document"), self._engine.connect() as connection:
            row = connection.execute(select(documents).where(documents.c.id == identifier)).first()
            if row is None:
                raise DocumentNotFoundError(f"no document {identifier}")
            revisions = connection.execute(
                select(document_revisions)
                .where(document_revisions.c.document_id == identifier)
                .order_by(document_revisions.c.revision)
            ).all()
        return self._document(row, revisions)

    def documents(
        self,
        *,
        unit_ids: set[int] | None,
        status: DocumentStatus | None = None,
        limit: int = 100,
        before: str | None = None,
    ) -> list[Document]:
        """Documents of ``unit_ids`` (``None``: every unit), newest first, optionally of one
        status; at most ``limit``, those created before the document ``before`` (the last one
        of the previous page). Drafts are what officers find waiting for their signature."""
        if not 1 <= limit <= MAX_LISTED:
            raise InvalidRequestError(f"list 1 to {MAX_LISTED} documents at a time")
        query = select(documents)
        if unit_ids is not None:
            query = query.where(documents.c.unit_id.in_(sorted(unit_ids)))
        if status is not None:
            query = query.where(documents.c.status == status.value)
        with database_errors("listing documents"), self._engine.connect() as connection:
            if before is not None:
                last = _document_id(before)
                cursor = connection.execute(
                    select(documents.c.created_at).where(documents.c.id == last)
                ).scalar()
                if cursor is None:
                    raise DocumentNotFoundError(f"no document {last}")
                query = query.where(
                    (documents.c.created_at < cursor)
                    | ((documents.c.created_at == cursor) & (documents.c.id < last))
                )
            rows = connection.execute(
                query.order_by(documents.c.created_at.desc(), documents.c.id.desc()).limit(limit)
            ).all()
            revisions: dict[str, list[Row[Any]]] = {row.id: [] for row in rows}
            if rows:
                for revision in connection.execute(
                    select(document_revisions)
                    .where(document_revisions.c.document_id.in_(list(revisions)))
                    .order_by(document_revisions.c.revision)
                ):
                    revisions[revision.document_id].append(revision)
        return [self._document(row, revisions[row.id]) for row in rows]

    def pdf(self, document_id: str, revision: int | None = None) -> bytes:
        """The PDF of ``revision`` (the latest when None), checked against its SHA-256."""
        identifier = _document_id(document_id)
        if revision is not None and (
            isinstance(revision, bool) or not isinstance(revision, int) or revision < 0
        ):
            raise InvalidRequestError("revision must be a non-negative integer")
        query = select(document_revisions.c.revision, document_revisions.c.sha256).where(
            document_revisions.c.document_id == identifier
        )
        if revision is None:
            query = query.order_by(document_revisions.c.revision.desc()).limit(1)
        else:
            query = query.where(document_revisions.c.revision == revision)
        with database_errors("reading a revision"), self._engine.connect() as connection:
            row = connection.execute(query).first()
        if row is None:
            which = "" if revision is None else f" revision {revision} of"
            raise DocumentNotFoundError(f"no{which} document {identifier}")
        return self._blobs.get(row.sha256)

    # -- upload ------------------------------------------------------------------------------

    def upload(
        self,
        pdf: bytes,
        meta: DraftMetadata,
        actor: Actor,
        *,
        idempotency_key: str | None = None,
    ) -> Document:
        """Register a draft: check the PDF, store it as revision 0 and audit
        ``document.uploaded``."""
        if not isinstance(meta, DraftMetadata):
            raise InvalidRequestError("meta must be DraftMetadata")
        document_type = self._types.get(meta.document_type)
        if document_type is None:
            known = ", ".join(sorted(self._types))
            raise UnknownDocumentTypeError(
                f"unknown document type {meta.document_type!r}; known: {known}"
            )
        # First, so that nothing unbounded is hashed or stored.
        pages = inspect_pdf(pdf, max_size=self._max_size, max_pages=self._max_pages)
        request = _request(
            "upload",
            actor,
            idempotency_key,
            pdf_sha256=blob_name(pdf),
            document_type=meta.document_type,
            unit_id=meta.unit_id,
            service=meta.service,
            subject_person_id=meta.subject_person_id,
            title=meta.title,
        )
        with database_errors("uploading a document"):
            replay = self._read_replay(request)
            if replay is not None:
                return self.document(replay.document_id)
            self._blobs.put(pdf)
            try:
                document_id = self._insert_draft(
                    pdf, meta, document_type, actor, request, pages=pages
                )
            except IntegrityError:
                # Only the idempotency key can collide: the same request raced this one.
                replay = self._read_replay(request)
                if replay is None:
                    raise
                document_id = replay.document_id
        return self.document(document_id)

    def _insert_draft(
        self,
        pdf: bytes,
        meta: DraftMetadata,
        document_type: DocumentType,
        actor: Actor,
        request: _Request,
        *,
        pages: int,
    ) -> str:
        now = self._clock().astimezone(UTC)
        sha256 = blob_name(pdf)
        with self._write() as connection:
            replay = self._replay(connection, request)
            if replay is not None:
                return replay.document_id
            unit_code = connection.execute(
                select(pki_units.c.code).where(pki_units.c.id == meta.unit_id)
            ).scalar()
            if unit_code is None:
                raise InvalidRequestError(f"no unit {meta.unit_id}")
            document_id = new_document_id()
            connection.execute(
                insert(documents).values(
                    id=document_id,
                    document_type=document_type.code,
                    unit_id=meta.unit_id,
                    service=meta.service,
                    subject_person_id=meta.subject_person_id,
                    title=meta.title or document_type.name,
                    status=DocumentStatus.DRAFT.value,
                    symbol=document_symbol(document_type, unit_code),
                    created_at=now,
                )
            )
            self._insert_revision(
                connection, document_id, 0, RevisionKind.DRAFT, sha256, len(pdf), now, None
            )
            self._remember(connection, request, document_id, 0, now)
            _audit(
                connection,
                Action.DOCUMENT_UPLOADED,
                actor,
                now,
                Subject(document_sha256=sha256),
                document_id=document_id,
                revision=0,
                document_type=document_type.code,
                unit_id=meta.unit_id,
                service=meta.service,
                pages=pages,
                size=len(pdf),
            )
        return document_id

    # -- the officer's signature and the seal ------------------------------------------------

    def sign(
        self,
        document_id: str,
        credential_id: int,
        actor: Actor,
        *,
        idempotency_key: str | None = None,
        placement: object | None = None,
    ) -> Document:
        """The competent officer signs the draft (revision 1, status ``signed``, audit
        ``document.signed``). The credential must be an officer credential of the
        document's unit that may sign now."""
        identifier = _document_id(document_id)
        request = _request(
            "sign",
            actor,
            idempotency_key,
            document_id=identifier,
            credential_id=credential_id,
            placement=None if placement is None else repr(placement),
        )
        return self._advance(_SIGN, identifier, credential_id, actor, request, placement)

    def seal(
        self,
        document_id: str,
        credential_id: int,
        actor: Actor,
        *,
        idempotency_key: str | None = None,
    ) -> Document:
        """The clerk seals the officer-signed document with the unit's seal credential; in
        one transaction it gets the unit's next number for the year and its time of issue,
        the sealed revision is stored and ``document.sealed`` and ``document.issued`` are
        audited. The status becomes ``issued``."""
        identifier = _document_id(document_id)
        request = _request(
            "seal", actor, idempotency_key, document_id=identifier, credential_id=credential_id
        )
        return self._advance(_SEAL, identifier, credential_id, actor, request, None)

    def _advance(
        self,
        step: _Step,
        document_id: str,
        credential_id: int,
        actor: Actor,
        request: _Request,
        placement: object | None,
    ) -> Document:
        if isinstance(credential_id, bool) or not isinstance(credential_id, int):
            raise InvalidRequestError("credential_id must be an integer")
        with database_errors(f"the {step.operation} step"):
            # A first look without locks: cheap refusals, and the unit to serialise on.
            with self._engine.connect() as connection:
                first = self._plan(connection, step, document_id, request, None, lock=False)
            if isinstance(first, _Replay):
                return self.document(first.document_id)
            credential = self._credential(step, credential_id, first.unit_id)
            stripe = (document_id if step is _SIGN else f"unit:{first.unit_id}").encode()
            lock = self._stripes[
                int.from_bytes(hashlib.sha256(stripe).digest()[:4]) % _LOCK_STRIPES
            ]
            with lock, self._slots:
                for attempt in range(MAX_ATTEMPTS):
                    done = self._attempt(step, document_id, credential, actor, request, placement)
                    if done is not None:
                        return self.document(done)
                    time.sleep(random.uniform(0, 0.01 * (attempt + 1)))  # noqa: S311 - jitter
        raise BusyError(
            f"the {step.operation} step of document {document_id} lost {MAX_ATTEMPTS} races "
            "with other processes; try again"
        )

    def _credential(self, step: _Step, credential_id: int, unit_id: int) -> Credential:
        try:
            credential = self._authority.usable_credential(credential_id)
        except NotFoundError as ex:
            raise WrongCredentialError(f"no credential {credential_id}") from ex
        if credential.kind is not step.credential_kind:
            raise WrongCredentialError(
                f"credential {credential_id} is a {credential.kind.value} credential; the "
                f"{step.operation} step needs the {step.credential_kind.value} credential "
                f"of unit {unit_id}"
            )
        if credential.unit_id != unit_id:
            raise WrongCredentialError(
                f"credential {credential_id} belongs to unit {credential.unit_id}, not to "
                f"the document's unit {unit_id}"
            )
        return credential

    def _attempt(
        self,
        step: _Step,
        document_id: str,
        credential: Credential,
        actor: Actor,
        request: _Request,
        placement: object | None,
    ) -> str | None:
        """One try of a step; the id of the document it produced or replayed, or None when
        another process changed what it read (SQLite) and it must start again."""
        now = self._clock().astimezone(UTC)
        if self._sqlite:
            with self._engine.connect() as connection:
                plan = self._plan(connection, step, document_id, request, now, lock=False)
            if isinstance(plan, _Replay):
                return plan.document_id
            signed = self._produce(step, plan, credential, placement)
            try:
                with self._write() as connection:
                    if self._plan(connection, step, document_id, request, now, lock=False) != plan:
                        raise _Changed
                    self._commit(connection, step, plan, credential, signed, actor, request, now)
            except _Changed:
                return None
            except IntegrityError:
                return self._after_race(request)
            return document_id
        try:
            with self._write() as connection:
                plan = self._plan(connection, step, document_id, request, now, lock=True)
                if isinstance(plan, _Replay):
                    return plan.document_id
                signed = self._produce(step, plan, credential, placement)
                self._commit(connection, step, plan, credential, signed, actor, request, now)
        except _Changed:
            return None
        except IntegrityError:
            return self._after_race(request)
        return document_id

    def _plan(
        self,
        connection: Connection,
        step: _Step,
        document_id: str,
        request: _Request,
        now: datetime | None,
        *,
        lock: bool,
    ) -> _Plan | _Replay:
        """Read what the step needs and check that it may go ahead. ``lock`` (PostgreSQL):
        lock the document row and, to seal, the counter row until the transaction ends."""
        query = select(documents.c.status, documents.c.unit_id, documents.c.symbol).where(
            documents.c.id == document_id
        )
        row = connection.execute(query.with_for_update() if lock else query).first()
        if row is None:
            raise DocumentNotFoundError(f"no document {document_id}")
        # After the lock: a request that raced this one and won is visible now.
        replay = self._replay(connection, request)
        if replay is not None:
            return replay
        if row.status != step.source.value:
            raise InvalidStateError(
                f"document {document_id} is {row.status}; the {step.operation} step needs a "
                f"{step.source.value} document",
                status=row.status,
            )
        latest = connection.execute(
            select(document_revisions.c.revision, document_revisions.c.sha256)
            .where(document_revisions.c.document_id == document_id)
            .order_by(document_revisions.c.revision.desc())
            .limit(1)
        ).one()
        plan = _Plan(
            document_id=document_id,
            unit_id=row.unit_id,
            symbol=row.symbol,
            revision=latest.revision,
            sha256=latest.sha256,
        )
        if step is not _SEAL or now is None:
            return plan
        year = _issue_time(now).year
        if lock:
            # Makes sure there is a row to lock; it exists only if this transaction commits.
            connection.execute(
                self._upsert(unit_id=row.unit_id, year=year, last_number=0).on_conflict_do_nothing(
                    index_elements=[document_counters.c.unit_id, document_counters.c.year]
                )
            )
        counter = select(document_counters.c.last_number).where(
            document_counters.c.unit_id == row.unit_id, document_counters.c.year == year
        )
        last = connection.execute(counter.with_for_update() if lock else counter).scalar()
        if lock:
            # Other seals of the unit held the counter until now: the time of issue is
            # taken once this one holds it.
            now = self._clock().astimezone(UTC)
            if _issue_time(now).year != year:
                raise _Changed  # the year turned while waiting: number it in the new year
        number = (last or 0) + 1
        issued_at = _issue_time(now)
        if number > 1:
            previous = connection.execute(
                select(documents.c.issued_at).where(
                    documents.c.unit_id == row.unit_id,
                    documents.c.year == year,
                    documents.c.number == number - 1,
                )
            ).scalar()
            # Numbers follow the order of issue even if this process's clock is behind the
            # one that issued the number before (or was read before that one committed).
            if previous is not None:
                issued_at = max(issued_at, aware(previous).astimezone(VIETNAM_TIME))
        return _Plan(
            document_id=document_id,
            unit_id=row.unit_id,
            symbol=row.symbol,
            revision=latest.revision,
            sha256=latest.sha256,
            number=number,
            year=year,
            issued_at=issued_at,
        )

    def _produce(
        self, step: _Step, plan: _Plan, credential: Credential, placement: object | None
    ) -> bytes:
        source = self._blobs.get(plan.sha256)
        if step is _SIGN:
            signed = self._signing.officer(
                source, credential.id, placement=placement, document_id=plan.document_id
            )
        else:
            assert plan.number is not None
            assert plan.issued_at is not None
            signed = self._signing.seal(
                source,
                credential.id,
                number=format_number(plan.number, plan.symbol),
                issued_at=plan.issued_at,
                verify_url=self.verify_url(plan.document_id),
            )
        if not isinstance(signed, bytes) or len(signed) <= len(source):
            raise SignerError(
                f"the {step.operation} signature produced no new revision",
                code="signer.not_incremental",
            )
        # An incremental update keeps every earlier byte, hence every earlier signature and
        # the draft exactly as uploaded.
        if not signed.startswith(source):
            raise SignerError(
                f"the {step.operation} signature rewrote the PDF instead of appending to it",
                code="signer.not_incremental",
            )
        self._blobs.put(signed)
        return signed

    def _commit(
        self,
        connection: Connection,
        step: _Step,
        plan: _Plan,
        credential: Credential,
        signed: bytes,
        actor: Actor,
        request: _Request,
        now: datetime,
    ) -> None:
        sha256 = blob_name(signed)
        revision = plan.revision + 1
        self._insert_revision(
            connection, plan.document_id, revision, step.kind, sha256, len(signed), now,
            credential.id,
        )  # fmt: skip
        changes: dict[str, object] = {"status": step.target.value}
        subject = Subject(
            document_sha256=sha256,
            certificate_serial=credential.serial,
            key_id=credential.key_id,
        )
        details: dict[str, DetailValue] = {
            "document_id": plan.document_id,
            "revision": revision,
            "credential_id": credential.id,
        }
        if step is _SIGN:
            changes["officer_credential_id"] = credential.id
        else:
            assert plan.number is not None
            assert plan.year is not None
            assert plan.issued_at is not None
            connection.execute(
                self._upsert(
                    unit_id=plan.unit_id, year=plan.year, last_number=plan.number
                ).on_conflict_do_update(
                    index_elements=[document_counters.c.unit_id, document_counters.c.year],
                    set_={"last_number": plan.number},
                )
            )
            changes |= {
                "seal_credential_id": credential.id,
                "number": plan.number,
                "year": plan.year,
                # UTC: SQLite keeps a datetime's wall-clock text and drops its offset.
                "issued_at": plan.issued_at.astimezone(UTC),
            }
            details |= {"number": plan.number, "symbol": plan.symbol, "year": plan.year}
        updated = connection.execute(
            update(documents)
            .where(documents.c.id == plan.document_id, documents.c.status == step.source.value)
            .values(**changes)
        )
        if updated.rowcount != 1:
            raise _Changed  # unreachable while the plan's checks hold; never commit it
        self._remember(connection, request, plan.document_id, revision, now)
        action = Action.DOCUMENT_SIGNED if step is _SIGN else Action.DOCUMENT_SEALED
        _audit(connection, action, actor, now, subject, **details)
        if step is _SEAL:
            assert plan.issued_at is not None
            assert plan.number is not None
            _audit(
                connection,
                Action.DOCUMENT_ISSUED,
                actor,
                now,
                Subject(document_sha256=sha256),
                document_id=plan.document_id,
                number=plan.number,
                number_text=format_number(plan.number, plan.symbol),
                year=plan.year,
                issued_at=plan.issued_at.isoformat(),
            )

    # -- idempotency -----------------------------------------------------------------------

    @staticmethod
    def _replay(connection: Connection, request: _Request) -> _Replay | None:
        if request.key is None:
            return None
        row = connection.execute(
            select(idempotency_keys.c.fingerprint, idempotency_keys.c.document_id).where(
                idempotency_keys.c.scope == request.scope, idempotency_keys.c.key == request.key
            )
        ).first()
        if row is None:
            return None
        if row.fingerprint != request.fingerprint:
            raise IdempotencyConflictError(
                f"idempotency key {request.key!r} was already used for a different "
                f"{request.operation} request"
            )
        return _Replay(document_id=row.document_id)

    def _read_replay(self, request: _Request) -> _Replay | None:
        if request.key is None:
            return None
        with self._engine.connect() as connection:
            return self._replay(connection, request)

    def _after_race(self, request: _Request) -> str:
        """After an integrity error: the request that won the race to the idempotency key,
        or the error again if it was anything else."""
        replay = self._read_replay(request)
        if replay is None:
            raise StorageError(
                f"the {request.operation} step conflicted with a concurrent change; try again"
            )
        return replay.document_id

    @staticmethod
    def _remember(
        connection: Connection, request: _Request, document_id: str, revision: int, now: datetime
    ) -> None:
        if request.key is None:
            return
        connection.execute(
            insert(idempotency_keys).values(
                scope=request.scope,
                key=request.key,
                fingerprint=request.fingerprint,
                document_id=document_id,
                revision=revision,
                created_at=now,
            )
        )

    # -- storage helpers ---------------------------------------------------------------------

    @contextlib.contextmanager
    def _write(self) -> Iterator[Connection]:
        """A write transaction; on SQLite it holds the database's write lock from the start
        (``BEGIN IMMEDIATE``), so what it reads cannot change before it commits."""
        if not self._sqlite:
            with self._engine.begin() as connection:
                yield connection
            return
        with self._engine.connect() as raw:
            # pysqlite would open a deferred transaction on the first write; in autocommit
            # mode BEGIN IMMEDIATE takes the write lock (with the busy timeout) up front.
            connection = raw.execution_options(isolation_level="AUTOCOMMIT")
            connection.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                yield connection
            except BaseException:
                with contextlib.suppress(SQLAlchemyError):
                    connection.exec_driver_sql("ROLLBACK")
                raise
            connection.exec_driver_sql("COMMIT")

    def _upsert(self, **values: object) -> Any:
        dialect = sqlite if self._sqlite else postgresql
        return dialect.insert(document_counters).values(**values)

    @staticmethod
    def _insert_revision(
        connection: Connection,
        document_id: str,
        revision: int,
        kind: RevisionKind,
        sha256: str,
        size: int,
        now: datetime,
        credential_id: int | None,
    ) -> None:
        connection.execute(
            insert(document_revisions).values(
                document_id=document_id,
                revision=revision,
                kind=kind.value,
                sha256=sha256,
                size=size,
                created_at=now,
                credential_id=credential_id,
            )
        )

    def _document(self, row: Row[Any], revisions: Sequence[Row[Any]]) -> Document:
        return Document(
            id=row.id,
            document_type=row.document_type,
            unit_id=row.unit_id,
            service=row.service,
            subject_person_id=row.subject_person_id,
            title=row.title,
            status=DocumentStatus(row.status),
            symbol=row.symbol,
            number=row.number,
            year=row.year,
            issued_at=(
                None if row.issued_at is None else aware(row.issued_at).astimezone(VIETNAM_TIME)
            ),
            created_at=aware(row.created_at),
            officer_credential_id=row.officer_credential_id,
            seal_credential_id=row.seal_credential_id,
            verify_url=self.verify_url(row.id),
            revisions=tuple(
                Revision(
                    revision=r.revision,
                    kind=RevisionKind(r.kind),
                    sha256=r.sha256,
                    size=r.size,
                    created_at=aware(r.created_at),
                    credential_id=r.credential_id,
                )
                for r in revisions
            ),
        )


def _request(operation: str, actor: Actor, key: str | None, **content: object) -> _Request:
    if not isinstance(actor, Actor):
        raise InvalidRequestError("actor must be an audit Actor")
    if key is not None:
        _pattern(
            key,
            _IDEMPOTENCY_KEY,
            "the idempotency key",
            f"1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters without spaces",
        )
    canonical = json.dumps(
        {"operation": operation, **content}, sort_keys=True, ensure_ascii=False, default=repr
    )
    return _Request(
        operation=operation,
        scope=f"{operation}:{actor.id or ''}",
        key=key,
        fingerprint=hashlib.sha256(canonical.encode()).hexdigest(),
    )


def _audit(
    connection: Connection,
    action: Action,
    actor: Actor,
    now: datetime,
    subject: Subject,
    **details: DetailValue,
) -> None:
    AuditLog.append_event(connection, action, actor, details, subject=subject, time=now)


def _issue_time(moment: datetime) -> datetime:
    """A time of issue as documents show it: +07:00, whole seconds."""
    return moment.astimezone(VIETNAM_TIME).replace(microsecond=0)
