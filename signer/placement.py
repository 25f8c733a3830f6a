"""Where a visible signature goes: an existing signature field, a rectangle on a page, or
a box below an anchor text found on the page (the signer's title line).

Coordinates are PDF user space in points, ``(x1, y1, x2, y2)`` with ``x1 < x2`` and
``y1 < y2``; page numbers are 1-based in the API and 0-based (``page_index``) inside.
Pages are assumed unrotated (``/Rotate`` is not applied to the boxes).
"""

from __future__ import annotations

import math
import re
import threading
import time
import unicodedata
from dataclasses import dataclass
from io import BytesIO

import pypdfium2
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.misc import PdfError
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.fields import enumerate_sig_fields

from signer.errors import (
    AnchorNotFoundError,
    BadPlacementError,
    FieldNotFoundError,
    InvalidDocumentError,
)

Rect = tuple[float, float, float, float]
"""``(x1, y1, x2, y2)``: lower-left and upper-right corners in PDF user space (points)."""

DEFAULT_SIGNATURE_SIZE = (170.0, 70.0)
"""Width and height (points) of the officer's signature box placed below an anchor."""

ANCHOR_GAP = 4.0
"""Space (points) between the bottom of the anchor text and the top of the box."""

MIN_BOX_SIDE = 8.0
"""Smallest width or height (points) of a signature box."""

MAX_COORDINATE = 14_400.0
"""Largest coordinate (points) a rectangle may give: PDF's largest page side (200 inches)."""

_RECT_TEXT = re.compile(r"\s*\[?([^\[\]]{0,200})\]?\s*")

MAX_FIELD_NAME_LENGTH = 128
"""Longest signature field name accepted."""

MAX_ANCHOR_LENGTH = 200
"""Longest anchor text accepted, in characters."""

MAX_ANCHOR_PAGES = 50
"""Pages searched for an anchor text without a page, counted back from the last page."""

ANCHOR_TIME_LIMIT = 2.0
"""Seconds an anchor search may take before it stops with ``signer.anchor_not_found``."""

MAX_ANCHOR_MATCHES = 1000
"""Occurrences of the anchor looked at on one page before the last one seen is taken."""

MAX_FIELD_PAGES = 2000
"""Pages walked to find the page of a field widget that has no ``/P`` entry."""

# PDFium is not thread-safe; signing runs in threads of one process.
_PDFIUM_LOCK = threading.Lock()


@dataclass(frozen=True, kw_only=True)
class FieldPlacement:
    """Sign into an existing, empty signature field (e.g. one a document template made)."""

    name: str
    """Fully qualified name of the field."""


@dataclass(frozen=True, kw_only=True)
class RectPlacement:
    """Sign in a new field at a rectangle of a page."""

    page: int
    """Page number, 1-based."""

    rect: Rect
    """The field's rectangle, in the page's user space (points)."""


@dataclass(frozen=True, kw_only=True)
class AnchorPlacement:
    """Sign in a new field below an anchor text, centred on it: the signer's title line,
    e.g. ``"TRƯỞNG CÔNG AN PHƯỜNG"``. Case-insensitive; the last occurrence wins."""

    text: str
    """The text to find, as it reads on the page."""

    page: int | None = None
    """Page number (1-based) to search, or ``None`` for the last pages of the document,
    from the end (at most :data:`MAX_ANCHOR_PAGES`)."""

    size: tuple[float, float] = DEFAULT_SIGNATURE_SIZE
    """Width and height (points) of the box."""


Placement = FieldPlacement | RectPlacement | AnchorPlacement
"""One of the three ways to say where a visible signature goes."""


@dataclass(frozen=True, kw_only=True)
class Spot:
    """A placement resolved against a document."""

    page_index: int
    """Page, 0-based."""

    rect: Rect
    """Rectangle in the page's user space (points)."""

    existing_field: bool
    """Whether ``rect`` is the widget of a field already in the document."""


def normalised(rect: Rect) -> Rect:
    x1, y1, x2, y2 = rect
    return (min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2))


