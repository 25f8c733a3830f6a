"""Visible signatures of Vietnamese administrative documents (Nghị định 30/2020/NĐ-CP,
Phụ lục I) as pyHanko signature appearances.

- The officer signs first: the transparent PNG of the handwritten signature (blue) at the
  signature position; a generated placeholder (the name, in blue) when there is none.
- The clerk adds the agency signature: the red seal PNG at its real size, covering the left
  third of the officer's signature image, with the agency name, the signing time in
  ISO 8601 with +07:00, and a QR code linking to the public verification page.
- An attachment in a separate file: top right of page 1, no image, number/symbol + time.
- An electronic copy (sao y): top right of page 1, copy type, copying agency, time.

Each builder resolves its placement against the PDF and returns a
:class:`VisibleSignature`, which :func:`signer.pades.sign_pdf` draws. The layout is done
here, in points, once; the appearance stream only paints what was laid out, with an
embedded subset of DejaVu Serif (shipped in ``signer/fonts``) so that every Vietnamese
letter renders, and every character is checked against the font before anything is drawn.

A certified officer signature (DocMDP P=2) only lets *existing* fields be signed later
(pyHanko, stricter than Acrobat, rejects new visible fields after a certification), so
:func:`officer_signature` can reserve the seal's empty field in the same revision.
"""

from __future__ import annotations

import functools
import math
import unicodedata
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from importlib import resources
from io import BytesIO
from typing import Any, Literal

import qrcode
from fontTools import subset, ttLib
from PIL import Image, ImageDraw, ImageFont
from pyhanko.pdf_utils import generic, layout
from pyhanko.pdf_utils.content import ResourceType
from pyhanko.pdf_utils.font.opentype import CIDFontType2, GlyphAccumulator, _read_ps_name
from pyhanko.pdf_utils.generic import pdf_name
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.writer import BasePdfFileWriter
from pyhanko.sign.fields import SigFieldSpec, append_signature_field
from pyhanko.sign.signers.pdf_signer import PdfSigner, PdfSigningSession
from pyhanko.stamp import BaseStamp, BaseStampStyle

from signer.errors import BadImageError, BadPlacementError, BadStampTextError
from signer.placement import (
    Document,
    FieldPlacement,
    Placement,
    Rect,
    check_field_name,
    contains,
    fit_inside,
    height,
    union,
    whole_points,
    width,
)

VIETNAM = timezone(timedelta(hours=7), "ICT")
"""Vietnam's time zone; stamp times are printed in it (ISO 8601, ``+07:00``)."""

MM = 72 / 25.4
"""Points per millimetre."""

MAX_PNG_BYTES = 2 * 1024 * 1024
"""Largest signature or seal PNG accepted, in bytes."""

MAX_PNG_SIDE = 4000
"""Largest width or height of a PNG, in pixels."""

MAX_PNG_PIXELS = 4_000_000
"""Most pixels (width × height) in a PNG."""

EMBEDDED_DPI = 300
"""Images are downscaled to at most this resolution at their printed size."""

DEFAULT_SEAL_SIZE = 36 * MM
"""Printed size (points) of the larger side of a seal PNG that does not give its DPI."""

MIN_SEAL_SIZE = 15 * MM
"""Smallest printed seal (points) accepted."""

MAX_SEAL_SIZE = 50 * MM
"""Largest printed seal (points) accepted; a reserved seal field is sized for it."""

MAX_NAME_LENGTH = 160
"""Longest agency or officer name, in characters."""

MAX_NUMBER_LENGTH = 64
"""Longest document number/symbol, in characters."""

MAX_COPY_TYPE_LENGTH = 40
"""Longest copy type (e.g. ``SAO Y``), in characters."""

MAX_URL_LENGTH = 512
"""Longest verification URL, in characters."""

SIGNATURE_INK = (0.05, 0.18, 0.62)
"""Blue of a generated officer signature placeholder (RGB, 0-1)."""

SEAL_RED = (0.82, 0.06, 0.06)
"""Red of a generated seal placeholder (RGB, 0-1)."""

TEXT_COLOUR = (0.0, 0.0, 0.0)
"""Colour of stamp text."""

QR_SIZE = 56.0
"""Side of the seal stamp's QR code, quiet zone included (points, about 20 mm)."""

SEAL_TEXT_SIZE = 7.0
"""Font size of the seal stamp's agency name and time (points)."""

SEAL_COLUMN_WIDTH = 130.0
"""Widest the seal stamp's QR-and-text column may be (points)."""

SEAL_COLUMN_LINES = 6
"""Most text lines under the QR code (agency name lines and the time)."""

CORNER_TEXT_SIZE = 10.0
"""Font size of the attachment and copy stamps (Decree 30: size 10, black)."""

CORNER_TEXT_WIDTH = 240.0
"""Widest the attachment and copy stamps may be (points)."""

CORNER_MARGINS = (15 * MM, 7 * MM)
"""Distance of the attachment and copy stamps from the right and top page edges."""

