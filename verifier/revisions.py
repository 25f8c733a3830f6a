"""What each revision of an untrusted PDF changed: pages, annotations, form fields, and
optional thumbnails of the changed pages as they looked in that revision.

A reader of a signed document needs to see what was added after each signature, not only
a modification level. This runs inside the isolated verifier worker on bytes that
:mod:`verifier.validate` already parsed strictly; every walk is bounded, and a revision
whose analysis hit a bound (or an unreadable object) says so with ``"truncated": true``
and counts the pages it could not compare as changed, never as unchanged.

Pages are compared per index between revision ``r - 1`` and ``r`` by a fingerprint of
everything reachable from the page dictionary (content streams by their encoded bytes,
resources, annotations and their appearance streams), skipping the back-pointers
``/Parent`` and ``/P``. Fingerprints are cached per object across revisions and reused
while neither the object nor anything it reaches was rewritten by a later revision, so
an unchanged page costs a set intersection, not a walk.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from io import BytesIO
from typing import Any

from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.misc import PdfError
from pyhanko.pdf_utils.reader import HistoricalResolver, PdfFileReader

from verifier.errors import UnreadableDocumentError

MAX_REVISIONS = 64
"""Revisions described; a document with more is described up to this many, and the last
one described is marked truncated."""
MAX_PAGES = 2000
"""Pages compared per revision; beyond, the revision is marked truncated."""
MAX_OBJECTS_PER_PAGE = 20_000
"""Indirect objects visited to fingerprint one page (or one form field)."""
MAX_FIELDS = 2000
"""Form fields compared per revision."""
MAX_DEPTH = 96
"""Deepest nesting (direct and indirect) followed while fingerprinting."""
MAX_THUMBNAIL_WIDTH = 1024
"""Widest thumbnail rendered, in pixels."""
MAX_THUMBNAIL_ASPECT = 4
"""A page taller than this many times its width gets no thumbnail (bitmap size bound)."""

_SKIPPED_KEYS = frozenset({"/Parent", "/P"})
# Inheritable page attributes (ISO 32000-1, 7.7.3.4) that change what a page shows.
_INHERITED = ("/Resources", "/MediaBox", "/CropBox", "/Rotate")
_READ_ERRORS = (PdfError, ValueError, TypeError, KeyError, IndexError, AttributeError)

Key = tuple[int, int]


class _Truncated(Exception):
    """A bound was reached (or an object could not be read) while fingerprinting."""


def describe_revisions(
    data: bytes,
    *,
    thumbnails: bool = False,
    max_thumbnails: int = 12,
    thumbnail_width: int = 200,
) -> list[dict[str, Any]]:
    """The ``revisions`` list of the JSON report for ``data`` (docs/verifier.md).

    Raises :class:`~verifier.errors.UnreadableDocumentError` if ``data`` cannot be read
    strictly. Use :func:`describe_reader_revisions` when a reader is already at hand.
    """
    try:
        reader = PdfFileReader(BytesIO(data), strict=True)
    except _READ_ERRORS as ex:
        raise UnreadableDocumentError("the input is not a PDF that can be read strictly") from ex
    if reader.encrypted:
        raise UnreadableDocumentError("encrypted PDFs are not verified")
    return describe_reader_revisions(
        reader,
        data,
        thumbnails=thumbnails,
        max_thumbnails=max_thumbnails,
        thumbnail_width=thumbnail_width,
    )


def describe_reader_revisions(
    reader: PdfFileReader,
    data: bytes,
    *,
    thumbnails: bool = False,
    max_thumbnails: int = 12,
    thumbnail_width: int = 200,
) -> list[dict[str, Any]]:
    """As :func:`describe_revisions`, for a strict ``reader`` opened on exactly ``data``.

    Thumbnails, when asked for, go to the changed pages of the latest revisions first
    (page 1 only for revision 0), ``max_thumbnails`` in all.
    """
    if not 16 <= thumbnail_width <= MAX_THUMBNAIL_WIDTH:
        raise ValueError(f"thumbnail_width must be between 16 and {MAX_THUMBNAIL_WIDTH}")
    if max_thumbnails < 0:
        raise ValueError("max_thumbnails must not be negative")
    total = reader.xrefs.total_revisions
    described = min(total, MAX_REVISIONS)
    fingerprints = _Fingerprints(reader)
    previous: _Snapshot | None = None
    revisions: list[dict[str, Any]] = []
    for index in range(described):
        snapshot = fingerprints.snapshot(index)
        entry = _compare(index, previous, snapshot)
        entry["end"] = _revision_end(reader, data, index)
        if snapshot.truncated or (index == described - 1 and total > described):
            entry["truncated"] = True
        revisions.append(entry)
        previous = snapshot
    if thumbnails:
        _add_thumbnails(revisions, data, max_thumbnails, thumbnail_width)
    return revisions


@dataclass(kw_only=True)
class _Snapshot:
    """What one revision looks like, as fingerprints."""

    pages: list[bytes] = field(default_factory=list)
    """Fingerprint of each page, in page order."""
    annotations: dict[object, bytes] = field(default_factory=dict)
    """Fingerprint of each annotation, by its reference (or page and position if direct)."""
    fields: dict[str, bytes] = field(default_factory=dict)
    """Fingerprint of each terminal form field, by its fully qualified name."""
    truncated: bool = False
    """A bound was hit or an object was unreadable: the comparison is incomplete."""
    unknown_pages: set[int] = field(default_factory=set)
    """0-based pages whose fingerprint could not be computed (counted as changed)."""


def _compare(index: int, previous: _Snapshot | None, current: _Snapshot) -> dict[str, Any]:
    if previous is None:
        # Revision 0 is the original document: everything in it is "new".
        return {
            "index": index,
            "changed_pages": list(range(1, len(current.pages) + 1)),
            "changes": {
                "pages_added": len(current.pages),
                "annotations_changed": len(current.annotations),
                "form_fields_changed": len(current.fields),
            },
        }
    changed = [
        number + 1
        for number, digest in enumerate(current.pages)
        if number >= len(previous.pages)
        or digest != previous.pages[number]
        or number in current.unknown_pages
    ]
    return {
        "index": index,
        "changed_pages": changed,
        "changes": {
            "pages_added": len(current.pages) - len(previous.pages),
            "annotations_changed": _differences(previous.annotations, current.annotations),
            "form_fields_changed": _differences(previous.fields, current.fields),
        },
    }


def _differences(before: dict[Any, bytes], after: dict[Any, bytes]) -> int:
    """Entries added, removed or changed between two fingerprint maps."""
    return sum(1 for key in before.keys() | after.keys() if before.get(key) != after.get(key))


@dataclass(kw_only=True)
class _Entry:
    """A cached object fingerprint."""

    digest: bytes
    """SHA-256 of the object's canonical form, children by their digests."""
    reach: frozenset[Key]
    """Every indirect object the digest depends on, the object itself included."""
    checked_at: int
    """Latest revision at which the digest was known to hold."""


