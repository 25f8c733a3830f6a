"""The key source through which the PKI signs: a small Protocol, so that the modules that
build certificates, CRLs, OCSP responses and timestamp tokens stay free of :mod:`hsm`
(the HSM implementation is :class:`pki.signing.HsmX509Signer`)."""

from __future__ import annotations

from typing import Protocol

from asn1crypto import algos, keys


class X509Signer(Protocol):
    """Signs DER-encoded to-be-signed structures; the extension point for a key source."""

    @property
    def algorithm(self) -> algos.SignedDigestAlgorithm:
        """The signatureAlgorithm to write next to the signature."""
        ...

    @property
    def public_key(self) -> keys.PublicKeyInfo:
        """The SubjectPublicKeyInfo of the signing key."""
        ...

    @property
    def key_id(self) -> bytes:
        """SHA-1 of the public key bits: the Subject/Authority Key Identifier."""
        ...

    def sign(self, data: bytes) -> bytes:
        """The signature over ``data`` (ECDSA: DER ECDSA-Sig-Value)."""
        ...
