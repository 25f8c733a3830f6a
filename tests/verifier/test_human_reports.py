"""The people-facing reports: verdict words per language, escaping, translations, thumbnails,
and a PDF that qpdf accepts and whose text pdftotext finds."""

from __future__ import annotations

import base64
import copy
import shutil
import subprocess
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import Engine

from hsm import BlockingSessionPool
from tests.pki.test_authority import make_authority
from tests.verifier.fixtures import root_der, signed
from verifier.html_report import render_html
from verifier.pdf_report import render_pdf
from verifier.policy import default_policy
from verifier.report import to_json
from verifier.texts import (
    REASONS,
    SUB_INDICATIONS,
    UnsupportedLanguageError,
    build_view,
    checked_png,
)
from verifier.validate import verify_pdf

FONT = Path(__file__).resolve().parents[2] / "signer" / "fonts" / "DejaVuSerif.ttf"

REASON_CODES = (
    "no_signature",
    "too_many_signatures",
    "hash_mismatch",
    "signature_invalid",
    "weak_digest",
    "weak_key",
    "certificate_revoked",
    "certificate_revoked_no_poe",
    "chain_not_validated",
    "timestamp_invalid",
    "timestamp_untrusted",
    "unsigned_trailing_bytes",
    "partial_coverage",
    "suspicious_modification",
    "modifications_not_analysed",
    "disallowed_modification",
    "not_passed",
    "validation_error",
    "malformed_signature",
    "revocation_unknown",
    "unsigned_form_change",
    # an INDETERMINATE answer from the service when a worker died or hit a limit
    "worker_crashed",
    "time_limit",
    "cpu_limit",
    "memory_limit",
    "too_many_objects",
    "decompressed_too_large",
    "too_deep",
    "task_failed",
)
"""Every reason code the verifier emits (docs/verifier.md); texts.REASONS must match it."""

VI_NAME = "Nguyễn Văn Ánh"
EVIL_CN = "<script>alert(1)</script>"
VERDICT = {
    "vi": ("Chữ ký hợp lệ", "Chữ ký không hợp lệ", "Chưa xác định được (cảnh báo)"),
    "en": ("Signature valid", "Signature not valid", "Cannot be determined (warning)"),
}


def png(width: int = 12, height: int = 16) -> bytes:
    out = BytesIO()
    Image.new("RGB", (width, height), (180, 20, 20)).save(out, "PNG")
    return out.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def signature(
    *,
    field: str,
    signer: str | None,
    revision: int,
    indication: str = "TOTAL-PASSED",
    sub_indication: str | None = None,
    reasons: list[dict[str, str]] | None = None,
    timestamp: bool = True,
    revocation: dict[str, Any] | None = None,
    modification_level: str | None = "FORM_FILLING",
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "field": field,
        "kind": "approval",
        "signer": signer,
        "organisation": "Bộ Công an",
        "unit": "Công an xã Đông Hòa",
        "indication": indication,
        "sub_indication": sub_indication,
        "reasons": reasons or [],
        "signing_time": "2026-05-04T09:30:00+07:00",
        "timestamp": (
            {"time": "2026-05-04T09:30:02+07:00", "authority": "Kyso TSA", "passed": True}
            if timestamp
            else None
        ),
        "modification_level": modification_level,
        "coverage": "ENTIRE_REVISION",
        "revision": revision,
        "certificate": {
            "subject": f"CN={signer}",
            "issuer": "CN=Kyso Issuing CA, O=Bộ Công an",
            "serial": "123456789012345678901234567890",
            "not_before": "2026-01-01T00:00:00+00:00",
            "not_after": "2027-01-01T00:00:00+00:00",
        },
    }
    if revocation is not None:
        entry["revocation"] = revocation
    return entry


