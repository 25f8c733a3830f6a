"""One error root for the HSM layer, with stable codes.

Messages never contain a PIN: the PIN is read at login time and never stored in an
exception, an attribute that is logged, or a ``repr``.
"""

from __future__ import annotations


class HsmError(Exception):
    """Root of every error raised by :mod:`hsm`."""

    code: str = "hsm.error"
    """Stable, machine-readable code; never changes once published."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def diagnostics(self) -> str:
        """A one-paragraph explanation for operators, including what to try."""
        return f"{self.message} [{self.code}]"


class HsmConfigError(HsmError):
    """The module, token or PIN source is misconfigured."""

    code = "hsm.config"


class HsmUnavailableError(HsmError):
    """The token cannot be reached now; the caller may try again later."""

    code = "hsm.unavailable"

    def diagnostics(self) -> str:
        return (
            f"{self.message} [{self.code}]. The token stayed unavailable after a reopen and one "
            "retry; check that the PKCS#11 module and its token directory or device are present."
        )


class HsmPinIncorrectError(HsmError):
    """The token rejected the user PIN. Kyso does not try the same PIN again."""

    code = "hsm.pin_incorrect"

    def diagnostics(self) -> str:
        return (
            f"{self.message} [{self.code}]. Fix the PIN file or variable and restart; Kyso will "
            "not retry a rejected PIN because every attempt counts towards the token's lock-out."
        )


class HsmPinLockedError(HsmError):
    """The token reports the user PIN as locked (or on its final try)."""

    code = "hsm.pin_locked"

    def diagnostics(self) -> str:
        return (
            f"{self.message} [{self.code}]. The security officer must unlock or reset the user "
            "PIN on the token; Kyso refuses to spend the last attempts automatically."
        )


class HsmKeyNotFoundError(HsmError):
    """No private key with the requested id exists on the token."""

    code = "hsm.key_not_found"


class HsmKeyRefusedError(HsmError):
    """The key exists but must not be used: it is or was extractable."""

    code = "hsm.key_refused"


class HsmUnsupportedError(HsmError):
    """The token lacks the mechanism or key type that was asked for."""

    code = "hsm.unsupported"


class HsmInvalidRequestError(HsmError):
    """The request itself is malformed (digest length, label size, unknown algorithm)."""

    code = "hsm.invalid_request"


class HsmOperationError(HsmError):
    """The token refused or failed an operation for another reason."""

    code = "hsm.operation_failed"


class HsmSealedDataError(HsmInvalidRequestError):
    """Sealed data did not open: changed bytes, another key, or other associated data."""

    code = "hsm.sealed_data_invalid"