class _Budget:
    def __init__(self, limit: int) -> None:
        self.left = limit

    def spend(self) -> None:
        self.left -= 1
        if self.left < 0:
            raise _Truncated("too many objects")


class _Fingerprints:
    """Object fingerprints of one reader, revision after revision (in increasing order)."""

    def __init__(self, reader: PdfFileReader) -> None:
        self._reader = reader
        self._cache: dict[Key, _Entry] = {}
        self._changed: list[frozenset[Key]] = []
        self._resolver: HistoricalResolver | None = None
        self._revision = -1

    def snapshot(self, revision: int) -> _Snapshot:
        xrefs = self._reader.xrefs
        rewritten = xrefs.explicit_refs_in_revision(revision) | xrefs.refs_freed_in_revision(
            revision
        )
        self._changed.append(frozenset((r.idnum, r.generation) for r in rewritten))
        self._revision = revision
        self._resolver = self._reader.get_historical_resolver(revision)
        snapshot = _Snapshot()
        try:
            root = self._resolver.root
            pages = list(self._pages(root))
        except (_Truncated, *_READ_ERRORS, RecursionError):
            snapshot.truncated = True
            return snapshot
        if len(pages) > MAX_PAGES:
            snapshot.truncated = True
            pages = pages[:MAX_PAGES]
        for number, (page, inherited) in enumerate(pages):
            snapshot.pages.append(self._page(snapshot, number, page, inherited))
        try:
            self._fields(snapshot, root)
        except (_Truncated, *_READ_ERRORS, RecursionError):
            snapshot.truncated = True
        return snapshot

    def _page(
        self,
        snapshot: _Snapshot,
        number: int,
        page: generic.PdfObject,
        inherited: dict[str, generic.PdfObject],
    ) -> bytes:
        budget = _Budget(MAX_OBJECTS_PER_PAGE)
        try:
            own = self._value(page, 0, frozenset(), budget, skip=_SKIPPED_KEYS)[0]
            parts = [own]
            for name in sorted(inherited):
                parts.append(
                    name.encode() + self._value(inherited[name], 0, frozenset(), budget)[0]
                )
            self._annotations(snapshot, number, page, budget)
        except (_Truncated, *_READ_ERRORS, RecursionError):
            snapshot.truncated = True
            snapshot.unknown_pages.add(number)
            return b""
        return hashlib.sha256(b"".join(parts)).digest()

    def _annotations(
        self, snapshot: _Snapshot, number: int, page: generic.PdfObject, budget: _Budget
    ) -> None:
        page_dict = _deref(page)
        if not isinstance(page_dict, generic.DictionaryObject) or "/Annots" not in page_dict:
            return
        annots = page_dict.raw_get("/Annots")
        if isinstance(annots, generic.IndirectObject):
            budget.spend()
            annots = _deref(annots)
        if not isinstance(annots, generic.ArrayObject):
            return
        for position, annot in enumerate(annots.raw_get(i) for i in range(len(annots))):
            key: object = (
                (annot.idnum, annot.generation)
                if isinstance(annot, generic.IndirectObject)
                else ("direct", number, position)
            )
            snapshot.annotations[key] = self._value(annot, 0, frozenset(), budget)[0]

    def _fields(self, snapshot: _Snapshot, root: generic.DictionaryObject) -> None:
        if "/AcroForm" not in root:
            return
        form = root["/AcroForm"]
        if not isinstance(form, generic.DictionaryObject) or "/Fields" not in form:
            return
        top = form["/Fields"]
        if not isinstance(top, generic.ArrayObject):
            return
        pending: list[tuple[str, generic.PdfObject, int]] = [
            ("", top.raw_get(i), 0) for i in reversed(range(len(top)))
        ]
        seen: set[Key] = set()
        while pending:
            if len(seen) > MAX_FIELDS or len(snapshot.fields) >= MAX_FIELDS:
                raise _Truncated("too many form fields")
            prefix, raw, depth = pending.pop()
            if isinstance(raw, generic.IndirectObject):
                if (raw.idnum, raw.generation) in seen:
                    continue
                seen.add((raw.idnum, raw.generation))
            node = _deref(raw)
            if not isinstance(node, generic.DictionaryObject):
                continue
            partial = str(node["/T"]) if "/T" in node else ""
            name = f"{prefix}.{partial}" if prefix and partial else prefix or partial
            kids = node.get("/Kids")
            if isinstance(kids, generic.ArrayObject) and any(
                _is_named_field(_deref(kids.raw_get(i))) for i in range(len(kids))
            ):
                if depth >= MAX_DEPTH:
                    raise _Truncated("form field tree too deep")
                pending.extend(
                    (name, kids.raw_get(i), depth + 1) for i in reversed(range(len(kids)))
                )
                continue
            unique, suffix = name, 1
            while unique in snapshot.fields:
                suffix += 1
                unique = f"{name}#{suffix}"
            budget = _Budget(MAX_OBJECTS_PER_PAGE)
            snapshot.fields[unique] = self._value(raw, 0, frozenset(), budget, skip=_SKIPPED_KEYS)[
                0
            ]

    def _pages(
        self, root: generic.DictionaryObject
    ) -> Iterator[tuple[generic.PdfObject, dict[str, generic.PdfObject]]]:
        """Every page (raw, as referenced) with the attributes it inherits, in order."""
        tree = root.raw_get("/Pages")
        stack: list[tuple[generic.PdfObject, dict[str, generic.PdfObject], int]] = [(tree, {}, 0)]
        seen: set[Key] = set()
        count = 0
        while stack:
            raw, inherited, depth = stack.pop()
            if isinstance(raw, generic.IndirectObject):
                key = (raw.idnum, raw.generation)
                if key in seen:
                    raise _Truncated("the page tree has a cycle")
                seen.add(key)
            node = _deref(raw)
            if not isinstance(node, generic.DictionaryObject):
                raise _Truncated("a page tree node is not a dictionary")
            if "/Kids" in node:
                if depth >= MAX_DEPTH:
                    raise _Truncated("the page tree is too deep")
                mine = dict(inherited)
                for name in _INHERITED:
                    if name in node:
                        mine[name] = node.raw_get(name)
                kids = node["/Kids"]
                if not isinstance(kids, generic.ArrayObject):
                    raise _Truncated("/Kids is not an array")
                stack.extend((kids.raw_get(i), mine, depth + 1) for i in reversed(range(len(kids))))
                continue
            count += 1
            if count > MAX_PAGES + 1:
                return
            yield raw, {k: v for k, v in inherited.items() if k not in node}

    def _value(
        self,
        obj: generic.PdfObject,
        depth: int,
        stack: frozenset[Key],
        budget: _Budget,
        *,
        skip: frozenset[str] = _SKIPPED_KEYS,
    ) -> tuple[bytes, frozenset[Key], bool]:
        """``obj``'s canonical bytes, the indirect objects they depend on, and whether a
        reference cycle was cut on the way (such a digest depends on where the walk
        entered the cycle, so it is not cached)."""
        if depth > MAX_DEPTH:
            raise _Truncated("objects nested too deeply")
        if isinstance(obj, generic.IndirectObject):
            return self._reference((obj.idnum, obj.generation), depth, stack, budget)
        if isinstance(obj, generic.DictionaryObject):
            reach: set[Key] = set()
            cyclic = False
            out = (
                [b"S" + hashlib.sha256(obj.encoded_data).digest()]
                if isinstance(obj, generic.StreamObject)
                else []
            )
            out.append(b"<<")
            for name in sorted(obj.keys()):
                if name in skip:
                    continue
                child, child_reach, child_cyclic = self._value(
                    obj.raw_get(name), depth + 1, stack, budget
                )
                out.append(_atom(generic.NameObject(name)) + child)
                reach |= child_reach
                cyclic |= child_cyclic
            out.append(b">>")
            return b"".join(out), frozenset(reach), cyclic
        if isinstance(obj, generic.ArrayObject):
            reach = set()
            cyclic = False
            out = [b"["]
            for i in range(len(obj)):
                child, child_reach, child_cyclic = self._value(
                    obj.raw_get(i), depth + 1, stack, budget
                )
                out.append(child)
                reach |= child_reach
                cyclic |= child_cyclic
            out.append(b"]")
            return b"".join(out), frozenset(reach), cyclic
        return _atom(obj), frozenset(), False

    def _reference(
        self, key: Key, depth: int, stack: frozenset[Key], budget: _Budget
    ) -> tuple[bytes, frozenset[Key], bool]:
        budget.spend()
        if key in stack:
            return b"C%d,%d;" % key, frozenset({key}), True
        cached = self._cache.get(key)
        if cached is not None and self._still_valid(key, cached):
            cached.checked_at = self._revision
            return b"R" + cached.digest, cached.reach, False
        assert self._resolver is not None
        target = self._resolver.get_object(generic.Reference(key[0], key[1], self._resolver))
        body, reach, cyclic = self._value(target, depth + 1, stack | {key}, budget)
        digest = hashlib.sha256(body).digest()
        reach = reach | {key}
        if not cyclic:
            self._cache[key] = _Entry(digest=digest, reach=reach, checked_at=self._revision)
        return b"R" + digest, reach, cyclic

    def _still_valid(self, key: Key, entry: _Entry) -> bool:
        for changed in self._changed[entry.checked_at + 1 : self._revision + 1]:
            if key in changed or not entry.reach.isdisjoint(changed):
                return False
        return True