def passed_report(thumbnails: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Two signatures, listed out of revision order, three revisions, a thumbnail each."""
    thumb = [{"page": 1, "png_base64": b64(png())}]
    return {
        "schema_version": 1,
        "indication": "TOTAL-PASSED",
        "sub_indication": None,
        "reasons": [],
        "policy": "kyso-default",
        "document_sha256": "ab" * 32,
        "signatures": [
            signature(
                field="DauCoQuan",
                signer="Công an xã Đông Hòa",
                revision=1,
                revocation={"source": "kyso", "status": "good", "time": "2026-05-04T09:31:00Z"},
                modification_level="NONE",
            ),
            signature(field="CanBoKy", signer=VI_NAME, revision=0),
        ],
        "revisions": [
            {
                "index": 0,
                "end": 1000,
                "changed_pages": [1, 2],
                "changes": {"pages_added": 2, "annotations_changed": 0, "form_fields_changed": 0},
                "thumbnails": thumb,
            },
            {
                "index": 1,
                "end": 2000,
                "changed_pages": [1],
                "changes": {"pages_added": 0, "annotations_changed": 0, "form_fields_changed": 1},
                "thumbnails": thumbnails if thumbnails is not None else thumb,
            },
        ],
        "verified_at": "2026-05-05T08:00:00+07:00",
    }


def failed_report() -> dict[str, Any]:
    text = "The signed bytes do not match the signature's digest."
    return {
        "schema_version": 1,
        "indication": "TOTAL-FAILED",
        "sub_indication": "HASH_FAILURE",
        "reasons": [],
        "policy": "kyso-default",
        "document_sha256": "cd" * 32,
        "signatures": [
            signature(
                field="CanBoKy",
                signer=EVIL_CN,
                revision=0,
                indication="TOTAL-FAILED",
                sub_indication="HASH_FAILURE",
                reasons=[{"code": "hash_mismatch", "text": text}],
            )
        ],
    }


def indeterminate_report() -> dict[str, Any]:
    text = "Nobody said whether the certificate is revoked."
    return {
        "schema_version": 1,
        "indication": "INDETERMINATE",
        "sub_indication": "TRY_LATER",
        "reasons": [],
        "policy": "kyso-strict",
        "document_sha256": "ef" * 32,
        "signatures": [
            signature(
                field="CanBoKy",
                signer=VI_NAME,
                revision=0,
                indication="INDETERMINATE",
                sub_indication="TRY_LATER",
                reasons=[{"code": "revocation_unknown", "text": text}],
                timestamp=False,
                revocation={"source": "document", "status": "unknown", "time": None},
            )
        ],
    }


def pdf_text(pdf: bytes, tmp_path: Path) -> str:
    path = tmp_path / "report.pdf"
    path.write_bytes(pdf)
    check = subprocess.run(["qpdf", "--check", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    encryption = subprocess.run(
        ["qpdf", "--show-encryption", str(path)], capture_output=True, text=True
    )
    assert "File is not encrypted" in encryption.stdout
    text = subprocess.run(
        ["pdftotext", "-enc", "UTF-8", str(path), "-"], capture_output=True, check=True
    ).stdout.decode("utf-8")
    return " ".join(text.split())  # pdftotext breaks lines where the layout wraps them


@pytest.fixture(autouse=True)
def _tools() -> None:
    for tool in ("qpdf", "pdftotext"):
        assert shutil.which(tool), f"{tool} is not installed (Makefile TEST_PACKAGES)"


def test_every_reason_code_has_both_translations() -> None:
    assert set(REASONS) == set(REASON_CODES)
    for code in REASON_CODES:
        assert REASONS[code]["vi"].strip(), code
        assert REASONS[code]["en"].strip(), code
        assert REASONS[code]["vi"] != REASONS[code]["en"], code
    for sub, texts in SUB_INDICATIONS.items():
        assert texts["vi"], sub
        assert texts["en"], sub


@pytest.mark.parametrize(
    ("build", "position"),
    [(passed_report, 0), (failed_report, 1), (indeterminate_report, 2)],
)
@pytest.mark.parametrize("language", ["vi", "en"])
def test_verdict_words_per_language(build: Any, position: int, language: str) -> None:
    page = render_html(build(), language=language)
    assert f'<html lang="{language}">' in page
    tone = ("passed", "failed", "warning")[position]
    assert f'class="verdict {tone}"' in page
    assert VERDICT[language][position] in page
    for other in {0, 1, 2} - {position}:
        assert f'class="verdict {("passed", "failed", "warning")[other]}"' not in page
    other_language = "en" if language == "vi" else "vi"
    assert VERDICT[other_language][position] not in page


def test_passed_report_content_and_thumbnails() -> None:
    report = passed_report()
    page = render_html(report)
    assert VI_NAME in page
    assert "Công an xã Đông Hòa, Bộ Công an" in page
    assert "CN=Kyso Issuing CA, O=Bộ Công an" in page
    assert "04/05/2026 09:30:02 (UTC+07:00)" in page  # the timestamp, proven
    assert "đây là thời điểm ký được chứng minh" in page
    assert "Thời điểm ký đã được chứng minh nằm trong thời hạn" in page
    assert "kyso-default" in page
    assert "ab" * 32 in page
    assert "05/05/2026 08:00:00" in page  # verified_at
    assert "hệ thống Kyso" in page  # revocation source of the seal
    assert "Tình trạng thu hồi</dt><dd>không có trong báo cáo" in page  # absent for the officer
    # revision order, not list order: the officer (revision 0) comes first
    assert page.index("“CanBoKy”") < page.index("“DauCoQuan”")
    assert "Phiên bản 2: thêm 0 trang, 0 chú thích thay đổi, 1 trường biểu mẫu thay đổi" in page
    assert page.count('<img src="data:image/png;base64,') == 2
    assert "<script" not in page
    assert "http://" not in page
    assert "https://" not in page
    english = render_html(report, language="en")
    assert "the proven signing time" in english
    assert "Revision 2" in english


def test_values_are_escaped_and_cleaned() -> None:
    report = failed_report()
    report["signatures"][0]["unit"] = '"><img src=x onerror=alert(1)>'
    report["signatures"][0]["certificate"]["issuer"] = "Evil\u202eAC odyK"
    page = render_html(report)
    assert EVIL_CN not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<img" not in page
    assert "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in page
    assert "\u202e" not in page
    assert "Evil\ufffdAC odyK" in page


def test_failed_and_indeterminate_reasons_are_translated() -> None:
    failed = render_html(failed_report())
    assert REASONS["hash_mismatch"]["vi"] in failed
    assert "The signed bytes do not match" not in failed
    assert "Nội dung được ký KHÔNG còn nguyên vẹn." in failed
    assert REASONS["hash_mismatch"]["en"] in render_html(failed_report(), language="en")

    warning = render_html(indeterminate_report())
    assert REASONS["revocation_unknown"]["vi"] in warning
    assert "Không được coi là hợp lệ" in warning
    assert "không có; thời điểm ký chưa được chứng minh" in warning
    assert "(chưa được chứng minh)" in warning  # validity judged on the claimed time only
    assert "không xác định (nguồn: dữ liệu kèm trong tài liệu" in warning


def test_unknown_reason_code_falls_back_to_english_text() -> None:
    report = failed_report()
    report["signatures"][0]["reasons"].append(
        {"code": "brand_new_check", "text": "A check added by a newer verifier <b>."}
    )
    page = render_html(report)
    assert "A check added by a newer verifier &lt;b&gt;." in page


def test_unknown_indication_is_a_warning_never_valid() -> None:
    report = passed_report()
    report["indication"] = "TOTALLY-FINE"
    report["signatures"][0]["indication"] = None
    view = build_view(report)
    assert view.tone == "warning"
    assert [s.tone for s in view.signatures] == ["passed", "warning"]
    # schema.md spells the indications with underscores, to_json with hyphens: both count
    assert build_view({"indication": "TOTAL_PASSED"}).tone == "passed"
    assert build_view({"indication": "TOTAL_FAILED"}).tone == "failed"


def test_validity_outside_the_certificate_is_said() -> None:
    report = indeterminate_report()
    report["signatures"][0]["signing_time"] = "2030-01-01T00:00:00+07:00"
    assert "NGOÀI thời hạn của chứng thư số" in render_html(report)


@pytest.mark.parametrize(
    "bad",
    [
        "not base64 !!",
        b64(b"\xff\xd8\xff\xe0" + b"\0" * 64),  # a JPEG
        b64(png()[:20]),  # truncated before the dimensions
        b64(png(4000, 10)),  # too wide to decode safely
        b64(png()[:8] + b"\0" * (512 * 1024 + 1)),  # over 512 KB
        12345,
    ],
)
def test_bad_thumbnails_are_dropped(bad: object, tmp_path: Path) -> None:
    assert checked_png(bad) is None
    report = passed_report(thumbnails=[{"page": 1, "png_base64": bad}])
    assert render_html(report).count("<img ") == 1  # only revision 0's good one
    pdf_text(render_pdf(report, font=FONT), tmp_path)


def test_broken_png_body_is_skipped_in_pdf(tmp_path: Path) -> None:
    header = png()[:33]  # signature and IHDR, then garbage instead of image data
    broken = b64(header + b"garbage" * 10)
    assert checked_png(broken) is not None
    report = passed_report(thumbnails=[{"page": 3, "png_base64": broken}])
    assert VI_NAME in pdf_text(render_pdf(report, font=FONT), tmp_path)


def test_unsupported_language() -> None:
    with pytest.raises(UnsupportedLanguageError, match="no report texts") as raised:
        render_html(passed_report(), language="fr")
    assert raised.value.code == "verifier.unsupported_language"


@pytest.mark.parametrize("language", ["vi", "en"])
def test_pdf_is_valid_and_carries_the_content(language: str, tmp_path: Path) -> None:
    pdf = render_pdf(passed_report(), language=language, font=FONT)
    assert pdf.startswith(b"%PDF-")
    assert len(pdf) < 200_000
    text = pdf_text(pdf, tmp_path)
    assert VERDICT[language][0] in text
    assert VI_NAME in text
    assert ("Phiên bản 2" if language == "vi" else "Revision 2") in text
    assert ("Trang 1" if language == "vi" else "Page 1") in text


def test_pdf_failed_and_indeterminate(tmp_path: Path) -> None:
    failed = pdf_text(render_pdf(failed_report(), font=FONT), tmp_path)
    assert VERDICT["vi"][1] in failed
    assert EVIL_CN in failed
    assert REASONS["hash_mismatch"]["vi"] in failed
    warning = pdf_text(render_pdf(indeterminate_report(), font=FONT), tmp_path)
    assert VERDICT["vi"][2] in warning
    assert REASONS["revocation_unknown"]["vi"] in warning


def test_report_without_new_fields_or_signatures(tmp_path: Path) -> None:
    report = copy.deepcopy(failed_report())
    report["signatures"] = []
    report["indication"], report["sub_indication"] = "INDETERMINATE", "SIGNED_DATA_NOT_FOUND"
    report["reasons"] = [{"code": "no_signature", "text": "No signature."}]
    page = render_html(report)
    assert REASONS["no_signature"]["vi"] in page
    assert "Không có chữ ký nào." in page
    assert "Thời điểm kiểm tra</dt><dd>không có thông tin" in page
    assert "Không có chữ ký nào." in pdf_text(render_pdf(report, font=FONT), tmp_path)


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite only: the verifier never touches the database; the signer's fixtures do."""
    return f"sqlite:///{tmp_path / 'kyso-test.db'}"


def test_real_report_renders(engine: Engine, pool: BlockingSessionPool, tmp_path: Path) -> None:
    authority = make_authority(engine, pool)
    result = verify_pdf(signed(authority, pool, "B-T"), default_policy([root_der(authority)]))
    report = to_json(result)
    (entry,) = report["signatures"]
    assert entry["signer"]
    # Whatever the verifier decides today, the words follow the JSON's indication.
    position = ("TOTAL-PASSED", "TOTAL-FAILED", "INDETERMINATE").index(report["indication"])
    page = render_html(report)
    assert VERDICT["vi"][position] in page
    assert entry["signer"] in page
    assert "Tổ chức cấp chứng thư số</dt><dd>" in page
    assert "Dấu thời gian</dt><dd>không có" not in page  # B-T carries a timestamp
    text = pdf_text(render_pdf(report, language="vi", font=FONT), tmp_path)
    assert VERDICT["vi"][position] in text
    assert " ".join(entry["signer"].split()) in text


def test_times_are_shown_in_vietnam_time() -> None:
    report = indeterminate_report()
    report["verified_at"] = "2026-05-04T02:30:02+00:00"
    assert "04/05/2026 09:30:02 (UTC+07:00)" in render_html(report)
    assert "2026-05-04 09:30:02 (UTC+07:00)" in render_html(report, language="en")
