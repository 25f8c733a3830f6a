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
