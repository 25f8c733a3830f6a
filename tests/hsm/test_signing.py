"""Signing over digests (RSA PKCS#1 v1.5 and PSS, ECDSA) and messages (Ed25519).

Every signature is verified with ``cryptography``; requests that do not fit the key are
refused before anything reaches the token.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.asymmetric.utils import (
    encode_dss_signature as reference_der,
)

from hsm import (
    BlockingSessionPool,
    HashAlg,
    HsmInvalidRequestError,
    HsmKeyNotFoundError,
    KeyInfo,
    KeySpec,
    SignScheme,
    default_scheme,
)
from hsm import der as hsm_der
from hsm.signing import MAX_MESSAGE_BYTES
from tests.conftest import make_token
from tests.hsm import signatures

DOCUMENT = "Giấy xác nhận thông tin về cư trú — Số: 123/XN".encode()


@pytest.fixture(scope="module")
def signing_pool(
    softhsm_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BlockingSessionPool]:
    # One token and one set of keys for the whole module: RSA generation is slow.
    token = make_token(softhsm_dir, tmp_path_factory.mktemp("signing"))
    with BlockingSessionPool(token.config()) as pool:
        yield pool


@pytest.fixture(scope="module")
def keys(signing_pool: BlockingSessionPool) -> dict[KeySpec, KeyInfo]:
    specs = (KeySpec.RSA_2048, KeySpec.EC_P256, KeySpec.EC_P384, KeySpec.ED25519)
    return {spec: signing_pool.generate_key(spec, label=f"signer {spec.value}") for spec in specs}


@pytest.mark.parametrize(
    ("spec", "scheme", "hash_alg"),
    [
        (KeySpec.RSA_2048, SignScheme.RSA_PKCS1V15, HashAlg.SHA256),
        (KeySpec.RSA_2048, SignScheme.RSA_PKCS1V15, HashAlg.SHA384),
        (KeySpec.RSA_2048, SignScheme.RSA_PKCS1V15, HashAlg.SHA512),
        (KeySpec.RSA_2048, SignScheme.RSA_PSS, HashAlg.SHA256),
        (KeySpec.RSA_2048, SignScheme.RSA_PSS, HashAlg.SHA384),
        (KeySpec.RSA_2048, SignScheme.RSA_PSS, HashAlg.SHA512),
        (KeySpec.EC_P256, SignScheme.ECDSA, HashAlg.SHA256),
        (KeySpec.EC_P256, SignScheme.ECDSA, HashAlg.SHA384),
        (KeySpec.EC_P384, SignScheme.ECDSA, HashAlg.SHA384),
        (KeySpec.EC_P384, SignScheme.ECDSA, HashAlg.SHA256),
        (KeySpec.EC_P384, SignScheme.ECDSA, HashAlg.SHA512),
    ],
)
def test_sign_digest(
    signing_pool: BlockingSessionPool,
    keys: dict[KeySpec, KeyInfo],
    spec: KeySpec,
    scheme: SignScheme,
    hash_alg: HashAlg,
) -> None:
    key = keys[spec]
    digest = signatures.digest(DOCUMENT, hash_alg)
    signature = signing_pool.sign_digest(key.key_id, digest, scheme=scheme, hash_alg=hash_alg)
    signatures.verify(key, digest, signature, scheme=scheme, hash_alg=hash_alg)

    other = signatures.digest(DOCUMENT + b".", hash_alg)
    with pytest.raises(InvalidSignature):
        signatures.verify(key, other, signature, scheme=scheme, hash_alg=hash_alg)
    if spec.key_type.name == "RSA":
        assert len(signature) == 256
    if scheme is SignScheme.RSA_PKCS1V15:
        # Deterministic padding: the same digest gives the same signature.
        again = signing_pool.sign_digest(key.key_id, digest, scheme=scheme, hash_alg=hash_alg)
        assert again == signature
    if scheme is SignScheme.RSA_PSS:
        # PSS is randomised (salt), and the salt is as long as the digest.
        again = signing_pool.sign_digest(key.key_id, digest, scheme=scheme, hash_alg=hash_alg)
        assert again != signature


@pytest.mark.parametrize("spec", [KeySpec.EC_P256, KeySpec.EC_P384])
def test_ecdsa_signature_is_strict_der(
    signing_pool: BlockingSessionPool, keys: dict[KeySpec, KeyInfo], spec: KeySpec
) -> None:
    key = keys[spec]
    digest = signatures.digest(DOCUMENT, HashAlg.SHA256)
    # Enough signatures that some r or s has its top bit set or a leading zero byte.
    for _ in range(32):
        signature = signing_pool.sign_digest(
            key.key_id, digest, scheme=SignScheme.ECDSA, hash_alg=HashAlg.SHA256
        )
        r, s = decode_dss_signature(signature)
        assert reference_der(r, s) == signature
        signatures.verify(key, digest, signature, scheme=SignScheme.ECDSA, hash_alg=HashAlg.SHA256)


@pytest.mark.parametrize(
    ("raw", "r", "s"),
    [
        (bytes(31) + b"\x01" + bytes(31) + b"\x02", 1, 2),
        (b"\xff" * 32 + b"\x7f" * 32, int("ff" * 32, 16), int("7f" * 32, 16)),
        (b"\x00\x80" + bytes(30) + b"\x00" * 31 + b"\x01", 0x80 << 240, 1),
        (b"\x01" * 48 + b"\x80" * 48, int("01" * 48, 16), int("80" * 48, 16)),
    ],
)
def test_der_ecdsa_encoding(raw: bytes, r: int, s: int) -> None:
    assert hsm_der.ecdsa_signature(raw) == reference_der(r, s)


def test_ed25519_sign_message(
    signing_pool: BlockingSessionPool, keys: dict[KeySpec, KeyInfo]
) -> None:
    key = keys[KeySpec.ED25519]
    assert default_scheme(key) is SignScheme.ED25519
    for message in (DOCUMENT, b"", b"\x00" * MAX_MESSAGE_BYTES):
        signature = signing_pool.sign_message(key.key_id, message)
        assert len(signature) == 64
        signatures.verify(key, message, signature, scheme=SignScheme.ED25519)
        # Pure EdDSA is deterministic.
        assert signing_pool.sign_message(key.key_id, message) == signature
    with pytest.raises(InvalidSignature):
        signatures.verify(key, DOCUMENT + b"!", signature, scheme=SignScheme.ED25519)


@pytest.mark.parametrize(
    ("spec", "scheme", "hash_alg", "length", "match"),
    [
        (KeySpec.EC_P256, SignScheme.ECDSA, HashAlg.SHA256, 31, "sha256 digest.* 32 bytes, got 31"),
        (KeySpec.EC_P256, SignScheme.ECDSA, HashAlg.SHA256, 48, "sha256 digest.* 32 bytes, got 48"),
        (KeySpec.EC_P384, SignScheme.ECDSA, HashAlg.SHA384, 32, "sha384 digest.* 48 bytes, got 32"),
        (KeySpec.RSA_2048, SignScheme.RSA_PKCS1V15, HashAlg.SHA512, 0, "64 bytes, got 0"),
        (KeySpec.RSA_2048, SignScheme.RSA_PSS, HashAlg.SHA256, 33, "32 bytes, got 33"),
        (KeySpec.RSA_2048, SignScheme.ECDSA, HashAlg.SHA256, 32, "ecdsa does not fit a RSA key"),
        (KeySpec.RSA_2048, SignScheme.ED25519, HashAlg.SHA256, 32, "does not fit a RSA key"),
        (KeySpec.EC_P256, SignScheme.RSA_PSS, HashAlg.SHA256, 32, "rsa-pss does not fit a EC key"),
        (KeySpec.EC_P384, SignScheme.RSA_PKCS1V15, HashAlg.SHA384, 48, "does not fit a EC key"),
        (KeySpec.EC_P256, SignScheme.ED25519, HashAlg.SHA256, 32, "does not fit a EC key"),
        (KeySpec.ED25519, SignScheme.ECDSA, HashAlg.SHA256, 32, "does not fit a EC_EDWARDS key"),
        (KeySpec.ED25519, SignScheme.ED25519, HashAlg.SHA256, 32, "Ed25519 signs the message"),
    ],
)
def test_sign_digest_invalid_request(
    signing_pool: BlockingSessionPool,
    keys: dict[KeySpec, KeyInfo],
    spec: KeySpec,
    scheme: SignScheme,
    hash_alg: HashAlg,
    length: int,
    match: str,
) -> None:
    failed = signatures.operation_count("sign", "hsm.invalid_request")
    with pytest.raises(HsmInvalidRequestError, match=match):
        signing_pool.sign_digest(keys[spec].key_id, bytes(length), scheme=scheme, hash_alg=hash_alg)
    assert signatures.operation_count("sign", "hsm.invalid_request") == failed + 1
    assert signing_pool.sessions_in_use == 0


@pytest.mark.parametrize(
    ("spec", "message", "match"),
    [
        (KeySpec.EC_P256, b"message", "ed25519 does not fit a EC key"),
        (KeySpec.RSA_2048, b"message", "ed25519 does not fit a RSA key"),
        (KeySpec.ED25519, bytes(MAX_MESSAGE_BYTES + 1), "limited to 65536 bytes"),
    ],
)
def test_sign_message_invalid_request(
    signing_pool: BlockingSessionPool,
    keys: dict[KeySpec, KeyInfo],
    spec: KeySpec,
    message: bytes,
    match: str,
) -> None:
    with pytest.raises(HsmInvalidRequestError, match=match):
        signing_pool.sign_message(keys[spec].key_id, message)


def test_unknown_key_id(signing_pool: BlockingSessionPool, keys: dict[KeySpec, KeyInfo]) -> None:
    unknown = bytes(19) + b"\x01"
    assert unknown not in {k.key_id for k in keys.values()}
    with pytest.raises(HsmKeyNotFoundError, match=f"no private key with id {unknown.hex()}"):
        signing_pool.sign_digest(
            unknown, bytes(32), scheme=SignScheme.ECDSA, hash_alg=HashAlg.SHA256
        )
    with pytest.raises(HsmKeyNotFoundError):
        signing_pool.sign_message(unknown, b"message")
    # A public key's id is a private key's id too; a prefix of one is not.
    with pytest.raises(HsmKeyNotFoundError):
        signing_pool.sign_message(keys[KeySpec.ED25519].key_id[:-1], b"message")


def test_signatures_are_bound_to_their_key(
    signing_pool: BlockingSessionPool, keys: dict[KeySpec, KeyInfo]
) -> None:
    digest = signatures.digest(DOCUMENT, HashAlg.SHA256)
    p256 = keys[KeySpec.EC_P256]
    signature = signing_pool.sign_digest(
        p256.key_id, digest, scheme=SignScheme.ECDSA, hash_alg=HashAlg.SHA256
    )
    with pytest.raises(InvalidSignature):
        signatures.verify(
            keys[KeySpec.EC_P384],
            digest,
            signature,
            scheme=SignScheme.ECDSA,
            hash_alg=HashAlg.SHA256,
        )
