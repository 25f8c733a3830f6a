"""The document registry on SoftHSM and both databases: draft → officer signature → seal and
issue, revisions and their hashes, refusals of out-of-order steps and wrong credentials,
gap-free numbering under concurrency and failures, the year boundary in +07:00,
idempotency (including racing duplicates) and the audit events of every step.

Signatures are real: :class:`PadesSigning` signs with :func:`signer.pades.sign_pdf`
(invisible PAdES B-B) on the test token; outages are injected around it."""

from __future__ import annotations

import itertools
import json
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.pdf_utils.writer import PdfFileWriter
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko.sign.validation.status import SignatureCoverageLevel
from sqlalchemy import Engine, func, select

from audit.events import Action, Actor, AuditEvent
from bench.signer_bench import assemble_pdf, one_page_pdf
from hsm import BlockingSessionPool
from hsm.errors import HsmUnavailableError
from pki.authority import Authority, Credential
from pki.errors import CredentialUnusableError
from pki.store import PersonRole, UnitKind
from signer.blobs import FilesystemBlobStore, blob_name
from signer.cms import SigningCredential
from signer.documents import (
    DOCUMENT_TYPES,
    VIETNAM_TIME,
    Document,
    DocumentRegistry,
    DraftMetadata,
    format_number,
    inspect_pdf,
    new_document_id,
)
from signer.errors import (
    BlobError,
    DocumentNotFoundError,
    DocumentTooLargeError,
    IdempotencyConflictError,
    InvalidDocumentError,
    InvalidRequestError,
    InvalidStateError,
    SignerError,
    TooManyPagesError,
    UnknownDocumentTypeError,
    WrongCredentialError,
)
from signer.pades import sign_pdf
from signer.store import DocumentStatus, RevisionKind, document_counters, documents
from tests.pki.test_authority import ADMIN, add_officer, audit_events, commune, make_authority
from tests.signer.test_pades import validation_context

PUBLIC_URL = "https://kyso.example.vn"
OFFICER = Actor(id="officer-7", role="officer", unit="Công an phường Bến Thành")
CLERK = Actor(id="clerk-3", role="clerk", unit="Công an phường Bến Thành")
SERVICE = Actor(id="residence-service", role="service")


def pages_pdf(count: int) -> bytes:
    """A valid PDF of ``count`` empty A4 pages, built by hand."""
    kids = " ".join(f"{3 + i} 0 R" for i in range(count))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {count} >>".encode(),
        *[b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] >>"] * count,
    ]
    return assemble_pdf(objects)


def draft(text: str = "CT07") -> bytes:
    return one_page_pdf(f"Giay xac nhan thong tin ve cu tru {text}")


class PadesSigning:
    """DocumentSigning with the real PAdES pipeline: invisible signatures, SoftHSM keys."""

    def __init__(self, authority: Authority, pool: BlockingSessionPool) -> None:
        self._authority = authority
        self._pool = pool
        self._lock = threading.Lock()
        self._prepared: dict[int, SigningCredential] = {}
        self.calls: Counter[str] = Counter()
        self.seals: list[tuple[str, datetime, str]] = []

    def _credential(self, credential_id: int) -> SigningCredential:
        with self._lock:
            if credential_id not in self._prepared:
                self._prepared[credential_id] = SigningCredential.prepare(
                    self._authority.credential(credential_id), self._authority.internal_chain()
                )
            return self._prepared[credential_id]

    def officer(
        self, pdf: bytes, credential_id: int, *, placement: object | None, document_id: str
    ) -> bytes:
        with self._lock:
            self.calls["officer"] += 1
        return sign_pdf(
            pdf,
            self._credential(credential_id),
            self._pool,
            usable=self._authority.usable_credential,
            field_name="Officer",
            reason=f"Ký văn bản {document_id}",
        )

    def seal(
        self, pdf: bytes, credential_id: int, *, number: str, issued_at: datetime, verify_url: str
    ) -> bytes:
        with self._lock:
            self.calls["seal"] += 1
            self.seals.append((number, issued_at, verify_url))
        return sign_pdf(
            pdf,
            self._credential(credential_id),
            self._pool,
            usable=self._authority.usable_credential,
            field_name="Seal",
            reason=number,
        )


