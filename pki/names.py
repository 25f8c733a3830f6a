"""Distinguished names for Kyso's certificates: officers, agency seals and CAs.

Subjects follow the Vietnamese government CA's pattern ``C=VN, ST, L, O=<ministry>,
OU=<unit>, CN=<name>, UID=CCCD:<number>``. Every attribute except C is a UTF8String so that
Vietnamese survives; text is NFC-normalised first, so that the same name typed with
combining marks and with precomposed letters gives the same DER.

Key-free: the verifier uses :func:`display_name` on untrusted certificates.
"""

from __future__ import annotations

import re
import unicodedata

from asn1crypto import x509

from pki.errors import InvalidInputError

# Province codes (mã tỉnh) of the place where the birth was registered.
_PROVINCE_CODES = frozenset(
    """001 002 004 006 008 010 011 012 014 015 017 019 020 022 024 025 026 027 030 031 033 034
    035 036 037 038 040 042 044 045 046 048 049 051 052 054 056 058 060 062 064 066 067 068
    070 072 074 075 077 079 080 082 083 084 086 087 089 091 092 093 094 095 096""".split()  # noqa: SIM905
)
_CCCD = re.compile(r"[0-9]{12}")

# RFC 5280 Appendix A upper bounds, in characters.
_UB_NAME = 64
_UB_PLACE = 128

_EMAIL_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}")
_EMAIL_DOMAIN = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}")
_UB_EMAIL = 254

_SHORT_LABELS = {
    "country_name": "C",
    "state_or_province_name": "ST",
    "locality_name": "L",
    "organization_name": "O",
    "organizational_unit_name": "OU",
    "common_name": "CN",
    "user_id": "UID",
    "serial_number": "SERIALNUMBER",
    "email_address": "E",
    "domain_component": "DC",
    "given_name": "GN",
    "surname": "SN",
    "title": "T",
    "street_address": "STREET",
    "organization_identifier": "organizationIdentifier",
}


def validate_cccd(value: str) -> str:
    """The 12-digit citizen identity number (CCCD), surrounding whitespace stripped.

    The first three digits are the province code of the birth registration, the fourth the
    gender and century code (any digit).
    """
    number = value.strip()
    if not _CCCD.fullmatch(number):
        raise InvalidInputError(
            "a citizen identity number (CCCD) is exactly 12 digits", code="pki.invalid_cccd"
        )
    if number[:3] not in _PROVINCE_CODES:
        raise InvalidInputError(
            f"{number[:3]} is not a province code of a citizen identity number (CCCD)",
            code="pki.invalid_cccd",
        )
    return number


def validate_email(value: str) -> str:
    """An ASCII mailbox for an rfc822Name (IA5String), surrounding whitespace stripped.

    Internationalised addresses (SmtpUTF8Mailbox, RFC 9598) are refused rather than
    mangled.
    """
    address = value.strip()
    local, at, domain = address.rpartition("@")
    if (
        len(address) > _UB_EMAIL
        or not at
        or not _EMAIL_LOCAL.fullmatch(local)
        or not _EMAIL_DOMAIN.fullmatch(domain)
    ):
        raise InvalidInputError(
            "an e-mail address must be an ASCII mailbox such as canbo@congan.gov.vn",
            code="pki.invalid_email",
        )
    return address


def _text(label: str, value: str, upper_bound: int) -> str:
    text = unicodedata.normalize("NFC", value.strip())
    if not text:
        raise InvalidInputError(f"{label} must not be empty", code="pki.invalid_name")
    if len(text) > upper_bound:
        raise InvalidInputError(
            f"{label} has {len(text)} characters; at most {upper_bound} are allowed",
            code="pki.invalid_name",
        )
    if any(unicodedata.category(char).startswith("C") for char in text):
        raise InvalidInputError(
            f"{label} contains a control or unassigned character", code="pki.invalid_name"
        )
    return text


def _place(province: str, locality: str) -> dict[str, str]:
    return {
        "country_name": "VN",
        "state_or_province_name": _text("province (ST)", province, _UB_PLACE),
        "locality_name": _text("locality (L)", locality, _UB_PLACE),
    }


def officer_subject(
    *, province: str, locality: str, ministry: str, unit: str, full_name: str, cccd: str
) -> x509.Name:
    """``C=VN, ST, L, O=<ministry>, OU=<unit>, CN=<full name>, UID=CCCD:<number>``."""
    return x509.Name.build(
        {
            **_place(province, locality),
            "organization_name": _text("ministry (O)", ministry, _UB_NAME),
            "organizational_unit_name": _text("unit (OU)", unit, _UB_NAME),
            "common_name": _text("full name (CN)", full_name, _UB_NAME),
            "user_id": f"CCCD:{validate_cccd(cccd)}",
        }
    )


def organisation_subject(*, province: str, locality: str, ministry: str, unit: str) -> x509.Name:
    """The agency seal: ``C=VN, ST, L, O=<ministry>, CN=<unit>``.

    The unit is the CN (what a verifier shows as the signer) and OU is omitted, so that the
    unit name does not appear twice.
    """
    return x509.Name.build(
        {
            **_place(province, locality),
            "organization_name": _text("ministry (O)", ministry, _UB_NAME),
            "common_name": _text("unit (CN)", unit, _UB_NAME),
        }
    )


def ca_subject(*, common_name: str, organisation: str) -> x509.Name:
    """``C=VN, O=<organisation>, CN=<common name>``."""
    return x509.Name.build(
        {
            "country_name": "VN",
            "organization_name": _text("organisation (O)", organisation, _UB_NAME),
            "common_name": _text("common name (CN)", common_name, _UB_NAME),
        }
    )


def _display_value(value: x509.DirectoryString) -> str:
    try:
        native = value.native
    except ValueError:
        return f"#{value.contents.hex()}"
    # An untrusted name must not be able to forge a line break or hide text in a report.
    return "".join(
        "\ufffd" if unicodedata.category(char).startswith("C") else char for char in str(native)
    )


def display_name(name: x509.Name) -> str:
    """A one-line rendering for people, most specific first (``CN=…, OU=…, …, C=VN``).

    Vietnamese is kept as is (no RFC 4514 escaping); control characters from an untrusted
    certificate become U+FFFD. Attributes of a multi-valued RDN are joined with ``+``.
    """
    parts = []
    for rdn in reversed(list(name.chosen)):
        parts.append(
            "+".join(
                f"{_SHORT_LABELS.get(attribute['type'].native, attribute['type'].dotted)}="
                f"{_display_value(attribute['value'])}"
                for attribute in rdn
            )
        )
    return ", ".join(parts)
