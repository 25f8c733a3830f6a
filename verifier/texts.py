"""Every people-facing string of the verification reports, in Vietnamese and English.

The HTML and PDF renderers never write a word themselves: they ask :func:`build_view`,
which reads the JSON report (``verifier.report.to_json``, schema in docs/verifier.md)
and returns the same plain-language content for both. The report is trusted to have been
built by Kyso, but its strings come from the signer's certificate, i.e. from an attacker:
they are bounded and cleaned here, and escaped by each renderer.
"""

from __future__ import annotations

import base64
import binascii
import struct
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from verifier.errors import VerifierError

LANGUAGES = ("vi", "en")
"""Languages a report can be rendered in; Vietnamese is the default."""

Tone = Literal["passed", "failed", "warning"]

MAX_TEXT = 300
"""Characters kept of any single value taken from the report (a CN can be anything)."""

MAX_SIGNATURES = 64
"""Signatures described; the verifier itself refuses more than 64 signature fields."""

MAX_REVISIONS = 200
"""Revisions described in the chain of revisions."""

MAX_THUMBNAILS = 64
"""Thumbnails embedded in one report, all revisions together."""

MAX_THUMBNAIL_BYTES = 512 * 1024
"""Largest decoded PNG embedded; larger ones are left out."""

MAX_THUMBNAIL_SIDE = 2048
"""Largest width or height (pixels) of an embedded PNG: a small file can still decode huge."""

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class UnsupportedLanguageError(VerifierError):
    """A report was asked for in a language Kyso has no texts for."""

    code = "verifier.unsupported_language"


REASONS: dict[str, dict[str, str]] = {
    "no_signature": {
        "vi": "Tài liệu không có chữ ký số nào.",
        "en": "The document carries no digital signature.",
    },
    "too_many_signatures": {
        "vi": "Tài liệu có quá nhiều trường chữ ký; không chữ ký nào được kiểm tra.",
        "en": "The document has too many signature fields; none was checked.",
    },
    "hash_mismatch": {
        "vi": "Nội dung tài liệu đã bị thay đổi sau khi ký (giá trị băm không khớp).",
        "en": "The document content was changed after signing (the hash does not match).",
    },
    "signature_invalid": {
        "vi": "Chữ ký số không đúng về mặt mật mã.",
        "en": "The digital signature is cryptographically wrong.",
    },
    "weak_digest": {
        "vi": "Thuật toán băm được dùng không còn an toàn và không được chấp nhận.",
        "en": "The digest algorithm used is no longer safe and is not accepted.",
    },
    "weak_key": {
        "vi": "Khóa ký quá yếu so với quy định.",
        "en": "The signing key is weaker than the rules allow.",
    },
    "certificate_revoked": {
        "vi": "Chứng thư số đã bị thu hồi trước thời điểm ký.",
        "en": "The certificate had been revoked before the signature was made.",
    },
    "certificate_revoked_no_poe": {
        "vi": "Chứng thư số đã bị thu hồi và không có bằng chứng chữ ký được tạo trước đó.",
        "en": "The certificate is revoked and nothing proves the signature was made before.",
    },
    "chain_not_validated": {
        "vi": "Không xác thực được chứng thư số đến một tổ chức cung cấp dịch vụ tin cậy.",
        "en": "The certificate could not be validated up to a trusted authority.",
    },
    "timestamp_invalid": {
        "vi": "Dấu thời gian của chữ ký không hợp lệ.",
        "en": "The signature's timestamp is not valid.",
    },
    "timestamp_untrusted": {
        "vi": "Dấu thời gian do một đơn vị không được tin cậy cấp.",
        "en": "The timestamp comes from an authority that is not trusted.",
    },
    "unsigned_trailing_bytes": {
        "vi": "Có dữ liệu được thêm vào cuối tệp mà không được ký.",
        "en": "Data that is not signed was appended to the end of the file.",
    },
    "partial_coverage": {
        "vi": "Chữ ký chỉ bao phủ một phần tài liệu.",
        "en": "The signature covers only part of the document.",
    },
    "suspicious_modification": {
        "vi": "Tài liệu có thay đổi đáng ngờ sau khi ký.",
        "en": "The document was changed in a suspicious way after signing.",
    },
    "modifications_not_analysed": {
        "vi": "Không phân tích được các thay đổi sau khi ký.",
        "en": "The changes made after signing could not be analysed.",
    },
    "disallowed_modification": {
        "vi": "Tài liệu bị thay đổi sau khi ký theo cách không được phép.",
        "en": "The document was changed after signing in a way that is not allowed.",
    },
    "not_passed": {
        "vi": "Chữ ký không đạt yêu cầu kiểm tra.",
        "en": "The signature did not pass the checks.",
    },
    "validation_error": {
        "vi": "Không kiểm tra được chữ ký do lỗi trong quá trình xác thực.",
        "en": "The signature could not be checked because validation failed.",
    },
    "malformed_signature": {
        "vi": "Chữ ký bị hỏng hoặc sai định dạng.",
        "en": "The signature is damaged or malformed.",
    },
    "revocation_unknown": {
        "vi": "Không xác định được tình trạng thu hồi của chứng thư số.",
        "en": "The revocation status of the certificate could not be determined.",
    },
    "unsigned_form_change": {
        "vi": "Sau khi ký, nội dung trường biểu mẫu đã bị thay đổi mà không có chữ ký nào "
        "xác nhận thay đổi đó.",
        "en": "After signing, form fields were changed without a later signature covering "
        "the change.",
    },
    "worker_crashed": {
        "vi": "Quá trình kiểm tra bị dừng đột ngột; chưa kết luận được về tài liệu.",
        "en": "The check stopped unexpectedly; nothing could be concluded about the document.",
    },
    "time_limit": {
        "vi": "Việc kiểm tra vượt quá thời gian cho phép; chưa kết luận được về tài liệu.",
        "en": "The check took longer than allowed; nothing could be concluded.",
    },
    "cpu_limit": {
        "vi": "Việc kiểm tra vượt quá thời gian xử lý cho phép; chưa kết luận được.",
        "en": "The check used more processing time than allowed; nothing could be concluded.",
    },
    "memory_limit": {
        "vi": "Việc kiểm tra cần nhiều bộ nhớ hơn mức cho phép; chưa kết luận được.",
        "en": "The check needed more memory than allowed; nothing could be concluded.",
    },
    "too_many_objects": {
        "vi": "Tệp PDF có quá nhiều đối tượng để kiểm tra.",
        "en": "The PDF has too many objects to be checked.",
    },
    "decompressed_too_large": {
        "vi": "Dữ liệu nén trong tệp PDF giải nén ra quá lớn để kiểm tra.",
        "en": "The PDF's compressed data expands to more than can be checked.",
    },
    "too_deep": {
        "vi": "Cấu trúc tệp PDF lồng nhau quá sâu để kiểm tra.",
        "en": "The PDF's structure is nested too deeply to be checked.",
    },
    "task_failed": {
        "vi": "Quá trình kiểm tra gặp lỗi; chưa kết luận được về tài liệu.",
        "en": "The check failed; nothing could be concluded about the document.",
    },
}
"""A translation of every reason code the verifier emits; unknown codes show its English text."""