_GAP = 4.0
_PADDING = 3.0
_LEADING = 1.22
_ITALIC_SKEW = 0.21
_FONT_FILE = "DejaVuSerif.ttf"

# Ligatures would merge letters and kerning would move them: plain advances keep the
# rendered text and its measure (from the font's hmtx table) identical.
_SHAPING_FEATURES = {"kern": False, "liga": False, "clig": False}

RGB = tuple[float, float, float]


@dataclass(frozen=True, kw_only=True)
class StampImage:
    """A bitmap painted in a stamp."""

    size: tuple[int, int]
    """Width and height in pixels."""

    rgba: bytes
    """8-bit RGBA pixels, row by row (transparency kept as a soft mask)."""

    rect: Rect
    """Where it is painted, relative to the stamp's lower-left corner (points)."""


@dataclass(frozen=True, kw_only=True)
class StampText:
    """One line of text in a stamp."""

    text: str
    """The line, NFC-normalised, every character in the stamp font."""

    x: float
    """Horizontal anchor (points from the stamp's left edge), see ``align``."""

    baseline: float
    """Baseline (points from the stamp's bottom edge)."""

    size: float
    """Font size (points)."""

    align: Literal["left", "centre", "right"] = "left"
    """Whether ``x`` is the line's left end, centre or right end."""

    italic: bool = False
    """Slant the glyphs (the shipped font has no italic face)."""

    colour: RGB = TEXT_COLOUR
    """Fill colour (RGB, 0-1)."""


@dataclass(frozen=True, kw_only=True)
class StampQr:
    """A QR code painted in a stamp, on a white quiet zone."""

    url: str
    """What it encodes."""

    rect: Rect
    """The square it fills, quiet zone included, relative to the stamp (points)."""


@dataclass(frozen=True)
class StampStyle(BaseStampStyle):
    """pyHanko stamp style that paints a laid-out stamp: images, then the QR code, then
    text, all at positions computed by the builders of this module."""

    images: tuple[StampImage, ...] = ()
    """Bitmaps, painted first, in order."""

    qr: StampQr | None = None
    """The QR code, if any."""

    texts: tuple[StampText, ...] = ()
    """Text lines, painted last."""

    border_width: int = 0
    """No frame around the stamp."""

    def create_stamp(
        self, writer: BasePdfFileWriter, box: layout.BoxConstraints, text_params: dict[str, Any]
    ) -> BaseStamp:
        return _LaidOutStamp(writer=writer, style=self, box=box)


class _LaidOutStamp(BaseStamp):
    style: StampStyle

    def _render_inner_content(self) -> list[bytes]:
        writer = self.writer
        assert writer is not None
        commands: list[bytes] = []
        for number, image in enumerate(self.style.images):
            name = f"/Im{number}"
            self.set_resource(ResourceType.XOBJECT, pdf_name(name), _image_xobject(image, writer))
            x1, y1, x2, y2 = image.rect
            commands.append(
                b"q %g 0 0 %g %g %g cm %s Do Q" % (x2 - x1, y2 - y1, x1, y1, name.encode())
            )
        if self.style.qr is not None:
            commands.append(_qr_commands(self.style.qr))
        if self.style.texts:
            engine = font_engine(writer)
            self.set_resource(ResourceType.FONT, pdf_name("/F1"), engine.as_resource())
            commands.extend(_text_commands(engine, line) for line in self.style.texts)
        return commands


def _number(value: float) -> generic.NumberObject:
    number: generic.NumberObject = generic.NumberObject(round(value))  # type: ignore[no-untyped-call]
    return number


def _image_xobject(image: StampImage, writer: BasePdfFileWriter) -> generic.IndirectObject:
    colour, alpha = _deflated_planes(image.size, image.rgba)
    image_width, image_height = image.size

    def plane(data: bytes, space: str, **extra: generic.PdfObject) -> generic.StreamObject:
        entries: dict[str, generic.PdfObject] = {
            "/Type": pdf_name("/XObject"),
            "/Subtype": pdf_name("/Image"),
            "/Width": _number(image_width),
            "/Height": _number(image_height),
            "/ColorSpace": pdf_name(space),
            "/BitsPerComponent": _number(8),
            "/Filter": pdf_name("/FlateDecode"),
            **extra,
        }
        return generic.StreamObject({pdf_name(k): v for k, v in entries.items()}, encoded_data=data)

    soft_mask = writer.add_object(plane(alpha, "/DeviceGray"))
    ref: generic.IndirectObject = writer.add_object(
        plane(colour, "/DeviceRGB", **{"/SMask": soft_mask})
    )
    return ref


@functools.lru_cache(maxsize=32)
def _deflated_planes(size: tuple[int, int], rgba: bytes) -> tuple[bytes, bytes]:
    """The colour and alpha planes of an image, deflated: the same seal goes into every
    document of a unit, and compressing it is most of the cost of painting it."""
    bitmap = Image.frombytes("RGBA", size, rgba)
    return (
        zlib.compress(bitmap.convert("RGB").tobytes()),
        zlib.compress(bitmap.getchannel("A").tobytes()),
    )