def _deref(obj: generic.PdfObject) -> generic.PdfObject:
    if isinstance(obj, generic.IndirectObject):
        target: generic.PdfObject = obj.get_object()  # type: ignore[no-untyped-call]
        return target
    return obj


def _is_named_field(obj: generic.PdfObject) -> bool:
    # A kid with a partial name (/T) is a field; without one it is only a widget.
    return isinstance(obj, generic.DictionaryObject) and "/T" in obj


def _atom(obj: generic.PdfObject) -> bytes:
    # Type name first: the string "1" and the number 1 must not collide.
    return f"{type(obj).__name__}:{obj!r};".encode("utf-8", "backslashreplace")


def _revision_end(reader: PdfFileReader, data: bytes, revision: int) -> int | None:
    """Offset just past the ``%%EOF`` (and its end-of-line) closing ``revision``."""
    try:
        start = reader.xrefs.get_xref_container_info(revision).end_location
    except _READ_ERRORS:
        return None
    eof = data.find(b"%%EOF", start)
    if eof < 0:
        return None
    end = eof + len(b"%%EOF")
    if data.startswith(b"\r\n", end):
        return end + 2
    if data[end : end + 1] in (b"\r", b"\n"):
        return end + 1
    return end


def _add_thumbnails(
    revisions: list[dict[str, Any]], data: bytes, max_thumbnails: int, width: int
) -> None:
    left = max_thumbnails
    for revision in reversed(revisions):
        revision["thumbnails"] = []
        pages = (
            revision["changed_pages"][:1] if revision["index"] == 0 else revision["changed_pages"]
        )
        end = revision["end"]
        if left <= 0 or not pages or end is None:
            continue
        chosen = pages[:left]
        rendered = _render(data[:end], chosen, width)
        revision["thumbnails"] = [
            {"page": page, "png_base64": base64.b64encode(png).decode("ascii")}
            for page, png in rendered
        ]
        left -= len(chosen)


