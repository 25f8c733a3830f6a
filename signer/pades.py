"""PAdES B-B and B-T signing of a PDF: pyHanko for the PDF structure, Kyso's CMS for the
signature.

pyHanko prepares the incremental update, the signature dictionary and the ``/ByteRange``
digest (:meth:`PdfSigner.async_digest_doc_for_signing`); the CMS comes from
:meth:`SigningCredential.sign` and goes into the reserved ``/Contents``. The space to
reserve is known from the prepared credential, so pyHanko never builds a dummy signature
to size it, and never builds a CMS at all. For B-T the signature timestamp is obtained
while the CMS is built (:meth:`SigningCredential.sign` with a timestamper), not by pyHanko.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from io import BytesIO
from typing import Any, Literal, TypeVar

from asn1crypto import algos
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.misc import PdfError
from pyhanko.sign.fields import SigSeedSubFilter
from pyhanko.sign.general import SigningError
from pyhanko.sign.signers.pdf_cms import ExternalSigner
from pyhanko.sign.signers.pdf_signer import PdfSignatureMetadata, PdfSigner

from hsm import BlockingSessionPool, SignScheme
from signer.cms import SigningCredential, Timestamper
from signer.errors import InvalidDocumentError, SignerError

Level = Literal["B-B", "B-T"]
"""PAdES baseline levels produced here."""

T = TypeVar("T")

MAX_DOCUMENT_SIZE = 64 * 1024 * 1024
"""Default bound on the input PDF, in bytes."""

_MECHANISMS = {
    SignScheme.ECDSA: algos.SignedDigestAlgorithm({"algorithm": "sha256_ecdsa"}),
    SignScheme.RSA_PKCS1V15: algos.SignedDigestAlgorithm({"algorithm": "sha256_rsa"}),
}


def _placeholder(scheme: SignScheme) -> ExternalSigner:
    # PdfSigner wants a pyHanko Signer to pick the digest algorithm; this one is never asked
    # for a CMS (the container size is given, and the CMS is filled in here).
    return ExternalSigner(
        signing_cert=None, cert_registry=None, signature_mechanism=_MECHANISMS[scheme]
    )


def _run_to_completion(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never waits on anything, without an event loop.

    Without a timestamper or a validation context, pyHanko's digesting coroutine never
    suspends; an event loop per document would cost more than the PDF work it wraps.
    """
    try:
        coroutine.send(None)
    except StopIteration as done:
        result: T = done.value
        return result
    coroutine.close()
    raise SignerError("pyHanko waited on I/O while preparing a B-B signature")


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
) -> bytes:
    """Sign ``data`` (a PDF) with a PAdES signature in a new invisible field.

    ``level="B-T"`` adds a signature timestamp from ``timestamper`` (required then, and
    the credential must be prepared with a ``timestamp_reserve``); if no timestamp can be
    had, :class:`~signer.errors.TimestampFailedError` is raised and no PDF is produced.

    ``usable`` is called with the credential id before anything is signed and must raise
    if the credential may not sign (``Authority.usable_credential``); ``None`` skips the
    check, for callers that made it themselves. Blocking: run it in a thread from async
    code.
    """
    if level == "B-T":
        if timestamper is None:
            raise SignerError("PAdES B-T needs a timestamper", code="signer.timestamper_required")
        if not credential.timestamp_reserve:
            raise SignerError(
                "PAdES B-T needs a credential prepared with a timestamp_reserve",
                code="signer.timestamper_required",
            )
    elif level == "B-B":
        if timestamper is not None:
            raise SignerError("a timestamper is only used for PAdES B-T", code="signer.bad_level")
    else:
        raise SignerError(f"unsupported PAdES level {level!r}", code="signer.bad_level")
    if usable is not None:
        usable(credential.credential_id)
    if len(data) > max_size:
        raise InvalidDocumentError(f"the PDF is larger than {max_size} bytes")
    try:
        writer = IncrementalPdfFileWriter(BytesIO(data))
        if writer.security_handler is not None:
            raise InvalidDocumentError("encrypted PDFs cannot be signed")
        pdf_signer = PdfSigner(
            PdfSignatureMetadata(
                field_name=field_name,
                md_algorithm="sha256",
                subfilter=SigSeedSubFilter.PADES,
                name=credential.signer_name or None,
                reason=reason,
                location=location,
            ),
            signer=_placeholder(credential.scheme),
        )
        output = BytesIO()
        prepared, _, _ = _run_to_completion(
            pdf_signer.async_digest_doc_for_signing(
                writer, bytes_reserved=2 * credential.max_cms_size, output=output
            )
        )
    except (PdfError, SigningError) as ex:
        raise InvalidDocumentError(f"the PDF cannot be prepared for signing: {ex}") from ex
    signed_cms = credential.sign(prepared.document_digest, pool, timestamper=timestamper)
    prepared.fill_with_cms(output, signed_cms)
    return output.getvalue()
