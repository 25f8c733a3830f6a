"""X.509 certificates and PKCS#10 requests: issuance, parsing of outside input, PEM.

Key-free: everything is signed through a :class:`~pki.keysource.X509Signer`, and every
signature is checked with ``cryptography`` before the structure is handed back, so that a
broken key source is caught at once rather than by a relying party.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import UTC, datetime

from asn1crypto import crl, csr, keys, pem, x509
from cryptography import x509 as crypto_x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import Encoding

from pki.errors import InvalidInputError, PkiError
from pki.keysource import X509Signer
from pki.profiles import PkiUrls, Profile, profile_extensions, subject_alt_name

MAX_CSR_BYTES = 64 * 1024
MAX_CERTIFICATES_BYTES = 1024 * 1024
MAX_CERTIFICATES = 16

MAX_SERIAL = (1 << 159) - 1
"""RFC 5280 §4.1.2.2 and §5.2.3: serials and CRL numbers fit in 20 octets."""
_SERIAL_FLOOR = 1 << 120
_SERIAL_CEILING = 1 << 127

_PEM_TYPES = {
    x509.Certificate: "CERTIFICATE",
    crl.CertificateList: "X509 CRL",
    csr.CertificationRequest: "CERTIFICATE REQUEST",
}


def random_serial() -> int:
    """A random serial of exactly 16 DER octets with ~127 bits from :mod:`secrets`.

    The top bit stays clear (no 0x00 sign octet) and the first octet is non-zero, so every
    serial has the same length, well under RFC 5280's 20 octets and above CA/B's 64 bits.
    """
    return _SERIAL_FLOOR + secrets.randbelow(_SERIAL_CEILING - _SERIAL_FLOOR)


def to_utc(moment: datetime, *, what: str) -> datetime:
    """``moment`` in UTC to the second (X.509 times carry no fractions); naive is refused."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidInputError(f"{what} needs a time zone", code="pki.invalid_time")
    return moment.astimezone(UTC).replace(microsecond=0)


def x509_time(moment: datetime) -> x509.Time:
    """UTCTime through 2049, GeneralizedTime from 2050 on (RFC 5280 §4.1.2.5)."""
    if moment.year < 2050:
        return x509.Time(name="utc_time", value=moment)
    return x509.Time(name="general_time", value=moment)


def _same_key(first: keys.PublicKeyInfo, second: keys.PublicKeyInfo) -> bool:
    return bool(first.dump() == second.dump())


def require_issuer_key(*, signer: X509Signer, issuer: x509.Certificate) -> None:
    """Refuse a signer whose key is not the issuer certificate's."""
    if not _same_key(signer.public_key, issuer.public_key):
        raise InvalidInputError(
            "the signing key is not the issuer certificate's key", code="pki.signer_mismatch"
        )


def signature_failure(what: str, cause: Exception | None = None) -> PkiError:
    """The error for a freshly signed structure whose signature does not verify."""
    detail = f" ({type(cause).__name__})" if cause is not None else ""
    return PkiError(
        f"the key source produced a {what} whose signature does not verify{detail}; "
        "check that the signing key matches",
        code="pki.signature_check_failed",
    )


def issue_certificate(
    *,
    profile: Profile,
    subject: x509.Name,
    public_key: keys.PublicKeyInfo,
    signer: X509Signer,
    issuer: x509.Certificate | None,
    not_before: datetime,
    not_after: datetime,
    serial: int | None = None,
    urls: PkiUrls | None = None,
    email: str | None = None,
    policies: Sequence[str] = (),
) -> x509.Certificate:
    """A v3 certificate of ``profile`` for ``public_key``, signed by ``signer``.

    ``issuer=None`` issues a self-signed root: the issuer name is ``subject`` and the
    signer's key must be ``public_key``. Otherwise the signer's key must be the issuer
    certificate's, the issuer must be a CA allowed to issue this profile, and the validity
    must end no later than the issuer's. See :func:`pki.profiles.profile_extensions` for
    ``urls``, ``email`` and ``policies``.
    """
    start = to_utc(not_before, what="not_before")
    end = to_utc(not_after, what="not_after")
    if start >= end:
        raise InvalidInputError("not_before must be before not_after", code="pki.invalid_time")
    if serial is None:
        serial = random_serial()
    elif not 0 < serial <= MAX_SERIAL:
        raise InvalidInputError(
            "a serial number is a positive integer of at most 20 octets",
            code="pki.invalid_serial",
        )
    if not subject.chosen:
        raise InvalidInputError("the subject name must not be empty", code="pki.invalid_name")
    if issuer is None:
        if not _same_key(signer.public_key, public_key):
            raise InvalidInputError(
                "a self-signed certificate must be signed by its own key",
                code="pki.signer_mismatch",
            )
        issuer_name = subject
        authority_key_id = None
    else:
        require_issuer_key(signer=signer, issuer=issuer)
        if not issuer.ca or (profile.is_ca and issuer.max_path_length == 0):
            raise InvalidInputError(
                f"the issuer is not a CA that may issue a {profile.value} certificate",
                code="pki.profile_mismatch",
            )
        if end > issuer.not_valid_after:
            raise InvalidInputError(
                f"not_after {end.isoformat()} is later than the issuer's "
                f"{issuer.not_valid_after.isoformat()}",
                code="pki.invalid_time",
            )
        issuer_name = issuer.subject
        authority_key_id = issuer.key_identifier or signer.key_id
    tbs = x509.TbsCertificate(
        {
            "version": "v3",
            "serial_number": serial,
            "signature": signer.algorithm,
            "issuer": issuer_name,
            "validity": {"not_before": x509_time(start), "not_after": x509_time(end)},
            "subject": subject,
            "subject_public_key_info": public_key,
            "extensions": profile_extensions(
                profile=profile,
                public_key=public_key,
                authority_key_id=authority_key_id,
                urls=urls,
                email=email,
                policies=policies,
            ),
        }
    )
    certificate = x509.Certificate(
        {
            "tbs_certificate": tbs,
            "signature_algorithm": signer.algorithm,
            "signature_value": signer.sign(tbs.dump()),
        }
    )
    issued = crypto_x509.load_der_x509_certificate(certificate.dump())
    signing = issued if issuer is None else crypto_x509.load_der_x509_certificate(issuer.dump())
    try:
        issued.verify_directly_issued_by(signing)
    except (InvalidSignature, UnsupportedAlgorithm, ValueError, TypeError) as ex:
        raise signature_failure("certificate", ex) from ex
    return certificate