SUB_INDICATIONS: dict[str, dict[str, str]] = {
    "FORMAT_FAILURE": {
        "vi": "Chữ ký hoặc tài liệu không đúng định dạng.",
        "en": "The signature or document is not in a valid format.",
    },
    "HASH_FAILURE": {
        "vi": "Nội dung đã ký bị thay đổi.",
        "en": "The signed content was changed.",
    },
    "SIG_CRYPTO_FAILURE": {
        "vi": "Kiểm tra mật mã của chữ ký thất bại.",
        "en": "The cryptographic check of the signature failed.",
    },
    "REVOKED": {
        "vi": "Chứng thư số đã bị thu hồi.",
        "en": "The certificate has been revoked.",
    },
    "NOT_YET_VALID": {
        "vi": "Chữ ký được tạo trước khi chứng thư số có hiệu lực.",
        "en": "The signature was made before the certificate became valid.",
    },
    "SIG_CONSTRAINTS_FAILURE": {
        "vi": "Chữ ký không đáp ứng ràng buộc của chính sách kiểm tra.",
        "en": "The signature does not meet the constraints of the validation policy.",
    },
    "CHAIN_CONSTRAINTS_FAILURE": {
        "vi": "Chuỗi chứng thư không đáp ứng ràng buộc của chính sách kiểm tra.",
        "en": "The certificate chain does not meet the validation policy's constraints.",
    },
    "CERTIFICATE_CHAIN_GENERAL_FAILURE": {
        "vi": "Chuỗi chứng thư số không kiểm tra được.",
        "en": "The certificate chain could not be checked.",
    },
    "CRYPTO_CONSTRAINTS_FAILURE": {
        "vi": "Thuật toán hoặc độ dài khóa không được chấp nhận.",
        "en": "An algorithm or key size is not accepted.",
    },
    "EXPIRED": {
        "vi": "Chứng thư số đã hết hạn trước khi có bằng chứng về thời điểm ký.",
        "en": "The certificate expired before any proof of the signing time.",
    },
    "POLICY_PROCESSING_ERROR": {
        "vi": "Không xử lý được chính sách chữ ký.",
        "en": "The signature policy could not be processed.",
    },
    "SIGNATURE_POLICY_NOT_AVAILABLE": {
        "vi": "Không có chính sách chữ ký được yêu cầu.",
        "en": "The required signature policy is not available.",
    },
    "TIMESTAMP_ORDER_FAILURE": {
        "vi": "Thứ tự các dấu thời gian không hợp lý.",
        "en": "The timestamps are not in a consistent order.",
    },
    "NO_SIGNING_CERTIFICATE_FOUND": {
        "vi": "Không tìm thấy chứng thư số của người ký.",
        "en": "The signer's certificate was not found.",
    },
    "NO_CERTIFICATE_CHAIN_FOUND": {
        "vi": "Chứng thư số không thuộc một tổ chức cung cấp dịch vụ tin cậy.",
        "en": "The certificate does not chain to a trusted authority.",
    },
    "REVOKED_NO_POE": {
        "vi": "Chứng thư số đã bị thu hồi; không có bằng chứng chữ ký được tạo trước đó.",
        "en": "The certificate was revoked; nothing proves the signature came before.",
    },
    "REVOKED_CA_NO_POE": {
        "vi": "Chứng thư của tổ chức cấp đã bị thu hồi; không có bằng chứng về thời điểm ký.",
        "en": "The issuing CA's certificate was revoked; no proof of the signing time.",
    },
    "OUT_OF_BOUNDS_NO_POE": {
        "vi": "Thời điểm ký nằm ngoài thời hạn của chứng thư và không có bằng chứng.",
        "en": "The signing time is outside the certificate's validity and is not proven.",
    },
    "REVOCATION_OUT_OF_BOUNDS_NO_POE": {
        "vi": "Thông tin thu hồi nằm ngoài thời hạn cho phép và không có bằng chứng.",
        "en": "The revocation information is out of bounds and not proven.",
    },
    "OUT_OF_BOUNDS_NOT_REVOKED": {
        "vi": "Chứng thư số hết hạn nhưng không bị thu hồi; thời điểm ký chưa được chứng minh.",
        "en": "The certificate expired but was not revoked; the signing time is unproven.",
    },
    "CRYPTO_CONSTRAINTS_FAILURE_NO_POE": {
        "vi": "Thuật toán không còn an toàn và không có bằng chứng chữ ký được tạo trước đó.",
        "en": "An algorithm is no longer safe and nothing proves the signature came before.",
    },
    "NO_POE": {
        "vi": "Không có bằng chứng về thời điểm tồn tại của chữ ký.",
        "en": "There is no proof of when the signature existed.",
    },
    "TRY_LATER": {
        "vi": "Chưa có đủ thông tin thu hồi; hãy kiểm tra lại sau.",
        "en": "Revocation information is not available yet; try again later.",
    },
    "SIGNED_DATA_NOT_FOUND": {
        "vi": "Không tìm thấy dữ liệu được ký.",
        "en": "The signed data was not found.",
    },
    "GENERIC": {
        "vi": "Không xác định được kết quả vì lý do khác.",
        "en": "The result could not be determined for another reason.",
    },
}
"""Plain-language explanation of every ETSI EN 319 102-1 sub-indication."""