class Outage:
    """Wraps a signing: the HSM is unavailable on the chosen seal calls (1-based)."""

    def __init__(self, inner: PadesSigning, *, failing: set[int]) -> None:
        self._inner = inner
        self._failing = failing
        self._count = itertools.count(1)

    def officer(
        self, pdf: bytes, credential_id: int, *, placement: object | None, document_id: str
    ) -> bytes:
        return self._inner.officer(pdf, credential_id, placement=placement, document_id=document_id)

    def seal(
        self, pdf: bytes, credential_id: int, *, number: str, issued_at: datetime, verify_url: str
    ) -> bytes:
        if next(self._count) in self._failing:
            raise HsmUnavailableError("the token is unreachable")
        return self._inner.seal(
            pdf, credential_id, number=number, issued_at=issued_at, verify_url=verify_url
        )


@dataclass
class World:
    engine: Engine
    authority: Authority
    unit_id: int
    officer: Credential
    seal: Credential
    signing: PadesSigning
    blobs: FilesystemBlobStore
    registry: DocumentRegistry

    def new_registry(self, **overrides: Any) -> DocumentRegistry:
        values: dict[str, Any] = {
            "engine": self.engine,
            "blobs": self.blobs,
            "signing": self.signing,
            "authority": self.authority,
            "public_url": PUBLIC_URL,
        }
        values.update(overrides)
        return DocumentRegistry(**values)

    def meta(self, **overrides: Any) -> DraftMetadata:
        values: dict[str, Any] = {
            "document_type": "CT07",
            "unit_id": self.unit_id,
            "service": "residence",
            "subject_person_id": "079203009999",
        }
        values.update(overrides)
        return DraftMetadata(**values)

    def signed(self, registry: DocumentRegistry | None = None, text: str = "") -> Document:
        registry = registry or self.registry
        document = registry.upload(draft(text), self.meta(), SERVICE)
        return registry.sign(document.id, self.officer.id, OFFICER)


@pytest.fixture
def world(engine: Engine, pool: BlockingSessionPool, tmp_path: Path) -> World:
    authority = make_authority(engine, pool)
    unit_id = commune(authority)
    officer = authority.enroll_person(add_officer(authority, unit_id), ADMIN)
    seal = authority.enroll_seal(unit_id, ADMIN)
    signing = PadesSigning(authority, pool)
    blobs = FilesystemBlobStore(tmp_path / "blobs")
    registry = DocumentRegistry(
        engine=engine, blobs=blobs, signing=signing, authority=authority, public_url=PUBLIC_URL
    )
    return World(engine, authority, unit_id, officer, seal, signing, blobs, registry)


def actions(engine: Engine) -> Counter[Action]:
    return Counter(event.action for event in audit_events(engine))


def document_events(engine: Engine) -> list[AuditEvent]:
    return [event for event in audit_events(engine) if event.action.value.startswith("document.")]


def counter(engine: Engine, unit_id: int, year: int) -> int | None:
    with engine.connect() as connection:
        value = connection.execute(
            select(document_counters.c.last_number).where(
                document_counters.c.unit_id == unit_id, document_counters.c.year == year
            )
        ).scalar()
    return None if value is None else int(value)


def document_count(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(documents)).scalar_one())


# -- the workflow -----------------------------------------------------------------------------


