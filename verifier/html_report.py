"""The verification report for people, as one self-contained HTML page.

Rendered in the trusted service from the JSON report, never from the PDF. The page has
inline CSS only: no script, no external URL, and every value is escaped, because the
names in it come from the signer's certificate. Thumbnails are embedded as ``data:`` URLs
only after :func:`verifier.texts.checked_png` accepted them.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from html import escape
from typing import Any

from verifier.texts import LABELS, Line, ReportView, RevisionView, SignatureView, Tone, build_view

_COLOURS: dict[Tone, tuple[str, str]] = {
    "passed": ("#1b5e20", "#e8f5e9"),
    "failed": ("#b71c1c", "#ffebee"),
    "warning": ("#8a5a00", "#fff8e1"),
}
"""Text and background colour per verdict: green, red, amber. The words stand alone."""

_MARKS: dict[Tone, str] = {"passed": "✔", "failed": "✘", "warning": "⚠"}

_CSS = """
body{font-family:"DejaVu Serif","Times New Roman",serif;max-width:58em;margin:1.5em auto;
padding:0 1em;color:#212121;line-height:1.45}
h1{font-size:1.5em;margin-bottom:.4em}h2{font-size:1.2em;margin-top:1.6em}
h3{font-size:1.05em;margin:.2em 0 .5em}
.verdict{border:2px solid;border-radius:6px;padding:.7em 1em;margin:.8em 0}
.verdict strong{font-size:1.3em}
.small{font-size:.8em;color:#555;overflow-wrap:anywhere}
dl{display:grid;grid-template-columns:minmax(10em,16em) 1fr;gap:.25em 1em;margin:.5em 0}
dt{font-weight:bold}dd{margin:0;overflow-wrap:anywhere}
.signature,.revision{border:1px solid #ccc;border-radius:6px;padding:.7em 1em;margin:1em 0}
figure{display:inline-block;margin:.3em .6em .3em 0;text-align:center}
figure img{max-width:14em;max-height:20em;border:1px solid #999}
figcaption{font-size:.8em}
footer{margin-top:2em;font-size:.85em;color:#555}
"""


def render_html(report: Mapping[str, Any], *, language: str = "vi") -> str:
    """The report as a complete HTML page in ``language`` ("vi" or "en")."""
    view = build_view(report, language)
    parts = [
        "<!DOCTYPE html>",
        f'<html lang="{view.language}">',
        "<head>",
        '<meta charset="utf-8">',
        # Belt and braces: even if a value slipped through, the page may load nothing.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "img-src data:; style-src 'unsafe-inline'\">",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(view.title)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        f"<h1>{_e(view.title)}</h1>",
        _verdict(view.tone, view.verdict, view.technical, view.reasons, view.verdict_detail),
        _lines(view.lines),
        f"<h2>{_e(view.signatures_heading)}</h2>",
    ]
    if not view.signatures:
        parts.append(f"<p>{_e(view.empty_signatures)}</p>")
    parts.extend(_signature(signature) for signature in view.signatures)
    if view.revisions:
        parts.append(f"<h2>{_e(view.revisions_heading)}</h2>")
        parts.extend(_revision(revision, view) for revision in view.revisions)
    parts += [f"<footer>{_e(view.footer)}</footer>", "</body>", "</html>", ""]
    return "\n".join(parts)


def _e(text: str) -> str:
    return escape(text, quote=True)


def _verdict(
    tone: Tone, verdict: str, technical: str, reasons: tuple[str, ...], detail: str = ""
) -> str:
    colour, background = _COLOURS[tone]
    out = [
        f'<div class="verdict {tone}" style="color:{colour};background:{background};'
        f'border-color:{colour}">',
        f"<strong>{_MARKS[tone]} {_e(verdict)}</strong>",
    ]
    if detail:
        out.append(f"<div>{_e(detail)}</div>")
    if reasons:
        out.append("<ul>" + "".join(f"<li>{_e(r)}</li>" for r in reasons) + "</ul>")
    out.append(f'<div class="small">{_e(technical)}</div>')
    out.append("</div>")
    return "\n".join(out)


def _lines(lines: tuple[Line, ...]) -> str:
    rows = []
    for line in lines:
        value = f'<span class="small">{_e(line.value)}</span>' if line.small else _e(line.value)
        rows.append(f"<dt>{_e(line.label)}</dt><dd>{value}</dd>")
    return "<dl>\n" + "\n".join(rows) + "\n</dl>"


def _signature(signature: SignatureView) -> str:
    return "\n".join(
        [
            '<section class="signature">',
            f"<h3>{_e(signature.heading)}</h3>",
            _verdict(signature.tone, signature.verdict, signature.technical, signature.reasons),
            _lines(signature.lines),
            "</section>",
        ]
    )


def _revision(revision: RevisionView, view: ReportView) -> str:
    page_label = LABELS["page"][view.language]
    figures = []
    for thumbnail in revision.thumbnails:
        data = base64.b64encode(thumbnail.png).decode("ascii")
        caption = f"{page_label} {thumbnail.page}"
        figures.append(
            f'<figure><img src="data:image/png;base64,{data}" alt="{_e(caption)}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>"
        )
    return "\n".join(
        [
            '<section class="revision">',
            f"<h3>{_e(revision.heading)}</h3>",
            _lines(revision.lines),
            *figures,
            "</section>",
        ]
    )
