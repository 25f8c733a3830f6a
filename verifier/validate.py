"""Validation of an untrusted signed PDF: one ETSI indication per embedded signature and
one for the document, computed with pyHanko's validation under a :class:`Policy`.

pyHanko answers with status objects; this module turns them into EN 319 102-1 terms and
adds the checks pyHanko leaves to its caller: the difference analysis is always run and a
missing or unknown modification level is never a pass; bytes after the last signed
revision that are not an incremental update fail; revocation that cannot be determined
under a policy requiring it is INDETERMINATE; the policy's algorithm constraints.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from dataclasses import dataclass, replace
from datetime import datetime

from asn1crypto import core as asn1_core
from asn1crypto import crl, ocsp, x509
from pyhanko.pdf_utils.generic import DictionaryObject
from pyhanko.pdf_utils.misc import PdfDecodeLimitError, PdfError
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.ades.report import AdESIndeterminate, AdESStatus, AdESSubIndic
from pyhanko.sign.diff_analysis import ModificationLevel, SuspiciousModification
from pyhanko.sign.fields import enumerate_sig_fields
from pyhanko.sign.validation import (
    DocumentSecurityStore,
    EmbeddedPdfSignature,
    async_validate_pdf_signature,
    async_validate_pdf_timestamp,
)
from pyhanko.sign.validation.errors import NoDSSFoundError, SignatureValidationError
from pyhanko.sign.validation.status import (
    DocumentTimestampStatus,
    PdfSignatureStatus,
    SignatureCoverageLevel,
    TimestampSignatureStatus,
)
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.errors import InsufficientRevinfoError

from verifier.accelerate import mark_context
from verifier.errors import InputTooLargeError, UnreadableDocumentError
from verifier.fetching import fetcher_backend
from verifier.indications import SEVERITY, Indication, SubIndication
from verifier.limits import Limits
from verifier.parsing import decode_limit_error, depth_error, open_reader
from verifier.policy import Policy

MAX_SIGNATURES = 64
"""Signature fields beyond this many make the document INDETERMINATE (not validated)."""

REVOCATION_MODE = "require"
"""pyhanko-certvalidator's revocation mode for every path: status is required."""

_ACCEPTED_LEVELS = (
    ModificationLevel.NONE,
    ModificationLevel.LTA_UPDATES,
    ModificationLevel.FORM_FILLING,
)
_WHITESPACE = re.compile(rb"[\x00\t\n\x0c\r ]*")


@dataclass(frozen=True, kw_only=True)
class Reason:
    """One finding about a signature, in stable English terms."""

    code: str
    """Stable machine-readable code (``hash_mismatch``, ``untrusted_chain``...)."""
    text: str
    """English explanation; the Vietnamese report translates from ``code``."""


@dataclass(frozen=True, kw_only=True)
class CertificateInfo:
    """The signing certificate as a report shows it."""

    subject: str
    """The subject DN, human-readable."""
    common_name: str | None
    """Subject CN: the signer's name (or the seal's unit)."""
    organisation: str | None
    """Subject O."""
    unit: str | None
    """Subject OU: the unit that manages the certificate."""
    issuer: str
    """The issuer DN, human-readable: the issuing CA."""
    serial: int
    """Serial number."""
    not_before: datetime
    """Start of the validity period."""
    not_after: datetime
    """End of the validity period."""


@dataclass(frozen=True, kw_only=True)
class TimestampInfo:
    """The timestamp proving when a signature (or the document) existed."""

    time: datetime
    """The time the token asserts."""
    authority: str | None
    """The TSA certificate's subject, human-readable."""
    passed: bool
    """The token is intact, cryptographically valid and its TSA chains to an anchor."""


@dataclass(frozen=True, kw_only=True)
class RevocationInfo:
    """The newest revocation data at hand for the signing certificate."""

    source: str
    """``document`` (DSS or the signature itself), ``kyso`` (the service's own CA data,
    read from its database) or ``fetched`` (through the fetch policy)."""
    kind: str
    """``ocsp`` or ``crl``."""
    status: str
    """``good``, ``revoked`` or ``unknown``, as that data says."""
    time: datetime
    """When the data was produced (OCSP thisUpdate, CRL thisUpdate)."""