def test_draft_signed_sealed_issued(world: World) -> None:
    registry, original = world.registry, draft()
    uploaded = registry.upload(original, world.meta(title="  Xác nhận cư trú  "), SERVICE)

    assert uploaded.status is DocumentStatus.DRAFT
    assert len(uploaded.id) == 26
    assert uploaded.verify_url == f"{PUBLIC_URL}/v/{uploaded.id}"
    assert uploaded.title == "Xác nhận cư trú"
    assert uploaded.symbol == "XN-CAP-BT"
    assert (uploaded.number, uploaded.year, uploaded.issued_at, uploaded.number_text) == (
        None, None, None, None,
    )  # fmt: skip
    assert [(r.revision, r.kind, r.sha256, r.size) for r in uploaded.revisions] == [
        (0, RevisionKind.DRAFT, blob_name(original), len(original))
    ]

    signed = registry.sign(uploaded.id, world.officer.id, OFFICER)
    assert signed.status is DocumentStatus.SIGNED
    assert signed.officer_credential_id == world.officer.id
    before_seal = datetime.now(UTC).replace(microsecond=0)
    issued = registry.seal(uploaded.id, world.seal.id, CLERK)

    assert issued.status is DocumentStatus.ISSUED
    assert issued.seal_credential_id == world.seal.id
    assert issued.number == 1
    assert issued.number_text == "Số: 01/XN-CAP-BT"
    assert issued.issued_at is not None
    assert issued.issued_at.utcoffset() == timedelta(hours=7)
    assert issued.issued_at >= before_seal
    assert issued.year == issued.issued_at.year
    assert world.signing.seals == [("Số: 01/XN-CAP-BT", issued.issued_at, issued.verify_url)]
    assert registry.document(uploaded.id.upper()) == issued
    json.dumps(issued.as_dict())

    # Every revision is kept, with its hash, and each extends the one before byte for byte.
    kinds = [(r.revision, r.kind, r.credential_id) for r in issued.revisions]
    assert kinds == [
        (0, RevisionKind.DRAFT, None),
        (1, RevisionKind.SIGNED, world.officer.id),
        (2, RevisionKind.SEALED, world.seal.id),
    ]
    pdfs = [registry.pdf(uploaded.id, r.revision) for r in issued.revisions]
    assert pdfs[0] == original
    for revision, pdf in zip(issued.revisions, pdfs, strict=True):
        assert blob_name(pdf) == revision.sha256
        assert len(pdf) == revision.size
    assert pdfs[2].startswith(pdfs[1])
    assert pdfs[1].startswith(pdfs[0])
    assert registry.pdf(uploaded.id) == pdfs[2]

    # The issued PDF carries both signatures, each valid and trusted in pyHanko.
    reader = PdfFileReader(BytesIO(pdfs[2]))
    assert [s.field_name for s in reader.embedded_signatures] == ["Officer", "Seal"]
    context = validation_context(world.authority)
    statuses = [validate_pdf_signature(s, context) for s in reader.embedded_signatures]
    assert all(status.bottom_line for status in statuses)
    assert statuses[1].coverage is SignatureCoverageLevel.ENTIRE_FILE
    assert [status.signing_cert.dump() for status in statuses] == [
        world.officer.certificate.dump() if world.officer.certificate else None,
        world.seal.certificate.dump() if world.seal.certificate else None,
    ]

    # One audit event per step (two for the seal), each about the revision it made.
    events = document_events(world.engine)
    assert [event.action for event in events] == [
        Action.DOCUMENT_UPLOADED,
        Action.DOCUMENT_SIGNED,
        Action.DOCUMENT_SEALED,
        Action.DOCUMENT_ISSUED,
    ]
    sha = [r.sha256 for r in issued.revisions]
    assert [event.subject.document_sha256 for event in events] == [sha[0], sha[1], sha[2], sha[2]]
    assert events[1].subject.certificate_serial == world.officer.serial
    assert events[2].subject.certificate_serial == world.seal.serial
    assert [event.actor for event in events] == [SERVICE, OFFICER, CLERK, CLERK]
    assert all(event.details["document_id"] == uploaded.id for event in events)
    assert [event.details.get("revision") for event in events] == [0, 1, 2, None]
    assert events[2].details["number"] == events[3].details["number"] == 1
    assert events[3].details["number_text"] == "Số: 01/XN-CAP-BT"
    # The citizen's id number stays out of the (auditor-public) log.
    assert all("079203009999" not in event.leaf().decode() for event in events)


