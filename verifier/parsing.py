"""Reading an untrusted PDF within the worker's parse caps: decoded stream bytes, object
count and nesting depth (``verifier.limits.Limits``).

pyHanko bounds stream decoding itself (:class:`~pyhanko.pdf_utils.decode_limits.DecodeLimits`,
per stream and per document); the object count is read from the cross-reference data once
the file is open; nesting depth is counted around pyHanko's recursive object reader.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from io import BytesIO
from typing import Any

from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.decode_limits import (
    DEFAULT_PURPOSE_LIMITS,
    DecodeLimits,
    DocumentDecodeBudget,
    StreamDecodeLimits,
)
from pyhanko.pdf_utils.misc import PdfDecodeLimitError, PdfError, PdfReadError
from pyhanko.pdf_utils.reader import PdfFileReader

from verifier.errors import UnreadableDocumentError
from verifier.limits import LimitExceededError, Limits

_depth = threading.local()
_installed_depth: int | None = None
_original_read_object: Callable[..., Any] = generic.read_object


def decode_limits(limits: Limits) -> DecodeLimits:
    """pyHanko's decoding bounds for ``limits``: no stream and no document together may
    decode to more than ``max_decompressed_bytes``."""
    cap = limits.max_decompressed_bytes
    return DecodeLimits(
        per_stream=StreamDecodeLimits(max_output_size=cap),
        per_purpose=dict(DEFAULT_PURPOSE_LIMITS),
        document_budget=DocumentDecodeBudget(base_allowance=cap, max_ratio=0),
    )


def open_reader(data: bytes, limits: Limits) -> PdfFileReader:
    """``data`` read strictly under ``limits``.

    Strict parsing only: a file pyHanko has to repair is a file whose signed bytes and
    displayed content may differ, so it is refused rather than repaired.
    """
    try:
        reader = PdfFileReader(BytesIO(data), strict=True, decode_limits=decode_limits(limits))
    except PdfDecodeLimitError as ex:
        raise decode_limit_error(limits) from ex
    except RecursionError as ex:
        raise depth_error(limits) from ex
    except LimitExceededError:
        raise
    except (PdfError, ValueError, TypeError, KeyError, IndexError, AttributeError) as ex:
        raise UnreadableDocumentError("the input is not a PDF that can be read strictly") from ex
    if reader.encrypted:
        raise UnreadableDocumentError("encrypted PDFs are not verified")
    objects = sum(
        len(reader.xrefs.explicit_refs_in_revision(r)) for r in range(reader.xrefs.total_revisions)
    )
    if objects > limits.max_objects:
        raise LimitExceededError(
            f"the PDF declares {objects} objects; at most {limits.max_objects} are read",
            code="verifier.too_many_objects",
        )
    return reader


def decode_limit_error(limits: Limits) -> LimitExceededError:
    return LimitExceededError(
        f"the PDF's streams decode to more than {limits.max_decompressed_bytes} bytes",
        code="verifier.decompressed_too_large",
    )


def depth_error(limits: Limits) -> LimitExceededError:
    return LimitExceededError(
        f"the PDF nests objects deeper than {limits.max_depth} levels",
        code="verifier.too_deep",
    )


def install_parse_guards(max_depth: int) -> None:
    """Guard pyHanko's object reader: count nesting and stop past ``max_depth`` levels;
    refuse an object that is a comment running to the end of its data.

    Arrays and dictionaries read their members through the module-level ``read_object``,
    so wrapping it counts every level. pyHanko's reader loops for ever on a comment with
    no end of line before the end of the stream (an object stream can end that way).
    Called once per worker process, not in the service: the service never parses
    untrusted PDFs itself.
    """
    global _installed_depth
    if _installed_depth == max_depth:
        return

    def read_object(stream: Any, *args: Any, **kwargs: Any) -> Any:
        level = getattr(_depth, "level", 0)
        if level >= max_depth:
            raise RecursionError(f"nesting deeper than {max_depth}")
        first = stream.read(1)
        if first == b"%":
            _check_comment_ends(stream)
        if first:
            stream.seek(-1, os.SEEK_CUR)
        _depth.level = level + 1
        try:
            return _original_read_object(stream, *args, **kwargs)
        finally:
            _depth.level = level

    generic.read_object = read_object
    _installed_depth = max_depth


def _check_comment_ends(stream: Any) -> None:
    """Raise unless an end of line follows the ``%`` just read (the position is kept)."""
    start = stream.tell()
    while chunk := stream.read(4096):
        if b"\r" in chunk or b"\n" in chunk:
            stream.seek(start)
            return
    raise PdfReadError("a comment runs to the end of the data")