def _render(prefix: bytes, pages: list[int], width: int) -> list[tuple[int, bytes]]:
    """PNG thumbnails of the 1-based ``pages`` of the PDF ``prefix``; pages pdfium cannot
    render are left out."""
    # Imported here: only thumbnail requests pay for loading pdfium.
    import pypdfium2 as pdfium

    out: list[tuple[int, bytes]] = []
    try:
        document = pdfium.PdfDocument(prefix)
    except pdfium.PdfiumError:
        return out
    try:
        count = len(document)
        for number in pages:
            if number > count:
                continue
            png = _render_page(document, number - 1, width)
            if png is not None:
                out.append((number, png))
    finally:
        document.close()
    return out


def _render_page(document: Any, index: int, width: int) -> bytes | None:
    import pypdfium2 as pdfium

    page = None
    bitmap = None
    try:
        page = document[index]
        page_width, page_height = page.get_size()
        if page.get_rotation() in (90, 270):
            page_width, page_height = page_height, page_width
        if page_width <= 0 or page_height <= 0 or page_height > MAX_THUMBNAIL_ASPECT * page_width:
            return None
        bitmap = page.render(scale=width / page_width)
        image = bitmap.to_pil()
        if image.width != width:
            height = max(1, round(image.height * width / image.width))
            image = image.resize((width, height))
        buffer = BytesIO()
        image.save(buffer, format="PNG", optimize=True)
        return buffer.getvalue()
    except (pdfium.PdfiumError, ValueError, OSError):
        return None
    finally:
        if bitmap is not None:
            bitmap.close()
        if page is not None:
            page.close()
