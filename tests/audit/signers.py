"""In-memory note signers for tests, built on ``cryptography`` keys.

The real audit key lives on the HSM and signs through an adapter in the composition root;
these stand in for it. They compute their key IDs independently of :mod:`audit.note`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
)

from audit import NoteVerifier


def spki(key: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@dataclass
class SoftwareSigner:
    """A :class:`audit.NoteSigner` holding its private key in memory; counts its calls."""

    name: str
    private_key: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
    calls: list[bytes] = field(default_factory=list)

    @classmethod
    def ed25519(cls, name: str = "kyso.example.vn/audit") -> SoftwareSigner:
        return cls(name, ed25519.Ed25519PrivateKey.generate())

    @classmethod
    def ecdsa(cls, name: str = "kyso.example.vn/audit") -> SoftwareSigner:
        return cls(name, ec.generate_private_key(ec.SECP256R1()))

    @property
    def signature_type(self) -> int:
        return 1 if isinstance(self.private_key, ed25519.Ed25519PrivateKey) else 2

    @property
    def key_id(self) -> bytes:
        if isinstance(self.private_key, ed25519.Ed25519PrivateKey):
            raw = self.private_key.public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            )
            return hashlib.sha256(self.name.encode() + b"\n\x01" + raw).digest()[:4]
        return hashlib.sha256(spki(self.private_key)).digest()[:4]

    def sign(self, message: bytes) -> bytes:
        self.calls.append(message)
        if isinstance(self.private_key, ed25519.Ed25519PrivateKey):
            return self.private_key.sign(message)
        return self.private_key.sign(message, ec.ECDSA(hashes.SHA256()))

    def verifier(self) -> NoteVerifier:
        return NoteVerifier.from_public_key(self.name, spki(self.private_key))


@dataclass
class RawEcdsaSigner(SoftwareSigner):
    """Returns ECDSA signatures as raw ``r || s``, as a PKCS#11 token does."""

    def sign(self, message: bytes) -> bytes:
        r, s = decode_dss_signature(super().sign(message))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")


@dataclass
class FixedSigner(SoftwareSigner):
    """Returns a fixed byte string instead of a signature."""

    output: bytes = b""

    def sign(self, message: bytes) -> bytes:
        self.calls.append(message)
        return self.output
