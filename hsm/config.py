"""Configuration of the HSM layer: which module, which token, where the PIN comes from."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from hsm.errors import HsmConfigError

SOFTHSM2_CANDIDATES: tuple[str, ...] = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
    "/opt/homebrew/lib/softhsm/libsofthsm2.so",
)
"""Where distributions install SoftHSM2's PKCS#11 module, most common first."""

MAX_PIN_LENGTH = 255


def find_pkcs11_module(explicit: str | None = None) -> str:
    """Return the module path to load: ``explicit`` if given, else the first SoftHSM2 found."""
    if explicit:
        if not Path(explicit).is_file():
            raise HsmConfigError(f"PKCS#11 module not found: {explicit}")
        return explicit
    for candidate in SOFTHSM2_CANDIDATES:
        if Path(candidate).is_file():
            return candidate
    raise HsmConfigError(
        "no PKCS#11 module configured and SoftHSM2 was not found; install the Debian "
        "package 'softhsm2' or set KYSO_HSM_MODULE"
    )


@dataclass(frozen=True, kw_only=True)
class PinSource:
    """Where the user PIN is read from, at login time. Holds no PIN itself."""

    env_var: str | None = None
    """Name of an environment variable holding the PIN; wins when set and non-empty."""

    file: Path | None = None
    """A file holding the PIN (trailing newline ignored); should be mode 0600."""

    def read(self) -> str:
        """Read the PIN. Errors name the source, never its content."""
        if self.env_var:
            value = os.environ.get(self.env_var)
            if value:
                return _checked(value, f"environment variable {self.env_var}")
        if self.file is not None:
            try:
                value = self.file.read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as ex:
                raise HsmConfigError(
                    f"cannot read the PIN file {self.file}: {ex.strerror}"
                ) from None
            return _checked(value, f"PIN file {self.file}")
        raise HsmConfigError("no user PIN configured: set KYSO_HSM_PIN_FILE or KYSO_HSM_PIN")


def _checked(pin: str, where: str) -> str:
    if not pin or len(pin) > MAX_PIN_LENGTH:
        raise HsmConfigError(f"the user PIN from {where} is empty or longer than {MAX_PIN_LENGTH}")
    return pin


@dataclass(frozen=True, kw_only=True)
class HsmConfig:
    """Everything needed to open a session pool on one token."""

    module_path: str | None = None
    """PKCS#11 module; ``None`` auto-detects SoftHSM2."""

    token_label: str | None = None
    """Select the token by label (exactly one of label or serial is usually given)."""

    token_serial: str | None = None
    """Select the token by serial number; wins over the label when both are given."""

    pin: PinSource = field(default_factory=PinSource)
    """Where the user PIN is read from."""

    pool_size: int = 4
    """Number of read-write sessions kept open on the token."""

    acquire_timeout: float = 5.0
    """Seconds a caller waits for a free session (or a recovery) before HsmUnavailableError."""

    retry_interval: float = 2.0
    """While the token is down, minimum seconds between two reopen attempts."""

    def __post_init__(self) -> None:
        if not 1 <= self.pool_size <= 256:
            raise HsmConfigError("pool size must be between 1 and 256")
        if self.acquire_timeout <= 0 or self.retry_interval < 0:
            raise HsmConfigError("HSM timeouts must be positive")
        if not (self.token_label or self.token_serial):
            raise HsmConfigError("no token selected: set KYSO_HSM_TOKEN_LABEL or _SERIAL")