# What stamps can print: Latin with every Vietnamese letter, and common punctuation.
_REPERTOIRE = (
    *range(0x20, 0x7F),  # Basic Latin
    *range(0xA0, 0x180),  # Latin-1 Supplement, Latin Extended-A (Ă, Đ, Ĩ, Ũ...)
    *range(0x1A0, 0x1B1),  # Ơ, ơ, Ư, ư
    *range(0x1EA0, 0x1EFA),  # Latin Extended Additional: the Vietnamese letters
    *(0x2013, 0x2014, 0x2018, 0x2019, 0x201C, 0x201D, 0x2026, 0x2116),
)


@functools.cache
def _stamp_font() -> bytes:
    """The program embedded in every stamp: the shipped font cut to :data:`_REPERTOIRE`,
    without OpenType layout tables (no kerning or ligatures are used, and Vietnamese
    letters are precomposed glyphs after NFC). Made once per process: subsetting the
    whole font for each stamp took ~100 ms of fontTools work per signature."""
    options = subset.Options()
    options.layout_features = []
    options.drop_tables += ["GSUB", "GPOS", "GDEF", "kern", "FFTM"]
    options.name_IDs = ["*"]
    options.notdef_outline = True
    font = ttLib.TTFont(BytesIO(_font_bytes()))
    subsetter = subset.Subsetter(options)
    subsetter.populate(unicodes=_REPERTOIRE)
    subsetter.subset(font)
    out = BytesIO()
    font.save(out)
    return out.getvalue()


@functools.cache
def _deflated_stamp_font() -> bytes:
    return zlib.compress(_stamp_font())


class _StampFontProgram(CIDFontType2):
    """The CID font of a stamp: the cached :func:`_stamp_font` program, embedded whole
    (pyHanko would re-serialise a fresh subset for each stamp), and metrics in the
    1/1000 em of PDF text space."""

    def __init__(self, tt: ttLib.TTFont, base_ps_name: str, subset_prefix: str) -> None:
        super().__init__(tt, base_ps_name, subset_prefix)
        scale = 1000 / tt["head"].unitsPerEm
        descriptor = self._font_descriptor
        for key in ("/Ascent", "/Descent", "/CapHeight"):
            descriptor[pdf_name(key)] = _number(descriptor[key] * scale)
        descriptor[pdf_name("/FontBBox")] = generic.ArrayObject(
            _number(v * scale) for v in descriptor["/FontBBox"]
        )

    def set_font_file(self, writer: BasePdfFileWriter) -> generic.IndirectObject:
        program = generic.StreamObject(
            {
                pdf_name("/Filter"): pdf_name("/FlateDecode"),
                pdf_name("/Length1"): _number(len(_stamp_font())),
            },
            encoded_data=_deflated_stamp_font(),
        )
        ref: generic.IndirectObject = writer.add_object(program)
        self._font_descriptor[pdf_name("/FontFile2")] = ref
        return ref


class _StampGlyphs(GlyphAccumulator):
    """pyHanko's glyph accumulator on the stamp font, measuring in 1/1000 em.

    pyHanko 0.38 writes a TrueType font's own units into the CID font's ``/W`` widths and
    the ``TJ`` adjustments, which is only right for fonts of 1000 units per em; DejaVu
    has 2048, and every glyph would advance twice its width. HarfBuzz is told to shape
    at 1000 units per em instead, and the widths come from it.
    """

    def __init__(self, writer: BasePdfFileWriter) -> None:
        super().__init__(writer, BytesIO(_stamp_font()), font_size=10, features=_SHAPING_FEATURES)
        self.hb_font.scale = (1000, 1000)
        self.units_per_em = 1000
        self.cidfont_obj = _StampFontProgram(self.tt, _read_ps_name(self.tt), self.subset_prefix)

    def _get_cid_and_width(self, glyph_id: int) -> tuple[int, int]:
        # TrueType outlines: the CID is the glyph id of the embedded program
        known = self._glyphs.get(glyph_id)
        if known is None:
            known = self._glyphs[glyph_id] = (
                glyph_id,
                self.hb_font.get_glyph_h_advance(glyph_id),
            )
        return known

    def _extract_subset(self, options: subset.Options | None = None) -> None:
        """Nothing to cut: the program is already the stamp repertoire."""


def font_engine(writer: BasePdfFileWriter) -> GlyphAccumulator:
    """A pyHanko font engine for the stamp font (DejaVu Serif, Latin with Vietnamese),
    embedded in ``writer``; plain advances, no kerning or ligatures."""
    return _StampGlyphs(writer)