@dataclass(frozen=True, kw_only=True)
class SignatureResult:
    """The verdict on one embedded signature or document timestamp."""

    field: str
    """Fully qualified signature field name."""
    kind: str
    """``approval``, ``certification`` or ``document_timestamp``."""
    indication: Indication
    """ETSI main indication."""
    sub_indication: SubIndication | None
    """ETSI sub-indication; ``None`` only when TOTAL-PASSED."""
    reasons: tuple[Reason, ...]
    """Every finding, the one that decided the indication first."""
    certificate: CertificateInfo | None
    """The signing (or TSA) certificate, when the CMS could be read."""
    claimed_signing_time: datetime | None
    """Signing time the signer claims (CMS signingTime, else /M); not proven."""
    timestamp: TimestampInfo | None
    """Signature timestamp (B-T and up) or, for a document timestamp, the token itself."""
    modification_level: str | None
    """pyHanko's modification level of what follows the signed revision; ``None`` if the
    difference analysis could not run (never a pass)."""
    coverage: str | None
    """How much of the file the signature covers (``ENTIRE_FILE``, ``ENTIRE_REVISION``...)."""
    revision: int | None
    """The revision (0-based) the signature signs."""
    revocation: RevocationInfo | None = None
    """The revocation data found for the signing certificate, if any."""
    changed_form_fields: tuple[str, ...] = ()
    """Form fields filled or changed after this signature (difference analysis)."""


@dataclass(frozen=True, kw_only=True)
class DocumentResult:
    """The verdict on a whole document."""

    indication: Indication
    """The worst indication of its signatures; INDETERMINATE if there are none."""
    sub_indication: SubIndication | None
    """The sub-indication of the signature that decided the verdict."""
    signatures: tuple[SignatureResult, ...]
    """One result per signature field, in revision order."""
    reasons: tuple[Reason, ...]
    """Document-level findings (no signature, too many signatures...)."""
    policy: str
    """Name of the policy applied."""
    document_sha256: str
    """SHA-256 of the exact bytes validated, lowercase hex."""


def verify_pdf(data: bytes, policy: Policy, *, limits: Limits | None = None) -> DocumentResult:
    """Validate every signature of ``data`` under ``policy``.

    Raises :class:`~verifier.errors.VerifierError` only for input that cannot be looked
    at (too large, not a strictly readable PDF) or that goes past a parse cap of
    ``limits`` (:class:`~verifier.limits.LimitExceededError`); any problem with a
    signature is a result.
    Runs its own event loop (pyHanko's validation is async): call it from a worker thread
    or process, not from inside a running loop — use :func:`async_verify_pdf` there.
    """
    return asyncio.run(async_verify_pdf(data, policy, limits=limits))


async def async_verify_pdf(
    data: bytes, policy: Policy, *, limits: Limits | None = None
) -> DocumentResult:
    """The async form of :func:`verify_pdf`."""
    limits = limits or Limits()
    if len(data) > limits.max_bytes:
        raise InputTooLargeError(f"the document is {len(data)} bytes; at most {limits.max_bytes}")
    try:
        return await _verify(data, policy, limits)
    except PdfDecodeLimitError as ex:
        raise decode_limit_error(limits) from ex
    except RecursionError as ex:
        raise depth_error(limits) from ex


async def _verify(data: bytes, policy: Policy, limits: Limits) -> DocumentResult:
    digest = hashlib.sha256(data).hexdigest()
    reader = open_reader(data, limits)
    try:
        fields = list(enumerate_sig_fields(reader, filled_status=True))
    except (PdfDecodeLimitError, RecursionError):
        raise
    except (PdfError, ValueError, TypeError, KeyError, AttributeError) as ex:
        raise UnreadableDocumentError("the signature fields cannot be read") from ex
    if not fields:
        return _document(
            [],
            policy,
            digest,
            extra=[Reason(code="no_signature", text="The document carries no signature.")],
        )
    if len(fields) > MAX_SIGNATURES:
        return _document(
            [],
            policy,
            digest,
            extra=[
                Reason(
                    code="too_many_signatures",
                    text=f"The document has {len(fields)} signatures; at most "
                    f"{MAX_SIGNATURES} are validated.",
                )
            ],
        )
    context = _validation_context(reader, policy)
    last_revision = reader.xrefs.total_revisions - 1
    unrevised_tail = _bytes_after_last_revision(reader, data)
    results = []
    for name, _, field in fields:
        results.append(
            await _verify_field(
                reader, data, name, field, context, policy, last_revision, unrevised_tail
            )
        )
    results.sort(key=lambda r: (r.revision is None, r.revision or 0))
    return _document(_unsigned_form_changes(results), policy, digest)


