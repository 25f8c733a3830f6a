"""The registry with Decree-30 signatures at B-LT: the officer certifies visibly under his
title line, the clerk's seal fills the reserved field with the number and the QR link, and
the issued PDF validates offline — each signature intact, trusted, LTV-complete."""

from __future__ import annotations

from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import pytest
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.diff_analysis import ModificationLevel
from pyhanko.sign.validation import validate_pdf_signature
from sqlalchemy import Engine

from audit.events import Actor
from hsm import BlockingSessionPool
from pki.authority import Authority
from signer.blobs import FilesystemBlobStore
from signer.documents import Document, DocumentRegistry, DraftMetadata
from signer.errors import AnchorNotFoundError
from signer.images import StampImages
from signer.issuing import OFFICER_FIELD, SEAL_FIELD, DecreeSigning
from signer.service import SigningService
from signer.store import StampImageKind
from tests.pki.test_authority import ADMIN, add_officer, commune, make_authority
from tests.signer.test_levels import kyso_tsa
from tests.signer.test_ltv import offline_context
from tests.signer.test_pades import tool
from tests.signer.test_stamps import blue_signature_png, draft_pdf, red_seal_png, text_in

PUBLIC_URL = "https://kyso.example.gov.vn"
CLERK = Actor(id="clerk-1", role="clerk")


def registry(
    engine: Engine, pool: BlockingSessionPool, authority: Authority, tmp_path: Path
) -> tuple[DocumentRegistry, StampImages]:
    blobs = FilesystemBlobStore(tmp_path / "blobs")
    images = StampImages(engine=engine, blobs=blobs)
    service = SigningService(authority=authority, pool=pool, timestamper=kyso_tsa(authority))
    signing = DecreeSigning(service=service, authority=authority, images=images, level="B-LT")
    return (
        DocumentRegistry(
            engine=engine,
            blobs=blobs,
            signing=signing,
            authority=authority,
            public_url=PUBLIC_URL,
        ),
        images,
    )


@dataclass(frozen=True)
class Issued:
    """A CT07 document taken through the registry: uploaded, signed, sealed and issued."""

    registry: DocumentRegistry
    images: StampImages
    document: Document
    unit_id: int
    person_id: int

    @property
    def pdf(self) -> bytes:
        return self.registry.pdf(self.document.id)


def issue(
    engine: Engine,
    pool: BlockingSessionPool,
    authority: Authority,
    tmp_path: Path,
    *,
    with_images: bool = True,
) -> Issued:
    """The commune's officer signs and its seal issues a draft, with the stamp images set
    (``with_images``) or drawn as placeholders."""
    unit_id = commune(authority)
    person_id = add_officer(authority, unit_id)
    officer = authority.enroll_person(person_id, ADMIN)
    seal = authority.enroll_seal(unit_id, ADMIN)
    documents, images = registry(engine, pool, authority, tmp_path)
    if with_images:
        images.set(StampImageKind.OFFICER, person_id, blue_signature_png(), ADMIN)
        images.set(StampImageKind.SEAL, unit_id, red_seal_png(), ADMIN)
    draft = documents.upload(
        draft_pdf(),
        DraftMetadata(
            document_type="CT07",
            unit_id=unit_id,
            service="residence",
            subject_person_id="079203001234",
        ),
        CLERK,
    )
    documents.sign(draft.id, officer.id, Actor(id="officer-1", role="officer"))
    issued = documents.seal(draft.id, seal.id, CLERK)
    return Issued(documents, images, issued, unit_id, person_id)


def test_issued_document_carries_both_stamps_and_validates_offline(
    engine: Engine, pool: BlockingSessionPool, tmp_path: Path
) -> None:
    authority = make_authority(engine, pool)
    done = issue(engine, pool, authority, tmp_path)
    assert done.images.get(StampImageKind.SEAL, done.unit_id) == red_seal_png()
    issued = done.document
    assert issued.number_text is not None
    pdf = done.pdf

    reader = PdfFileReader(BytesIO(pdf))
    signatures = reader.embedded_regular_signatures
    assert [s.field_name for s in signatures] == [OFFICER_FIELD, SEAL_FIELD]
    context = offline_context(reader, authority)
    officer_status = validate_pdf_signature(signatures[0], context)
    seal_status = validate_pdf_signature(signatures[1], context)
    for status in (officer_status, seal_status):
        assert status.bottom_line, status.summary()
        assert status.timestamp_validity is not None
    assert officer_status.docmdp_ok
    assert officer_status.modification_level is ModificationLevel.FORM_FILLING
    assert seal_status.modification_level is ModificationLevel.LTA_UPDATES

    x1, y1, x2, y2 = (float(x) for x in signatures[1].sig_field["/Rect"])  # merged widget
    text = text_in(pdf, tmp_path, (x1, y1, x2, y2))
    assert "Công an phường Bến Thành" in text
    assert issued.number_text in text
    path = tmp_path / "issued.pdf"
    path.write_bytes(pdf)
    assert tool("qpdf", "--check", path).returncode == 0


def test_without_placement_the_officer_title_line_must_be_on_the_page(
    engine: Engine, pool: BlockingSessionPool, tmp_path: Path
) -> None:
    authority = make_authority(engine, pool)
    unit_id = commune(authority)
    officer = authority.enroll_person(add_officer(authority, unit_id), ADMIN)
    documents, _ = registry(engine, pool, authority, tmp_path)
    draft = documents.upload(
        draft_pdf([(72, 700, 11, "Không có dòng chức danh", False)]),
        DraftMetadata(
            document_type="CT07",
            unit_id=unit_id,
            service="residence",
            subject_person_id="079203001234",
        ),
        CLERK,
    )
    with pytest.raises(AnchorNotFoundError):
        documents.sign(draft.id, officer.id, Actor(id="officer-1", role="officer"))
    assert documents.document(draft.id).status.value == "draft"
