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


class PinError(PkiError):
    """A signing PIN was refused; the message never contains the PIN."""

    code = "pki.pin"


class PinInvalidError(PinError):
    """A wrong PIN: counted, and the credential locks at the last allowed failure."""

    code = "pki.pin_invalid"

    def __init__(self, message: str, *, remaining: int) -> None:
        super().__init__(message)
        self.remaining = remaining
        """Wrong PINs still allowed before the credential locks."""


class PinLockedError(PinError):
    """The credential's PIN is locked after too many consecutive failures; an
    administrator must unlock it. Even the right PIN is refused until then."""

    code = "pki.pin_locked"


class PinNotSetError(PinError):
    """The credential has no PIN yet, so nothing can authorise its use."""

    code = "pki.pin_not_set"


class PinRequiredError(PinError):
    """A signing request came without the credential's PIN."""

    code = "pki.pin_required"
