"""Revision analysis: what each incremental update changed, and thumbnails of it."""

from __future__ import annotations

import base64
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.generic import pdf_name
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.pdf_utils.writer import PdfFileWriter
from pyhanko.sign.fields import SigFieldSpec, append_signature_field
from sqlalchemy import Engine

from bench.signer_bench import assemble_pdf
from hsm import BlockingSessionPool
from tests.pki.test_authority import make_authority
from tests.verifier.fixtures import signed
from verifier import revisions
from verifier.errors import UnreadableDocumentError
from verifier.revisions import describe_reader_revisions, describe_revisions


def _stream(writer: PdfFileWriter | IncrementalPdfFileWriter, text: str) -> generic.IndirectObject:
    content = f"BT /F1 24 Tf 72 700 Td ({text}) Tj ET".encode("ascii")
    return writer.add_object(generic.StreamObject(stream_data=content))


def _page(writer: PdfFileWriter | IncrementalPdfFileWriter, text: str) -> generic.DictionaryObject:
    font = generic.DictionaryObject(
        {
            pdf_name("/Type"): pdf_name("/Font"),
            pdf_name("/Subtype"): pdf_name("/Type1"),
            pdf_name("/BaseFont"): pdf_name("/Helvetica"),
        }
    )
    return generic.DictionaryObject(
        {
            pdf_name("/Type"): pdf_name("/Page"),
            pdf_name("/MediaBox"): generic.ArrayObject(
                [generic.NumberObject(v) for v in (0, 0, 595, 842)]
            ),
            pdf_name("/Resources"): generic.DictionaryObject(
                {pdf_name("/Font"): generic.DictionaryObject({pdf_name("/F1"): font})}
            ),
            pdf_name("/Contents"): _stream(writer, text),
        }
    )


def three_pages() -> bytes:
    writer = PdfFileWriter()
    for number in (1, 2, 3):
        writer.insert_page(_page(writer, f"Page {number}"))
    out = BytesIO()
    writer.write(out)
    return out.getvalue()


def update(data: bytes, change: str) -> bytes:
    """``data`` plus one incremental update making ``change``."""
    writer = IncrementalPdfFileWriter(BytesIO(data), strict=True)
    if change == "page2_content":
        page_ref = writer.find_page_for_modification(1)[0]
        page = page_ref.get_object()
        page[pdf_name("/Contents")] = _stream(writer, "Changed")
        writer.mark_update(page_ref)
    elif change == "annotation_page1":
        annot = generic.DictionaryObject(
            {
                pdf_name("/Type"): pdf_name("/Annot"),
                pdf_name("/Subtype"): pdf_name("/Text"),
                pdf_name("/Rect"): generic.ArrayObject(
                    [generic.NumberObject(v) for v in (10, 10, 30, 30)]
                ),
                pdf_name("/Contents"): generic.TextStringObject("Ghi chú <&>"),
            }
        )
        writer.register_annotation(
            writer.find_page_for_modification(0)[0], writer.add_object(annot)
        )
    elif change == "new_page":
        writer.insert_page(_page(writer, "Page 4"))
    elif change == "signature_field":
        append_signature_field(writer, SigFieldSpec("Sig1", box=(10, 10, 100, 50), on_page=2))
    elif change == "nothing_visible":
        info = writer.add_object(
            generic.DictionaryObject({pdf_name("/Title"): generic.TextStringObject("x")})
        )
        writer.set_custom_trailer_entry(pdf_name("/Info"), info)
    else:  # pragma: no cover
        raise AssertionError(change)
    out = BytesIO()
    writer.write(out)
    return out.getvalue()


def test_single_revision_lists_every_page() -> None:
    data = three_pages()
    (rev,) = describe_revisions(data)
    assert rev["index"] == 0
    assert rev["changed_pages"] == [1, 2, 3]
    assert rev["changes"] == {"pages_added": 3, "annotations_changed": 0, "form_fields_changed": 0}
    assert rev["end"] == len(data.rstrip()) or data[: rev["end"]].rstrip().endswith(b"%%EOF")
    assert "thumbnails" not in rev
    assert "truncated" not in rev


@pytest.mark.parametrize(
    ("change", "pages", "changes"),
    [
        ("page2_content", [2], (0, 0, 0)),
        ("annotation_page1", [1], (0, 1, 0)),
        ("new_page", [4], (1, 0, 0)),
        ("signature_field", [3], (0, 1, 1)),
        ("nothing_visible", [], (0, 0, 0)),
    ],
)
def test_update_changes(change: str, pages: list[int], changes: tuple[int, int, int]) -> None:
    base = three_pages()
    data = update(base, change)
    first, second = describe_revisions(data)
    assert first["changed_pages"] == [1, 2, 3]
    assert second["index"] == 1
    assert second["changed_pages"] == pages
    assert second["changes"] == dict(
        zip(("pages_added", "annotations_changed", "form_fields_changed"), changes, strict=True)
    )
    # The end of revision 0 is where the original file ended: the prefix is that file.
    assert data[: first["end"]].rstrip() == base.rstrip()
    assert second["end"] is not None
    assert data[: second["end"]].rstrip() == data.rstrip()