def test_steps_out_of_order_or_repeated_are_refused(world: World) -> None:
    registry = world.registry
    document = registry.upload(draft(), world.meta(), SERVICE)

    with pytest.raises(InvalidStateError, match="is draft; the seal step needs a signed") as e:
        registry.seal(document.id, world.seal.id, CLERK)
    assert (e.value.code, e.value.status) == ("signer.invalid_state", "draft")

    registry.sign(document.id, world.officer.id, OFFICER)
    with pytest.raises(InvalidStateError, match="is signed") as e:
        registry.sign(document.id, world.officer.id, OFFICER)
    assert e.value.status == "signed"

    registry.seal(document.id, world.seal.id, CLERK)
    for repeat in (
        lambda: registry.seal(document.id, world.seal.id, CLERK),
        lambda: registry.sign(document.id, world.officer.id, OFFICER),
    ):
        with pytest.raises(InvalidStateError, match="is issued") as e:
            repeat()
        assert e.value.status == "issued"

    assert world.signing.calls == Counter(officer=1, seal=1)
    assert len(registry.document(document.id).revisions) == 3
    assert counter(world.engine, world.unit_id, registry.document(document.id).year or 0) == 1

    for missing in (new_document_id(), "../../etc/passwd", "x" * 26, "", None):
        with pytest.raises(DocumentNotFoundError) as missed:
            registry.sign(missing, world.officer.id, OFFICER)  # type: ignore[arg-type]
        assert missed.value.code == "signer.document_not_found"
        with pytest.raises(DocumentNotFoundError):
            registry.document(missing)  # type: ignore[arg-type]
    with pytest.raises(DocumentNotFoundError, match="revision 3"):
        registry.pdf(document.id, 3)
    with pytest.raises(InvalidRequestError):
        registry.pdf(document.id, -1)


def test_credentials_must_fit_the_step_and_the_unit(world: World) -> None:
    authority, registry = world.authority, world.registry
    province = next(unit for unit in authority.units() if unit.kind is UnitKind.PROVINCE)
    other_unit = authority.add_unit(
        kind=UnitKind.COMMUNE,
        code="CAP-PTD",
        name="Công an phường Phú Thạnh",
        province=province.province,
        locality="Phường Phú Thạnh",
        parent_id=province.id,
        actor=ADMIN,
    ).id
    stranger = authority.add_person(
        unit_id=other_unit,
        role=PersonRole.OFFICER,
        full_name="Trần Thị Bình",
        position="Phó Trưởng Công an phường",
        cccd="079203005678",
        email="binh.tt@ca.hcm.gov.vn",
        actor=ADMIN,
    ).id
    other_officer = authority.enroll_person(stranger, ADMIN)
    other_seal = authority.enroll_seal(other_unit, ADMIN)
    document = registry.upload(draft(), world.meta(), SERVICE)

    refusals: list[tuple[Callable[[], Document], str]] = [
        (lambda: registry.sign(document.id, world.seal.id, OFFICER), "is a seal credential"),
        (lambda: registry.sign(document.id, other_officer.id, OFFICER), "belongs to unit"),
        (lambda: registry.sign(document.id, 999_999, OFFICER), "no credential 999999"),
    ]
    for attempt, message in refusals:
        with pytest.raises(WrongCredentialError, match=message) as e:
            attempt()
        assert e.value.code == "signer.wrong_credential"

    authority.suspend(world.officer.id, ADMIN)
    with pytest.raises(CredentialUnusableError, match="suspended"):
        registry.sign(document.id, world.officer.id, OFFICER)
    authority.resume(world.officer.id, ADMIN)
    registry.sign(document.id, world.officer.id, OFFICER)

    for credential, message in ((world.officer, "is a officer"), (other_seal, "belongs to unit")):
        with pytest.raises(WrongCredentialError, match=message):
            registry.seal(document.id, credential.id, CLERK)
    assert registry.document(document.id).status is DocumentStatus.SIGNED
    assert world.signing.calls == Counter(officer=1)
    assert actions(world.engine)[Action.DOCUMENT_SIGNED] == 1


# -- numbering ------------------------------------------------------------------------------


