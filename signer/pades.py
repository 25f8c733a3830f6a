"""PAdES baseline signing of a PDF (B-B, B-T, B-LT, B-LTA): pyHanko for the PDF structure,
Kyso's CMS for the signature.

pyHanko prepares the incremental update, the signature dictionary and the ``/ByteRange``
digest (:meth:`PdfSigner.async_digest_doc_for_signing`); the CMS comes from
:meth:`SigningCredential.sign` and goes into the reserved ``/Contents``. The space to
reserve is known from the prepared credential, so pyHanko never builds a dummy signature
to size it, and never builds a CMS at all. For B-T the signature timestamp is obtained
while the CMS is built (:meth:`SigningCredential.sign` with a timestamper), not by pyHanko;
B-LT and B-LTA follow in further incremental updates (:mod:`signer.ltv`).
"""

from __future__ import annotations

from collections.abc import Callable
from io import BytesIO
from typing import Literal, get_args

from asn1crypto import algos
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.misc import PdfError
from pyhanko.sign.fields import MDPPerm, SigSeedSubFilter
from pyhanko.sign.general import SigningError
from pyhanko.sign.signers.pdf_cms import ExternalSigner
from pyhanko.sign.signers.pdf_signer import PdfSignatureMetadata

from hsm import BlockingSessionPool
from signer.cms import SigningCredential, Timestamper
from signer.coroutines import run_to_completion
from signer.errors import InvalidDocumentError, SignerError
from signer.ltv import ValidationData, add_document_timestamp, add_validation_data
from signer.stamps import StampingPdfSigner, VisibleSignature

Level = Literal["B-B", "B-T", "B-LT", "B-LTA"]
"""PAdES baseline levels (ETSI EN 319 142-1): B-B a signature; B-T with a signature
timestamp; B-LT with the validation data in the DSS; B-LTA with a document timestamp over
all of it."""

LEVELS: tuple[Level, ...] = get_args(Level)

MAX_DOCUMENT_SIZE = 64 * 1024 * 1024
"""Default bound on the input PDF, in bytes."""


def _placeholder(credential: SigningCredential) -> ExternalSigner:
    # PdfSigner wants a pyHanko Signer to pick the digest algorithm; this one is never asked
    # for a CMS (the container size is given, and the CMS is filled in here).
    return ExternalSigner(
        signing_cert=None,
        cert_registry=None,
        signature_mechanism=algos.SignedDigestAlgorithm.load(credential.signature_algorithm),
    )


def sign_pdf(
    data: bytes,
    credential: SigningCredential,
    pool: BlockingSessionPool,
    *,
    usable: Callable[[int], object] | None,
    field_name: str = "Signature1",
    reason: str | None = None,
    location: str | None = None,
    max_size: int = MAX_DOCUMENT_SIZE,
    level: Level = "B-B",
    timestamper: Timestamper | None = None,
    validation_data: ValidationData | None = None,
    appearance: VisibleSignature | None = None,
    certify: bool = False,
) -> bytes:
    """Sign ``data`` (a PDF) with a PAdES signature in a new invisible field.

    ``level="B-T"`` and above add a signature timestamp from ``timestamper`` (required
    then, and the credential must be prepared with a ``timestamp_reserve``); if no
    timestamp can be had, :class:`~signer.errors.TimestampFailedError` is raised and no PDF
    is produced. ``"B-LT"`` adds ``validation_data`` (required then:
    :func:`signer.ltv.collect_validation_data`) to the DSS in a second incremental update;
    ``"B-LTA"`` then a document timestamp from ``timestamper`` in a third.

    ``usable`` is called with the credential id before anything is signed and must raise
    if the credential may not sign (``Authority.usable_credential``); ``None`` skips the
    check, for callers that made it themselves. Blocking: run it in a thread from async
    code.

    ``appearance`` (from :mod:`signer.stamps`) makes the signature visible, in its field
    (its ``field_name`` replaces ``field_name``) and with ``/M`` at its printed time;
    ``certify`` makes it a certification signature (DocMDP P=2: only form filling and
    further signatures may follow).
    """
    _check_level(level, credential, timestamper, validation_data)
    if usable is not None:
        usable(credential.credential_id)
    if len(data) > max_size:
        raise InvalidDocumentError(f"the PDF is larger than {max_size} bytes")
    try:
        # Signed in place: pyHanko appends the update to this stream instead of copying the
        # file chunk by chunk into a growing second one (the peak memory of large files).
        output = BytesIO(data)
        writer = IncrementalPdfFileWriter(output)
        if writer.security_handler is not None:
            raise InvalidDocumentError("encrypted PDFs cannot be signed")
        if appearance is not None:
            field_name = appearance.field_name
            appearance.add_fields(writer)
        pdf_signer = StampingPdfSigner(
            PdfSignatureMetadata(
                field_name=field_name,
                md_algorithm=credential.hash_alg.value,
                subfilter=SigSeedSubFilter.PADES,
                name=credential.signer_name or None,
                reason=reason,
                location=location,
                certify=certify,
                docmdp_permissions=MDPPerm.FILL_FORMS,
            ),
            signer=_placeholder(credential),
            appearance=appearance,
        )
        prepared, _, _ = run_to_completion(
            pdf_signer.async_digest_doc_for_signing(
                writer, bytes_reserved=2 * credential.max_cms_size, in_place=True
            )
        )
    except (PdfError, SigningError) as ex:
        raise InvalidDocumentError(f"the PDF cannot be prepared for signing: {ex}") from ex
    signed_cms = credential.sign(prepared.document_digest, pool, timestamper=timestamper)
    prepared.fill_with_cms(output, signed_cms)
    # The later levels append to the same stream: no copy of the file per level.
    if validation_data is not None:
        add_validation_data(output, validation_data)
    if level == "B-LTA":
        assert timestamper is not None
        add_document_timestamp(output, timestamper, reserve=credential.timestamp_reserve)
    return output.getvalue()


def _check_level(
    level: str,
    credential: SigningCredential,
    timestamper: Timestamper | None,
    validation_data: ValidationData | None,
) -> None:
    if level not in LEVELS:
        raise SignerError(f"unsupported PAdES level {level!r}", code="signer.bad_level")
    if level == "B-B":
        if timestamper is not None:
            raise SignerError("a timestamper is not used for PAdES B-B", code="signer.bad_level")
    elif timestamper is None or not credential.timestamp_reserve:
        raise SignerError(
            f"PAdES {level} needs a timestamper and a credential prepared with a timestamp_reserve",
            code="signer.timestamper_required",
        )
    if (validation_data is not None) != (level in ("B-LT", "B-LTA")):
        raise SignerError(
            f"validation data goes with PAdES B-LT and B-LTA, not {level}",
            code="signer.validation_data_required",
        )
