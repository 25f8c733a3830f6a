"""Errors of the composition root, and the one place domain errors become HTTP."""

from __future__ import annotations


class KysoError(Exception):
    """Root of errors raised by the composition root (settings, storage, set-up)."""

    code: str = "kyso.error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def diagnostics(self) -> str:
        return f"{self.message} [{self.code}]"


class SettingsError(KysoError):
    code = "kyso.settings"


class StorageError(KysoError):
    code = "kyso.storage"