@dataclass(frozen=True)
class _Context:
    """A validation context and where each piece of its revocation data came from."""

    validation: ValidationContext
    sources: dict[bytes, str]
    """DER of a CRL or OCSP response → ``document`` or ``kyso``; absent → fetched."""
    fetching: bool


def _validation_context(reader: PdfFileReader, policy: Policy) -> _Context:
    crls = policy.revocation_lists()
    fetch = None if policy.require_ltv else policy.fetch
    settings: dict[str, object] = {
        "trust_roots": policy.anchors(),
        "other_certs": policy.others(),
        "allow_fetching": fetch is not None,
        # Revocation status must be known for every certificate of the path: a signature
        # whose status nobody can vouch for is INDETERMINATE, never passed.
        "revocation_mode": REVOCATION_MODE,
        "crls": crls,
        "ocsps": [],
    }
    if fetch is not None:
        settings["fetcher_backend"] = fetcher_backend(fetch)
    sources = {c.dump(): "kyso" for c in crls}
    try:
        dss = DocumentSecurityStore.read_dss(reader)
        context = dss.as_validation_context(settings)
    except NoDSSFoundError:
        context = ValidationContext(**settings)  # type: ignore[arg-type]
    except (PdfError, ValueError, TypeError, KeyError, AttributeError):
        # An unreadable DSS adds nothing; validation then goes without its data.
        context = ValidationContext(**settings)  # type: ignore[arg-type]
    for item in (*context.crls, *context.ocsps):
        sources.setdefault(item.dump(), "document")
    mark_context(context, policy.digest)
    return _Context(validation=context, sources=sources, fetching=fetch is not None)


async def _verify_field(
    reader: PdfFileReader,
    data: bytes,
    name: str,
    field: DictionaryObject,
    context: _Context,
    policy: Policy,
    last_revision: int,
    unrevised_tail: bool,
) -> SignatureResult:
    try:
        embedded = EmbeddedPdfSignature(reader, field, name)
        kind = _kind(embedded)
        revision = embedded.signed_revision
        _check_cms_structure(embedded)
    except (PdfDecodeLimitError, RecursionError):
        raise  # a parse cap: the whole document is INDETERMINATE, not this signature FAILED
    except Exception as ex:  # untrusted input: any parse failure is a verdict
        return _failed_to_parse(name, ex)
    try:
        if kind == "document_timestamp":
            status: (
                PdfSignatureStatus | DocumentTimestampStatus
            ) = await async_validate_pdf_timestamp(embedded, validation_context=context.validation)
        else:
            status = await async_validate_pdf_signature(
                embedded, signer_validation_context=context.validation, skip_diff=False
            )
    except SignatureValidationError as ex:
        return _bare(
            name,
            kind,
            *_from_ades(ex.ades_subindication),
            Reason(code="validation_error", text=f"The signature cannot be validated: {ex}"),
            revision,
        )
    except (PdfDecodeLimitError, RecursionError):
        raise
    except Exception as ex:  # untrusted input: never a crash, always a verdict
        return _bare(
            name,
            kind,
            Indication.TOTAL_FAILED,
            SubIndication.FORMAT_FAILURE,
            Reason(
                code="malformed_signature",
                text=f"The signature is malformed ({type(ex).__name__}).",
            ),
            revision,
        )
    trailing = unrevised_tail or (
        revision == last_revision and _bytes_after_signed_zone(embedded, data)
    )
    revocation_unknown = (
        status.trust_problem_indic is AdESIndeterminate.CERTIFICATE_CHAIN_GENERAL_FAILURE
        and await _lacks_revocation_data(status.signing_cert, embedded, context.validation)
    )
    reasons = _judge(status, kind, policy, trailing=trailing, revocation_unknown=revocation_unknown)
    indication: Indication = Indication.TOTAL_PASSED
    sub: SubIndication | None = None
    if reasons:
        indication, sub = reasons[0][0], reasons[0][1]
    return SignatureResult(
        field=name,
        kind=kind,
        indication=indication,
        sub_indication=sub,
        reasons=tuple(r for _, _, r in reasons),
        certificate=_certificate(status.signing_cert),
        claimed_signing_time=(
            status.signer_reported_dt if isinstance(status, PdfSignatureStatus) else None
        ),
        timestamp=_timestamp(status),
        modification_level=status.modification_level.name if status.modification_level else None,
        coverage=status.coverage.name if status.coverage is not None else None,
        revision=revision,
        revocation=_revocation(status.signing_cert, context),
        changed_form_fields=_changed_fields(status),
    )


