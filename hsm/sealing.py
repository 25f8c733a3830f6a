"""Secret (AES-256) keys that seal small secrets on the token with AES-GCM.

A sealing key never leaves the token: whoever reads what it sealed (a database dump, a
backup) learns nothing without the token and its PIN. Sealed data is ``nonce || ciphertext
|| tag``; the additional authenticated data (AAD) binds it to where it belongs, so that a
sealed value copied to another place does not open there.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any, cast

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.mechanisms import GCMParams
from pkcs11.types import DecryptMixin, EncryptMixin

from hsm.errors import HsmInvalidRequestError, HsmOperationError, HsmSealedDataError
from hsm.keys import custody_problems

SECRET_KEY_BITS = 256

NONCE_BYTES = 12
"""The GCM nonce size NIST SP 800-38D recommends; random, so at most 2**32 seals per key."""

TAG_BITS = 128

MAX_PLAINTEXT_BYTES = 4096
"""Sealing is for small secrets (TOTP seeds, tokens); anything larger is refused."""

MAX_AAD_BYTES = 1024

MIN_SEALED_BYTES = NONCE_BYTES + TAG_BITS // 8
MAX_SEALED_BYTES = MIN_SEALED_BYTES + MAX_PLAINTEXT_BYTES

SECRET_TEMPLATE: dict[Attribute, Any] = {
    Attribute.TOKEN: True,
    Attribute.PRIVATE: True,
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: False,
    Attribute.ENCRYPT: True,
    Attribute.DECRYPT: True,
    Attribute.SIGN: False,
    Attribute.VERIFY: False,
    Attribute.WRAP: False,
    Attribute.UNWRAP: False,
    Attribute.DERIVE: False,
}
"""Every sealing key Kyso makes: on the token, private, sensitive, never extractable, and
good for encryption only: a key that could wrap could export other keys, one that could
sign would be a second purpose."""

SECRET_CAPABILITIES = pkcs11.MechanismFlag.ENCRYPT | pkcs11.MechanismFlag.DECRYPT

# SoftHSM 2.6 answers a GCM tag mismatch with CKR_GENERAL_ERROR; the standard codes are
# CKR_ENCRYPTED_DATA_INVALID and CKR_ENCRYPTED_DATA_LEN_RANGE.
UNSEAL_REFUSALS: tuple[type[pkcs11.PKCS11Error], ...] = (
    pkcs11.GeneralError,
    pkcs11.EncryptedDataInvalid,
    pkcs11.EncryptedDataLenRange,
)


@dataclass(frozen=True, kw_only=True)
class SecretKeyInfo:
    """What the token says about one secret (sealing) key."""

    key_id: bytes
    """CKA_ID: random, given at generation."""

    label: str
    """CKA_LABEL, UTF-8: how Kyso finds the key."""

    key_type: str
    """The PKCS#11 key type name (AES for every key Kyso makes)."""

    bits: int
    """CKA_VALUE_LEN in bits."""

    encrypt: bool
    decrypt: bool
    sign: bool
    verify: bool
    wrap: bool
    unwrap: bool
    derive: bool
    sensitive: bool
    always_sensitive: bool
    extractable: bool
    never_extractable: bool
    local: bool
    """CKA_LOCAL: generated on the token rather than imported."""

    @property
    def problems(self) -> tuple[str, ...]:
        """Reasons this key must not seal anything; empty when it is fine."""
        found = custody_problems(self)
        other_uses = [
            name
            for name, allowed in (
                ("CKA_SIGN", self.sign),
                ("CKA_VERIFY", self.verify),
                ("CKA_WRAP", self.wrap),
                ("CKA_UNWRAP", self.unwrap),
                ("CKA_DERIVE", self.derive),
            )
            if allowed
        ]
        if other_uses:
            found.append(f"{', '.join(other_uses)} true: the key has other uses than sealing")
        if not (self.encrypt and self.decrypt):
            found.append("CKA_ENCRYPT or CKA_DECRYPT is false")
        if self.key_type != KeyType.AES.name or self.bits != SECRET_KEY_BITS:
            found.append(f"not an AES-{SECRET_KEY_BITS} key")
        return tuple(found)

    @property
    def usable(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id.hex(),
            "label": self.label,
            "key_type": self.key_type,
            "bits": self.bits,
            "sensitive": self.sensitive,
            "extractable": self.extractable,
            "usable": self.usable,
            "problems": list(self.problems),
        }


