"""PKCS#11 key custody: a thread-safe session pool, on-token key generation, signing.

The lowest leaf of Kyso: depends on python-pkcs11 and prometheus-client only. Whoever
asks this package to generate a key writes the audit event.
"""

from hsm.config import HsmConfig, PinSource, find_pkcs11_module
from hsm.errors import (
    HsmConfigError,
    HsmError,
    HsmInvalidRequestError,
    HsmKeyNotFoundError,
    HsmKeyRefusedError,
    HsmOperationError,
    HsmPinIncorrectError,
    HsmPinLockedError,
    HsmSealedDataError,
    HsmUnavailableError,
    HsmUnsupportedError,
)
from hsm.keys import KeyInfo, KeySpec
from hsm.pool import (
    BlockingSessionPool,
    ModuleInfo,
    SelfTestResult,
    SessionPool,
    SlotReport,
    TokenInfo,
)
from hsm.sealing import SecretKeyInfo
from hsm.signing import HashAlg, SignScheme, default_scheme

__all__ = [
    "BlockingSessionPool",
    "HashAlg",
    "HsmConfig",
    "HsmConfigError",
    "HsmError",
    "HsmInvalidRequestError",
    "HsmKeyNotFoundError",
    "HsmKeyRefusedError",
    "HsmOperationError",
    "HsmPinIncorrectError",
    "HsmPinLockedError",
    "HsmSealedDataError",
    "HsmUnavailableError",
    "HsmUnsupportedError",
    "KeyInfo",
    "KeySpec",
    "ModuleInfo",
    "PinSource",
    "SecretKeyInfo",
    "SelfTestResult",
    "SessionPool",
    "SignScheme",
    "SlotReport",
    "TokenInfo",
    "default_scheme",
    "find_pkcs11_module",
]