def build_csr(
    *, subject: x509.Name, signer: X509Signer, email: str | None = None
) -> csr.CertificationRequest:
    """A PKCS#10 request for the signer's key, signed by it (proof of possession).

    With ``email``, an extensionRequest asks for a subjectAltName rfc822Name.
    """
    attributes = []
    if email is not None:
        attributes.append(
            {"type": "extension_request", "values": [[subject_alt_name(email=email)]]}
        )
    info = csr.CertificationRequestInfo(
        {
            "version": "v1",
            "subject": subject,
            "subject_pk_info": signer.public_key,
            "attributes": attributes,
        }
    )
    request = csr.CertificationRequest(
        {
            "certification_request_info": info,
            "signature_algorithm": signer.algorithm,
            "signature": signer.sign(info.dump()),
        }
    )
    if not crypto_x509.load_der_x509_csr(request.dump()).is_signature_valid:
        raise signature_failure("certificate request")
    return request


def _der_blocks(
    data: bytes, *, pem_types: tuple[str, ...], limit: int, what: str, code: str
) -> list[bytes]:
    if not data.strip():
        raise InvalidInputError(f"the {what} is empty", code=code)
    if not pem.detect(data):
        return [data]
    blocks = []
    try:
        for pem_type, _headers, der in pem.unarmor(data, multiple=True):
            if pem_type not in pem_types:
                raise InvalidInputError(
                    f"a PEM block of type {pem_type!r} is not a {what}", code=code
                )
            blocks.append(der)
            if len(blocks) > limit:
                raise InvalidInputError(f"more than {limit} PEM blocks", code=code)
    except ValueError as ex:
        raise InvalidInputError(f"the {what} is not valid PEM", code=code) from ex
    return blocks


def load_csr(data: bytes) -> csr.CertificationRequest:
    """A PKCS#10 request from PEM or DER (at most 64 KiB), its self-signature verified."""
    code = "pki.invalid_csr"
    if len(data) > MAX_CSR_BYTES:
        raise InvalidInputError(f"a CSR is at most {MAX_CSR_BYTES} bytes", code=code)
    (der,) = _der_blocks(
        data,
        pem_types=("CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"),
        limit=1,
        what="certificate request",
        code=code,
    )
    try:
        valid = crypto_x509.load_der_x509_csr(der).is_signature_valid
        request = csr.CertificationRequest.load(der, strict=True)
    except (ValueError, UnsupportedAlgorithm) as ex:
        raise InvalidInputError(f"the certificate request is malformed: {ex}", code=code) from ex
    if not valid:
        raise InvalidInputError("the certificate request's signature is invalid", code=code)
    return request


def load_certificates(data: bytes) -> list[x509.Certificate]:
    """Certificates from a PEM bundle or one DER certificate (≤ 1 MiB, ≤ 16 certificates)."""
    code = "pki.invalid_certificate"
    if len(data) > MAX_CERTIFICATES_BYTES:
        raise InvalidInputError(
            f"a certificate bundle is at most {MAX_CERTIFICATES_BYTES} bytes", code=code
        )
    certificates = []
    for index, der in enumerate(
        _der_blocks(
            data,
            pem_types=("CERTIFICATE",),
            limit=MAX_CERTIFICATES,
            what="certificate",
            code=code,
        ),
        start=1,
    ):
        try:
            crypto_x509.load_der_x509_certificate(der)
            certificates.append(x509.Certificate.load(der, strict=True))
        except ValueError as ex:
            raise InvalidInputError(f"certificate {index} is malformed: {ex}", code=code) from ex
    return certificates


def certificate_matches_key(cert: x509.Certificate, public_key_der: bytes) -> bool:
    """Whether the certificate is for the key with this DER SubjectPublicKeyInfo."""
    return bool(cert.public_key.dump() == public_key_der)


def to_pem(value: x509.Certificate | crl.CertificateList | csr.CertificationRequest) -> bytes:
    """PEM armour for a certificate, CRL or certificate request."""
    return bytes(pem.armor(_PEM_TYPES[type(value)], value.dump()))


def from_cryptography(certificate: crypto_x509.Certificate) -> x509.Certificate:
    """The asn1crypto form of a ``cryptography`` certificate (same DER)."""
    return x509.Certificate.load(certificate.public_bytes(Encoding.DER))


def to_cryptography(certificate: x509.Certificate) -> crypto_x509.Certificate:
    """The ``cryptography`` form of an asn1crypto certificate (same DER)."""
    return crypto_x509.load_der_x509_certificate(certificate.dump())
