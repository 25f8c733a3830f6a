"""Visible signatures (Nghị định 30/2020, Phụ lục I): the officer signs visibly and certifies,
the clerk seals over the left third of the officer's signature; pyHanko, qpdf and pdfsig
accept both; the Vietnamese text comes back out of the stamp; the sealed page renders as
the reviewed reference image."""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime, timedelta, timezone
from io import BytesIO
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageDraw, ImageStat
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.generic import pdf_name
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.pdf_utils.writer import PageObject, PdfFileWriter
from pyhanko.sign.diff_analysis import ModificationLevel
from pyhanko.sign.fields import MDPPerm, SigFieldSpec, append_signature_field
from pyhanko.sign.validation import validate_pdf_signature
from sqlalchemy import Engine

from hsm import BlockingSessionPool
from pki.authority import Authority
from signer.cms import SigningCredential
from signer.errors import (
    AnchorNotFoundError,
    BadImageError,
    BadPlacementError,
    BadStampTextError,
    FieldNotFoundError,
)
from signer.pades import sign_pdf
from signer.placement import AnchorPlacement, FieldPlacement, Rect, RectPlacement
from signer.stamps import (
    MM,
    VisibleSignature,
    attachment_signature,
    copy_signature,
    font_engine,
    officer_signature,
    printed_time,
    seal_signature,
)
from tests.pki.test_authority import ADMIN, add_officer, commune, make_authority
from tests.signer.test_pades import tool, validation_context

REFERENCE = Path(__file__).parent / "reference" / "sealed_page1.png"
TITLE = "TRƯỞNG CÔNG AN PHƯỜNG"
AGENCY = "CÔNG AN PHƯỜNG BẾN THÀNH"
OFFICER = "Nguyễn Văn Ánh"
SIGNED_AT = datetime(2026, 11, 23, 7, 5, 9, tzinfo=UTC)  # 14:05:09 in Vietnam
VERIFY_URL = "https://kyso.example.gov.vn/v/3f6c2a9e-5b1d-4c8e-9a7f-0d2e4b6c8a1f"

# A CT07-like draft: (x, baseline, size, text, centred)
DRAFT_LINES = [
    (160, 770, 11, "CÔNG AN TP. HỒ CHÍ MINH", True),
    (160, 756, 11, AGENCY, True),
    (420, 770, 11, "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", True),
    (420, 756, 11, "Độc lập - Tự do - Hạnh phúc", True),
    (297, 705, 14, "XÁC NHẬN THÔNG TIN VỀ CƯ TRÚ", True),
    (72, 665, 11, "Công an phường Bến Thành xác nhận bà Trần Thị Bích Ngọc,", False),
    (72, 649, 11, "số định danh cá nhân 079203001234, đang cư trú tại địa chỉ:", False),
    (72, 633, 11, "số 12 đường Lê Lợi, phường Bến Thành, Thành phố Hồ Chí Minh.", False),
    (420, 560, 11, TITLE, True),
    (420, 440, 11, "Đại tá Nguyễn Văn Ánh", True),
]


def draft_pdf(lines: list[tuple[float, float, float, str, bool]] = DRAFT_LINES) -> bytes:
    """A one-page A4 PDF with Vietnamese text in an embedded DejaVu Serif subset."""
    writer = PdfFileWriter(stream_xrefs=False)
    engine = font_engine(writer)
    operations = []
    for x, baseline, size, text, centred in lines:
        engine.font_size = size
        shaped = engine.shape(text)
        left = x - shaped.x_advance * size / 2 if centred else x
        operations.append(
            b"BT /F1 %g Tf %g %g Td %s ET" % (size, left, baseline, shaped.graphics_ops)
        )
    contents = writer.add_object(generic.StreamObject(stream_data=b"\n".join(operations)))
    resources_dict = generic.DictionaryObject(
        {pdf_name("/Font"): generic.DictionaryObject({pdf_name("/F1"): engine.as_resource()})}
    )
    writer.insert_page(PageObject(contents, (0, 0, 595, 842), resources_dict))
    out = BytesIO()
    writer.write(out)
    return out.getvalue()