def test_numbers_are_gap_free_and_unique_under_concurrent_sealing(world: World) -> None:
    # Two registries on one database behave like two processes: only the database (row
    # locks on PostgreSQL, BEGIN IMMEDIATE and re-validation on SQLite) keeps them apart.
    registries = [world.registry, world.new_registry()]
    signed = [world.signed(text=str(i)) for i in range(16)]
    barrier = threading.Barrier(8)

    def seal(index: int) -> list[Document]:
        barrier.wait()
        registry = registries[index % 2]
        return [registry.seal(d.id, world.seal.id, CLERK) for d in signed[index::8]]

    with ThreadPoolExecutor(8) as executor:
        issued = [d for batch in executor.map(seal, range(8)) for d in batch]

    assert sorted(d.number or 0 for d in issued) == list(range(1, 17))
    year = issued[0].year
    assert year is not None
    assert all(d.year == year for d in issued)
    assert counter(world.engine, world.unit_id, year) == 16
    # Numbers follow the order of issue (Nghị định 30, Điều 15).
    by_number = sorted(issued, key=lambda d: d.number or 0)
    times = [d.issued_at for d in by_number]
    assert times == sorted(times, key=lambda t: t or datetime.min.replace(tzinfo=UTC))
    # Each sealed PDF carries the number it was recorded with.
    for document in issued:
        pdf = world.registry.pdf(document.id)
        sealed = PdfFileReader(BytesIO(pdf)).embedded_signatures[1]
        assert sealed.sig_object["/Reason"] == document.number_text
    counts = actions(world.engine)
    assert counts[Action.DOCUMENT_SEALED] == counts[Action.DOCUMENT_ISSUED] == 16


def test_a_failed_seal_consumes_no_number(world: World) -> None:
    outage = Outage(world.signing, failing={2})
    registry = world.new_registry(signing=outage)
    first, second, third = (world.signed(registry, text=str(i)) for i in range(3))

    assert registry.seal(first.id, world.seal.id, CLERK).number == 1
    with pytest.raises(HsmUnavailableError):
        registry.seal(second.id, world.seal.id, CLERK)
    failed = registry.document(second.id)
    assert failed.status is DocumentStatus.SIGNED
    assert len(failed.revisions) == 2
    year = registry.document(first.id).year or 0
    assert counter(world.engine, world.unit_id, year) == 1
    assert actions(world.engine)[Action.DOCUMENT_ISSUED] == 1

    # The number the failed seal would have had goes to the next seal; the failed document
    # is sealed later with the one after.
    assert registry.seal(third.id, world.seal.id, CLERK).number == 2
    assert registry.seal(second.id, world.seal.id, CLERK).number == 3


class FailingPuts(FilesystemBlobStore):
    """A blob store whose disk fails on the chosen puts (1-based)."""

    def __init__(self, root: Path, *, failing: set[int]) -> None:
        super().__init__(root)
        self._failing = failing
        self._count = itertools.count(1)

    def put(self, data: bytes) -> str:
        if next(self._count) in self._failing:
            raise BlobError("disk full", code="signer.blob_storage")
        return super().put(data)


def test_a_failure_after_the_seal_signature_rolls_the_number_back(
    world: World, tmp_path: Path
) -> None:
    # puts: draft, officer-signed, then the sealed PDF (the HSM has signed by then).
    blobs = FailingPuts(tmp_path / "failing", failing={3})
    registry = world.new_registry(blobs=blobs)
    document = world.signed(registry)

    with pytest.raises(BlobError, match="disk full"):
        registry.seal(document.id, world.seal.id, CLERK)
    assert world.signing.calls["seal"] == 1
    assert registry.document(document.id).status is DocumentStatus.SIGNED
    assert actions(world.engine)[Action.DOCUMENT_SEALED] == 0
    this_year = datetime.now(VIETNAM_TIME).year
    assert not counter(world.engine, world.unit_id, this_year)

    assert registry.seal(document.id, world.seal.id, CLERK).number == 1


