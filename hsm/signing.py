"""Signature schemes over a precomputed digest, mapped to PKCS#11 mechanisms.

Callers hash (the PDF byte range, the CMS signed attributes, a checkpoint note) and
hand the token only the digest, so a large document never crosses into the module.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from pkcs11 import MGF, KeyType, Mechanism

from hsm.errors import HsmInvalidRequestError, HsmUnsupportedError
from hsm.keys import KeyInfo

MAX_MESSAGE_BYTES = 64 * 1024
"""Ed25519 signs the message itself; Kyso only signs small texts that way (checkpoints)."""


class HashAlg(enum.Enum):
    SHA256 = "sha256"
    SHA384 = "sha384"
    SHA512 = "sha512"

    @property
    def digest_size(self) -> int:
        return _DIGEST_SIZE[self]

    @property
    def digest_info_prefix(self) -> bytes:
        """DER DigestInfo header that PKCS#1 v1.5 puts before the digest."""
        return _DIGEST_INFO[self]


_DIGEST_SIZE = {HashAlg.SHA256: 32, HashAlg.SHA384: 48, HashAlg.SHA512: 64}
_DIGEST_INFO = {
    HashAlg.SHA256: bytes.fromhex("3031300d060960864801650304020105000420"),
    HashAlg.SHA384: bytes.fromhex("3041300d060960864801650304020205000430"),
    HashAlg.SHA512: bytes.fromhex("3051300d060960864801650304020305000440"),
}
_PSS_PARAMS = {
    HashAlg.SHA256: (Mechanism.SHA256, MGF.SHA256, 32),
    HashAlg.SHA384: (Mechanism.SHA384, MGF.SHA384, 48),
    HashAlg.SHA512: (Mechanism.SHA512, MGF.SHA512, 64),
}
"""PSS with MGF1 over the same hash and a salt as long as the digest (RFC 8017 advice)."""


class SignScheme(enum.Enum):
    RSA_PKCS1V15 = "rsa-pkcs1v15"
    RSA_PSS = "rsa-pss"
    ECDSA = "ecdsa"
    ED25519 = "ed25519"


_SCHEME_KEY_TYPE = {
    SignScheme.RSA_PKCS1V15: KeyType.RSA,
    SignScheme.RSA_PSS: KeyType.RSA,
    SignScheme.ECDSA: KeyType.EC,
    SignScheme.ED25519: KeyType.EC_EDWARDS,
}


def default_scheme(info: KeyInfo) -> SignScheme:
    spec = info.spec
    if spec is None:
        raise HsmUnsupportedError(f"key {info.key_id.hex()} has an unsupported type")
    return {KeyType.RSA: SignScheme.RSA_PKCS1V15, KeyType.EC: SignScheme.ECDSA}.get(
        spec.key_type, SignScheme.ED25519
    )


@dataclass(frozen=True)
class Operation:
    """A fully resolved signing call: what to send to C_Sign and how to post-process."""

    mechanism: Mechanism
    mechanism_param: Any
    payload: bytes
    der_ecdsa: bool


def prepare(
    key_type: KeyType, scheme: SignScheme, payload: bytes, hash_alg: HashAlg | None
) -> Operation:
    """Validate the request against the key and build the C_Sign input."""
    if _SCHEME_KEY_TYPE[scheme] != key_type:
        raise HsmInvalidRequestError(f"scheme {scheme.value} does not fit a {key_type.name} key")
    if scheme is SignScheme.ED25519:
        if hash_alg is not None:
            raise HsmInvalidRequestError("Ed25519 signs the message itself, not a digest")
        if len(payload) > MAX_MESSAGE_BYTES:
            raise HsmInvalidRequestError(f"Ed25519 messages are limited to {MAX_MESSAGE_BYTES} bytes")
        return Operation(Mechanism.EDDSA, None, payload, der_ecdsa=False)
    if hash_alg is None:
        raise HsmInvalidRequestError(f"scheme {scheme.value} needs the digest algorithm")
    if len(payload) != hash_alg.digest_size:
        raise HsmInvalidRequestError(
            f"a {hash_alg.value} digest is {hash_alg.digest_size} bytes, got {len(payload)}"
        )
    if scheme is SignScheme.RSA_PKCS1V15:
        return Operation(Mechanism.RSA_PKCS, None, hash_alg.digest_info_prefix + payload, False)
    if scheme is SignScheme.RSA_PSS:
        return Operation(Mechanism.RSA_PKCS_PSS, _PSS_PARAMS[hash_alg], payload, der_ecdsa=False)
    return Operation(Mechanism.ECDSA, None, payload, der_ecdsa=True)