def width(rect: Rect) -> float:
    return rect[2] - rect[0]


def height(rect: Rect) -> float:
    return rect[3] - rect[1]


def union(*rects: Rect) -> Rect:
    return (
        min(r[0] for r in rects),
        min(r[1] for r in rects),
        max(r[2] for r in rects),
        max(r[3] for r in rects),
    )


def contains(outer: Rect, inner: Rect, tolerance: float = 0.5) -> bool:
    return (
        inner[0] >= outer[0] - tolerance
        and inner[1] >= outer[1] - tolerance
        and inner[2] <= outer[2] + tolerance
        and inner[3] <= outer[3] + tolerance
    )


def whole_points(rect: Rect) -> Rect:
    """The smallest rectangle with integer corners around ``rect`` (pyHanko's field boxes
    are integers)."""
    return (
        float(math.floor(rect[0])),
        float(math.floor(rect[1])),
        float(math.ceil(rect[2])),
        float(math.ceil(rect[3])),
    )


def fit_inside(box: Rect, aspect: float) -> Rect:
    """The largest rectangle of ``aspect`` (width / height) centred in ``box``."""
    box_width, box_height = width(box), height(box)
    if box_width / box_height > aspect:
        fitted_width, fitted_height = box_height * aspect, box_height
    else:
        fitted_width, fitted_height = box_width, box_width / aspect
    x = box[0] + (box_width - fitted_width) / 2
    y = box[1] + (box_height - fitted_height) / 2
    return (x, y, x + fitted_width, y + fitted_height)


def check_field_name(name: str) -> None:
    if not name or len(name) > MAX_FIELD_NAME_LENGTH or "." in name or not name.isprintable():
        raise BadPlacementError(
            f"a signature field name must be 1 to {MAX_FIELD_NAME_LENGTH} printable "
            "characters without a dot"
        )


def parse_rect(text: str) -> Rect:
    """``x1,y1,x2,y2`` (or a JSON-like ``[x1, y1, x2, y2]``) as four finite numbers in
    points, each within :data:`MAX_COORDINATE`."""
    inner = _RECT_TEXT.fullmatch(text)
    parts = inner.group(1).split(",") if inner else []
    try:
        values = [float(part) for part in parts]
    except ValueError:
        values = []
    if len(values) != 4 or not all(abs(v) <= MAX_COORDINATE for v in values):
        raise BadPlacementError(
            f"a rectangle is four numbers x1,y1,x2,y2 in PDF points (at most "
            f"{MAX_COORDINATE:g}), got {text[:60]!r}"
        )
    return values[0], values[1], values[2], values[3]


def free_field_name(document: Document) -> str:
    """``Signature1``, or the first ``SignatureN`` the PDF does not use yet (an invisible
    signature on an already signed PDF)."""
    for number in range(1, 1000):
        name = f"Signature{number}"
        if not document.has_field(name):
            return name
    raise BadPlacementError("the PDF already has signature fields Signature1 to Signature999")