def test_numbering_restarts_at_one_each_year_in_vietnam_time(world: World) -> None:
    moments = iter(
        [
            datetime(2025, 12, 31, 16, 59, 59, 900_000, tzinfo=UTC),  # 23:59:59 +07:00
            datetime(2025, 12, 31, 17, 0, 0, tzinfo=UTC),  # 00:00:00 on 1 January, +07:00
            datetime(2026, 1, 2, 1, 0, 0, tzinfo=UTC),
            # A clock a minute behind (another process's): the issue time does not go back.
            datetime(2026, 1, 2, 0, 59, 0, tzinfo=UTC),
        ]
    )
    now: list[datetime] = [datetime(2025, 12, 30, tzinfo=UTC)]
    registry = world.new_registry(clock=lambda: now[0])
    drafts = [world.signed(registry, text=str(i)) for i in range(4)]

    issued = []
    for document in drafts:
        now[0] = next(moments)
        issued.append(registry.seal(document.id, world.seal.id, CLERK))

    assert [(d.year, d.number, d.number_text) for d in issued] == [
        (2025, 1, "Số: 01/XN-CAP-BT"),
        (2026, 1, "Số: 01/XN-CAP-BT"),
        (2026, 2, "Số: 02/XN-CAP-BT"),
        (2026, 3, "Số: 03/XN-CAP-BT"),
    ]
    assert [d.issued_at for d in issued] == [
        datetime(2025, 12, 31, 23, 59, 59, tzinfo=VIETNAM_TIME),
        datetime(2026, 1, 1, 0, 0, 0, tzinfo=VIETNAM_TIME),
        datetime(2026, 1, 2, 8, 0, 0, tzinfo=VIETNAM_TIME),
        datetime(2026, 1, 2, 8, 0, 0, tzinfo=VIETNAM_TIME),
    ]
    assert counter(world.engine, world.unit_id, 2025) == 1
    assert counter(world.engine, world.unit_id, 2026) == 3


def test_number_text() -> None:
    assert format_number(7, "TB-CAP-BT") == "Số: 07/TB-CAP-BT"
    assert format_number(123, "XN-CAP-BT") == "Số: 123/XN-CAP-BT"
    assert DOCUMENT_TYPES["CT08"].abbreviation == "TB"


# -- idempotency ----------------------------------------------------------------------------


def test_repeated_requests_with_one_key_do_the_work_once(world: World) -> None:
    registry, original = world.registry, draft()
    first = registry.upload(original, world.meta(), SERVICE, idempotency_key="upload-1")
    again = registry.upload(original, world.meta(), SERVICE, idempotency_key="upload-1")
    assert again == first
    assert document_count(world.engine) == 1

    with pytest.raises(IdempotencyConflictError) as e:
        registry.upload(draft("other"), world.meta(), SERVICE, idempotency_key="upload-1")
    assert e.value.code == "signer.idempotency_conflict"
    with pytest.raises(IdempotencyConflictError):
        registry.upload(original, world.meta(service="portal"), SERVICE, idempotency_key="upload-1")
    # Keys are per actor: another service's "upload-1" is its own request.
    other = registry.upload(original, world.meta(), Actor(id="portal"), idempotency_key="upload-1")
    assert other.id != first.id

    signed = registry.sign(first.id, world.officer.id, OFFICER, idempotency_key="sign-1")
    assert registry.sign(first.id, world.officer.id, OFFICER, idempotency_key="sign-1") == signed
    with pytest.raises(IdempotencyConflictError):
        registry.sign(other.id, world.officer.id, OFFICER, idempotency_key="sign-1")
    with pytest.raises(IdempotencyConflictError):
        registry.sign(first.id, world.officer.id, OFFICER, idempotency_key="sign-1", placement=1)

    issued = registry.seal(first.id, world.seal.id, CLERK, idempotency_key="seal-1")
    assert registry.seal(first.id, world.seal.id, CLERK, idempotency_key="seal-1") == issued
    # A retry after the document moved on still answers with the document.
    assert registry.sign(first.id, world.officer.id, OFFICER, idempotency_key="sign-1") == issued

    assert world.signing.calls == Counter(officer=1, seal=1)
    counts = actions(world.engine)
    assert counts[Action.DOCUMENT_UPLOADED] == 2
    assert counts[Action.DOCUMENT_SIGNED] == 1
    assert counts[Action.DOCUMENT_SEALED] == counts[Action.DOCUMENT_ISSUED] == 1

    for bad in ("", "has space", "x" * 129, "ký", "tab\t"):
        with pytest.raises(InvalidRequestError, match="idempotency key"):
            registry.upload(original, world.meta(), SERVICE, idempotency_key=bad)


