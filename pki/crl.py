"""Certificate revocation lists (RFC 5280 §5), signed through an X509Signer.

Key-free: the issuing CA's key is reached only through the signer handed in.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from asn1crypto import crl, x509
from cryptography import x509 as crypto_x509

from pki.certificates import (
    MAX_SERIAL,
    require_issuer_key,
    signature_failure,
    to_utc,
    x509_time,
)
from pki.errors import InvalidInputError
from pki.keysource import X509Signer


class RevocationReason(enum.Enum):
    """RFC 5280 §5.3.1 reason codes; values are asn1crypto's CRLReason names."""

    UNSPECIFIED = "unspecified"
    KEY_COMPROMISE = "key_compromise"
    CA_COMPROMISE = "ca_compromise"
    AFFILIATION_CHANGED = "affiliation_changed"
    SUPERSEDED = "superseded"
    CESSATION_OF_OPERATION = "cessation_of_operation"
    CERTIFICATE_HOLD = "certificate_hold"
    PRIVILEGE_WITHDRAWN = "privilege_withdrawn"


@dataclass(frozen=True, kw_only=True)
class RevokedEntry:
    """One revoked (or held) certificate on a CRL."""

    serial: int
    """The certificate's serial number."""

    revoked_at: datetime
    """When the CA revoked it (timezone-aware)."""

    reason: RevocationReason
    """Why; ``UNSPECIFIED`` is written as no reasonCode at all (RFC 5280 §5.3.1)."""


def _entry(entry: RevokedEntry, this_update: datetime) -> dict[str, object]:
    if not 0 < entry.serial <= MAX_SERIAL:
        raise InvalidInputError(
            "a revoked serial number is a positive integer of at most 20 octets",
            code="pki.invalid_serial",
        )
    revoked_at = to_utc(entry.revoked_at, what="revoked_at")
    if revoked_at > this_update:
        raise InvalidInputError(
            f"serial {entry.serial:x} is revoked after the CRL's thisUpdate",
            code="pki.invalid_time",
        )
    fields: dict[str, object] = {
        "user_certificate": entry.serial,
        "revocation_date": x509_time(revoked_at),
    }
    if entry.reason is not RevocationReason.UNSPECIFIED:
        fields["crl_entry_extensions"] = [
            {"extn_id": "crl_reason", "extn_value": entry.reason.value}
        ]
    return fields


def build_crl(
    *,
    issuer: x509.Certificate,
    signer: X509Signer,
    number: int,
    this_update: datetime,
    next_update: datetime,
    revoked: Iterable[RevokedEntry],
) -> crl.CertificateList:
    """A v2 CRL for the certificates ``issuer`` issued, signed with the issuer's key.

    Carries the AKI and cRLNumber (both non-critical); entries are sorted by serial, and a
    serial listed twice is refused. The signature is checked before the CRL is returned.
    """
    start = to_utc(this_update, what="this_update")
    end = to_utc(next_update, what="next_update")
    if start >= end:
        raise InvalidInputError("this_update must be before next_update", code="pki.invalid_time")
    if not 0 <= number <= MAX_SERIAL:
        raise InvalidInputError(
            "a CRL number is a non-negative integer of at most 20 octets",
            code="pki.invalid_crl_number",
        )
    require_issuer_key(signer=signer, issuer=issuer)
    usage = issuer.key_usage_value
    if not issuer.ca or (usage is not None and "crl_sign" not in usage.native):
        raise InvalidInputError(
            "the issuer is not a CA allowed to sign CRLs", code="pki.profile_mismatch"
        )
    entries = sorted(revoked, key=lambda entry: entry.serial)
    if len({entry.serial for entry in entries}) != len(entries):
        raise InvalidInputError("a serial is listed twice", code="pki.invalid_serial")
    fields: dict[str, object] = {
        "version": "v2",
        "signature": signer.algorithm,
        "issuer": issuer.subject,
        "this_update": x509_time(start),
        "next_update": x509_time(end),
        "crl_extensions": [
            {
                "extn_id": "authority_key_identifier",
                "extn_value": {"key_identifier": issuer.key_identifier or signer.key_id},
            },
            {"extn_id": "crl_number", "extn_value": number},
        ],
    }
    # RFC 5280 §5.1.2.6: with no entries, revokedCertificates is absent, not empty.
    if entries:
        fields["revoked_certificates"] = [_entry(entry, start) for entry in entries]
    tbs = crl.TbsCertList(fields)
    certificate_list = crl.CertificateList(
        {
            "tbs_cert_list": tbs,
            "signature_algorithm": signer.algorithm,
            "signature": signer.sign(tbs.dump()),
        }
    )
    issuer_key = crypto_x509.load_der_x509_certificate(issuer.dump()).public_key()
    loaded = crypto_x509.load_der_x509_crl(certificate_list.dump())
    if not loaded.is_signature_valid(issuer_key):  # type: ignore[arg-type]
        raise signature_failure("CRL")
    return certificate_list
