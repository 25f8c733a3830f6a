"""Key specifications, on-token key generation templates, and key attribute reports."""

from __future__ import annotations

import enum
import hashlib
import unicodedata
from dataclasses import dataclass
from typing import Any, Protocol

import pkcs11
from pkcs11 import Attribute, KeyType, MechanismFlag, ObjectClass

from hsm import der
from hsm.errors import HsmInvalidRequestError, HsmOperationError

MAX_LABEL_BYTES = 128
"""CKA_LABEL is free-form; we bound it so that listings and audit records stay small."""


class KeySpec(enum.Enum):
    """The key types Kyso generates. Values are the names used in the CLI and API."""

    RSA_2048 = "rsa-2048"
    RSA_3072 = "rsa-3072"
    RSA_4096 = "rsa-4096"
    EC_P256 = "ec-p256"
    EC_P384 = "ec-p384"
    ED25519 = "ed25519"

    @property
    def key_type(self) -> KeyType:
        if self.value.startswith("rsa"):
            return KeyType.RSA
        return KeyType.EC_EDWARDS if self is KeySpec.ED25519 else KeyType.EC

    @property
    def rsa_bits(self) -> int:
        return int(self.value.removeprefix("rsa-"))


@dataclass(frozen=True)
class _Curve:
    name: str
    params: bytes
    """DER of the named-curve OID, as CKA_EC_PARAMS holds it."""
    point_length: int
    """Length of the bare public point (uncompressed for Weierstrass curves)."""


_CURVES = (
    _Curve("P-256", bytes.fromhex("06082a8648ce3d030107"), 65),
    _Curve("P-384", bytes.fromhex("06052b81040022"), 97),
    _Curve("Ed25519", bytes.fromhex("06032b6570"), 32),
)
_CURVE_BY_SPEC = {
    KeySpec.EC_P256: _CURVES[0],
    KeySpec.EC_P384: _CURVES[1],
    KeySpec.ED25519: _CURVES[2],
}
# SoftHSM and some HSMs report Ed25519 parameters as the PrintableString "edwards25519".
_ED25519_PRINTABLE = der.tlv(0x13, b"edwards25519")


def curve_for(spec: KeySpec) -> _Curve:
    return _CURVE_BY_SPEC[spec]


def _curve_from_params(params: bytes) -> _Curve | None:
    if params == _ED25519_PRINTABLE:
        return _CURVES[2]
    return next((c for c in _CURVES if c.params == params), None)


PRIVATE_TEMPLATE: dict[Attribute, Any] = {
    Attribute.TOKEN: True,
    Attribute.PRIVATE: True,
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: False,
    Attribute.SIGN: True,
}
"""Every private key Kyso makes: on the token, private, sensitive, never extractable."""

PUBLIC_TEMPLATE: dict[Attribute, Any] = {
    Attribute.TOKEN: True,
    Attribute.PRIVATE: False,
    Attribute.VERIFY: True,
}

SIGNING_CAPABILITIES = MechanismFlag.SIGN | MechanismFlag.VERIFY
"""Signing keys get no encrypt/decrypt/wrap/unwrap/derive capability."""