def test_racing_duplicates_sign_once(world: World) -> None:
    registries = [world.registry, world.new_registry()]
    original = draft()
    barrier = threading.Barrier(6)

    def upload(index: int) -> Document:
        barrier.wait()
        return registries[index % 2].upload(
            original, world.meta(), SERVICE, idempotency_key="race-upload"
        )

    with ThreadPoolExecutor(6) as executor:
        uploaded = list(executor.map(upload, range(6)))
    assert len({d.id for d in uploaded}) == 1
    assert document_count(world.engine) == 1
    document_id = uploaded[0].id

    def sign(index: int) -> Document:
        barrier.wait()
        return registries[index % 2].sign(
            document_id, world.officer.id, OFFICER, idempotency_key="race-sign"
        )

    with ThreadPoolExecutor(6) as executor:
        signed = list(executor.map(sign, range(6)))
    assert all(d == signed[0] for d in signed)
    assert len(signed[0].revisions) == 2

    def seal(index: int) -> Document:
        barrier.wait()
        return registries[index % 2].seal(
            document_id, world.seal.id, CLERK, idempotency_key="race-seal"
        )

    with ThreadPoolExecutor(6) as executor:
        issued = list(executor.map(seal, range(6)))
    assert all(d == issued[0] for d in issued)
    assert issued[0].number == 1

    counts = actions(world.engine)
    assert counts[Action.DOCUMENT_UPLOADED] == counts[Action.DOCUMENT_SIGNED] == 1
    assert counts[Action.DOCUMENT_SEALED] == counts[Action.DOCUMENT_ISSUED] == 1
    # PostgreSQL's row lock makes the losers wait and replay. SQLite signs outside its
    # write lock: across "processes" a loser may have signed before it saw the winner, but
    # its signature was discarded — never stored, audited or returned.
    most = 1 if world.engine.dialect.name == "postgresql" else 2
    assert 1 <= world.signing.calls["officer"] <= most
    assert 1 <= world.signing.calls["seal"] <= most


# -- bad input ------------------------------------------------------------------------------


def encrypted_pdf() -> bytes:
    writer = PdfFileWriter()
    writer.encrypt("owner-secret", "user-secret")
    out = BytesIO()
    writer.write(out)
    return out.getvalue()


def broken_startxref(pdf: bytes) -> bytes:
    head, _, tail = pdf.rpartition(b"startxref\n")
    offset, _, rest = tail.partition(b"\n")
    return head + b"startxref\n" + str(int(offset) + 7).encode() + b"\n" + rest


@pytest.mark.parametrize(
    ("data", "code", "message"),
    [
        (b"", "signer.not_pdf", "not a PDF"),
        (b"GIF89a" + bytes(100), "signer.not_pdf", "not a PDF"),
        (one_page_pdf()[:300], "signer.damaged_pdf", "truncated or damaged"),
        (one_page_pdf()[:-20], "signer.damaged_pdf", "truncated or damaged"),
        # pyHanko reads this one only when not strict (it guesses the xref's place).
        (broken_startxref(one_page_pdf()), "signer.damaged_pdf", "does not repair"),
        (
            one_page_pdf().replace(b"/Count 1", b"/Count 2"),
            "signer.damaged_pdf",
            "declares 2 pages but holds 1",
        ),
        (encrypted_pdf(), "signer.encrypted_pdf", "encrypted"),
        (pages_pdf(4), "signer.too_many_pages", "4 pages; the limit is 3"),
        (pages_pdf(3) + bytes(5000), "signer.too_large", "the limit is 5000 bytes"),
    ],
    ids=[
        "empty", "gif", "truncated", "no-eof", "broken-xref", "lying-count", "encrypted",
        "too-many-pages", "too-large",
    ],
)  # fmt: skip
def test_pdfs_the_registry_refuses(data: bytes, code: str, message: str) -> None:
    with pytest.raises(InvalidDocumentError, match=message) as e:
        inspect_pdf(data, max_size=5000, max_pages=3)
    assert e.value.code == code
    if code == "signer.too_large":
        assert isinstance(e.value, DocumentTooLargeError)
        assert e.value.limit == 5000
    if code == "signer.too_many_pages":
        assert isinstance(e.value, TooManyPagesError)
        assert e.value.limit == 3