class Document:
    """Read-only geometry of a PDF: pages, their boxes, signature fields."""

    def __init__(self, pdf: bytes) -> None:
        try:
            self.reader = PdfFileReader(BytesIO(pdf))
            if self.reader.security_handler is not None:
                raise InvalidDocumentError("encrypted PDFs cannot be signed")
            self.page_count = int(self.reader.root["/Pages"]["/Count"])
        except (PdfError, KeyError, TypeError, ValueError) as ex:
            raise InvalidDocumentError(f"the PDF cannot be read: {ex}") from ex

    def _page_ref(self, page_index: int) -> generic.IndirectObject:
        ref: generic.IndirectObject = self.reader.find_page_for_modification(  # type: ignore[no-untyped-call]
            page_index
        )[0]
        return ref

    def _page(self, page_index: int) -> generic.DictionaryObject:
        page: generic.DictionaryObject = self._page_ref(page_index).get_object()  # type: ignore[no-untyped-call]
        return page

    def page_index(self, page: int) -> int:
        """The 0-based index of 1-based ``page``, which must exist."""
        if isinstance(page, bool) or not isinstance(page, int) or not 1 <= page <= self.page_count:
            raise BadPlacementError(f"page {page} is not in the document (1-{self.page_count})")
        return page - 1

    def page_box(self, page_index: int) -> Rect:
        """The visible area of a page: its crop box, else its media box (inherited)."""
        try:
            node = self._page(page_index)
            for key in ("/CropBox", "/MediaBox"):
                current = node
                for _ in range(64):  # inherited through /Parent; bounded
                    if key in current:
                        values = [float(v) for v in current[key]]
                        return normalised((values[0], values[1], values[2], values[3]))
                    if "/Parent" not in current:
                        break
                    current = current["/Parent"]
        except (PdfError, KeyError, TypeError, ValueError, IndexError) as ex:
            raise InvalidDocumentError(f"page {page_index + 1} has no usable box: {ex}") from ex
        raise InvalidDocumentError(f"page {page_index + 1} has no media box")

    def check_rect(self, page_index: int, rect: Rect) -> Rect:
        """``rect`` normalised, if it has a usable size and lies on the page."""
        if len(rect) != 4 or not all(isinstance(v, int | float) and math.isfinite(v) for v in rect):
            raise BadPlacementError("a rectangle is four finite numbers x1, y1, x2, y2")
        box = normalised(rect)
        if width(box) < MIN_BOX_SIDE or height(box) < MIN_BOX_SIDE:
            raise BadPlacementError(
                f"the rectangle {rect} is smaller than {MIN_BOX_SIDE} points on a side"
            )
        page_box = self.page_box(page_index)
        if not contains(page_box, box):
            raise BadPlacementError(
                f"the rectangle {rect} is not inside page {page_index + 1} {page_box}"
            )
        return box

    def _field(self, name: str) -> generic.IndirectObject | None:
        try:
            found = list(enumerate_sig_fields(self.reader, with_name=name))
        except (PdfError, KeyError, TypeError) as ex:
            raise InvalidDocumentError(f"the PDF's form cannot be read: {ex}") from ex
        if not found:
            return None
        field_ref: generic.IndirectObject = found[0][2]
        return field_ref

    def has_field(self, name: str) -> bool:
        return self._field(name) is not None

    def field(self, name: str, *, empty: bool) -> Spot:
        """The widget of signature field ``name``; if ``empty``, it must not be signed."""
        field_ref = self._field(name)
        if field_ref is None:
            raise FieldNotFoundError(f"the PDF has no signature field named {name!r}")
        try:
            field = field_ref.get_object()  # type: ignore[no-untyped-call]
            if empty and field.get("/V"):
                raise BadPlacementError(f"the signature field {name!r} is already signed")
            # a field is its own widget, or has exactly one widget in /Kids
            widget_ref = field.raw_get("/Kids")[0] if "/Kids" in field else field_ref
            widget = widget_ref.get_object()
            x1, y1, x2, y2 = (float(v) for v in widget["/Rect"])
            page_index = self._page_of(widget, widget_ref)
        except (PdfError, KeyError, TypeError, ValueError, IndexError, AttributeError) as ex:
            raise BadPlacementError(f"the signature field {name!r} has no usable widget") from ex
        rect = normalised((x1, y1, x2, y2))
        if width(rect) < MIN_BOX_SIDE or height(rect) < MIN_BOX_SIDE:
            raise BadPlacementError(f"the signature field {name!r} is invisible or too small")
        return Spot(page_index=page_index, rect=rect, existing_field=True)

    def _page_of(self, widget: generic.DictionaryObject, widget_ref: generic.IndirectObject) -> int:
        page_ref = widget.raw_get("/P") if "/P" in widget else None
        for index in range(min(self.page_count, MAX_FIELD_PAGES)):
            ref = self._page_ref(index)
            if page_ref is not None:
                if ref == page_ref:
                    return index
                continue
            page = self._page(index)
            if "/Annots" in page and widget_ref in list(page["/Annots"].iterate()):
                return index
        raise KeyError("the widget is on no page")

    def resolve(self, placement: Placement) -> Spot:
        """Where ``placement`` puts the signature in this document."""
        if isinstance(placement, FieldPlacement):
            check_field_name(placement.name)
            return self.field(placement.name, empty=True)
        if isinstance(placement, RectPlacement):
            index = self.page_index(placement.page)
            return Spot(
                page_index=index,
                rect=self.check_rect(index, placement.rect),
                existing_field=False,
            )
        if isinstance(placement, AnchorPlacement):
            return self._below_anchor(placement)
        raise BadPlacementError(f"unknown placement {placement!r}")

    def _below_anchor(self, placement: AnchorPlacement) -> Spot:
        box_width, box_height = placement.size
        if box_width < MIN_BOX_SIDE or box_height < MIN_BOX_SIDE:
            raise BadPlacementError(f"a signature box of {placement.size} points is too small")
        page_index = None if placement.page is None else self.page_index(placement.page)
        index, anchor = find_anchor(self, placement.text, page_index)
        centre = (anchor[0] + anchor[2]) / 2
        top = anchor[1] - ANCHOR_GAP
        rect = (centre - box_width / 2, top - box_height, centre + box_width / 2, top)
        page_box = self.page_box(index)
        if not contains(page_box, rect):
            raise BadPlacementError(
                f"a {box_width}x{box_height} box below {placement.text!r} does not fit on "
                f"page {index + 1}"
            )
        return Spot(page_index=index, rect=rect, existing_field=False)