VERDICTS: dict[Tone, dict[str, str]] = {
    "passed": {"vi": "Chữ ký hợp lệ", "en": "Signature valid"},
    "failed": {"vi": "Chữ ký không hợp lệ", "en": "Signature not valid"},
    "warning": {
        "vi": "Chưa xác định được (cảnh báo)",
        "en": "Cannot be determined (warning)",
    },
}
"""The verdict in words, the same for the document and for each signature."""

VERDICT_DETAILS: dict[Tone, dict[str, str]] = {
    "passed": {
        "vi": "Tất cả chữ ký đều hợp lệ và tài liệu không bị sửa đổi trái phép.",
        "en": "Every signature is valid and the document was not changed in a disallowed way.",
    },
    "failed": {
        "vi": "Không được tin cậy tài liệu này: ít nhất một chữ ký không hợp lệ.",
        "en": "Do not trust this document: at least one signature is not valid.",
    },
    "warning": {
        "vi": "Không được coi là hợp lệ: chưa đủ căn cứ để xác định tính hợp lệ của chữ ký.",
        "en": "Do not treat this as valid: there is not enough to establish validity.",
    },
}

MODIFICATION_LEVELS: dict[str, dict[str, str]] = {
    "NONE": {
        "vi": "Không có thay đổi nào sau khi ký.",
        "en": "Nothing was changed after signing.",
    },
    "LTA_UPDATES": {
        "vi": "Chỉ bổ sung dữ liệu kiểm tra dài hạn (chứng thư, thông tin thu hồi, dấu "
        "thời gian); nội dung không đổi.",
        "en": "Only long-term validation data (certificates, revocation information, "
        "timestamps) was added; the content is unchanged.",
    },
    "FORM_FILLING": {
        "vi": "Chỉ điền biểu mẫu hoặc thêm chữ ký sau khi ký (được phép).",
        "en": "Only form filling or further signatures after signing (allowed).",
    },
    "ANNOTATIONS": {
        "vi": "Có thêm chú thích sau khi ký (không được chấp nhận).",
        "en": "Annotations were added after signing (not accepted).",
    },
    "OTHER": {
        "vi": "Có thay đổi khác sau khi ký; nội dung có thể đã bị sửa.",
        "en": "Other changes were made after signing; the content may have been altered.",
    },
}
"""What the difference analysis found after a signature, in plain words."""