def blue_signature_png(dpi: int | None = None) -> bytes:
    """A transparent 600x240 PNG: a blue scrawl, like a scanned handwritten signature."""
    image = Image.new("RGBA", (600, 240), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    ink = (20, 45, 160, 255)
    draw.line([(40, 170), (140, 40), (200, 190), (290, 60), (360, 180)], fill=ink, width=9)
    draw.arc((330, 40, 560, 200), start=150, end=400, fill=ink, width=9)
    draw.line([(60, 210), (560, 195)], fill=ink, width=5)
    out = BytesIO()
    image.save(out, "PNG", **({"dpi": (dpi, dpi)} if dpi else {}))
    return out.getvalue()


def red_seal_png(pixels: int = 425, dpi: int | None = 300) -> bytes:
    image = Image.new("RGBA", (pixels, pixels), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.ellipse((4, 4, pixels - 4, pixels - 4), outline=(210, 16, 16, 255), width=12)
    out = BytesIO()
    image.save(out, "PNG", **({"dpi": (dpi, dpi)} if dpi else {}))
    return out.getvalue()


class Parties:
    """An authority with an officer and the officer's unit seal, both ready to sign."""

    def __init__(self, engine: Engine, pool: BlockingSessionPool) -> None:
        self.authority: Authority = make_authority(engine, pool)
        self.pool = pool
        unit = commune(self.authority)
        chain = self.authority.internal_chain()
        self.officer = SigningCredential.prepare(
            self.authority.enroll_person(add_officer(self.authority, unit), ADMIN), chain
        )
        self.seal = SigningCredential.prepare(self.authority.enroll_seal(unit, ADMIN), chain)

    def sign(
        self, pdf: bytes, appearance: VisibleSignature, *, seal: bool = False, certify: bool = False
    ) -> bytes:
        credential = self.seal if seal else self.officer
        return sign_pdf(
            pdf, credential, self.pool, usable=None, appearance=appearance, certify=certify
        )


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite only: the stamps never reach the database; the PKI's tests cover both."""
    return f"sqlite:///{tmp_path / 'kyso-test.db'}"


@pytest.fixture
def parties(engine: Engine, pool: BlockingSessionPool) -> Parties:
    return Parties(engine, pool)


def sealed_document(parties: Parties, *, certify: bool = True, reserve: bool = True) -> bytes:
    """The deterministic document of the reference image: officer placeholder signature
    by anchor (certifying, seal field reserved), then the placeholder seal."""
    draft = draft_pdf()
    officer = officer_signature(
        draft,
        AnchorPlacement(text=TITLE),
        signature_png=None,
        officer_name=OFFICER,
        field_name="Officer",
        reserve_seal_field="Seal" if reserve else None,
    )
    signed = parties.sign(draft, officer, certify=certify)
    seal = seal_signature(
        signed,
        officer_field="Officer",
        seal_png=None,
        agency_name=AGENCY,
        signed_at=SIGNED_AT,
        verify_url=VERIFY_URL,
        field_name="Seal",
    )
    return parties.sign(signed, seal, seal=True)


def validated(pdf: bytes, parties: Parties) -> list[tuple[object, object]]:
    """Every embedded signature with its pyHanko status (difference analysis included)."""
    signatures = PdfFileReader(BytesIO(pdf)).embedded_signatures
    context = validation_context(parties.authority)
    return [(s, validate_pdf_signature(s, context)) for s in signatures]


def checked_by_tools(pdf: bytes, tmp_path: Path, signatures: int) -> None:
    path = tmp_path / "signed.pdf"
    path.write_bytes(pdf)
    checked = tool("qpdf", "--check", path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    reported = tool("pdfsig", path)
    assert reported.returncode == 0, reported.stderr
    assert reported.stdout.count("Signature Field Name:") == signatures
    assert reported.stdout.count("Signature is Valid") == signatures


def text_in(pdf: bytes, tmp_path: Path, rect: Rect) -> str:
    """The text pdftotext reads inside ``rect`` (page 1, PDF points)."""
    path = tmp_path / "text.pdf"
    path.write_bytes(pdf)
    height = PdfFileReader(BytesIO(pdf)).root["/Pages"]["/Kids"][0]["/MediaBox"][3]
    x1, y1, x2, y2 = (round(v) for v in rect)
    crop = ["-x", str(x1), "-y", str(round(height) - y2), "-W", str(x2 - x1), "-H", str(y2 - y1)]
    extracted = tool("pdftotext", "-r", "72", "-f", "1", "-l", "1", *crop, path, "-")
    assert extracted.returncode == 0, extracted.stderr
    return " ".join(extracted.stdout.split())


def test_certified_officer_signature_then_seal_validate_everywhere(
    parties: Parties, tmp_path: Path
) -> None:
    sealed = sealed_document(parties)

    (officer, officer_status), (seal, seal_status) = validated(sealed, parties)
    for status in (officer_status, seal_status):
        assert status.intact
        assert status.valid
        assert status.trusted
    assert officer.field_name == "Officer"
    assert officer.docmdp_level is MDPPerm.FILL_FORMS
    assert officer_status.docmdp_ok
    # the seal, filled into the field reserved under the certification, is form filling
    assert officer_status.modification_level is ModificationLevel.FORM_FILLING
    assert seal.field_name == "Seal"
    assert seal.docmdp_level is None
    assert seal_status.docmdp_ok
    assert seal.self_reported_timestamp == SIGNED_AT
    assert officer_status.bottom_line
    assert seal_status.bottom_line
    checked_by_tools(sealed, tmp_path, signatures=2)


def test_a_new_visible_field_after_certification_is_not_allowed(parties: Parties) -> None:
    """Why the seal field is reserved: pyHanko rejects a new visible field after DocMDP."""
    sealed = sealed_document(parties, certify=True, reserve=False)
    (_, officer_status), _ = validated(sealed, parties)
    assert officer_status.intact
    assert not officer_status.docmdp_ok
    assert not officer_status.bottom_line


def test_seal_covers_the_left_third_of_the_officer_image_at_real_size(
    parties: Parties, tmp_path: Path
) -> None:
    draft = draft_pdf()
    officer = officer_signature(
        draft,
        RectPlacement(page=1, rect=(330, 470, 510, 550)),
        signature_png=blue_signature_png(),
        officer_name=OFFICER,
        field_name="Officer",
    )
    assert officer.image_rect is not None
    ox1, oy1, ox2, oy2 = officer.image_rect
    # the 600x240 image fills the 180x80 box's width, centred: 180x72
    assert (ox2 - ox1, oy2 - oy1) == pytest.approx((180, 72))
    assert officer.rect == (330, 474, 510, 546)
    signed = parties.sign(draft, officer)

    seal = seal_signature(
        signed,
        officer_field="Officer",
        seal_png=red_seal_png(pixels=472, dpi=300),  # 40 mm
        agency_name=AGENCY,
        signed_at=SIGNED_AT,
        verify_url=VERIFY_URL,
        field_name="Seal",
    )
    assert seal.image_rect is not None
    sx1, sy1, sx2, sy2 = seal.image_rect
    assert sx2 - sx1 == pytest.approx(40 * MM, abs=0.2)
    assert sy2 - sy1 == pytest.approx(40 * MM, abs=0.2)
    # overlaps the officer's image from its left edge to a third of its width
    assert sx1 < ox1 < sx2
    assert (sx2 - ox1) / (ox2 - ox1) == pytest.approx(1 / 3, abs=0.02)
    assert (sy1 + sy2) / 2 == pytest.approx((oy1 + oy2) / 2)
    assert seal.rect[0] < sx1  # the QR code and text are left of the seal
    sealed = parties.sign(signed, seal, seal=True)

    (_, officer_status), (_, seal_status) = validated(sealed, parties)
    assert officer_status.bottom_line
    assert seal_status.bottom_line
    assert officer_status.modification_level is ModificationLevel.FORM_FILLING
    checked_by_tools(sealed, tmp_path, signatures=2)


def test_officer_signs_into_an_existing_empty_field(parties: Parties, tmp_path: Path) -> None:
    writer = IncrementalPdfFileWriter(BytesIO(draft_pdf()))
    append_signature_field(
        writer, SigFieldSpec(sig_field_name="ChuKy", on_page=0, box=(340, 460, 500, 540))
    )
    template = BytesIO()
    writer.write(template)

    officer = officer_signature(
        template.getvalue(),
        FieldPlacement(name="ChuKy"),
        signature_png=blue_signature_png(),
        officer_name=OFFICER,
        field_name="ChuKy",
    )
    assert officer.new_fields == ()
    assert officer.rect == (340, 460, 500, 540)
    signed = parties.sign(template.getvalue(), officer, certify=True)
    ((signature, status),) = validated(signed, parties)
    assert signature.field_name == "ChuKy"
    assert status.bottom_line
    checked_by_tools(signed, tmp_path, signatures=1)


def test_stamp_text_comes_back_in_vietnamese(parties: Parties, tmp_path: Path) -> None:
    """The agency name and the time are real text in an embedded font: no tofu."""
    draft = draft_pdf()
    signed = parties.sign(
        draft,
        officer_signature(
            draft,
            AnchorPlacement(text="trưởng công an phường", page=1),  # case-insensitive
            signature_png=blue_signature_png(),
            officer_name=OFFICER,
            field_name="Officer",
        ),
    )
    seal = seal_signature(
        signed,
        officer_field="Officer",
        seal_png=red_seal_png(),
        agency_name="Công an xã Đắk Ơ, tỉnh Bình Phước",
        signed_at=datetime(2026, 11, 23, 14, 5, 9, tzinfo=timezone(timedelta(hours=7))),
        verify_url=VERIFY_URL,
        field_name="Seal",
        number="07/XN-CAX-ĐƠ",
    )
    sealed = parties.sign(signed, seal, seal=True)
    text = text_in(sealed, tmp_path, seal.rect)
    assert "Công an xã Đắk Ơ, tỉnh Bình Phước" in text
    assert "Số: 07/XN-CAX-ĐƠ" in text
    assert "2026-11-23T14:05:09+07:00" in text


@pytest.mark.parametrize(
    ("builder", "lines"),
    [
        (
            lambda pdf: attachment_signature(
                pdf, number="12/XN-CAP-BT", signed_at=SIGNED_AT, field_name="Attachment"
            ),
            ["Số: 12/XN-CAP-BT", "2026-11-23T14:05:09+07:00"],
        ),
        (
            lambda pdf: copy_signature(
                pdf,
                copy_type="SAO Y",
                agency_name="Công an phường Bến Thành",
                signed_at=SIGNED_AT,
                field_name="Copy",
            ),
            ["SAO Y", "Công an phường Bến Thành", "2026-11-23T14:05:09+07:00"],
        ),
    ],
)
def test_attachment_and_copy_signatures_go_top_right_of_page_one(
    parties: Parties, tmp_path: Path, builder: object, lines: list[str]
) -> None:
    draft = draft_pdf()
    appearance = builder(draft)  # type: ignore[operator]
    assert appearance.page_index == 0
    assert appearance.image_rect is None
    x1, _, x2, y2 = appearance.rect
    assert 595 - 15 * MM - 1 <= x2 <= 595 - 15 * MM + 1
    assert 842 - 7 * MM - 1 <= y2 <= 842 - 7 * MM + 1
    assert x1 > 595 / 2
    signed = parties.sign(draft, appearance)
    ((_, status),) = validated(signed, parties)
    assert status.bottom_line
    assert text_in(signed, tmp_path, appearance.rect) == " ".join(lines)


def test_placement_errors_have_stable_codes(parties: Parties) -> None:
    draft = draft_pdf()

    def officer(placement: object, **overrides: object) -> VisibleSignature:
        options: dict[str, object] = {
            "signature_png": None,
            "officer_name": OFFICER,
            "field_name": "Officer",
        }
        options.update(overrides)
        return officer_signature(draft, placement, **options)  # type: ignore[arg-type]

    with pytest.raises(FieldNotFoundError, match="no signature field named 'Nope'") as missing:
        officer(FieldPlacement(name="Nope"), field_name="Nope")
    assert missing.value.code == "signer.field_not_found"
    with pytest.raises(AnchorNotFoundError, match="PHÓ TRƯỞNG") as anchor:
        officer(AnchorPlacement(text="PHÓ TRƯỞNG CÔNG AN"))
    assert anchor.value.code == "signer.anchor_not_found"
    with pytest.raises(BadPlacementError, match="page 2 is not in the document") as page:
        officer(RectPlacement(page=2, rect=(300, 400, 500, 480)))
    assert page.value.code == "signer.bad_placement"
    with pytest.raises(BadPlacementError, match="not inside page 1"):
        officer(RectPlacement(page=1, rect=(500, 400, 700, 480)))
    with pytest.raises(BadPlacementError, match="smaller than"):
        officer(RectPlacement(page=1, rect=(300, 400, 302, 480)))
    with pytest.raises(FieldNotFoundError, match="'Officer'"):
        seal_signature(
            draft,
            officer_field="Officer",
            seal_png=None,
            agency_name=AGENCY,
            signed_at=SIGNED_AT,
            verify_url=VERIFY_URL,
            field_name="Seal",
        )


def test_bad_images_and_texts_have_stable_codes(parties: Parties) -> None:
    draft = draft_pdf()
    rect = RectPlacement(page=1, rect=(330, 470, 510, 550))

    def officer(png: bytes | None, name: str = OFFICER) -> VisibleSignature:
        return officer_signature(
            draft, rect, signature_png=png, officer_name=name, field_name="Officer"
        )

    with pytest.raises(BadImageError, match="larger than 2097152 bytes") as oversized:
        officer(blue_signature_png() + b"\0" * (2 * 1024 * 1024))
    assert oversized.value.code == "signer.bad_image"
    huge = BytesIO()
    Image.new("RGBA", (4001, 10)).save(huge, "PNG")
    with pytest.raises(BadImageError, match="4001x10 pixels"):
        officer(huge.getvalue())
    jpeg = BytesIO()
    Image.new("RGB", (10, 10)).save(jpeg, "JPEG")
    with pytest.raises(BadImageError, match="not a PNG"):
        officer(jpeg.getvalue())
    with pytest.raises(BadImageError, match="cannot be decoded"):
        officer(blue_signature_png()[:200])
    with pytest.raises(BadStampTextError, match="U\\+4E2D") as tofu:
        officer(None, name="Nguyễn 中")
    assert tofu.value.code == "signer.bad_stamp_text"

    signed = parties.sign(draft, officer(None))

    def seal(**overrides: object) -> VisibleSignature:
        options: dict[str, object] = {
            "officer_field": "Officer",
            "seal_png": None,
            "agency_name": AGENCY,
            "signed_at": SIGNED_AT,
            "verify_url": VERIFY_URL,
            "field_name": "Seal",
        }
        options.update(overrides)
        return seal_signature(signed, **options)  # type: ignore[arg-type]

    with pytest.raises(BadImageError, match="would print 144 mm"):
        seal(seal_png=red_seal_png(pixels=408, dpi=72))
    with pytest.raises(BadStampTextError, match="time zone"):
        seal(signed_at=SIGNED_AT.replace(tzinfo=None))
    with pytest.raises(BadStampTextError, match="http"):
        seal(verify_url="javascript:alert(1)")
    with pytest.raises(BadStampTextError, match="1 to 160 characters"):
        seal(agency_name="A" * 161)


def test_printed_time_is_iso_8601_in_vietnam() -> None:
    assert printed_time(SIGNED_AT) == "2026-11-23T14:05:09+07:00"
    assert printed_time(SIGNED_AT.astimezone(timezone(timedelta(hours=-5)))) == (
        "2026-11-23T14:05:09+07:00"
    )


def rendered_page(pdf: bytes, directory: Path) -> Image.Image:
    path = directory / "page.pdf"
    path.write_bytes(pdf)
    rendered = tool("pdftoppm", "-png", "-r", "72", "-f", "1", "-l", "1", path, directory / "page")
    assert rendered.returncode == 0, rendered.stderr
    (png,) = directory.glob("page*.png")
    with Image.open(png) as image:
        return image.convert("RGB")


def difference(image: Image.Image, reference: Image.Image, box: tuple[int, int, int, int]) -> float:
    """Mean absolute difference of the pixels in ``box``, as a fraction of full scale."""
    delta = ImageChops.difference(image.crop(box), reference.crop(box))
    return sum(ImageStat.Stat(delta).mean) / 3 / 255


# the signature block at 72 dpi, pixels from the top left: the QR and text column, the
# seal and the officer's signature
SIGNATURE_BLOCK = (150, 250, 520, 390)


def test_sealed_page_matches_the_reviewed_reference(parties: Parties, tmp_path: Path) -> None:
    """Rendered by poppler at 72 dpi; ``KYSO_UPDATE_REFERENCE=1`` rewrites the reference
    (review it before committing: blue signature, red seal over its left third, legible
    Vietnamese, QR code)."""
    assert shutil.which("pdftoppm"), "pdftoppm (poppler-utils) is not installed"
    page = rendered_page(sealed_document(parties), tmp_path)
    if os.environ.get("KYSO_UPDATE_REFERENCE") == "1":
        REFERENCE.parent.mkdir(exist_ok=True)
        page.save(REFERENCE, optimize=True)
    with Image.open(REFERENCE) as stored:
        reference = stored.convert("RGB")
    assert page.size == reference.size
    whole = (0, 0, *page.size)
    assert difference(page, reference, SIGNATURE_BLOCK) < 0.02
    assert difference(page, reference, whole) < 0.005
    # the comparison can fail: the page without the seal is far from the reference
    (tmp_path / "draft").mkdir()
    unsealed = rendered_page(draft_pdf(), tmp_path / "draft")
    assert difference(unsealed, reference, SIGNATURE_BLOCK) > 0.05
