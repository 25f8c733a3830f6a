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
class Plan:
    """How one (key type, scheme, hash) combination reaches C_Sign; built once, reused."""

    mechanism: Mechanism
    mechanism_param: Any
    prefix: bytes
    """Bytes put before the payload (the DigestInfo header for PKCS#1 v1.5)."""
    length: int | None
    """Exact payload length (the digest size), or ``None`` for a message (Ed25519)."""
    der_ecdsa: bool
    """Re-encode the token's ``r‖s`` output as DER."""
    hash_name: str = ""
    """The digest algorithm's name, for error messages."""

    def payload(self, data: bytes) -> bytes:
        if self.length is None:
            if len(data) > MAX_MESSAGE_BYTES:
                raise HsmInvalidRequestError(
                    f"Ed25519 messages are limited to {MAX_MESSAGE_BYTES} bytes"
                )
        elif len(data) != self.length:
            raise HsmInvalidRequestError(
                f"a {self.hash_name} digest is {self.length} bytes, got {len(data)}"
            )
        return self.prefix + data if self.prefix else data


_plans: dict[tuple[KeyType, SignScheme, HashAlg | None], Plan] = {}


def plan(key_type: KeyType, scheme: SignScheme, hash_alg: HashAlg | None) -> Plan:
    """The C_Sign plan for a request, validated against the key type (cached)."""
    found = _plans.get((key_type, scheme, hash_alg))
    if found is None:
        found = _plans[(key_type, scheme, hash_alg)] = _make_plan(key_type, scheme, hash_alg)
    return found


def _make_plan(key_type: KeyType, scheme: SignScheme, hash_alg: HashAlg | None) -> Plan:
    if _SCHEME_KEY_TYPE[scheme] != key_type:
        raise HsmInvalidRequestError(f"scheme {scheme.value} does not fit a {key_type.name} key")
    if scheme is SignScheme.ED25519:
        if hash_alg is not None:
            raise HsmInvalidRequestError("Ed25519 signs the message itself, not a digest")
        return Plan(Mechanism.EDDSA, None, b"", None, der_ecdsa=False)
    if hash_alg is None:
        raise HsmInvalidRequestError(f"scheme {scheme.value} needs the digest algorithm")
    size = hash_alg.digest_size
    if scheme is SignScheme.RSA_PKCS1V15:
        prefix = hash_alg.digest_info_prefix
        return Plan(Mechanism.RSA_PKCS, None, prefix, size, False, hash_alg.value)
    if scheme is SignScheme.RSA_PSS:
        pss = _PSS_PARAMS[hash_alg]
        return Plan(Mechanism.RSA_PKCS_PSS, pss, b"", size, False, hash_alg.value)
    return Plan(Mechanism.ECDSA, None, b"", size, True, hash_alg.value)