COVERAGE: dict[str, dict[str, str]] = {
    "ENTIRE_FILE": {"vi": "Toàn bộ tệp", "en": "The entire file"},
    "ENTIRE_REVISION": {
        "vi": "Toàn bộ phiên bản tài liệu tại thời điểm ký",
        "en": "The entire revision of the document at signing",
    },
    "CONTIGUOUS_BLOCK_FROM_START": {
        "vi": "Chỉ một phần liên tục từ đầu tệp",
        "en": "Only a contiguous block from the start of the file",
    },
    "UNCLEAR": {"vi": "Không rõ phạm vi", "en": "Unclear"},
}
"""What part of the file a signature covers."""

KINDS: dict[str, dict[str, str]] = {
    "approval": {"vi": "chữ ký phê duyệt", "en": "approval signature"},
    "certification": {"vi": "chữ ký chứng nhận", "en": "certification signature"},
    "document_timestamp": {"vi": "dấu thời gian tài liệu", "en": "document timestamp"},
}

REVOCATION_SOURCES: dict[str, dict[str, str]] = {
    "document": {"vi": "dữ liệu kèm trong tài liệu", "en": "data embedded in the document"},
    "kyso": {"vi": "hệ thống Kyso", "en": "the Kyso service"},
    "fetched": {"vi": "tra cứu trực tuyến", "en": "fetched online"},
}

REVOCATION_STATUSES: dict[str, dict[str, str]] = {
    "good": {"vi": "chưa bị thu hồi", "en": "not revoked"},
    "revoked": {"vi": "đã bị thu hồi", "en": "revoked"},
    "unknown": {"vi": "không xác định", "en": "unknown"},
}