def check_label(label: str) -> str:
    try:
        size = len(label.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate, which json.loads lets through
        size = 0
    # Category Cc is C0, DEL and C1: U+009B, for one, starts a terminal escape sequence
    # when a listing or an audit record is printed.
    controls = any(unicodedata.category(c) == "Cc" for c in label)
    if not label.strip() or not 0 < size <= MAX_LABEL_BYTES or controls:
        raise HsmInvalidRequestError(
            f"a key label must be 1–{MAX_LABEL_BYTES} bytes of UTF-8 without control characters"
        )
    return label


class _Custody(Protocol):
    @property
    def sensitive(self) -> bool: ...
    @property
    def always_sensitive(self) -> bool: ...
    @property
    def extractable(self) -> bool: ...
    @property
    def never_extractable(self) -> bool: ...


def custody_problems(key: _Custody) -> list[str]:
    """Why a key's custody is not what a key of Kyso's needs (generated sensitive and never
    extractable, so that it has never been able to leave the token); empty when it is."""
    found = []
    if key.extractable:
        found.append("CKA_EXTRACTABLE is true: the key can leave the token")
    elif not key.never_extractable:
        # CKA_EXTRACTABLE may be switched off later; the key could have been wrapped out
        # before that, and only CKA_NEVER_EXTRACTABLE remembers it.
        found.append("CKA_NEVER_EXTRACTABLE is false: the key was extractable once or imported")
    if not key.always_sensitive:
        found.append("CKA_ALWAYS_SENSITIVE is false: the key was once exportable or imported")
    if not key.sensitive:
        found.append("CKA_SENSITIVE is false")
    return found


@dataclass(frozen=True, kw_only=True)
class KeyInfo:
    """What the token says about one private key (and its public half)."""

    key_id: bytes
    """CKA_ID: the SHA-1 of the public key bits (RFC 5280 §4.2.1.2 method 1), so it equals
    the Subject Key Identifier of any certificate for this key."""

    label: str
    """CKA_LABEL, UTF-8."""

    spec: KeySpec | None
    """Kyso's name for the key type; ``None`` for a key type Kyso does not use."""

    key_type: str
    """The PKCS#11 key type name (RSA, EC, EC_EDWARDS, …)."""

    public_key: bytes | None
    """DER SubjectPublicKeyInfo, or ``None`` when the public half is missing."""

    sign: bool
    sensitive: bool
    always_sensitive: bool
    extractable: bool
    never_extractable: bool
    local: bool
    """CKA_LOCAL: generated on the token rather than imported."""

    @property
    def problems(self) -> tuple[str, ...]:
        """Reasons this key must not be used for signing; empty when it is fine."""
        found = custody_problems(self)
        if not self.sign:
            found.append("CKA_SIGN is false")
        if self.spec is None:
            found.append(f"unsupported key type {self.key_type}")
        return tuple(found)

    @property
    def usable(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id.hex(),
            "label": self.label,
            "spec": self.spec.value if self.spec else None,
            "key_type": self.key_type,
            "sign": self.sign,
            "sensitive": self.sensitive,
            "always_sensitive": self.always_sensitive,
            "extractable": self.extractable,
            "never_extractable": self.never_extractable,
            "local": self.local,
            "usable": self.usable,
            "problems": list(self.problems),
        }


_PRIVATE_ATTRS = [
    Attribute.ID,
    Attribute.LABEL,
    Attribute.KEY_TYPE,
    Attribute.SIGN,
    Attribute.SENSITIVE,
    Attribute.ALWAYS_SENSITIVE,
    Attribute.EXTRACTABLE,
    Attribute.NEVER_EXTRACTABLE,
    Attribute.LOCAL,
]


def public_key_der(public: pkcs11.PublicKey) -> tuple[KeySpec | None, bytes]:
    """SubjectPublicKeyInfo of a public key object, and its spec."""
    key_type = public.key_type
    if key_type == KeyType.RSA:
        attrs = public.get_attributes([Attribute.MODULUS, Attribute.PUBLIC_EXPONENT])
        modulus = bytes(attrs[Attribute.MODULUS])
        spec = {2048: KeySpec.RSA_2048, 3072: KeySpec.RSA_3072, 4096: KeySpec.RSA_4096}.get(
            len(modulus.lstrip(b"\x00")) * 8
        )
        return spec, der.rsa_spki(modulus, bytes(attrs[Attribute.PUBLIC_EXPONENT]))
    if key_type in (KeyType.EC, KeyType.EC_EDWARDS):
        attrs = public.get_attributes([Attribute.EC_PARAMS, Attribute.EC_POINT])
        curve = _curve_from_params(bytes(attrs[Attribute.EC_PARAMS]))
        if curve is None:
            raise HsmOperationError("the key uses an elliptic curve Kyso does not support")
        point = der.ec_point(bytes(attrs[Attribute.EC_POINT]), curve.point_length)
        spec = next(s for s, c in _CURVE_BY_SPEC.items() if c is curve)
        if key_type == KeyType.EC_EDWARDS:
            return spec, der.ed25519_spki(point)
        return spec, der.ec_spki(curve.params, point)
    raise HsmOperationError(f"unsupported key type {key_type!r}")


def key_id_for(spki: bytes) -> bytes:
    """SHA-1 of the subjectPublicKey BIT STRING contents (RFC 5280 §4.2.1.2, method 1)."""
    # The SPKI is SEQUENCE { algorithm, BIT STRING }; the bit string is its last element.
    body = _children(_children(spki)[0][1])
    tag, bits = body[-1]
    assert tag == 0x03
    return hashlib.sha1(bits[1:], usedforsecurity=False).digest()


def _children(data: bytes) -> list[tuple[int, bytes]]:
    """Split DER into (tag, contents) pairs; for the small, well-formed SPKIs we emit."""
    out = []
    i = 0
    while i < len(data):
        tag = data[i]
        n = data[i + 1]
        i += 2
        if n & 0x80:
            width = n & 0x7F
            n = int.from_bytes(data[i : i + width], "big")
            i += width
        out.append((tag, data[i : i + n]))
        i += n
    return out


def describe(private: pkcs11.PrivateKey, public: pkcs11.PublicKey | None) -> KeyInfo:
    attrs = private.get_attributes(_PRIVATE_ATTRS)
    spec: KeySpec | None = None
    spki: bytes | None = None
    if public is not None:
        try:
            spec, spki = public_key_der(public)
        except HsmOperationError:
            spec, spki = None, None
    key_type = attrs[Attribute.KEY_TYPE]
    return KeyInfo(
        key_id=bytes(attrs[Attribute.ID] or b""),
        label=attrs[Attribute.LABEL] or "",
        spec=spec,
        key_type=getattr(key_type, "name", str(key_type)),
        public_key=spki,
        sign=bool(attrs[Attribute.SIGN]),
        sensitive=bool(attrs[Attribute.SENSITIVE]),
        always_sensitive=bool(attrs[Attribute.ALWAYS_SENSITIVE]),
        extractable=bool(attrs[Attribute.EXTRACTABLE]),
        never_extractable=bool(attrs[Attribute.NEVER_EXTRACTABLE]),
        local=bool(attrs[Attribute.LOCAL]),
    )


def find_public(session: pkcs11.Session, key_id: bytes) -> pkcs11.PublicKey | None:
    found = list(
        session.get_objects({Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.ID: key_id})
    )
    return found[0] if len(found) == 1 else None  # type: ignore[return-value]