def _changed_fields(status: PdfSignatureStatus | DocumentTimestampStatus) -> tuple[str, ...]:
    diff = status.diff_result
    # Below FORM_FILLING pyHanko found no field value or appearance change worth the name
    # (it may still list fields whose dictionaries an LTA update touched).
    if (
        diff is None
        or isinstance(diff, SuspiciousModification)
        or diff.modification_level is not ModificationLevel.FORM_FILLING
    ):
        return ()
    return tuple(sorted(str(name) for name in diff.changed_form_fields))


def _unsigned_form_changes(results: list[SignatureResult]) -> list[SignatureResult]:
    """Fail a signature after which a form field changed that no later signature signs.

    pyHanko grades filling any field as FORM_FILLING, which an approval signature without
    DocMDP does not forbid; but a field value or widget appearance changed after signing
    is exactly how a shadow attack replaces what the signer saw, and an unsigned new
    signature field can paint anything over the page. After a signature only signature
    fields signed in a later revision may change.
    """
    judged = []
    for result in results:
        later = {
            other.field
            for other in results
            if other.revision is not None
            and result.revision is not None
            and other.revision > result.revision
            and other.certificate is not None
        }
        unsigned = [name for name in result.changed_form_fields if name not in later]
        if not unsigned:
            judged.append(result)
            continue
        reason = Reason(
            code="unsigned_form_change",
            text="Form fields changed after this signature without being signed later: "
            + ", ".join(unsigned[:8]),
        )
        judged.append(
            replace(
                result,
                indication=Indication.TOTAL_FAILED,
                sub_indication=SubIndication.FORMAT_FAILURE,
                reasons=(reason, *result.reasons)
                if result.indication is not Indication.TOTAL_FAILED
                else (*result.reasons, reason),
            )
        )
    return judged


def _check_cms_structure(embedded: EmbeddedPdfSignature) -> None:
    """Refuse a CMS whose structures hold bytes their fields do not account for.

    asn1crypto parses leniently: a CMS cut just after its signature value and zero-filled
    (the rest of ``/Contents`` is zeros anyway) still parses, the zeros ignored as if the
    unsigned attributes, the timestamp among them, had never been there. Every byte of the
    ContentInfo, the SignedData and the SignerInfo must belong to one of their fields.
    """
    unsigned = embedded.signer_info["unsigned_attrs"]
    attributes = [] if isinstance(unsigned, asn1_core.Void) else list(unsigned)
    for value in (embedded.signed_data, embedded.signer_info, *attributes):
        used = sum(
            len(value[name].dump())
            for name, *_ in value._fields
            if not isinstance(value[name], asn1_core.Void)
        )
        if used != len(value.contents):
            raise ValueError("the CMS holds bytes outside its fields")
    if any(len(attribute["values"]) == 0 for attribute in attributes):
        raise ValueError("an unsigned attribute without a value")


async def _lacks_revocation_data(
    certificate: x509.Certificate, embedded: EmbeddedPdfSignature, context: ValidationContext
) -> bool:
    """Whether the path of ``certificate`` fails for want of revocation data only.

    pyHanko reports that as a general chain failure; it is the most common reason a valid
    signature cannot be confirmed offline, so the report names it.
    """
    intermediates = [
        c.chosen
        for c in embedded.signed_data["certificates"]
        if isinstance(c.chosen, x509.Certificate)
    ]
    validator = CertificateValidator(
        certificate, intermediate_certs=intermediates, validation_context=context
    )
    try:
        await validator.async_validate_path()
    except InsufficientRevinfoError:
        return True
    except Exception:  # untrusted input: any other failure is not this one
        return False
    return False