def find_anchor(document: Document, text: str, page_index: int | None) -> tuple[int, Rect]:
    """The page and the bounding box of the last occurrence of ``text``.

    Searches ``page_index`` alone, or the last :data:`MAX_ANCHOR_PAGES` pages from the end,
    within :data:`ANCHOR_TIME_LIMIT` seconds.
    """
    needle = unicodedata.normalize("NFC", " ".join(text.split()))
    if not needle or len(needle) > MAX_ANCHOR_LENGTH:
        raise AnchorNotFoundError(f"an anchor text must be 1 to {MAX_ANCHOR_LENGTH} characters")
    if page_index is None:
        last = document.page_count - 1
        indices = list(range(last, max(-1, last - MAX_ANCHOR_PAGES), -1))
    else:
        indices = [page_index]
    deadline = time.monotonic() + ANCHOR_TIME_LIMIT
    with _PDFIUM_LOCK:
        try:
            pdf = pypdfium2.PdfDocument(_source_bytes(document))
        except pypdfium2.PdfiumError as ex:
            raise InvalidDocumentError(f"the PDF cannot be read: {ex}") from ex
        try:
            for index in indices:
                if time.monotonic() > deadline:
                    raise AnchorNotFoundError(
                        f"{needle!r} was not found within {ANCHOR_TIME_LIMIT} s of searching"
                    )
                found = _last_occurrence(pdf[index], needle)
                if found is not None:
                    return index, found
        finally:
            pdf.close()
    where = f"page {page_index + 1}" if page_index is not None else f"the last {len(indices)} pages"
    raise AnchorNotFoundError(f"{needle!r} is not on {where}")


def _source_bytes(document: Document) -> bytes:
    stream = document.reader.stream
    stream.seek(0)
    data: bytes = stream.read()
    return data


def _last_occurrence(page: pypdfium2.PdfPage, needle: str) -> Rect | None:
    text_page = page.get_textpage()
    try:
        searcher = text_page.search(needle, match_case=False)
        last = None
        for _ in range(MAX_ANCHOR_MATCHES):
            hit = searcher.get_next()
            if hit is None:
                break
            last = hit
        if last is None:
            return None
        start, count = last
        boxes = [text_page.get_charbox(i) for i in range(start, start + count)]
        inked = [b for b in boxes if b[2] > b[0] and b[3] > b[1]]
        if not inked:
            return None
        return union(*inked)
    finally:
        text_page.close()
        page.close()
