"""The verification report for people, as an A4 PDF (fpdf2).

Same content as the HTML page (both come from :func:`verifier.texts.build_view`), rendered
in the trusted service from the JSON report. The font is a TTF path given by the caller
(the service passes the signer's DejaVu Serif; the verifier may not import ``signer``), so
Vietnamese renders; fpdf2 embeds only the glyphs used. The PDF is plain — not encrypted,
one classic cross-reference — because the service seals it with an incremental signature.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from io import BytesIO
from pathlib import Path
from typing import Any

from fpdf import FPDF
from fpdf.enums import XPos, YPos

from verifier.texts import LABELS, Line, ReportView, SignatureView, Thumbnail, Tone, build_view

_FAMILY = "KysoReport"

_COLOURS: dict[Tone, tuple[tuple[int, int, int], tuple[int, int, int]]] = {
    "passed": ((27, 94, 32), (232, 245, 233)),
    "failed": ((183, 28, 28), (255, 235, 238)),
    "warning": ((138, 90, 0), (255, 248, 225)),
}
"""Text and fill colour per verdict: green, red, amber. The words stand alone."""

_TEXT = (33, 33, 33)
_GREY = (90, 90, 90)
_THUMB_WIDTH = 40.0
"""Width of a page thumbnail, millimetres."""


def render_pdf(report: Mapping[str, Any], *, language: str = "vi", font: Path) -> bytes:
    """The report as an A4 PDF in ``language`` ("vi" or "en"), set in the TTF ``font``."""
    view = build_view(report, language)
    pdf = FPDF(orientation="portrait", unit="mm", format="A4")
    pdf.set_margins(18, 16, 18)
    pdf.set_auto_page_break(auto=True, margin=16)
    pdf.add_font(_FAMILY, "", str(font))
    pdf.set_title(view.title)
    pdf.set_lang(view.language)
    pdf.set_creator("Kyso")
    pdf.add_page()

    _write(pdf, view.title, size=16, height=8)
    pdf.ln(2)
    _verdict(pdf, view.tone, view.verdict, view.technical, view.reasons, view.verdict_detail)
    _lines(pdf, view.lines)

    _heading(pdf, view.signatures_heading)
    if not view.signatures:
        _write(pdf, view.empty_signatures)
    for signature in view.signatures:
        _signature(pdf, signature)

    if view.revisions:
        _heading(pdf, view.revisions_heading)
        for revision in view.revisions:
            _write(pdf, revision.heading, size=11.5, height=6)
            _lines(pdf, revision.lines)
            _thumbnails(pdf, revision.thumbnails, view)
            pdf.ln(2)

    pdf.ln(4)
    _write(pdf, view.footer, size=8.5, height=4.2, colour=_GREY)
    return bytes(pdf.output())


def _write(
    pdf: FPDF,
    text: str,
    *,
    size: float = 10,
    height: float = 5,
    colour: tuple[int, int, int] = _TEXT,
    fill: tuple[int, int, int] | None = None,
) -> None:
    pdf.set_font(_FAMILY, size=size)
    pdf.set_text_color(*colour)
    if fill is not None:
        pdf.set_fill_color(*fill)
    pdf.multi_cell(
        0,
        height,
        text,
        align="L",
        fill=fill is not None,
        new_x=XPos.LMARGIN,
        new_y=YPos.NEXT,
    )


def _heading(pdf: FPDF, text: str) -> None:
    pdf.ln(4)
    _write(pdf, text, size=13, height=7)
    pdf.set_draw_color(*_GREY)
    pdf.line(pdf.l_margin, pdf.get_y(), pdf.w - pdf.r_margin, pdf.get_y())
    pdf.ln(2)


def _verdict(
    pdf: FPDF,
    tone: Tone,
    verdict: str,
    technical: str,
    reasons: tuple[str, ...],
    detail: str = "",
) -> None:
    colour, background = _COLOURS[tone]
    _write(pdf, verdict, size=14, height=8, colour=colour, fill=background)
    if detail:
        _write(pdf, detail, colour=colour, fill=background)
    for reason in reasons:
        _write(pdf, f"• {reason}", colour=colour, fill=background)
    _write(pdf, technical, size=8, height=4, colour=_GREY, fill=background)
    pdf.ln(2)


def _lines(pdf: FPDF, lines: tuple[Line, ...]) -> None:
    for line in lines:
        pdf.set_font(_FAMILY, size=8.5)
        pdf.set_text_color(*_GREY)
        pdf.write(4.8, f"{line.label}: ")
        pdf.set_font(_FAMILY, size=8 if line.small else 10)
        pdf.set_text_color(*_TEXT)
        pdf.write(4.8, line.value)
        pdf.ln(5.6)


def _signature(pdf: FPDF, signature: SignatureView) -> None:
    if pdf.get_y() > pdf.page_break_trigger - 40:
        pdf.add_page()  # keep a signature's heading with its verdict
    pdf.ln(2)
    _write(pdf, signature.heading, size=11.5, height=6)
    _verdict(pdf, signature.tone, signature.verdict, signature.technical, signature.reasons)
    _lines(pdf, signature.lines)


def _thumbnails(pdf: FPDF, thumbnails: tuple[Thumbnail, ...], view: ReportView) -> None:
    x = pdf.l_margin
    row_height = 0.0
    for thumbnail in thumbnails:
        width, height = struct.unpack(">II", thumbnail.png[16:24])  # checked by texts
        shown = _THUMB_WIDTH * height / width
        if x + _THUMB_WIDTH > pdf.w - pdf.r_margin:
            pdf.set_y(pdf.get_y() + row_height + 6)
            x, row_height = pdf.l_margin, 0.0
        if pdf.get_y() + shown + 6 > pdf.page_break_trigger:
            pdf.add_page()
            x, row_height = pdf.l_margin, 0.0
        y = pdf.get_y()
        try:
            pdf.image(BytesIO(thumbnail.png), x=x, y=y, w=_THUMB_WIDTH, h=shown)
        except Exception:  # noqa: S112 - a PNG that looked sane but does not decode: omit it
            continue
        pdf.rect(x, y, _THUMB_WIDTH, shown)
        pdf.set_font(_FAMILY, size=8)
        pdf.set_text_color(*_GREY)
        pdf.text(x, y + shown + 4, f"{LABELS['page'][view.language]} {thumbnail.page}")
        x += _THUMB_WIDTH + 6
        row_height = max(row_height, shown)
    if row_height:
        pdf.set_y(pdf.get_y() + row_height + 6)
