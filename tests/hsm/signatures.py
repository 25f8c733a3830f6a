"""Independent checks of what the HSM layer returns, done with ``cryptography``.

Nothing here uses :mod:`hsm`'s own DER or key-id code, so a bug there cannot hide itself.
"""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from prometheus_client import REGISTRY

from hsm import HashAlg, KeyInfo, SignScheme

HASHES: dict[HashAlg, type[hashes.HashAlgorithm]] = {
    HashAlg.SHA256: hashes.SHA256,
    HashAlg.SHA384: hashes.SHA384,
    HashAlg.SHA512: hashes.SHA512,
}


def digest(data: bytes, hash_alg: HashAlg) -> bytes:
    return hashlib.new(hash_alg.value, data).digest()


def public_key(info: KeyInfo) -> PublicKeyTypes:
    assert info.public_key is not None, f"key {info.label!r} has no public half"
    return serialization.load_der_public_key(info.public_key)


def expected_key_id(spki: bytes) -> bytes:
    """SHA-1 of the subjectPublicKey bits (RFC 5280 §4.2.1.2 method 1), via cryptography."""
    key = serialization.load_der_public_key(spki)
    if isinstance(key, ec.EllipticCurvePublicKey):
        bits = key.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
    elif isinstance(key, rsa.RSAPublicKey):
        bits = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    elif isinstance(key, ed25519.Ed25519PublicKey):
        bits = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    else:
        raise AssertionError(f"unexpected key type {type(key).__name__}")
    return hashlib.sha1(bits).digest()


def verify(
    info: KeyInfo,
    payload: bytes,
    signature: bytes,
    *,
    scheme: SignScheme,
    hash_alg: HashAlg | None = None,
) -> None:
    """Raise ``InvalidSignature`` unless ``signature`` is right for ``payload``.

    ``payload`` is the digest, or the message for Ed25519. ECDSA signatures must be DER.
    PSS is checked with the exact salt length the pool promises (the digest length).
    """
    key = public_key(info)
    if scheme is SignScheme.ED25519:
        assert isinstance(key, ed25519.Ed25519PublicKey)
        key.verify(signature, payload)
        return
    assert hash_alg is not None
    prehashed = Prehashed(HASHES[hash_alg]())
    if scheme is SignScheme.ECDSA:
        assert isinstance(key, ec.EllipticCurvePublicKey)
        key.verify(signature, payload, ec.ECDSA(prehashed))
        return
    assert isinstance(key, rsa.RSAPublicKey)
    if scheme is SignScheme.RSA_PKCS1V15:
        key.verify(signature, payload, padding.PKCS1v15(), prehashed)
    else:
        pss = padding.PSS(mgf=padding.MGF1(HASHES[hash_alg]()), salt_length=hash_alg.digest_size)
        key.verify(signature, payload, pss, prehashed)


def sample(name: str, **labels: str) -> float:
    """Current value of a Prometheus sample (0 when the labelled child does not exist yet)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def operation_count(operation: str, outcome: str = "ok") -> float:
    return sample("kyso_hsm_operations_total", operation=operation, outcome=outcome)


def failed_operations() -> float:
    """Sum of every non-ok outcome of every HSM operation so far."""
    total = 0.0
    for family in REGISTRY.collect():
        if family.name != "kyso_hsm_operations":
            continue
        for s in family.samples:
            if s.name == "kyso_hsm_operations_total" and s.labels.get("outcome") != "ok":
                total += s.value
    return total
