"""PAdES B-LT and B-LTA: validation data in the document security store (DSS), and the
document timestamp.

B-LT adds, in an incremental update after the signature, everything a validator needs to
check the signature without going online (ETSI EN 319 142-1 §5.4): the certificates of the
signer's and the TSA's chains, an OCSP response for each end-entity certificate and the
root's CRL for the issuing CA's certificate. B-LTA then timestamps the whole document,
DSS included, so that the validation data itself is protected once the algorithms or keys
that produced it weaken.

The validation data of a credential only changes when a certificate status changes or its
responses near their nextUpdate, so :func:`collect_validation_data` is meant to be called
once per credential and the result reused (see :class:`signer.service.SigningService`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from io import BytesIO

from asn1crypto import cms, crl, ocsp, x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp as cx_ocsp
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.misc import PdfError
from pyhanko.sign.fields import enumerate_sig_fields
from pyhanko.sign.general import SigningError
from pyhanko.sign.signers.pdf_signer import PdfTimeStamper
from pyhanko.sign.timestamps.api import TimeStamper
from pyhanko.sign.validation.dss import DocumentSecurityStore

from pki.authority import Authority, Credential
from pki.certificates import to_cryptography
from pki.store import CredentialKind
from signer.cms import Timestamper
from signer.coroutines import run_to_completion
from signer.errors import InvalidDocumentError, TimestampFailedError, UnsupportedCredentialError

DOCUMENT_TIMESTAMP_FIELD = "DocumentTimestamp"
"""Name of the B-LTA document timestamp's signature field (a number is appended if taken)."""


@dataclass(frozen=True, kw_only=True)
class ValidationData:
    """What goes into the DSS for one credential, parsed once and reused."""

    certificates: tuple[x509.Certificate, ...]
    """The signer's issuers and the TSA's certificate and issuers (roots included, for the
    record: validators take their anchors from their own configuration)."""
    ocsp_responses: tuple[ocsp.OCSPResponse, ...]
    """A ``good`` answer for the signer's and the TSA's certificate."""
    crls: tuple[crl.CertificateList, ...]
    """The root's CRL, which covers the issuing CA's certificate."""
    status_generation: int
    """The PKI status generation the answers were produced at; stale once it moves."""
    refresh_after: datetime
    """When to collect again: half-way to the earliest nextUpdate among the answers."""

    def is_fresh(self, generation: int, now: datetime) -> bool:
        return generation == self.status_generation and now < self.refresh_after


def _ocsp_request(certificate: x509.Certificate, issuer: x509.Certificate) -> bytes:
    request = (
        cx_ocsp.OCSPRequestBuilder()
        .add_certificate(to_cryptography(certificate), to_cryptography(issuer), hashes.SHA256())
        .build()
    )
    return request.public_bytes(serialization.Encoding.DER)


def _good_answer(der: bytes, what: str) -> tuple[ocsp.OCSPResponse, datetime]:
    response = ocsp.OCSPResponse.load(der)
    if response["response_status"].native != "successful":
        raise UnsupportedCredentialError(
            f"no OCSP answer for the {what} ({response['response_status'].native})",
            code="signer.ltv_unavailable",
        )
    (single,) = response.basic_ocsp_response["tbs_response_data"]["responses"]
    if single["cert_status"].name != "good":
        raise UnsupportedCredentialError(
            f"the {what} is not in good standing ({single['cert_status'].name})",
            code="signer.ltv_unavailable",
        )
    next_update: datetime = single["next_update"].native
    return response, next_update