def test_three_updates_each_compared_with_the_one_before() -> None:
    data = update(update(update(three_pages(), "page2_content"), "nothing_visible"), "new_page")
    result = describe_revisions(data)
    assert [r["changed_pages"] for r in result] == [[1, 2, 3], [2], [], [4]]
    assert [r["end"] for r in result] == sorted(r["end"] for r in result)


def test_reader_variant_agrees() -> None:
    data = update(three_pages(), "annotation_page1")
    reader = PdfFileReader(BytesIO(data), strict=True)
    assert describe_reader_revisions(reader, data) == describe_revisions(data)


def _png(thumbnail: dict[str, Any]) -> Image.Image:
    raw = base64.b64decode(thumbnail["png_base64"])
    assert raw.startswith(b"\x89PNG\r\n\x1a\n")
    return Image.open(BytesIO(raw))


def test_thumbnails_of_changed_pages_at_requested_width() -> None:
    data = update(three_pages(), "page2_content")
    first, second = describe_revisions(data, thumbnails=True, thumbnail_width=120)
    assert [t["page"] for t in first["thumbnails"]] == [1]
    assert [t["page"] for t in second["thumbnails"]] == [2]
    for thumbnail in (*first["thumbnails"], *second["thumbnails"]):
        image = _png(thumbnail)
        assert image.width == 120
        assert image.height == round(120 * 842 / 595)
    # Rendered from each revision's own bytes: the old and new page 2 differ, and the new
    # page 2 is not page 1 of revision 0.
    assert second["thumbnails"][0]["png_base64"] != first["thumbnails"][0]["png_base64"]


def test_thumbnails_are_capped_latest_revisions_first() -> None:
    data = update(update(three_pages(), "page2_content"), "new_page")
    result = describe_revisions(data, thumbnails=True, max_thumbnails=1)
    assert [len(r["thumbnails"]) for r in result] == [0, 0, 1]
    assert result[2]["thumbnails"][0]["page"] == 4
    none = describe_revisions(data, thumbnails=True, max_thumbnails=0)
    assert all(r["thumbnails"] == [] for r in none)


def test_bad_thumbnail_arguments_and_unreadable_input() -> None:
    with pytest.raises(ValueError, match="thumbnail_width"):
        describe_revisions(three_pages(), thumbnails=True, thumbnail_width=5000)
    with pytest.raises(UnreadableDocumentError):
        describe_revisions(b"not a pdf at all")


def test_page_bound_marks_revision_truncated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(revisions, "MAX_PAGES", 2)
    first, second = describe_revisions(update(three_pages(), "page2_content"))
    assert first["truncated"] is True
    assert first["changed_pages"] == [1, 2]
    assert second["truncated"] is True
    assert second["changed_pages"] == [2]


def test_object_bound_counts_page_as_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(revisions, "MAX_OBJECTS_PER_PAGE", 1)
    _, second = describe_revisions(update(three_pages(), "nothing_visible"))
    # Nothing visible changed, but nothing could be proven unchanged either.
    assert second["truncated"] is True
    assert second["changed_pages"] == [1, 2, 3]


def test_revision_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(revisions, "MAX_REVISIONS", 2)
    data = update(update(three_pages(), "page2_content"), "new_page")
    result = describe_revisions(data)
    assert len(result) == 2
    assert result[1].get("truncated") is True


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite only: the verifier never touches the database; the signer's fixtures do."""
    return f"sqlite:///{tmp_path / 'kyso-test.db'}"


def test_kyso_b_lt_document(engine: Engine, pool: BlockingSessionPool) -> None:
    data = signed(make_authority(engine, pool), pool, "B-LT")
    result = describe_revisions(data, thumbnails=True)
    assert [r["index"] for r in result] == [0, 1, 2]
    original, signature, dss = result
    assert original["changed_pages"] == [1]
    # The signature revision fills the signature field (its widget is on page 1).
    assert signature["changed_pages"] == [1]
    assert signature["changes"]["form_fields_changed"] == 1
    # The DSS revision adds validation data only: no page, annotation or field changes.
    assert dss["changed_pages"] == []
    assert dss["changes"] == {"pages_added": 0, "annotations_changed": 0, "form_fields_changed": 0}
    assert dss["end"] == len(data) or not data[dss["end"] :].strip()
    assert [t["page"] for t in signature["thumbnails"]] == [1]
    assert _png(signature["thumbnails"][0]).width == 200
    assert not any(r.get("truncated") for r in result)


def test_page_tree_cycle_is_bounded_not_fatal() -> None:
    data = assemble_pdf(
        [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [2 0 R] /Count 1 >>"]
    )
    (rev,) = describe_revisions(data, thumbnails=True)
    assert rev["truncated"] is True
    assert rev["changed_pages"] == []


def test_deep_reference_chain_is_bounded() -> None:
    length = revisions.MAX_DEPTH * 3
    chain = [b"<< /Next %d 0 R >>" % (number + 1) for number in range(4, 4 + length)]
    chain.append(b"<< >>")
    data = assemble_pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources 4 0 R >>",
            *chain,
        ]
    )
    (rev,) = describe_revisions(data)
    assert rev["truncated"] is True
    assert rev["changed_pages"] == [1]
