"""The ETSI TS 119 102-2 validation report (XML) of a verifier JSON report.

Built from Kyso's own verdict (the JSON of :func:`verifier.report.to_json`), not from a
pyHanko AdES result: the verdict adds checks pyHanko does not make (trailing bytes, the
policy's algorithm rules, revocation that cannot be determined...). The bindings and the
namespace prefixes are pyHanko's (``pyhanko.sign.validation.report.tools``), so both
reports read the same.

What the JSON does not carry is left out rather than invented: the signature's
``DigestAlgAndValue`` (it needs the digest of the signed attributes, the DTBSR) and the
signer certificate's bytes (the validation object then names the certificate by URI).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from pyhanko.generated.etsi import ts_11910202, xades
from xsdata.formats.dataclass.serializers import XmlSerializer
from xsdata.formats.dataclass.serializers.config import SerializerConfig
from xsdata.models.datatype import XmlDateTime

from verifier.errors import VerifierError

NAMESPACES = {
    "vr": "http://uri.etsi.org/19102/v1.2.1#",
    "XAdES": "http://uri.etsi.org/01903/v1.3.2#",
    "ds": "http://www.w3.org/2000/09/xmldsig#",
    "xs": "http://www.w3.org/2001/XMLSchema",
}
"""Prefixes used by pyHanko's own TS 119 102-2 reports."""

MAIN_INDICATIONS = {
    "TOTAL-PASSED": "urn:etsi:019102:mainindication:total-passed",
    "TOTAL-FAILED": "urn:etsi:019102:mainindication:total-failed",
    "INDETERMINATE": "urn:etsi:019102:mainindication:indeterminate",
}
"""JSON indication -> TS 119 102-2 main indication URI."""

SUB_INDICATION_PREFIX = "urn:etsi:019102:subindication:"
"""Prefix of a sub-indication URI; the EN 319 102-1 name follows it."""
CONSTRAINT_PREFIX = "urn:kyso:constraint:"
"""Prefix of the identifier of a Kyso check that did not pass; its reason code follows."""
CERTIFICATE_URI_PREFIX = "urn:kyso:certificate:serial:"
"""Names a signer certificate by serial when the report does not carry its bytes."""
_APPLIED = "urn:etsi:019102:constraintStatus:applied"
_CERTIFICATE = "urn:etsi:019102:validationObject:certificate"
_POE_VALIDATION = "urn:etsi:019102:poetype:validation"
_NCNAME = re.compile(r"[A-Za-z_][A-Za-z0-9._-]*\Z")
_SUB_NAME = re.compile(r"[A-Z_]{1,64}\Z")
# Characters XML 1.0 cannot carry at all, even escaped (a certificate CN may hold them).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


class XmlReportError(VerifierError):
    """The JSON report lacks what the XML report needs (a programming error upstream)."""

    code = "verifier.xml_report_invalid"


def render_xml(report: dict[str, Any]) -> str:
    """The TS 119 102-2 ``ValidationReport`` of ``report`` (JSON schema version 1), UTF-8
    text with an XML declaration. One ``SignatureValidationReport`` per signature; a
    document without signatures gets one carrying the document verdict."""
    verified_at = _time(report.get("verified_at"))
    policy = _text(report.get("policy"))
    signatures = report.get("signatures") or []
    objects: list[ts_11910202.ValidationObjectType] = []
    reports: list[ts_11910202.SignatureValidationReportType] = []
    for number, signature in enumerate(signatures, start=1):
        certificate = signature.get("certificate")
        signer_ref = None
        if certificate is not None:
            object_id = f"cert-{number}"
            objects.append(_certificate_object(object_id, certificate))
            signer_ref = object_id
        reports.append(_signature_report(number, signature, policy, verified_at, signer_ref))
    if not reports:
        reports.append(
            ts_11910202.SignatureValidationReportType(
                validation_constraints_evaluation_report=_constraints(
                    policy, report.get("reasons") or []
                ),
                signature_validation_status=_status(report),
            )
        )
    document = ts_11910202.ValidationReport(
        signature_validation_report=tuple(reports),
        signature_validation_objects=(
            ts_11910202.ValidationObjectListType(validation_object=tuple(objects))
            if objects
            else None
        ),
    )
    serializer = XmlSerializer(config=SerializerConfig(indent="  ", encoding="UTF-8"))
    return serializer.render(document, ns_map=NAMESPACES)