def collect_validation_data(
    authority: Authority, credential: Credential, *, now: datetime | None = None
) -> ValidationData:
    """The DSS content for signatures of ``credential`` timestamped by Kyso's TSA, produced
    in process: OCSP answers from Kyso's responder, the root's current CRL.

    Only certificates of Kyso's own CA: the status of an external certificate would have to
    be fetched from its CA, through the fetch policy (not built yet)."""
    if credential.certificate is None or credential.external:
        raise UnsupportedCredentialError(
            f"credential {credential.id}: B-LT needs revocation data from Kyso's own CA; "
            "the certificate comes from an external CA",
            code="signer.ltv_unavailable",
        )
    now = now or datetime.now(UTC)
    generation = authority.status_generation()
    issuing = authority.ca_certificate(CredentialKind.ISSUING_CA)
    root = authority.ca_certificate(CredentialKind.ROOT_CA)
    tsa = authority.ca_certificate(CredentialKind.TSA)
    responder = authority.ocsp_responder()
    answers = []
    for what, certificate in (("signer's certificate", credential.certificate), ("TSA", tsa)):
        result = responder.respond(_ocsp_request(certificate, issuing), now=now)
        answers.append(_good_answer(result.der, what))
    root_crl = crl.CertificateList.load(authority.current_crl(CredentialKind.ROOT_CA))
    crl_next_update: datetime = root_crl["tbs_cert_list"]["next_update"].native
    earliest = min([crl_next_update, *(next_update for _, next_update in answers)])
    return ValidationData(
        certificates=(issuing, root, tsa),
        ocsp_responses=tuple(response for response, _ in answers),
        crls=(root_crl,),
        status_generation=generation,
        refresh_after=now + max(timedelta(0), earliest - now) / 2,
    )


def add_validation_data(pdf: BytesIO, data: ValidationData) -> None:
    """Append ``data`` to the DSS of the PDF in ``pdf``, an incremental update written in
    place (PAdES B-LT): the file is not copied, which matters for large documents.

    No VRI dictionary: PAdES baseline signatures do not need one, and the same data serves
    every signature of the credential."""
    try:
        writer = IncrementalPdfFileWriter(pdf)
        DocumentSecurityStore.supply_dss_in_writer(
            writer,
            None,
            certs=data.certificates,
            ocsps=data.ocsp_responses,
            crls=data.crls,
        )
        writer.write_in_place()  # type: ignore[no-untyped-call]
    except (PdfError, SigningError) as ex:
        raise InvalidDocumentError(f"the DSS cannot be added: {ex}") from ex


class InProcessTimeStamper(TimeStamper):
    """pyHanko's timestamper interface over a :data:`~signer.cms.Timestamper`, which makes
    and checks its own request."""

    def __init__(self, timestamper: Callable[[bytes], bytes]) -> None:
        super().__init__(include_nonce=False)  # type: ignore[no-untyped-call]
        self._timestamper = timestamper

    async def async_timestamp(self, message_digest: bytes, md_algorithm: str) -> cms.ContentInfo:
        if md_algorithm != "sha256":
            raise TimestampFailedError("document timestamps here are over SHA-256")
        return cms.ContentInfo.load(self._timestamper(message_digest))


def add_document_timestamp(pdf: BytesIO, timestamper: Timestamper, *, reserve: int) -> None:
    """Append a document timestamp (ETSI.RFC3161) over all of the PDF in ``pdf``, written in
    place (PAdES B-LTA).

    ``reserve`` is the largest token in bytes (:func:`signer.timestamps.timestamp_reserve`)."""
    try:
        writer = IncrementalPdfFileWriter(pdf)
        run_to_completion(
            PdfTimeStamper(
                InProcessTimeStamper(timestamper), field_name=_free_field_name(writer)
            ).async_timestamp_pdf(writer, "sha256", bytes_reserved=2 * reserve, in_place=True)
        )
    except (PdfError, SigningError) as ex:
        raise InvalidDocumentError(f"the document timestamp cannot be added: {ex}") from ex


def _free_field_name(writer: IncrementalPdfFileWriter) -> str:
    taken = {name for name, _, _ in enumerate_sig_fields(writer)}
    name, n = DOCUMENT_TIMESTAMP_FIELD, 1
    while name in taken:
        n += 1
        name = f"{DOCUMENT_TIMESTAMP_FIELD}{n}"
    return name