def _text_commands(engine: GlyphAccumulator, line: StampText) -> bytes:
    engine.font_size = line.size  # type: ignore[assignment]  # pyHanko says int, uses float
    shaped = engine.shape(line.text)
    line_width = shaped.x_advance * line.size
    x = {"left": line.x, "centre": line.x - line_width / 2, "right": line.x - line_width}[
        line.align
    ]
    skew = _ITALIC_SKEW if line.italic else 0.0
    return b"q %g %g %g rg BT /F1 %g Tf 1 0 %g 1 %g %g Tm %s ET Q" % (
        *line.colour,
        line.size,
        skew,
        x,
        line.baseline,
        shaped.graphics_ops,
    )


def _qr_commands(qr: StampQr) -> bytes:
    # A fixed mask: any of the eight reads the same, and choosing the best by the
    # standard's penalty score costs five times the rest of the QR code.
    code = qrcode.QRCode(
        error_correction=qrcode.constants.ERROR_CORRECT_M, border=0, mask_pattern=0
    )
    code.add_data(qr.url)
    code.make(fit=True)
    matrix: list[list[bool]] = code.get_matrix()
    modules = len(matrix)
    x1, y1, x2, _ = qr.rect
    module = (x2 - x1) / (modules + 4)  # two-module quiet zone on each side
    origin_x, top = x1 + 2 * module, y1 + (modules + 2) * module
    runs = []
    for row, cells in enumerate(matrix):
        column = 0
        while column < modules:
            if not cells[column]:
                column += 1
                continue
            start = column
            while column < modules and cells[column]:
                column += 1
            runs.append(b"%d %d %d 1 re" % (start, modules - 1 - row, column - start))
    return b"q 1 1 1 rg %g %g %g %g re f 0 0 0 rg %g 0 0 %g %g %g cm %s f Q" % (
        x1,
        y1,
        x2 - x1,
        x2 - x1,
        module,
        module,
        origin_x,
        top - modules * module,
        b" ".join(runs),
    )


@dataclass(frozen=True, kw_only=True)
class VisibleSignature:
    """Everything :func:`signer.pades.sign_pdf` needs to draw one visible signature."""

    field_name: str
    """The signature field signed (new or existing)."""

    page_index: int
    """Page of the field, 0-based."""

    rect: Rect
    """The field's widget rectangle, in the page's user space (points)."""

    image_rect: Rect | None
    """Where the signature image or the seal is painted on the page (points), if any."""

    new_fields: tuple[SigFieldSpec, ...]
    """Fields created in the signature's revision, in painting order: the signed field if
    it is new, and a reserved empty seal field."""

    style: StampStyle
    """The laid-out appearance."""

    signed_at: datetime | None
    """The time printed on the stamp, also written as the signature's ``/M``; ``None``
    when nothing prints it (the signing time is then the clock's)."""

    def add_fields(self, writer: IncrementalPdfFileWriter) -> None:
        """Create :attr:`new_fields` in ``writer`` before pyHanko signs."""
        for spec in self.new_fields:
            append_signature_field(writer, spec)


class StampingPdfSigner(PdfSigner):
    """pyHanko's PdfSigner drawing a :class:`VisibleSignature`, with the signature
    dictionary's ``/M`` at the stamp's printed time (pyHanko takes the clock otherwise)."""

    def __init__(self, *args: Any, appearance: VisibleSignature | None, **kwargs: Any) -> None:
        if appearance is not None:
            kwargs["stamp_style"] = appearance.style
        super().__init__(*args, **kwargs)
        self.appearance = appearance

    def init_signing_session(
        self, pdf_out: BasePdfFileWriter, existing_fields_only: bool = False
    ) -> PdfSigningSession:
        session = super().init_signing_session(pdf_out, existing_fields_only)
        if self.appearance is not None and self.appearance.signed_at is not None:
            session.system_time = self.appearance.signed_at
        return session


# --- builders ----------------------------------------------------------------------------


