"""The ETSI TS 119 102-2 XML report, rendered from JSON reports written by hand."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from lxml import etree
from pyhanko.generated.etsi import ts_11910202
from xsdata.formats.dataclass.parsers import XmlParser

from verifier.xml_report import XmlReportError, render_xml

VR = "{http://uri.etsi.org/19102/v1.2.1#}"
NAME = "Nguyễn Thị Hồng Nhung"
HOSTILE = "Trần <b>\"Văn\"</b> & 'Bình' ]]> </vr:Signer>"


def signature(
    field: str, indication: str, sub: str | None, *, signer: str = NAME, **extra: Any
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "field": field,
        "kind": "approval",
        "signer": signer,
        "organisation": "Bộ Công an",
        "unit": "Công an xã Yên Hòa",
        "indication": indication,
        "sub_indication": sub,
        "reasons": [] if sub is None else [{"code": "hash_mismatch", "text": "x"}],
        "signing_time": "2025-03-04T09:10:11+07:00",
        "timestamp": {
            "time": "2025-03-04T09:10:12+07:00",
            "authority": "Kyso TSA",
            "passed": True,
        },
        "modification_level": "NONE",
        "coverage": "ENTIRE_FILE",
        "revision": 1,
        "certificate": {
            "subject": f"Common Name: {signer}",
            "issuer": "Common Name: Kyso Demo CA",
            "serial": "123456789012345678901234567890",
            "not_before": "2025-01-01T00:00:00+00:00",
            "not_after": "2027-01-01T00:00:00+00:00",
        },
    }
    result.update(extra)
    return result


def report(indication: str, sub: str | None, *signatures: dict[str, Any]) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "indication": indication,
        "sub_indication": sub,
        "reasons": [],
        "policy": "kyso-default",
        "document_sha256": "00" * 32,
        "signatures": list(signatures),
        "verified_at": "2025-03-05T08:00:00+07:00",
    }


PASSED = report(
    "TOTAL-PASSED",
    None,
    signature("CanBoKy", "TOTAL-PASSED", None),
    signature("Con dấu 1", "TOTAL-PASSED", None, signer="Công an xã Yên Hòa"),
)
FAILED = report(
    "TOTAL-FAILED",
    "HASH_FAILURE",
    signature("CanBoKy", "TOTAL-FAILED", "HASH_FAILURE", timestamp=None),
)
INDETERMINATE = report(
    "INDETERMINATE",
    "NO_CERTIFICATE_CHAIN_FOUND",
    signature(
        "CanBoKy",
        "INDETERMINATE",
        "NO_CERTIFICATE_CHAIN_FOUND",
        certificate=None,
        signer=None,
        reasons=[{"code": "chain_not_validated", "text": "x"}],
        timestamp={"time": "2025-03-04T09:10:12+07:00", "authority": None, "passed": False},
    ),
)


def parse(xml: str) -> ts_11910202.ValidationReport:
    return XmlParser().from_string(xml, ts_11910202.ValidationReport)


def status(
    item: ts_11910202.SignatureValidationReportType,
) -> tuple[str | None, tuple[str, ...]]:
    assert item.signature_validation_status is not None
    return (
        item.signature_validation_status.main_indication,
        item.signature_validation_status.sub_indication,
    )


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (PASSED, [("urn:etsi:019102:mainindication:total-passed", ())] * 2),
        (
            FAILED,
            [
                (
                    "urn:etsi:019102:mainindication:total-failed",
                    ("urn:etsi:019102:subindication:HASH_FAILURE",),
                )
            ],
        ),
        (
            INDETERMINATE,
            [
                (
                    "urn:etsi:019102:mainindication:indeterminate",
                    ("urn:etsi:019102:subindication:NO_CERTIFICATE_CHAIN_FOUND",),
                )
            ],
        ),
    ],
)
def test_indications_fields_and_policy_parse_back(
    source: dict[str, Any], expected: list[tuple[str, tuple[str, ...]]]
) -> None:
    parsed = parse(render_xml(source))
    items = parsed.signature_validation_report
    assert [status(item) for item in items] == expected
    names = [s["field"] for s in source["signatures"]]
    identifiers = [item.signature_identifier for item in items]
    assert [i.daidentifier for i in identifiers if i is not None] == names
    for item in items:
        evaluation = item.validation_constraints_evaluation_report
        assert evaluation is not None
        assert evaluation.signature_validation_policy is not None
        assert evaluation.signature_validation_policy.policy_name == "kyso-default"


def test_passed_report_details() -> None:
    parsed = parse(render_xml(PASSED))
    first, second = parsed.signature_validation_report
    assert first.signature_identifier is not None
    assert first.signature_identifier.id == "CanBoKy"
    # "Con dấu 1" is not an NCName: it cannot be an xs:ID, the DAIdentifier keeps it.
    assert second.signature_identifier is not None
    assert second.signature_identifier.id == "sig-2"
    assert first.signer_information is not None
    assert first.signer_information.signer == NAME
    assert second.signer_information is not None
    assert second.signer_information.signer == "Công an xã Yên Hòa"
    attributes = first.signature_attributes
    assert attributes is not None
    assert str(attributes.signing_time[0].time) == "2025-03-04T09:10:11+07:00"
    assert str(attributes.signature_time_stamp[0].time_stamp_value) == "2025-03-04T09:10:12+07:00"
    time_info = first.validation_time_info
    assert time_info is not None
    assert time_info.best_signature_time is not None
    assert str(time_info.validation_time) == "2025-03-05T08:00:00+07:00"
    # A passed timestamp is the best proof of time.
    assert str(time_info.best_signature_time.poetime) == "2025-03-04T09:10:12+07:00"
    objects = parsed.signature_validation_objects
    assert objects is not None
    assert [o.id for o in objects.validation_object] == ["cert-1", "cert-2"]
    assert first.signer_information.signer_certificate is not None
    assert first.signer_information.signer_certificate.voreference == ("cert-1",)


def test_failed_and_indeterminate_details() -> None:
    failed = parse(render_xml(FAILED)).signature_validation_report[0]
    evaluation = failed.validation_constraints_evaluation_report
    assert evaluation is not None
    assert [c.validation_constraint_identifier for c in evaluation.validation_constraint] == [
        "urn:kyso:constraint:hash_mismatch"
    ]
    assert failed.signature_attributes is not None
    assert failed.signature_attributes.signature_time_stamp == ()
    indeterminate = parse(render_xml(INDETERMINATE))
    item = indeterminate.signature_validation_report[0]
    assert item.signer_information is None
    assert indeterminate.signature_validation_objects is None
    # An untrusted timestamp proves nothing: the best signature time is the validation time.
    assert item.validation_time_info is not None
    assert item.validation_time_info.best_signature_time is not None
    assert str(item.validation_time_info.best_signature_time.poetime) == (
        "2025-03-05T08:00:00+07:00"
    )


def test_well_formed_utf8_and_hostile_strings_escaped() -> None:
    source = copy.deepcopy(FAILED)
    source["signatures"][0]["signer"] = HOSTILE + "\x01"
    source["signatures"][0]["field"] = HOSTILE
    source["policy"] = "chính sách <&>"
    xml = render_xml(source)
    root = etree.fromstring(xml.encode("utf-8"))
    assert root.tag == f"{VR}ValidationReport"
    signers = root.findall(f".//{VR}Signer")
    assert [s.text for s in signers] == [HOSTILE + "\ufffd"]
    assert root.findtext(f".//{VR}DAIdentifier") == HOSTILE
    assert root.findtext(f".//{VR}PolicyName") == "chính sách <&>"
    assert "Trần" in xml  # UTF-8 text, not character references
    parsed = parse(xml).signature_validation_report[0]
    assert parsed.signer_information is not None
    assert parsed.signer_information.signer == HOSTILE + "\ufffd"


def test_document_without_signatures_and_absent_optional_fields() -> None:
    source = report("INDETERMINATE", "SIGNED_DATA_NOT_FOUND")
    source["reasons"] = [{"code": "no_signature", "text": "none"}]
    del source["verified_at"]
    (item,) = parse(render_xml(source)).signature_validation_report
    assert status(item) == (
        "urn:etsi:019102:mainindication:indeterminate",
        ("urn:etsi:019102:subindication:SIGNED_DATA_NOT_FOUND",),
    )
    assert item.signature_identifier is None
    assert item.validation_time_info is None


@pytest.mark.parametrize(
    ("key", "value"),
    [("indication", "PASSED"), ("sub_indication", "x</vr:SubIndication>"), ("signing_time", "x")],
)
def test_malformed_json_is_refused(key: str, value: str) -> None:
    source = copy.deepcopy(FAILED)
    source["signatures"][0][key] = value
    with pytest.raises(XmlReportError):
        render_xml(source)