_SECRET_ATTRS = [
    Attribute.ID,
    Attribute.LABEL,
    Attribute.KEY_TYPE,
    Attribute.VALUE_LEN,
    Attribute.ENCRYPT,
    Attribute.DECRYPT,
    Attribute.SIGN,
    Attribute.VERIFY,
    Attribute.WRAP,
    Attribute.UNWRAP,
    Attribute.DERIVE,
    Attribute.SENSITIVE,
    Attribute.ALWAYS_SENSITIVE,
    Attribute.EXTRACTABLE,
    Attribute.NEVER_EXTRACTABLE,
    Attribute.LOCAL,
]


def describe_secret(key: pkcs11.SecretKey) -> SecretKeyInfo:
    attrs = key.get_attributes(_SECRET_ATTRS)
    key_type = attrs[Attribute.KEY_TYPE]
    return SecretKeyInfo(
        key_id=bytes(attrs[Attribute.ID] or b""),
        label=attrs[Attribute.LABEL] or "",
        key_type=getattr(key_type, "name", str(key_type)),
        bits=int(attrs[Attribute.VALUE_LEN] or 0) * 8,
        encrypt=bool(attrs[Attribute.ENCRYPT]),
        decrypt=bool(attrs[Attribute.DECRYPT]),
        sign=bool(attrs[Attribute.SIGN]),
        verify=bool(attrs[Attribute.VERIFY]),
        wrap=bool(attrs[Attribute.WRAP]),
        unwrap=bool(attrs[Attribute.UNWRAP]),
        derive=bool(attrs[Attribute.DERIVE]),
        sensitive=bool(attrs[Attribute.SENSITIVE]),
        always_sensitive=bool(attrs[Attribute.ALWAYS_SENSITIVE]),
        extractable=bool(attrs[Attribute.EXTRACTABLE]),
        never_extractable=bool(attrs[Attribute.NEVER_EXTRACTABLE]),
        local=bool(attrs[Attribute.LOCAL]),
    )


def check_aad(aad: bytes) -> bytes:
    if not isinstance(aad, bytes) or len(aad) > MAX_AAD_BYTES:
        raise HsmInvalidRequestError(f"the associated data is at most {MAX_AAD_BYTES} bytes")
    return aad


def seal_with(key: pkcs11.SecretKey, plaintext: bytes, aad: bytes) -> bytes:
    """``nonce || ciphertext || tag`` of ``plaintext`` under ``key``, bound to ``aad``."""
    if not isinstance(plaintext, bytes) or len(plaintext) > MAX_PLAINTEXT_BYTES:
        raise HsmInvalidRequestError(f"a sealed secret is at most {MAX_PLAINTEXT_BYTES} bytes")
    nonce = secrets.token_bytes(NONCE_BYTES)
    sealed = cast(EncryptMixin, key).encrypt(
        plaintext,
        mechanism=Mechanism.AES_GCM,
        mechanism_param=GCMParams(nonce, check_aad(aad), TAG_BITS),
    )
    return nonce + cast(bytes, sealed)  # bytes in, bytes out: an iterator only for iterables


def unseal_with(key: pkcs11.SecretKey, sealed: bytes, aad: bytes) -> bytes:
    """The plaintext ``sealed`` holds; :class:`HsmSealedDataError` when the tag does not
    match (changed bytes, another key, another ``aad``)."""
    if not isinstance(sealed, bytes) or not MIN_SEALED_BYTES <= len(sealed) <= MAX_SEALED_BYTES:
        raise HsmSealedDataError(
            f"sealed data is {MIN_SEALED_BYTES} to {MAX_SEALED_BYTES} bytes long"
        )
    params = GCMParams(sealed[:NONCE_BYTES], check_aad(aad), TAG_BITS)
    try:
        plaintext = cast(DecryptMixin, key).decrypt(
            sealed[NONCE_BYTES:], mechanism=Mechanism.AES_GCM, mechanism_param=params
        )
    except UNSEAL_REFUSALS as ex:
        # CKR_GENERAL_ERROR may also mean a dying device: one attribute read on the same
        # session tells the two apart, and raises the pool's recoverable error if it is one.
        if key[Attribute.CLASS] != ObjectClass.SECRET_KEY:
            raise HsmOperationError("the sealing key changed under the session") from None
        raise HsmSealedDataError(
            "the sealed data does not open with this key and associated data: it was "
            f"changed, moved or sealed by another key ({type(ex).__name__})"
        ) from None
    return cast(bytes, plaintext)