def officer_signature(
    pdf: bytes,
    placement: Placement,
    *,
    signature_png: bytes | None,
    officer_name: str,
    field_name: str,
    reserve_seal_field: str | None = None,
) -> VisibleSignature:
    """The officer's visible signature: ``signature_png`` (or a placeholder with
    ``officer_name``) at ``placement``, scaled to fit and centred, in field
    ``field_name`` (with a :class:`~signer.placement.FieldPlacement`, the same name).

    For a new field (rectangle or anchor) the field shrinks to the image's proportions, so
    that the seal can later be placed against the image itself. ``reserve_seal_field``
    creates that empty seal field in the same revision, large enough for any seal up to
    :data:`MAX_SEAL_SIZE`: needed when this signature certifies the document.
    """
    document = Document(pdf)
    name = _clean(officer_name, what="officer name", limit=MAX_NAME_LENGTH)
    bitmap = _signature_placeholder(name) if signature_png is None else load_png(signature_png)
    if isinstance(placement, FieldPlacement) and placement.name != field_name:
        raise BadPlacementError(
            f"the field to sign is {field_name!r} but the placement names {placement.name!r}"
        )
    spot = document.resolve(placement)
    if spot.existing_field:
        field_rect = spot.rect
        image_rect = fit_inside(field_rect, bitmap.width / bitmap.height)
    else:
        check_field_name(field_name)
        if document.has_field(field_name):
            raise BadPlacementError(f"the PDF already has a field named {field_name!r}")
        image_rect = fit_inside(spot.rect, bitmap.width / bitmap.height)
        field_rect = whole_points(image_rect)
    new_fields: list[SigFieldSpec] = []
    if not spot.existing_field:
        new_fields.append(_field_spec(field_name, spot.page_index, field_rect))
    if reserve_seal_field is not None:
        check_field_name(reserve_seal_field)
        if reserve_seal_field == field_name or document.has_field(reserve_seal_field):
            raise BadPlacementError(f"the PDF already has a field named {reserve_seal_field!r}")
        seal = (MAX_SEAL_SIZE, MAX_SEAL_SIZE)
        reserved = _seal_layout(
            document, spot.page_index, image_rect, seal, SEAL_COLUMN_WIDTH, SEAL_COLUMN_LINES
        )
        new_fields.append(_field_spec(reserve_seal_field, spot.page_index, reserved.field))
    style = StampStyle(images=(_placed(bitmap, _relative(image_rect, field_rect)),))
    return VisibleSignature(
        field_name=field_name,
        page_index=spot.page_index,
        rect=field_rect,
        image_rect=image_rect,
        new_fields=tuple(new_fields),
        style=style,
        signed_at=None,
    )


def seal_signature(
    pdf: bytes,
    *,
    officer_field: str,
    seal_png: bytes | None,
    agency_name: str,
    signed_at: datetime,
    verify_url: str,
    field_name: str,
    number: str | None = None,
) -> VisibleSignature:
    """The agency's seal signature over the officer's signature in field ``officer_field``.

    The seal is painted at its real size (from the PNG's DPI, else
    :data:`DEFAULT_SEAL_SIZE`), its right edge a third of the way into the officer's
    image, centred on it vertically; beside it (left, else right of the officer's image) a
    column with the QR code for ``verify_url``, the agency name, the document ``number``
    when given (number/symbol, printed as ``Số: 12/XN-CAP-BT``) and ``signed_at`` in
    ISO 8601, +07:00. Fills field ``field_name`` if it exists (reserved by
    :func:`officer_signature`), else creates it.
    """
    document = Document(pdf)
    check_field_name(officer_field)
    check_field_name(field_name)
    agency = _clean(agency_name, what="agency name", limit=MAX_NAME_LENGTH)
    url = _verify_url(verify_url)
    time_text = printed_time(signed_at)
    bitmap, seal_size = (
        (_seal_placeholder(agency), (DEFAULT_SEAL_SIZE, DEFAULT_SEAL_SIZE))
        if seal_png is None
        else _real_size(load_png(seal_png))
    )
    officer = document.field(officer_field, empty=False)
    # New officer fields are shrunk to the image, so the field is the image; in a
    # template's field the image is centred, and the seal goes against the field.
    officer_image = officer.rect
    name_lines = _wrap(agency, SEAL_TEXT_SIZE, SEAL_COLUMN_WIDTH)
    number_lines = (
        [] if number is None else [f"Số: {_clean(number, what='number', limit=MAX_NUMBER_LENGTH)}"]
    )
    lines = [*name_lines, *number_lines, time_text]
    if len(lines) > SEAL_COLUMN_LINES:
        raise BadStampTextError(
            f"the agency name does not fit in {SEAL_COLUMN_LINES - 1 - len(number_lines)} lines"
        )
    column_width = max(QR_SIZE, *(_text_width(line, SEAL_TEXT_SIZE) for line in lines))
    reserved = document.field(field_name, empty=True) if document.has_field(field_name) else None
    if reserved is not None and reserved.page_index != officer.page_index:
        raise BadPlacementError(f"the field {field_name!r} is not on the officer's page")
    laid_out = _seal_layout(
        document,
        officer.page_index,
        officer_image,
        seal_size,
        column_width,
        len(lines),
        within=None if reserved is None else reserved.rect,
    )
    field_rect = laid_out.field if reserved is None else reserved.rect
    column = _relative(laid_out.column, field_rect)
    qr_rect = (
        (column[0] + column[2] - QR_SIZE) / 2,
        column[3] - QR_SIZE,
        (column[0] + column[2] + QR_SIZE) / 2,
        column[3],
    )
    leading = SEAL_TEXT_SIZE * _LEADING
    texts = tuple(
        StampText(
            text=line,
            x=(column[0] + column[2]) / 2,
            baseline=qr_rect[1] - _GAP - SEAL_TEXT_SIZE - number * leading,
            size=SEAL_TEXT_SIZE,
            align="centre",
        )
        for number, line in enumerate(lines)
    )
    style = StampStyle(
        images=(_placed(bitmap, _relative(laid_out.seal, field_rect)),),
        qr=StampQr(url=url, rect=qr_rect),
        texts=texts,
    )
    return VisibleSignature(
        field_name=field_name,
        page_index=officer.page_index,
        rect=field_rect,
        image_rect=laid_out.seal,
        new_fields=()
        if reserved is not None
        else (_field_spec(field_name, officer.page_index, field_rect),),
        style=style,
        signed_at=signed_at,
    )