LABELS: dict[str, dict[str, str]] = {
    "title": {"vi": "Kết quả kiểm tra chữ ký số", "en": "Digital signature verification report"},
    "document": {"vi": "Tài liệu", "en": "Document"},
    "etsi": {"vi": "Kết quả theo ETSI EN 319 102-1", "en": "ETSI EN 319 102-1 result"},
    "policy": {"vi": "Chính sách kiểm tra", "en": "Validation policy"},
    "sha256": {"vi": "Mã băm SHA-256 của tài liệu", "en": "Document SHA-256"},
    "verified_at": {"vi": "Thời điểm kiểm tra", "en": "Verified at"},
    "not_reported": {"vi": "không có thông tin", "en": "not reported"},
    "reasons": {"vi": "Lý do", "en": "Reasons"},
    "signatures": {"vi": "Các chữ ký", "en": "Signatures"},
    "no_signatures": {"vi": "Không có chữ ký nào.", "en": "No signature."},
    "signature": {"vi": "Chữ ký", "en": "Signature"},
    "field": {"vi": "trường", "en": "field"},
    "signer": {"vi": "Người ký", "en": "Signer"},
    "unit": {"vi": "Đơn vị / Tổ chức", "en": "Unit / Organisation"},
    "issuer": {"vi": "Tổ chức cấp chứng thư số", "en": "Issuing CA"},
    "serial": {"vi": "Số hiệu chứng thư", "en": "Certificate serial"},
    "claimed_time": {
        "vi": "Thời điểm ký (do người ký khai, chưa được chứng thực)",
        "en": "Signing time (claimed by the signer, not proven)",
    },
    "timestamp": {"vi": "Dấu thời gian", "en": "Timestamp"},
    "timestamp_proven": {
        "vi": "đã chứng thực; đây là thời điểm ký được chứng minh",
        "en": "verified; this is the proven signing time",
    },
    "timestamp_failed": {
        "vi": "KHÔNG hợp lệ; không chứng minh được thời điểm ký",
        "en": "NOT valid; it proves nothing",
    },
    "timestamp_by": {"vi": "cấp bởi", "en": "issued by"},
    "no_timestamp": {
        "vi": "không có; thời điểm ký chưa được chứng minh",
        "en": "none; the signing time is not proven",
    },
    "integrity": {"vi": "Tính toàn vẹn", "en": "Integrity"},
    "intact": {
        "vi": "Nội dung được ký còn nguyên vẹn.",
        "en": "The signed content is intact.",
    },
    "not_intact": {
        "vi": "Nội dung được ký KHÔNG còn nguyên vẹn.",
        "en": "The signed content is NOT intact.",
    },
    "changes_after": {"vi": "Thay đổi sau khi ký", "en": "Changes after signing"},
    "not_analysed": {
        "vi": "Chưa phân tích được thay đổi sau khi ký.",
        "en": "The changes after signing were not analysed.",
    },
    "coverage": {"vi": "Phạm vi được ký", "en": "Signed extent"},
    "later_revision": {"vi": "Phiên bản", "en": "Revision"},
    "validity": {"vi": "Thời hạn chứng thư số", "en": "Certificate validity"},
    "validity_range": {"vi": "từ {start} đến {end}", "en": "from {start} to {end}"},
    "inside_proven": {
        "vi": "Thời điểm ký đã được chứng minh nằm trong thời hạn của chứng thư số.",
        "en": "The proven signing time lies within the certificate's validity.",
    },
    "outside_proven": {
        "vi": "Thời điểm ký đã được chứng minh nằm NGOÀI thời hạn của chứng thư số.",
        "en": "The proven signing time lies OUTSIDE the certificate's validity.",
    },
    "inside_claimed": {
        "vi": "Thời điểm ký do người ký khai nằm trong thời hạn của chứng thư số "
        "(chưa được chứng minh).",
        "en": "The claimed signing time lies within the certificate's validity (not proven).",
    },
    "outside_claimed": {
        "vi": "Thời điểm ký do người ký khai nằm NGOÀI thời hạn của chứng thư số.",
        "en": "The claimed signing time lies OUTSIDE the certificate's validity.",
    },
    "no_time": {
        "vi": "Không có thời điểm ký để đối chiếu với thời hạn chứng thư số.",
        "en": "No signing time to compare with the certificate's validity.",
    },
    "no_certificate": {
        "vi": "Không đọc được chứng thư số của người ký.",
        "en": "The signer's certificate could not be read.",
    },
    "revocation": {"vi": "Tình trạng thu hồi", "en": "Revocation status"},
    "revocation_value": {
        "vi": "{status} (nguồn: {source}; thời điểm: {time})",
        "en": "{status} (source: {source}; at: {time})",
    },
    "revocation_not_reported": {
        "vi": "không có trong báo cáo",
        "en": "not reported",
    },
    "revisions": {"vi": "Các phiên bản của tài liệu", "en": "Revisions of the document"},
    "revision": {"vi": "Phiên bản {number}", "en": "Revision {number}"},
    "revision_signed_by": {"vi": "được ký bởi", "en": "signed by"},
    "revision_changes": {"vi": "Thay đổi trong phiên bản này", "en": "Changes in this revision"},
    "changed_pages": {"vi": "Trang thay đổi", "en": "Changed pages"},
    "original_pages": {"vi": "Các trang ban đầu", "en": "Original pages"},
    "changes": {
        "vi": "thêm {pages} trang, {annotations} chú thích thay đổi, "
        "{fields} trường biểu mẫu thay đổi",
        "en": "{pages} pages added, {annotations} annotations changed, "
        "{fields} form fields changed",
    },
    "no_later_changes": {
        "vi": "Không có phiên bản nào sau chữ ký này.",
        "en": "No revision follows this signature.",
    },
    "page": {"vi": "Trang", "en": "Page"},
    "none": {"vi": "không có", "en": "none"},
    "footer": {
        "vi": "Báo cáo này được lập từ kết quả kiểm tra của Kyso. Chữ ký chỉ hợp lệ khi "
        "kết quả là “Chữ ký hợp lệ”; kết quả cảnh báo không được coi là hợp lệ.",
        "en": "This report was produced from Kyso's verification result. A signature is "
        "valid only when the result says “Signature valid”; a warning is never valid.",
    },
}
"""Labels and sentences of the report layout."""


@dataclass(frozen=True, kw_only=True)
class Line:
    """One labelled value of the report."""

    label: str
    """What the value is, in the report's language."""

    value: str
    """The value, cleaned but not escaped."""

    small: bool = False
    """Technical detail printed small (ETSI names, hashes)."""


@dataclass(frozen=True, kw_only=True)
class Thumbnail:
    """A checked PNG image of a page changed in a revision."""

    page: int
    """1-based page number."""

    png: bytes
    """The PNG itself: signature, size and dimensions already checked."""


@dataclass(frozen=True, kw_only=True)
class RevisionView:
    """One revision in the chain of revisions."""

    heading: str
    """"Phiên bản 1" and who signed it, if anyone."""

    lines: tuple[Line, ...]
    """Changed pages and changes."""

    thumbnails: tuple[Thumbnail, ...]
    """Images of the changed pages that passed the checks."""


@dataclass(frozen=True, kw_only=True)
class SignatureView:
    """One signature, in revision order."""

    heading: str
    """"Chữ ký 1: <field> (kind)"."""

    tone: Tone
    """Colour and verdict: INDETERMINATE and anything unknown are a warning."""

    verdict: str
    """The verdict in words."""

    technical: str
    """ETSI indication and sub-indication, for the small print."""

    reasons: tuple[str, ...]
    """Translated reasons, the first one decided the verdict."""

    lines: tuple[Line, ...]
    """Signer, unit, CA, times, integrity, validity, revocation."""


