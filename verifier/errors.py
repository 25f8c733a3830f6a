"""One error root for the verifier, with stable codes.

Only input the verifier cannot look at (too large, not a PDF) is an error; everything
wrong with a signature is a result (an indication), never an exception.
"""

from __future__ import annotations


class VerifierError(Exception):
    """Root of every error the verifier raises on purpose."""

    code: str = "verifier.error"
    """Stable, machine-readable code; never changes once published."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def diagnostics(self) -> str:
        return f"{self.message} [{self.code}]"


class InputTooLargeError(VerifierError):
    """The document is larger than the verifier accepts."""

    code = "verifier.input_too_large"


class UnreadableDocumentError(VerifierError):
    """The input is not a PDF the verifier can parse strictly (or it is encrypted)."""

    code = "verifier.unreadable_document"


class InvalidPolicyError(VerifierError):
    """The validation policy itself is unusable (no anchor, an anchor that is not DER)."""

    code = "verifier.invalid_policy"