def attachment_signature(
    pdf: bytes, *, number: str, signed_at: datetime, field_name: str
) -> VisibleSignature:
    """The agency signature of an attachment in a separate file: top right of page 1, no
    image, ``Số: <number>`` (number/symbol, e.g. ``12/XN-CAP-BT``) and the time, italic."""
    symbol = _clean(number, what="document number", limit=MAX_NUMBER_LENGTH)
    return _corner_signature(
        pdf, [f"Số: {symbol}", printed_time(signed_at)], signed_at, field_name, italic=True
    )


def copy_signature(
    pdf: bytes, *, copy_type: str, agency_name: str, signed_at: datetime, field_name: str
) -> VisibleSignature:
    """The signature of an electronic copy (sao y): top right of page 1, the copy type
    (e.g. ``SAO Y``), the copying agency and the time."""
    kind = _clean(copy_type, what="copy type", limit=MAX_COPY_TYPE_LENGTH)
    agency = _clean(agency_name, what="agency name", limit=MAX_NAME_LENGTH)
    lines = [kind, *_wrap(agency, CORNER_TEXT_SIZE, CORNER_TEXT_WIDTH), printed_time(signed_at)]
    return _corner_signature(pdf, lines, signed_at, field_name, italic=False)


def printed_time(signed_at: datetime) -> str:
    """``signed_at`` as printed on stamps: ISO 8601 in Vietnam's time, e.g.
    ``2026-11-23T14:05:09+07:00``."""
    if signed_at.tzinfo is None or signed_at.utcoffset() is None:
        raise BadStampTextError("the signing time must carry its time zone")
    return signed_at.astimezone(VIETNAM).isoformat(timespec="seconds")


def _corner_signature(
    pdf: bytes, lines: list[str], signed_at: datetime, field_name: str, *, italic: bool
) -> VisibleSignature:
    document = Document(pdf)
    check_field_name(field_name)
    if document.has_field(field_name):
        raise BadPlacementError(f"the PDF already has a field named {field_name!r}")
    leading = CORNER_TEXT_SIZE * _LEADING
    skew_room = _ITALIC_SKEW * CORNER_TEXT_SIZE if italic else 0.0
    text_width = max(_text_width(line, CORNER_TEXT_SIZE) for line in lines) + skew_room
    box_width = text_width + 2 * _PADDING
    box_height = len(lines) * leading + 2 * _PADDING
    page = document.page_box(0)
    right, top = page[2] - CORNER_MARGINS[0], page[3] - CORNER_MARGINS[1]
    field_rect = whole_points((right - box_width, top - box_height, right, top))
    if not contains(page, field_rect):
        raise BadPlacementError("the stamp does not fit at the top right of page 1")
    texts = tuple(
        StampText(
            text=line,
            x=_PADDING,
            baseline=height(field_rect) - _PADDING - CORNER_TEXT_SIZE - number * leading,
            size=CORNER_TEXT_SIZE,
            italic=italic,
        )
        for number, line in enumerate(lines)
    )
    return VisibleSignature(
        field_name=field_name,
        page_index=0,
        rect=field_rect,
        image_rect=None,
        new_fields=(_field_spec(field_name, 0, field_rect),),
        style=StampStyle(texts=texts),
        signed_at=signed_at,
    )


# --- seal geometry -----------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class _SealLayout:
    seal: Rect
    column: Rect
    field: Rect


def _seal_layout(
    document: Document,
    page_index: int,
    officer_image: Rect,
    seal_size: tuple[float, float],
    column_width: float,
    lines: int,
    *,
    within: Rect | None = None,
) -> _SealLayout:
    """The seal over the left third of ``officer_image``, and the QR-and-text column
    beside it: left of the seal if it fits (on the page, and ``within`` a reserved field),
    else right of the officer's image."""
    seal_width, seal_height = seal_size
    right = officer_image[0] + width(officer_image) / 3
    middle = (officer_image[1] + officer_image[3]) / 2
    seal = (right - seal_width, middle - seal_height / 2, right, middle + seal_height / 2)
    column_height = QR_SIZE + _GAP + lines * SEAL_TEXT_SIZE * _LEADING
    page = document.page_box(page_index)
    for left in (seal[0] - _GAP - column_width, officer_image[2] + _GAP):
        column = (left, seal[3] - column_height, left + column_width, seal[3])
        field = union(seal, column)
        if contains(page, field) and (within is None or contains(within, field)):
            return _SealLayout(
                seal=seal,
                column=column,
                field=whole_points(field),
            )
    where = "in the reserved seal field" if within is not None else f"on page {page_index + 1}"
    raise BadPlacementError(f"the seal and its QR code and text do not fit {where}")