@dataclass(frozen=True, kw_only=True)
class ReportView:
    """The whole report in one language, ready for a renderer."""

    language: str
    """"vi" or "en"."""

    title: str
    """Title of the page or document."""

    tone: Tone
    """The document verdict's colour."""

    verdict: str
    """The document verdict in words."""

    verdict_detail: str
    """One sentence saying what the verdict means for the reader."""

    technical: str
    """ETSI indication and sub-indication of the document."""

    reasons: tuple[str, ...]
    """Translated document-level reasons."""

    lines: tuple[Line, ...]
    """Policy, SHA-256, verification time."""

    signatures_heading: str
    """Heading of the signature list."""

    signatures: tuple[SignatureView, ...]
    """Signatures, in revision order."""

    empty_signatures: str
    """What to print when there is no signature."""

    revisions_heading: str
    """Heading of the chain of revisions."""

    revisions: tuple[RevisionView, ...]
    """The chain of revisions; empty for a single-revision document or when not reported."""

    footer: str
    """Closing note on how to read the verdict."""


def check_language(language: str) -> str:
    """``language`` if Kyso has texts for it, else :class:`UnsupportedLanguageError`."""
    if language not in LANGUAGES:
        raise UnsupportedLanguageError(f"no report texts for language {language[:16]!r}")
    return language


def tone_of(indication: object) -> Tone:
    """Verdict colour of an ETSI indication; anything unexpected is a warning, never a pass."""
    name = str(indication).replace("-", "_") if isinstance(indication, str) else ""
    if name == "TOTAL_PASSED":
        return "passed"
    if name == "TOTAL_FAILED":
        return "failed"
    return "warning"


def clean(value: object, limit: int = MAX_TEXT) -> str:
    """A report value as display text: NFC, bounded, with no control or bidi characters.

    Bidi overrides (U+202E …) in a certificate name could make the displayed name differ
    from the real one, so every format and control character becomes U+FFFD.
    """
    text = unicodedata.normalize("NFC", str(value))
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return "".join(
        "\ufffd" if unicodedata.category(ch) in ("Cc", "Cf", "Co", "Cs") else ch for ch in text
    )