def test_pdfs_the_registry_accepts() -> None:
    assert inspect_pdf(one_page_pdf(), max_size=10_000, max_pages=1) == 1
    assert inspect_pdf(pages_pdf(3), max_size=10_000, max_pages=3) == 3
    # Still strict-readable after an incremental update (a signed draft).
    assert PdfFileReader(BytesIO(pages_pdf(2)), strict=True).root["/Pages"]["/Count"] == 2


def test_refused_uploads_store_and_audit_nothing(world: World) -> None:
    registry = world.new_registry(max_size=5000, max_pages=2)
    refusals: list[tuple[Callable[[], object], type[SignerError], str]] = [
        (
            lambda: registry.upload(b"not a pdf", world.meta(), SERVICE),
            InvalidDocumentError,
            "not a PDF",
        ),
        (
            lambda: registry.upload(pages_pdf(3), world.meta(), SERVICE),
            TooManyPagesError,
            "limit is 2",
        ),
        (
            lambda: registry.upload(pages_pdf(1) + bytes(5000), world.meta(), SERVICE),
            DocumentTooLargeError,
            "limit is 5000 bytes",
        ),
        (
            lambda: registry.upload(draft(), world.meta(document_type="CT99"), SERVICE),
            UnknownDocumentTypeError,
            "unknown document type 'CT99'; known: CT07, CT08",
        ),
        (
            lambda: registry.upload(draft(), world.meta(unit_id=999_999), SERVICE),
            InvalidRequestError,
            "no unit 999999",
        ),
        (lambda: world.meta(subject_person_id="../x"), InvalidRequestError, "subject_person_id"),
        (lambda: world.meta(subject_person_id="1" * 33), InvalidRequestError, "1 to 32"),
        (lambda: world.meta(service=""), InvalidRequestError, "service"),
        (lambda: world.meta(title="a\u202eb"), InvalidRequestError, "control characters"),
        (lambda: world.meta(title="   "), InvalidRequestError, "title"),
        (lambda: world.meta(unit_id=True), InvalidRequestError, "unit_id"),
    ]
    for attempt, error, message in refusals:
        with pytest.raises(error, match=message):
            attempt()
    assert document_count(world.engine) == 0
    assert actions(world.engine)[Action.DOCUMENT_UPLOADED] == 0
    # An unknown unit is found only in the transaction, after the draft's blob was stored:
    # at most that one orphan, which is harmless (content-addressed, never listed).
    assert len([p for p in world.blobs.root.rglob("*") if p.is_file()]) <= 1

    document = registry.upload(draft(), world.meta(document_type="ct08"), SERVICE)
    assert (document.document_type, document.symbol) == ("CT08", "TB-CAP-BT")
    assert document.title == DOCUMENT_TYPES["CT08"].name


def test_a_corrupt_revision_is_never_served_or_signed(world: World) -> None:
    registry = world.registry
    document = registry.upload(draft(), world.meta(), SERVICE)
    path = world.blobs.path(document.latest.sha256)
    path.write_bytes(path.read_bytes().replace(b"Giay", b"Giay!", 1)[:-1])

    with pytest.raises(BlobError, match="corrupt") as e:
        registry.pdf(document.id)
    assert e.value.code == "signer.blob_corrupt"
    with pytest.raises(BlobError, match="corrupt"):
        registry.sign(document.id, world.officer.id, OFFICER)
    assert world.signing.calls["officer"] == 0
    assert registry.document(document.id).status is DocumentStatus.DRAFT


def test_document_ids_are_random_and_url_safe() -> None:
    ids = {new_document_id() for _ in range(2000)}
    assert len(ids) == 2000
    assert all(len(i) == 26 and i.isalnum() and i == i.lower() for i in ids)
    assert not any(set(i) & set("ilou") for i in ids)