# --- images ------------------------------------------------------------------------------


def load_png(data: bytes) -> Image.Image:
    """A PNG from outside, checked (format, bytes, pixels) and decoded to RGBA."""
    if len(data) > MAX_PNG_BYTES:
        raise BadImageError(f"the image is larger than {MAX_PNG_BYTES} bytes")
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise BadImageError("the image is not a PNG")
    try:
        image = Image.open(BytesIO(data), formats=["PNG"])
        image_width, image_height = image.size
        if (
            max(image_width, image_height) > MAX_PNG_SIDE
            or image_width * image_height > MAX_PNG_PIXELS
        ):
            raise BadImageError(
                f"the image is {image_width}x{image_height} pixels; at most {MAX_PNG_SIDE} "
                f"on a side and {MAX_PNG_PIXELS} in all"
            )
        image.load()
    except BadImageError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as ex:
        raise BadImageError(f"the PNG cannot be decoded: {ex}") from ex
    if min(image_width, image_height) < 1:
        raise BadImageError("the image is empty")
    dpi = image.info.get("dpi")
    rgba = image.convert("RGBA")
    if dpi is not None:
        rgba.info["dpi"] = dpi
    return rgba


def _real_size(image: Image.Image) -> tuple[Image.Image, tuple[float, float]]:
    """The printed size (points) of a seal: from its DPI, else the default size."""
    dpi = image.info.get("dpi")
    try:
        dpi_x, dpi_y = (float(v) for v in dpi) if dpi else (0.0, 0.0)
    except (TypeError, ValueError):
        dpi_x = dpi_y = 0.0
    if dpi_x > 1 and dpi_y > 1:
        size = (image.width / dpi_x * 72, image.height / dpi_y * 72)
    else:
        scale = DEFAULT_SEAL_SIZE / max(image.width, image.height)
        size = (image.width * scale, image.height * scale)
    if not (MIN_SEAL_SIZE <= max(size) <= MAX_SEAL_SIZE):
        raise BadImageError(
            f"the seal would print {max(size) / MM:.0f} mm wide (from its DPI); a seal is "
            f"{MIN_SEAL_SIZE / MM:.0f} to {MAX_SEAL_SIZE / MM:.0f} mm"
        )
    return image, size


def _placed(image: Image.Image, rect: Rect) -> StampImage:
    """``image`` to paint at ``rect``, downscaled to :data:`EMBEDDED_DPI` at that size."""
    most = (
        max(1, math.ceil(width(rect) / 72 * EMBEDDED_DPI)),
        max(1, math.ceil(height(rect) / 72 * EMBEDDED_DPI)),
    )
    if image.width > most[0] or image.height > most[1]:
        image = image.resize(most, Image.Resampling.LANCZOS)
    return StampImage(size=image.size, rgba=image.tobytes(), rect=rect)


