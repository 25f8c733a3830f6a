"""One error root for the signer, with stable codes."""

from __future__ import annotations


class SignerError(Exception):
    """Root of every error the signer raises on purpose."""

    code: str = "signer.error"
    """Stable, machine-readable code; never changes once published."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def diagnostics(self) -> str:
        return f"{self.message} [{self.code}]"


class UnsupportedCredentialError(SignerError):
    """The credential's key or certificate cannot make a PAdES signature here."""

    code = "signer.unsupported_credential"


class InvalidDocumentError(SignerError):
    """The input is not a PDF that can be signed (unreadable, encrypted, too large...)."""

    code = "signer.invalid_document"


class TimestampFailedError(SignerError):
    """No usable signature timestamp: the TSA refused or failed, or its token does not
    answer the request (imprint, nonce) or does not fit the space reserved for it."""

    code = "signer.timestamp_failed"


class FieldNotFoundError(SignerError):
    """The PDF has no signature field of the name asked for."""

    code = "signer.field_not_found"


class AnchorNotFoundError(SignerError):
    """The anchor text of a visible signature is not on the pages searched."""

    code = "signer.anchor_not_found"


class BadPlacementError(SignerError):
    """A visible signature cannot go where it was asked: page out of range, a rectangle
    that is empty or off the page, or a field that is already signed or too small."""

    code = "signer.bad_placement"


class BadImageError(SignerError):
    """A signature or seal image is not a PNG Kyso accepts (format, bytes, pixels, size)."""

    code = "signer.bad_image"


class BadStampTextError(SignerError):
    """Text for a visible signature is empty, too long, or a time without a zone."""

    code = "signer.bad_stamp_text"


# -- the document registry and its blob store (signer.documents, signer.blobs) --------------


class DocumentTooLargeError(InvalidDocumentError):
    """The uploaded PDF is over the registry's size limit (HTTP 413)."""

    code = "signer.too_large"

    def __init__(self, message: str, *, limit: int) -> None:
        super().__init__(message)
        self.limit = limit
        """The limit, in bytes."""


class TooManyPagesError(InvalidDocumentError):
    """The uploaded PDF has more pages than the registry accepts."""

    code = "signer.too_many_pages"

    def __init__(self, message: str, *, limit: int) -> None:
        super().__init__(message)
        self.limit = limit
        """The limit, in pages."""


class UnknownDocumentTypeError(SignerError):
    """The document type (e.g. CT07) is not one the registry issues."""

    code = "signer.unknown_document_type"


class InvalidRequestError(SignerError):
    """A parameter of a registry call is malformed (metadata, idempotency key, revision)."""

    code = "signer.invalid_request"


class DocumentNotFoundError(SignerError):
    """No document (or no such revision of it) under that id."""

    code = "signer.document_not_found"


class InvalidStateError(SignerError):
    """The action does not fit the document's status (out of order or repeated)."""

    code = "signer.invalid_state"

    def __init__(self, message: str, *, status: str) -> None:
        super().__init__(message)
        self.status = status
        """The document's current status."""


class WrongCredentialError(SignerError):
    """The credential is not of the kind the step needs or belongs to another unit."""

    code = "signer.wrong_credential"


class IdempotencyConflictError(SignerError):
    """The idempotency key was already used for a different request."""

    code = "signer.idempotency_conflict"


class BusyError(SignerError):
    """The step lost too many races with other processes; try again."""

    code = "signer.busy"


class StorageError(SignerError):
    """The registry's database failed (unreachable, constraint, timeout)."""

    code = "signer.storage"


class BlobError(SignerError):
    """A blob could not be stored or read: ``signer.blob_not_found``, ``signer.blob_corrupt``
    (its bytes no longer hash to its name), ``signer.blob_too_large``,
    ``signer.blob_bad_name``, ``signer.blob_storage`` (the file system failed)."""

    code = "signer.blob"