def _signature_report(
    number: int,
    signature: dict[str, Any],
    policy: str,
    verified_at: XmlDateTime | None,
    signer_ref: str | None,
) -> ts_11910202.SignatureValidationReportType:
    field = _text(signature.get("field"))
    timestamp = signature.get("timestamp") or {}
    token_time = _time(timestamp.get("time"))
    time_info = None
    if verified_at is not None:
        # Without a passed timestamp nothing proves an earlier time: EN 319 102-1 then
        # takes the validation time as the best signature time.
        best = token_time if token_time is not None and timestamp.get("passed") else verified_at
        time_info = ts_11910202.ValidationTimeInfoType(
            validation_time=verified_at,
            best_signature_time=ts_11910202.POEType(poetime=best, type_of_proof=_POE_VALIDATION),
        )
    return ts_11910202.SignatureValidationReportType(
        signature_identifier=ts_11910202.SignatureIdentifierType(
            # xs:ID must be an NCName; a field name need not be one, so the exact name
            # goes to DAIdentifier and only a conforming one doubles as the id.
            id=field if _NCNAME.match(field) else f"sig-{number}",
            daidentifier=field,
            hash_only=False,
            doc_hash_only=False,
        ),
        validation_constraints_evaluation_report=_constraints(
            policy, signature.get("reasons") or []
        ),
        validation_time_info=time_info,
        signature_attributes=_attributes(signature, token_time),
        signer_information=(
            ts_11910202.SignerInformationType(
                signer_certificate=ts_11910202.VOReferenceType(voreference=(signer_ref,)),
                signer=_text(signature["signer"]) if signature.get("signer") else None,
            )
            if signer_ref is not None
            else None
        ),
        signature_validation_status=_status(signature),
    )


def _attributes(
    signature: dict[str, Any], token_time: XmlDateTime | None
) -> ts_11910202.SignatureAttributesType | None:
    claimed = _time(signature.get("signing_time"))
    kwargs: dict[str, Any] = {}
    if claimed is not None:
        kwargs["signing_time"] = (ts_11910202.SASigningTimeType(signed=True, time=claimed),)
    if token_time is not None:
        token = ts_11910202.SATimestampType(signed=False, time_stamp_value=token_time)
        key = "doc_time_stamp" if signature.get("kind") == "document_timestamp" else None
        kwargs[key or "signature_time_stamp"] = (token,)
    return ts_11910202.SignatureAttributesType(**kwargs) if kwargs else None


def _constraints(
    policy: str, reasons: list[dict[str, Any]]
) -> ts_11910202.ValidationConstraintsEvaluationReportType:
    # The policy is Kyso's, not a signature policy with a hashed document, so it is named
    # (PolicyName) with an implied identifier rather than a SigPolicyId without its hash.
    return ts_11910202.ValidationConstraintsEvaluationReportType(
        signature_validation_policy=ts_11910202.SignatureValidationPolicyType(
            signature_policy_identifier=xades.SignaturePolicyIdentifierType(
                signature_policy_implied=""
            ),
            policy_name=policy,
        ),
        validation_constraint=tuple(
            ts_11910202.IndividualValidationConstraintReportType(
                validation_constraint_identifier=CONSTRAINT_PREFIX + _text(reason.get("code")),
                constraint_status=ts_11910202.ConstraintStatusType(status=_APPLIED),
            )
            for reason in reasons
        ),
    )


def _status(verdict: dict[str, Any]) -> ts_11910202.ValidationStatusType:
    indication = verdict.get("indication")
    if indication not in MAIN_INDICATIONS:
        raise XmlReportError(f"unknown indication {indication!r}")
    sub = verdict.get("sub_indication")
    if sub is not None and not _SUB_NAME.match(str(sub)):
        raise XmlReportError(f"malformed sub-indication {sub!r}")
    return ts_11910202.ValidationStatusType(
        main_indication=MAIN_INDICATIONS[indication],
        sub_indication=() if sub is None else (SUB_INDICATION_PREFIX + str(sub),),
    )


def _certificate_object(
    object_id: str, certificate: dict[str, Any]
) -> ts_11910202.ValidationObjectType:
    return ts_11910202.ValidationObjectType(
        id=object_id,
        object_type=_CERTIFICATE,
        validation_object_representation=ts_11910202.ValidationObjectRepresentationType(
            uri=CERTIFICATE_URI_PREFIX + _text(certificate.get("serial"))
        ),
    )


def _time(value: object) -> XmlDateTime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return XmlDateTime.from_datetime(datetime.fromisoformat(value))
    except ValueError as ex:
        raise XmlReportError(f"not an ISO 8601 time: {value!r}") from ex


def _text(value: object) -> str:
    return _NOT_XML.sub("\ufffd", "" if value is None else str(value))