@functools.lru_cache(maxsize=64)
def _signature_placeholder(name: str) -> Image.Image:
    """The officer's name in blue, slanted, underlined: a stand-in signature image."""
    font = _pillow_font(96)
    left, top, right, bottom = (round(v) for v in font.getbbox(name))
    text_width, text_height = right - left, bottom - top
    image_height = int(text_height * 1.8) + 20
    image_width = text_width + 60
    ink = (*(round(c * 255) for c in SIGNATURE_INK), 255)
    upright = Image.new("RGBA", (image_width, image_height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(upright)
    draw.text((30 - left, 10 - top), name, font=font, fill=ink)
    underline_y = 10 + text_height + int(text_height * 0.35)
    draw.line(
        [
            (24, underline_y + 6),
            (image_width // 2, underline_y),
            (image_width - 24, underline_y - 8),
        ],
        fill=ink,
        width=5,
        joint="curve",
    )
    shear = _ITALIC_SKEW
    slanted_width = image_width + int(shear * image_height)
    return upright.transform(
        (slanted_width, image_height),
        Image.Transform.AFFINE,
        (1, shear, -shear * image_height, 0, 1, 0),
        resample=Image.Resampling.BICUBIC,
    )


@functools.lru_cache(maxsize=64)
def _seal_placeholder(agency: str) -> Image.Image:
    """A red round seal: two rings, the agency name around the top, a star in the middle."""
    side = round(DEFAULT_SEAL_SIZE / 72 * EMBEDDED_DPI)
    red = (*(round(c * 255) for c in SEAL_RED), 255)
    seal = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    draw = ImageDraw.Draw(seal)
    centre = side / 2
    outer = side / 2 - 4
    inner = outer * 0.64
    draw.ellipse([4, 4, side - 4, side - 4], outline=red, width=round(side * 0.02))
    draw.ellipse(
        [centre - inner, centre - inner, centre + inner, centre + inner],
        outline=red,
        width=round(side * 0.008),
    )
    _text_on_arc(seal, agency.upper(), centre, inner + (outer - inner) * 0.2, red)
    star = [
        (
            centre + radius * math.sin(math.pi * k / 5),
            centre - radius * math.cos(math.pi * k / 5),
        )
        for k, radius in zip(range(10), [inner * 0.6, inner * 0.24] * 5, strict=True)
    ]
    draw.polygon(star, fill=red)
    return seal


def _text_on_arc(
    canvas: Image.Image, text: str, centre: float, baseline: float, colour: tuple[int, ...]
) -> None:
    """``text`` upright around the top of a circle, its baseline at radius ``baseline``."""
    size = round(canvas.width * 0.075)
    font = _pillow_font(size)
    # shrink until the name fits in 300 degrees of the ring
    while size > 12 and font.getlength(text) / baseline > math.radians(300):
        size -= 2
        font = _pillow_font(size)
    advances = [font.getlength(c) for c in text]
    angle = -sum(advances) / baseline / 2
    half = size * 2  # room for a capital with stacked Vietnamese marks above the baseline
    for char, advance in zip(text, advances, strict=True):
        middle = angle + advance / 2 / baseline
        angle += advance / baseline
        if char.isspace():
            continue
        glyph = Image.new("RGBA", (half * 2, half * 2), (0, 0, 0, 0))
        ImageDraw.Draw(glyph).text((half, half), char, font=font, fill=colour, anchor="ms")
        glyph = glyph.rotate(-math.degrees(middle), resample=Image.Resampling.BICUBIC)
        x = centre + baseline * math.sin(middle) - half
        y = centre - baseline * math.cos(middle) - half
        canvas.alpha_composite(glyph, (round(x), round(y)))


# --- text --------------------------------------------------------------------------------


@functools.cache
def _font_bytes() -> bytes:
    return (resources.files("signer") / "fonts" / _FONT_FILE).read_bytes()


@functools.cache
def _advances() -> dict[int, float]:
    """Advance width (in em) per code point of the shipped font."""
    font = ttLib.TTFont(BytesIO(_stamp_font()), lazy=True)
    units = float(font["head"].unitsPerEm)
    metrics = font["hmtx"].metrics
    return {code: metrics[glyph][0] / units for code, glyph in font.getBestCmap().items()}


@functools.lru_cache(maxsize=16)
def _pillow_font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(BytesIO(_font_bytes()), size, layout_engine=ImageFont.Layout.BASIC)


def _text_width(text: str, size: float) -> float:
    advances = _advances()
    return sum(advances[ord(c)] for c in text) * size


def _clean(text: str, *, what: str, limit: int) -> str:
    """``text`` NFC-normalised on one line; printable and fully covered by the font."""
    if not isinstance(text, str):
        raise BadStampTextError(f"the {what} must be text")
    line = " ".join(unicodedata.normalize("NFC", text).split())
    if not line or len(line) > limit:
        raise BadStampTextError(f"the {what} must be 1 to {limit} characters")
    advances = _advances()
    missing = sorted({c for c in line if ord(c) not in advances or not c.isprintable()})
    if missing:
        shown = ", ".join(f"U+{ord(c):04X}" for c in missing)
        raise BadStampTextError(f"the {what} has characters the stamp cannot print: {shown}")
    return line


def _wrap(text: str, size: float, line_width: float) -> list[str]:
    """Greedy word wrap; a word longer than a line is cut."""
    lines: list[str] = []
    current = ""
    for word in text.split(" "):
        candidate = f"{current} {word}" if current else word
        if _text_width(candidate, size) <= line_width:
            current = candidate
            continue
        if current:
            lines.append(current)
        current = word
        while _text_width(current, size) > line_width:
            cut = len(current) - 1
            while cut > 1 and _text_width(current[:cut], size) > line_width:
                cut -= 1
            lines.append(current[:cut])
            current = current[cut:]
    lines.append(current)
    return lines


def _verify_url(url: str) -> str:
    if (
        not isinstance(url, str)
        or len(url) > MAX_URL_LENGTH
        or not url.startswith(("https://", "http://"))
        or not url.isprintable()
        or any(c.isspace() for c in url)
    ):
        raise BadStampTextError(
            f"the verification URL must be an http(s) URL of at most {MAX_URL_LENGTH} characters"
        )
    return url


# --- fields ------------------------------------------------------------------------------


def _field_spec(name: str, page_index: int, rect: Rect) -> SigFieldSpec:
    x1, y1, x2, y2 = (int(v) for v in whole_points(rect))
    return SigFieldSpec(sig_field_name=name, on_page=page_index, box=(x1, y1, x2, y2))


def _relative(rect: Rect, origin: Rect) -> Rect:
    return (rect[0] - origin[0], rect[1] - origin[1], rect[2] - origin[0], rect[3] - origin[1])
