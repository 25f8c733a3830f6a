"""Signing of X.509 structures (certificates, CSRs, CRLs, OCSP responses, timestamp
tokens) with a key that stays on the HSM.

This module imports :mod:`hsm`; key-free modules of :mod:`pki` must not import it, so that
the verifier can use them without being able to reach a signing key.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from asn1crypto import algos, keys

from hsm import BlockingSessionPool, HashAlg, KeyInfo, KeySpec, SignScheme
from pki.errors import InvalidInputError

_HASH_NAME = {HashAlg.SHA256: "sha256", HashAlg.SHA384: "sha384", HashAlg.SHA512: "sha512"}


def _algorithm(spec: KeySpec, hash_alg: HashAlg, *, pss: bool) -> algos.SignedDigestAlgorithm:
    name = _HASH_NAME[hash_alg]
    if spec in (KeySpec.EC_P256, KeySpec.EC_P384):
        return algos.SignedDigestAlgorithm({"algorithm": f"{name}_ecdsa"})
    if spec is KeySpec.ED25519:
        return algos.SignedDigestAlgorithm({"algorithm": "ed25519"})
    if pss:
        return algos.SignedDigestAlgorithm(
            {
                "algorithm": "rsassa_pss",
                "parameters": algos.RSASSAPSSParams(
                    {
                        "hash_algorithm": {"algorithm": name},
                        "mask_gen_algorithm": {
                            "algorithm": "mgf1",
                            "parameters": {"algorithm": name},
                        },
                        "salt_length": hash_alg.digest_size,
                    }
                ),
            }
        )
    return algos.SignedDigestAlgorithm({"algorithm": f"{name}_rsa"})


@dataclass(frozen=True)
class HsmX509Signer:
    """A :class:`~pki.keysource.X509Signer` over a key on the HSM, used through the pool."""

    pool: BlockingSessionPool
    key: KeyInfo
    hash_alg: HashAlg = HashAlg.SHA256
    pss: bool = False
    """RSA keys only: RSASSA-PSS (MGF1 with the same hash, salt = digest length)."""

    algorithm: algos.SignedDigestAlgorithm = field(init=False)
    public_key: keys.PublicKeyInfo = field(init=False)

    def __post_init__(self) -> None:
        if self.key.spec is None or self.key.public_key is None:
            raise InvalidInputError(f"key {self.key.key_id.hex()} cannot sign X.509 structures")
        if self.pss and not self.key.spec.value.startswith("rsa"):
            raise InvalidInputError("RSASSA-PSS needs an RSA key")
        object.__setattr__(
            self, "algorithm", _algorithm(self.key.spec, self.hash_alg, pss=self.pss)
        )
        object.__setattr__(self, "public_key", keys.PublicKeyInfo.load(self.key.public_key))

    @property
    def key_id(self) -> bytes:
        return self.key.key_id

    def sign(self, data: bytes) -> bytes:
        spec = self.key.spec
        assert spec is not None
        if spec is KeySpec.ED25519:
            return self.pool.sign_message(self.key.key_id, data)
        digest = hashlib.new(_HASH_NAME[self.hash_alg], data).digest()
        if spec in (KeySpec.EC_P256, KeySpec.EC_P384):
            scheme = SignScheme.ECDSA
        else:
            scheme = SignScheme.RSA_PSS if self.pss else SignScheme.RSA_PKCS1V15
        return self.pool.sign_digest(self.key.key_id, digest, scheme=scheme, hash_alg=self.hash_alg)