def checked_png(data: object) -> bytes | None:
    """The PNG a base64 string holds, or ``None`` when it is not a small, sane PNG."""
    if not isinstance(data, str) or len(data) > (MAX_THUMBNAIL_BYTES * 4) // 3 + 8:
        return None
    try:
        png = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(png) > MAX_THUMBNAIL_BYTES or len(png) < 33 or not png.startswith(PNG_SIGNATURE):
        return None
    if png[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", png[16:24])
    if not (0 < width <= MAX_THUMBNAIL_SIDE and 0 < height <= MAX_THUMBNAIL_SIDE):
        return None
    return png


def build_view(report: Mapping[str, Any], language: str = "vi") -> ReportView:
    """The people-facing content of a JSON report, in ``language``."""
    lang = check_language(language)
    tone = tone_of(report.get("indication"))
    signatures = [s for s in _list(report.get("signatures")) if isinstance(s, Mapping)]
    signatures = signatures[:MAX_SIGNATURES]
    numbered = list(enumerate(signatures, start=1))
    # Revision order; a signature without a revision keeps its place at the end.
    numbered.sort(key=lambda item: _int(item[1].get("revision"), default=1 << 30))
    revisions = [r for r in _list(report.get("revisions")) if isinstance(r, Mapping)]
    revisions = revisions[:MAX_REVISIONS]
    lines = [
        Line(label=_t("policy", lang), value=_text(report.get("policy"), lang)),
        Line(
            label=_t("sha256", lang), value=_text(report.get("document_sha256"), lang), small=True
        ),
        Line(label=_t("verified_at", lang), value=_time(report.get("verified_at"), lang)),
    ]
    return ReportView(
        language=lang,
        title=_t("title", lang),
        tone=tone,
        verdict=VERDICTS[tone][lang],
        verdict_detail=VERDICT_DETAILS[tone][lang],
        technical=_technical(report, lang),
        reasons=_reasons(report.get("reasons"), lang),
        lines=tuple(lines),
        signatures_heading=_t("signatures", lang),
        signatures=tuple(
            _signature(number, signature, revisions, lang) for number, signature in numbered
        ),
        empty_signatures=_t("no_signatures", lang),
        revisions_heading=_t("revisions", lang),
        revisions=_revisions(revisions, signatures, lang) if len(revisions) > 1 else (),
        footer=_t("footer", lang),
    )


def _t(key: str, lang: str) -> str:
    return LABELS[key][lang]


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _int(value: object, *, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _text(value: object, lang: str) -> str:
    if value is None or value == "":
        return _t("not_reported", lang)
    return clean(value)


VIETNAM_TIME = timezone(timedelta(hours=7), "+07:00")


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _time(value: object, lang: str) -> str:
    moment = _parse_time(value)
    if moment is None:
        return _t("not_reported", lang) if value in (None, "") else clean(value, 64)
    if moment.tzinfo is not None:
        # Documents are issued and checked in Vietnam: every time in its legal time.
        moment = moment.astimezone(VIETNAM_TIME)
    text = (
        moment.strftime("%d/%m/%Y %H:%M:%S")
        if lang == "vi"
        else moment.strftime("%Y-%m-%d %H:%M:%S")
    )
    offset = moment.strftime("%z")
    if offset:
        text += f" (UTC{offset[:3]}:{offset[3:5]})"
    return text


def _technical(item: Mapping[str, Any], lang: str) -> str:
    indication = clean(item.get("indication") or "?", 64)
    sub = item.get("sub_indication")
    text = f"{_t('etsi', lang)}: {indication}"
    if sub:
        text += f" / {clean(sub, 64)}"
        explanation = SUB_INDICATIONS.get(str(sub))
        if explanation:
            text += f" — {explanation[lang]}"
    return text


def _reasons(value: object, lang: str) -> tuple[str, ...]:
    out: list[str] = []
    for reason in _list(value)[:32]:
        if not isinstance(reason, Mapping):
            continue
        translation = REASONS.get(str(reason.get("code")))
        # An unknown code (a newer verifier) still says something: its English text.
        out.append(translation[lang] if translation else clean(reason.get("text") or "?"))
    return tuple(out)


def _signature(
    number: int, signature: Mapping[str, Any], revisions: list[Mapping[str, Any]], lang: str
) -> SignatureView:
    tone = tone_of(signature.get("indication"))
    kind = KINDS.get(str(signature.get("kind")))
    heading = f"{_t('signature', lang)} {number}: {_t('field', lang)} "
    heading += f"“{clean(signature.get('field') or '?', 80)}”"
    if kind:
        heading += f" ({kind[lang]})"
    certificate = signature.get("certificate")
    certificate = certificate if isinstance(certificate, Mapping) else None
    unit = ", ".join(clean(v) for v in (signature.get("unit"), signature.get("organisation")) if v)
    lines = [
        Line(label=_t("signer", lang), value=_text(signature.get("signer"), lang)),
        Line(label=_t("unit", lang), value=unit or _t("not_reported", lang)),
        Line(
            label=_t("issuer", lang),
            value=_text(certificate.get("issuer") if certificate else None, lang),
        ),
        Line(label=_t("claimed_time", lang), value=_time(signature.get("signing_time"), lang)),
        Line(label=_t("timestamp", lang), value=_timestamp(signature.get("timestamp"), lang)),
        Line(label=_t("integrity", lang), value=_integrity(signature, lang)),
        Line(label=_t("changes_after", lang), value=_changes_after(signature, revisions, lang)),
    ]
    coverage = COVERAGE.get(str(signature.get("coverage")))
    if coverage:
        lines.append(Line(label=_t("coverage", lang), value=coverage[lang]))
    lines.append(Line(label=_t("validity", lang), value=_validity(signature, certificate, lang)))
    lines.append(Line(label=_t("revocation", lang), value=_revocation(signature, lang)))
    if certificate and certificate.get("serial"):
        lines.append(
            Line(label=_t("serial", lang), value=clean(certificate["serial"], 64), small=True)
        )
    return SignatureView(
        heading=heading,
        tone=tone,
        verdict=VERDICTS[tone][lang],
        technical=_technical(signature, lang),
        reasons=_reasons(signature.get("reasons"), lang),
        lines=tuple(lines),
    )


def _proven_time(signature: Mapping[str, Any]) -> datetime | None:
    timestamp = signature.get("timestamp")
    if isinstance(timestamp, Mapping) and timestamp.get("passed") is True:
        return _parse_time(timestamp.get("time"))
    return None


def _timestamp(value: object, lang: str) -> str:
    if not isinstance(value, Mapping):
        return _t("no_timestamp", lang)
    text = _time(value.get("time"), lang)
    if value.get("authority"):
        text += f", {_t('timestamp_by', lang)} {clean(value['authority'])}"
    proven = value.get("passed") is True
    return f"{text} ({_t('timestamp_proven' if proven else 'timestamp_failed', lang)})"


_BROKEN = frozenset({"hash_mismatch", "signature_invalid", "malformed_signature"})


def _codes(signature: Mapping[str, Any]) -> set[str]:
    return {str(r.get("code")) for r in _list(signature.get("reasons")) if isinstance(r, Mapping)}


def _integrity(signature: Mapping[str, Any], lang: str) -> str:
    broken = _codes(signature) & _BROKEN or signature.get("sub_indication") in (
        "HASH_FAILURE",
        "SIG_CRYPTO_FAILURE",
        "FORMAT_FAILURE",
    )
    if broken:
        return _t("not_intact", lang)
    if tone_of(signature.get("indication")) == "failed":
        # Intact bytes but failed for another reason: say only what is known.
        return _t("not_reported", lang)
    return _t("intact", lang)


def _changes_after(
    signature: Mapping[str, Any], revisions: list[Mapping[str, Any]], lang: str
) -> str:
    level = MODIFICATION_LEVELS.get(str(signature.get("modification_level")))
    parts = [level[lang] if level else _t("not_analysed", lang)]
    revision = signature.get("revision")
    if isinstance(revision, int) and revisions:
        later = [r for r in revisions if _int(r.get("index"), default=-1) > revision]
        if not later:
            parts.append(_t("no_later_changes", lang))
        for item in later:
            number = _int(item.get("index"), default=0) + 1
            parts.append(f"{_t('later_revision', lang)} {number}: {_revision_changes(item, lang)}.")
    return " ".join(parts)


def _revision_changes(revision: Mapping[str, Any], lang: str) -> str:
    changes = revision.get("changes")
    changes = changes if isinstance(changes, Mapping) else {}
    text = LABELS["changes"][lang].format(
        pages=_int(changes.get("pages_added"), default=0),
        annotations=_int(changes.get("annotations_changed"), default=0),
        fields=_int(changes.get("form_fields_changed"), default=0),
    )
    pages = _pages(revision)
    return f"{text}; {_t('changed_pages', lang).lower()}: {pages or _t('none', lang)}"


def _pages(revision: Mapping[str, Any]) -> str:
    pages = [p for p in _list(revision.get("changed_pages"))[:200] if _int(p, default=0) > 0]
    return ", ".join(str(p) for p in pages)


def _validity(
    signature: Mapping[str, Any], certificate: Mapping[str, Any] | None, lang: str
) -> str:
    if certificate is None:
        return _t("no_certificate", lang)
    start, end = certificate.get("not_before"), certificate.get("not_after")
    text = LABELS["validity_range"][lang].format(start=_time(start, lang), end=_time(end, lang))
    not_before, not_after = _parse_time(start), _parse_time(end)
    proven = _proven_time(signature)
    claimed = _parse_time(signature.get("signing_time"))
    moment, kind = (proven, "proven") if proven else (claimed, "claimed")
    if moment is None or not_before is None or not_after is None:
        return f"{text}. {_t('no_time', lang)}"
    try:
        inside = not_before <= moment <= not_after
    except TypeError:  # naive against aware: nothing sound to say
        return f"{text}. {_t('no_time', lang)}"
    return f"{text}. {_t(('inside_' if inside else 'outside_') + kind, lang)}"


def _revocation(signature: Mapping[str, Any], lang: str) -> str:
    value = signature.get("revocation")
    if not isinstance(value, Mapping):
        return _t("revocation_not_reported", lang)
    status = REVOCATION_STATUSES.get(str(value.get("status")), REVOCATION_STATUSES["unknown"])
    source = REVOCATION_SOURCES.get(str(value.get("source")))
    return LABELS["revocation_value"][lang].format(
        status=status[lang],
        source=source[lang] if source else _t("not_reported", lang),
        time=_time(value.get("time"), lang),
    )


def _revisions(
    revisions: list[Mapping[str, Any]], signatures: list[Mapping[str, Any]], lang: str
) -> tuple[RevisionView, ...]:
    budget = MAX_THUMBNAILS
    out: list[RevisionView] = []
    for revision in sorted(revisions, key=lambda r: _int(r.get("index"), default=1 << 30)):
        index = _int(revision.get("index"), default=-1)
        heading = LABELS["revision"][lang].format(number=index + 1 if index >= 0 else "?")
        signers = [
            clean(s.get("signer") or s.get("field") or "?", 120)
            for s in signatures
            if s.get("revision") == index and index >= 0
        ]
        if signers:
            heading += f" — {_t('revision_signed_by', lang)} {', '.join(signers)}"
        if index == 0:
            pages = _pages(revision)
            lines = [Line(label=_t("original_pages", lang), value=pages or _t("none", lang))]
        else:
            lines = [
                Line(label=_t("revision_changes", lang), value=_revision_changes(revision, lang))
            ]
        thumbnails: list[Thumbnail] = []
        for item in _list(revision.get("thumbnails")):
            if budget <= 0 or not isinstance(item, Mapping):
                continue
            png = checked_png(item.get("png_base64"))
            page = _int(item.get("page"), default=0)
            if png is not None and page > 0:
                thumbnails.append(Thumbnail(page=page, png=png))
                budget -= 1
        out.append(RevisionView(heading=heading, lines=tuple(lines), thumbnails=tuple(thumbnails)))
    return tuple(out)
