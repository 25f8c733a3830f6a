"""Subject names: CCCD numbers, Vietnamese attribute values, RFC 5280 bounds, display."""

from __future__ import annotations

import unicodedata

import pytest
from asn1crypto import x509

from pki.errors import InvalidInputError
from pki.names import (
    ca_subject,
    display_name,
    officer_subject,
    organisation_subject,
    validate_cccd,
    validate_email,
)

OFFICER = {
    "province": "Thành phố Hồ Chí Minh",
    "locality": "Phường Bến Thành",
    "ministry": "Bộ Công an",
    "unit": "Công an phường Bến Thành",
    "full_name": "Nguyễn Văn Ánh",
    "cccd": "079099000123",
}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("001099000123", "001099000123"),
        ("079203012345", "079203012345"),
        ("096999999999", "096999999999"),
        ("  038185000001\n", "038185000001"),
    ],
)
def test_valid_cccd(value: str, expected: str) -> None:
    assert validate_cccd(value) == expected


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "12 digits"),
        ("07909900012", "12 digits"),
        ("0790990001234", "12 digits"),
        ("07909900012A", "12 digits"),
        ("0790 9900012", "12 digits"),
        ("٠٧٩٠٩٩٠٠٠١٢٣", "12 digits"),  # Arabic-Indic digits are not ASCII digits
        ("079099000123\x00", "12 digits"),
        ("003099000123", "003 is not a province code"),
        ("000099000123", "000 is not a province code"),
        ("097099000123", "097 is not a province code"),
        ("099099000123", "099 is not a province code"),
    ],
)
def test_invalid_cccd(value: str, reason: str) -> None:
    with pytest.raises(InvalidInputError, match=reason) as raised:
        validate_cccd(value)
    assert raised.value.code == "pki.invalid_cccd"


def test_officer_subject_round_trips_vietnamese_through_der() -> None:
    name = x509.Name.load(officer_subject(**OFFICER).dump())
    assert name.native == {
        "country_name": "VN",
        "state_or_province_name": "Thành phố Hồ Chí Minh",
        "locality_name": "Phường Bến Thành",
        "organization_name": "Bộ Công an",
        "organizational_unit_name": "Công an phường Bến Thành",
        "common_name": "Nguyễn Văn Ánh",
        "user_id": "CCCD:079099000123",
    }
    # Order in the DER: C, ST, L, O, OU, CN, UID; C printable, the rest UTF8String.
    rdns = [rdn[0] for rdn in name.chosen]
    assert [rdn["type"].native for rdn in rdns] == list(name.native)
    assert [rdn["value"].name for rdn in rdns] == ["printable_string"] + ["utf8_string"] * 6
    assert rdns[6]["type"].dotted == "0.9.2342.19200300.100.1.1"


def test_nfc_normalisation_gives_one_encoding() -> None:
    decomposed = {key: unicodedata.normalize("NFD", value) for key, value in OFFICER.items()}
    assert decomposed["full_name"] != OFFICER["full_name"]
    assert officer_subject(**decomposed).dump() == officer_subject(**OFFICER).dump()


def test_surrounding_whitespace_is_stripped() -> None:
    padded = {key: f"  {value} " for key, value in OFFICER.items()}
    assert officer_subject(**padded).dump() == officer_subject(**OFFICER).dump()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("full_name", "", "must not be empty"),
        ("full_name", "   ", "must not be empty"),
        ("full_name", "Ánh" * 21 + "AB", "65 characters; at most 64"),
        ("unit", "U" * 65, "at most 64"),
        ("ministry", "M" * 65, "at most 64"),
        ("province", "P" * 129, "at most 128"),
        ("locality", "L" * 129, "at most 128"),
        ("full_name", "Nguyễn\nVăn Ánh", "control"),
        ("unit", "Công an\u200bphường", "control"),
        ("full_name", "Nguyễn\x00", "control"),
    ],
)
def test_officer_subject_refuses_bad_values(field: str, value: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message) as raised:
        officer_subject(**{**OFFICER, field: value})
    assert raised.value.code == "pki.invalid_name"


def test_officer_subject_accepts_the_upper_bounds() -> None:
    name = officer_subject(**{**OFFICER, "full_name": "Ánh" * 21 + "B", "province": "P" * 128})
    assert name.native["common_name"] == "Ánh" * 21 + "B"
    assert len(name.native["state_or_province_name"]) == 128


def test_officer_subject_checks_the_cccd() -> None:
    with pytest.raises(InvalidInputError) as raised:
        officer_subject(**{**OFFICER, "cccd": "123"})
    assert raised.value.code == "pki.invalid_cccd"


def test_organisation_subject_names_the_unit_once() -> None:
    name = organisation_subject(
        province=OFFICER["province"],
        locality=OFFICER["locality"],
        ministry=OFFICER["ministry"],
        unit=OFFICER["unit"],
    )
    assert name.native == {
        "country_name": "VN",
        "state_or_province_name": "Thành phố Hồ Chí Minh",
        "locality_name": "Phường Bến Thành",
        "organization_name": "Bộ Công an",
        "common_name": "Công an phường Bến Thành",
    }


def test_ca_subject() -> None:
    name = ca_subject(common_name="Kyso Issuing CA — Bộ Công an", organisation="Bộ Công an")
    assert list(name.native.items()) == [
        ("country_name", "VN"),
        ("organization_name", "Bộ Công an"),
        ("common_name", "Kyso Issuing CA — Bộ Công an"),
    ]


def test_display_name_keeps_vietnamese_most_specific_first() -> None:
    assert display_name(officer_subject(**OFFICER)) == (
        "UID=CCCD:079099000123, CN=Nguyễn Văn Ánh, OU=Công an phường Bến Thành, "
        "O=Bộ Công an, L=Phường Bến Thành, ST=Thành phố Hồ Chí Minh, C=VN"
    )


def test_human_friendly_keeps_vietnamese() -> None:
    text = officer_subject(**OFFICER).human_friendly
    assert "Common Name: Nguyễn Văn Ánh" in text
    assert "Organizational Unit: Công an phường Bến Thành" in text


def test_display_name_neutralises_control_characters_of_untrusted_names() -> None:
    # Built around the validators, as a hostile certificate would carry it.
    forged = x509.Name.build({"common_name": "Nguyễn Văn Ánh\nVALID", "user_id": "x\x1b[31m"})
    assert display_name(forged) == "UID=x\ufffd[31m, CN=Nguyễn Văn Ánh\ufffdVALID"


def test_display_name_shows_unknown_attributes_by_oid() -> None:
    name = x509.Name.build({"common_name": "Ánh", "1.2.3.4": "giá trị"})
    assert display_name(name) == "1.2.3.4=giá trị, CN=Ánh"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("anh.nv@congan.gov.vn", "anh.nv@congan.gov.vn"),
        (" vanthu+ct07@hcm.gov.vn\n", "vanthu+ct07@hcm.gov.vn"),
    ],
)
def test_valid_email(value: str, expected: str) -> None:
    assert validate_email(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "anh.nv",
        "anh.nv@",
        "@congan.gov.vn",
        "anh nv@congan.gov.vn",
        "ánh@congan.gov.vn",
        "anh@công-an.vn",
        "anh@localhost",
        "a" * 65 + "@congan.gov.vn",
        "a@" + "b" * 250 + ".vn",
        "anh@congan.gov.vn\r\nBcc: x@y.vn",
    ],
)
def test_invalid_email(value: str) -> None:
    with pytest.raises(InvalidInputError) as raised:
        validate_email(value)
    assert raised.value.code == "pki.invalid_email"