def _revocation(certificate: x509.Certificate, context: _Context) -> RevocationInfo | None:
    """The newest revocation data in ``context`` about ``certificate`` (a revoked answer
    first), for the report; the verdict itself is certvalidator's."""
    found: list[RevocationInfo] = []

    def source(item: ocsp.OCSPResponse | crl.CertificateList) -> str:
        return context.sources.get(item.dump(), "fetched" if context.fetching else "document")

    for response in context.validation.ocsps:
        try:
            basic = response["response_bytes"]["response"].parsed
            for single in basic["tbs_response_data"]["responses"]:
                cert_id = single["cert_id"]
                if cert_id["serial_number"].native != certificate.serial_number:
                    continue
                algorithm = cert_id["hash_algorithm"]["algorithm"].native
                issuer_hash = hashlib.new(algorithm, certificate.issuer.dump()).digest()
                if cert_id["issuer_name_hash"].native != issuer_hash:
                    continue
                found.append(
                    RevocationInfo(
                        source=source(response),
                        kind="ocsp",
                        status=str(single["cert_status"].name),
                        time=single["this_update"].native,
                    )
                )
        except (ValueError, TypeError, KeyError, AttributeError):
            continue
    for revocation_list in context.validation.crls:
        try:
            tbs = revocation_list["tbs_cert_list"]
            if tbs["issuer"] != certificate.issuer:
                continue
            revoked = any(
                entry["user_certificate"].native == certificate.serial_number
                for entry in tbs["revoked_certificates"]
            )
            found.append(
                RevocationInfo(
                    source=source(revocation_list),
                    kind="crl",
                    status="revoked" if revoked else "good",
                    time=tbs["this_update"].native,
                )
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            continue
    if not found:
        return None
    return max(found, key=lambda r: (r.status == "revoked", r.time))


Finding = tuple[Indication, SubIndication, Reason]


def _judge(
    status: PdfSignatureStatus | DocumentTimestampStatus,
    kind: str,
    policy: Policy,
    *,
    trailing: bool,
    revocation_unknown: bool = False,
) -> list[Finding]:
    """Every reason ``status`` is not TOTAL-PASSED under ``policy``, worst first."""
    failed, indeterminate = Indication.TOTAL_FAILED, Indication.INDETERMINATE
    found: list[Finding] = []

    def add(indication: Indication, sub: SubIndication, code: str, text: str) -> None:
        found.append((indication, sub, Reason(code=code, text=text)))

    if not status.intact:
        add(
            failed,
            SubIndication.HASH_FAILURE,
            "hash_mismatch",
            "The signed bytes do not match the digest in the signature.",
        )
    if not status.valid:
        add(
            failed,
            SubIndication.SIG_CRYPTO_FAILURE,
            "signature_invalid",
            "The cryptographic signature does not verify with the signer's key.",
        )
    found.extend(_algorithm_findings(status, policy))
    if status.revocation_details is not None:
        details = status.revocation_details
        who = "an issuing CA's" if details.ca_revoked else "the signer's"
        proven = status.timestamp_validity if isinstance(status, PdfSignatureStatus) else None
        if (
            proven is not None
            and _token_passed(proven)
            and proven.timestamp >= details.revocation_date
        ):
            add(
                failed,
                SubIndication.REVOKED,
                "certificate_revoked",
                f"{who.capitalize()} certificate was revoked on "
                f"{details.revocation_date.isoformat()}, before the proven signing time.",
            )
        else:
            add(
                indeterminate,
                SubIndication.REVOKED_NO_POE,
                "certificate_revoked_no_poe",
                f"{who.capitalize()} certificate was revoked on "
                f"{details.revocation_date.isoformat()} and nothing proves the signature "
                "existed before that.",
            )
    elif revocation_unknown:
        add(
            indeterminate,
            SubIndication.TRY_LATER,
            "revocation_unknown",
            "The revocation status of a certificate in the signer's chain cannot be "
            "determined: the document carries no revocation data for it, and neither the "
            "service's own CA data nor an allowed fetch provides it.",
        )
    elif status.trust_problem_indic is not None:
        indication, sub = _from_ades(status.trust_problem_indic)
        add(
            indication,
            sub,
            "chain_not_validated",
            "The signing certificate could not be validated up to a trust anchor of the "
            f"policy ({status.trust_problem_indic.standard_name}).",
        )
    if isinstance(status, PdfSignatureStatus) and status.timestamp_validity is not None:
        token = status.timestamp_validity
        if not (token.intact and token.valid):
            add(
                failed,
                SubIndication.HASH_FAILURE,
                "timestamp_invalid",
                "The signature timestamp token does not verify.",
            )
        elif not token.trusted:
            add(
                indeterminate,
                SubIndication.NO_POE,
                "timestamp_untrusted",
                "The signature timestamp's authority does not chain to a trust anchor.",
            )
    found.extend(_modification_findings(status, kind, trailing=trailing))
    passed = status.bottom_line if isinstance(status, PdfSignatureStatus) else _token_passed(status)
    if not found and not passed:
        # pyHanko says no without a reason mapped above: never turn that into a pass.
        add(
            indeterminate,
            SubIndication.GENERIC,
            "not_passed",
            "The validation did not pass for a reason not otherwise reported.",
        )
    found.sort(key=lambda f: -SEVERITY[f[0]])
    return found


def _algorithm_findings(
    status: PdfSignatureStatus | DocumentTimestampStatus, policy: Policy
) -> list[Finding]:
    found: list[Finding] = []
    digest = status.md_algorithm.lower().replace("-", "")
    if digest in policy.forbidden_digests:
        found.append(
            (
                Indication.TOTAL_FAILED,
                SubIndication.CRYPTO_CONSTRAINTS_FAILURE,
                Reason(code="weak_digest", text=f"The digest algorithm {digest} is forbidden."),
            )
        )
    key = status.signing_cert.public_key
    bits = key.bit_size
    minimum = {"rsa": policy.min_rsa_bits, "rsassa_pss": policy.min_rsa_bits}.get(
        key.algorithm, policy.min_ec_bits if key.algorithm == "ec" else 0
    )
    if bits < minimum:
        found.append(
            (
                Indication.TOTAL_FAILED,
                SubIndication.CRYPTO_CONSTRAINTS_FAILURE,
                Reason(
                    code="weak_key",
                    text=f"The signing key ({key.algorithm}, {bits} bits) is below the "
                    f"policy minimum of {minimum} bits.",
                ),
            )
        )
    return found


def _modification_findings(
    status: PdfSignatureStatus | DocumentTimestampStatus, kind: str, *, trailing: bool
) -> list[Finding]:
    failed = Indication.TOTAL_FAILED
    found: list[Finding] = []
    coverage = status.coverage
    level = status.modification_level
    if trailing:
        found.append(
            (
                failed,
                SubIndication.FORMAT_FAILURE,
                Reason(
                    code="unsigned_trailing_bytes",
                    text="Bytes follow the signed revision that are not an incremental update.",
                ),
            )
        )
    if coverage not in (SignatureCoverageLevel.ENTIRE_FILE, SignatureCoverageLevel.ENTIRE_REVISION):
        found.append(
            (
                failed,
                SubIndication.FORMAT_FAILURE,
                Reason(
                    code="partial_coverage",
                    text="The signature does not cover a whole revision of the document.",
                ),
            )
        )
    if isinstance(status.diff_result, SuspiciousModification):
        found.append(
            (
                failed,
                SubIndication.FORMAT_FAILURE,
                Reason(
                    code="suspicious_modification",
                    text=f"Changes after signing are not allowed: {status.diff_result}",
                ),
            )
        )
    elif level is None:
        found.append(
            (
                Indication.INDETERMINATE,
                SubIndication.GENERIC,
                Reason(
                    code="modifications_not_analysed",
                    text="The changes made after signing could not be analysed.",
                ),
            )
        )
    elif level not in _ACCEPTED_LEVELS or (
        isinstance(status, PdfSignatureStatus) and status.docmdp_ok is not True
    ):
        found.append(
            (
                failed,
                SubIndication.FORMAT_FAILURE,
                Reason(
                    code="disallowed_modification",
                    text=f"The document was changed after this {kind.replace('_', ' ')} "
                    f"beyond what is allowed (modification level {level.name}).",
                ),
            )
        )
    return found


def _bytes_after_signed_zone(embedded: EmbeddedPdfSignature, data: bytes) -> bool:
    """Whether anything but whitespace follows the signed bytes of the last revision.

    pyHanko grades such a signature ``ENTIRE_REVISION`` and, finding no later revision,
    analyses no change: the appended bytes would pass unseen.
    """
    byte_range = embedded.byte_range
    if len(byte_range) != 4:
        return True
    end = int(byte_range[2]) + int(byte_range[3])
    return _WHITESPACE.fullmatch(data, end) is None


def _token_passed(status: TimestampSignatureStatus | PdfSignatureStatus) -> bool:
    # ``bottom_line`` is not defined on timestamp statuses; this is its common part.
    return status.intact and status.valid and status.trusted


def _bytes_after_last_revision(reader: PdfFileReader, data: bytes) -> bool:
    """Whether anything but whitespace follows the %%EOF that closes the last revision.

    The difference analysis compares revisions only; bytes after the last one (say after
    an unsigned DSS update) belong to no revision and would never be looked at.
    """
    try:
        last = reader.xrefs.total_revisions - 1
        container_end = reader.xrefs.get_xref_container_info(last).end_location
    except (PdfError, ValueError, KeyError, IndexError, AttributeError):
        return True
    eof = data.find(b"%%EOF", container_end)
    return eof < 0 or _WHITESPACE.fullmatch(data, eof + len(b"%%EOF")) is None


def _kind(embedded: EmbeddedPdfSignature) -> str:
    if embedded.sig_object_type == "/DocTimeStamp":
        return "document_timestamp"
    return "certification" if embedded.docmdp_level is not None else "approval"


def _from_ades(sub: AdESSubIndic | None) -> tuple[Indication, SubIndication]:
    if sub is None:
        return Indication.INDETERMINATE, SubIndication.GENERIC
    name = sub.standard_name
    mapped = SubIndication.__members__.get(name, SubIndication.GENERIC)
    # The project's rule is stricter than EN 319 102-1 here: a forbidden algorithm fails.
    if sub.status is AdESStatus.FAILED or mapped is SubIndication.CRYPTO_CONSTRAINTS_FAILURE:
        return Indication.TOTAL_FAILED, mapped
    return Indication.INDETERMINATE, mapped


def _failed_to_parse(name: str, ex: Exception) -> SignatureResult:
    return _bare(
        name,
        "approval",
        Indication.TOTAL_FAILED,
        SubIndication.FORMAT_FAILURE,
        Reason(
            code="malformed_signature",
            text=f"The signature dictionary or its CMS cannot be read ({type(ex).__name__}).",
        ),
        None,
    )


def _bare(
    name: str,
    kind: str,
    indication: Indication,
    sub: SubIndication,
    reason: Reason,
    revision: int | None,
) -> SignatureResult:
    return SignatureResult(
        field=name,
        kind=kind,
        indication=indication,
        sub_indication=sub,
        reasons=(reason,),
        certificate=None,
        claimed_signing_time=None,
        timestamp=None,
        modification_level=None,
        coverage=None,
        revision=revision,
    )


def _certificate(cert: x509.Certificate) -> CertificateInfo:
    subject = cert.subject.native
    validity = cert["tbs_certificate"]["validity"]
    return CertificateInfo(
        subject=cert.subject.human_friendly,
        common_name=_first(subject.get("common_name")),
        organisation=_first(subject.get("organization_name")),
        unit=_first(subject.get("organizational_unit_name")),
        issuer=cert.issuer.human_friendly,
        serial=cert.serial_number,
        not_before=validity["not_before"].native,
        not_after=validity["not_after"].native,
    )


def _first(value: object) -> str | None:
    if isinstance(value, list):
        return str(value[0]) if value else None
    return None if value is None else str(value)


def _timestamp(status: PdfSignatureStatus | DocumentTimestampStatus) -> TimestampInfo | None:
    token: TimestampSignatureStatus | None
    token = status if isinstance(status, DocumentTimestampStatus) else status.timestamp_validity
    if token is None:
        return None
    return TimestampInfo(
        time=token.timestamp,
        authority=token.signing_cert.subject.human_friendly if token.signing_cert else None,
        passed=_token_passed(token),
    )


def _document(
    results: list[SignatureResult],
    policy: Policy,
    digest: str,
    *,
    extra: list[Reason] | None = None,
) -> DocumentResult:
    if not results:
        # No signature is nothing proven, not a failure of something that was claimed.
        return DocumentResult(
            indication=Indication.INDETERMINATE,
            sub_indication=SubIndication.SIGNED_DATA_NOT_FOUND,
            signatures=(),
            reasons=tuple(extra or ()),
            policy=policy.name,
            document_sha256=digest,
        )
    worst = max(results, key=lambda r: SEVERITY[r.indication])
    return DocumentResult(
        indication=worst.indication,
        sub_indication=worst.sub_indication,
        signatures=tuple(results),
        reasons=tuple(extra or ()),
        policy=policy.name,
        document_sha256=digest,
    )
