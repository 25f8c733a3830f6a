"""One error root for the PKI, with stable codes.

Messages never contain a PIN or key material. Protocol errors that a client must receive
in the protocol's own form (OCSP ``malformedRequest``, TSA ``badDataFormat``) are results,
not exceptions: see :mod:`pki.ocsp` and :mod:`pki.tsa`.
"""

from __future__ import annotations


class PkiError(Exception):
    """Root of every error raised by :mod:`pki`."""

    code: str = "pki.error"
    """Stable, machine-readable code; never changes once published."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def diagnostics(self) -> str:
        """A one-paragraph explanation for operators, including what to try."""
        return f"{self.message} [{self.code}]"


class InvalidInputError(PkiError):
    """A name, identifier, CSR, certificate or parameter given to the PKI is invalid."""

    code = "pki.invalid"


class NotFoundError(PkiError):
    """A unit, person, credential or certificate does not exist."""

    code = "pki.not_found"


class ConflictError(PkiError):
    """The operation does not fit the current state (already revoked, duplicate, …)."""

    code = "pki.conflict"


class CredentialUnusableError(PkiError):
    """A credential is suspended, revoked, expired or not yet valid and must not sign."""

    code = "pki.credential_unusable"
