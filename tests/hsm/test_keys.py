"""On-token key generation: attributes, key ids, public halves, and refused keys."""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

import pkcs11
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from pkcs11 import Attribute, KeyType, ObjectClass
from pkcs11.util.ec import encode_named_curve_parameters
from pkcs11.util.rsa import decode_rsa_private_key, decode_rsa_public_key

from hsm import (
    BlockingSessionPool,
    HashAlg,
    HsmInvalidRequestError,
    HsmKeyNotFoundError,
    HsmKeyRefusedError,
    KeyInfo,
    KeySpec,
    SignScheme,
    default_scheme,
)
from tests.hsm import signatures

SPEC_PUBLIC_KEYS: tuple[tuple[KeySpec, type, int], ...] = (
    (KeySpec.RSA_2048, rsa.RSAPublicKey, 2048),
    (KeySpec.RSA_3072, rsa.RSAPublicKey, 3072),
    (KeySpec.RSA_4096, rsa.RSAPublicKey, 4096),  # the one RSA-4096 generation (~1 s)
    (KeySpec.EC_P256, ec.EllipticCurvePublicKey, 256),
    (KeySpec.EC_P384, ec.EllipticCurvePublicKey, 384),
    (KeySpec.ED25519, ed25519.Ed25519PublicKey, 256),
)

# The private key's secret part, which must never be readable from outside the token.
SECRET_ATTRIBUTE = {
    KeyType.RSA: Attribute.PRIVATE_EXPONENT,
    KeyType.EC: Attribute.VALUE,
    KeyType.EC_EDWARDS: Attribute.VALUE,
}


def _sign_with(pool: BlockingSessionPool, info: KeyInfo) -> None:
    """Sign on the token and verify with the reported SPKI: both halves belong together."""
    payload = hashlib.sha256(b"CT07 " + info.key_id).digest()
    scheme = default_scheme(info)
    if scheme is SignScheme.ED25519:
        signature = pool.sign_message(info.key_id, payload)
        signatures.verify(info, payload, signature, scheme=scheme)
    else:
        signature = pool.sign_digest(info.key_id, payload, scheme=scheme, hash_alg=HashAlg.SHA256)
        signatures.verify(info, payload, signature, scheme=scheme, hash_alg=HashAlg.SHA256)


@pytest.mark.parametrize(("spec", "public_type", "bits"), SPEC_PUBLIC_KEYS)
def test_generate_key(
    pool: BlockingSessionPool, raw_session: Any, spec: KeySpec, public_type: type, bits: int
) -> None:
    info = pool.generate_key(spec, label=f"officer {spec.value}")

    assert info.spec is spec
    assert info.label == f"officer {spec.value}"
    assert info.key_type == spec.key_type.name
    assert (info.sign, info.sensitive, info.always_sensitive, info.local) == (True,) * 4
    assert (info.extractable, info.never_extractable) == (False, True)
    assert info.problems == ()
    assert info.usable

    assert info.public_key is not None
    public = serialization.load_der_public_key(info.public_key)
    assert isinstance(public, public_type)
    if isinstance(public, rsa.RSAPublicKey):
        assert public.key_size == bits
        assert public.public_numbers().e == 65537
    elif isinstance(public, ec.EllipticCurvePublicKey):
        assert public.curve.key_size == bits
    # The SPKI is canonical DER: re-encoding it with cryptography gives the same bytes.
    spki_der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert spki_der == info.public_key
    assert info.key_id == signatures.expected_key_id(info.public_key)
    assert len(info.key_id) == 20

    _sign_with(pool, info)
    assert pool.get_key(info.key_id) == info
    assert [k.key_id for k in pool.list_keys()] == [info.key_id]

    # What the token itself holds, read without the pool.
    private = raw_session.get_key(object_class=ObjectClass.PRIVATE_KEY, id=info.key_id)
    assert private.key_type == spec.key_type
    flags = private.get_attributes(
        [
            Attribute.TOKEN,
            Attribute.PRIVATE,
            Attribute.SENSITIVE,
            Attribute.EXTRACTABLE,
            Attribute.SIGN,
            Attribute.DECRYPT,
            Attribute.UNWRAP,
            Attribute.DERIVE,
        ]
    )
    assert flags == {
        Attribute.TOKEN: True,
        Attribute.PRIVATE: True,
        Attribute.SENSITIVE: True,
        Attribute.EXTRACTABLE: False,
        Attribute.SIGN: True,
        Attribute.DECRYPT: False,  # a signing key gets no other capability
        Attribute.UNWRAP: False,
        Attribute.DERIVE: False,
    }
    assert private[Attribute.LABEL] == info.label
    with pytest.raises(pkcs11.AttributeSensitive):
        private[SECRET_ATTRIBUTE[spec.key_type]]

    public_obj = raw_session.get_key(object_class=ObjectClass.PUBLIC_KEY, id=info.key_id)
    assert public_obj[Attribute.TOKEN] is True
    assert public_obj[Attribute.PRIVATE] is False
    assert public_obj[Attribute.VERIFY] is True
    # Neither half keeps the random id used while the pair was being generated.
    assert len(list(raw_session.get_objects({Attribute.ID: info.key_id}))) == 2
    assert len(list(raw_session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY}))) == 1


def test_key_ids_differ_and_survive_a_new_pool(pool: BlockingSessionPool) -> None:
    first = pool.generate_key(KeySpec.EC_P256, label="a")
    second = pool.generate_key(KeySpec.EC_P256, label="a")
    assert first.key_id != second.key_id
    pool.close()
    with BlockingSessionPool(pool.config) as reopened:
        assert {k.key_id for k in reopened.list_keys()} == {first.key_id, second.key_id}
        assert reopened.get_key(first.key_id) == first


def test_list_keys_order_is_stable(pool: BlockingSessionPool) -> None:
    made = [pool.generate_key(KeySpec.EC_P256, label=label) for label in ("văn thư", "an ninh")]
    made.append(pool.generate_key(KeySpec.EC_P256, label="an ninh"))
    listed = pool.list_keys()
    assert listed == sorted(made, key=lambda k: (k.label, k.key_id))
    assert pool.list_keys() == listed


@pytest.mark.parametrize(
    ("key_id", "error", "match"),
    [
        (bytes(20), HsmKeyNotFoundError, "no private key with id 0000"),
        (b"\x01", HsmKeyNotFoundError, "no private key with id 01 "),
        (b"", HsmInvalidRequestError, "key id is 1–64 bytes"),
        (bytes(65), HsmInvalidRequestError, "key id is 1–64 bytes"),
    ],
)
def test_unknown_key(
    pool: BlockingSessionPool, key_id: bytes, error: type[Exception], match: str
) -> None:
    pool.generate_key(KeySpec.EC_P256, label="present")
    with pytest.raises(error, match=match):
        pool.get_key(key_id)
    with pytest.raises(error, match=match):
        pool.sign_digest(key_id, bytes(32), scheme=SignScheme.ECDSA, hash_alg=HashAlg.SHA256)


# -- keys Kyso did not make and must not use -----------------------------------------------


def _extractable_ec_key(session: Any, label: str) -> tuple[bytes, Any]:
    """An EC key generated on the token but marked extractable (it could be wrapped out)."""
    params = session.create_domain_parameters(
        KeyType.EC,
        {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")},
        local=True,
    )
    key_id = secrets.token_bytes(20)
    _, private = params.generate_keypair(
        store=True,
        label=label,
        id=key_id,
        public_template={Attribute.VERIFY: True},
        private_template={
            Attribute.PRIVATE: True,
            Attribute.SENSITIVE: True,
            Attribute.EXTRACTABLE: True,
            Attribute.SIGN: True,
        },
    )
    return key_id, private


def _imported_rsa_key(session: Any, label: str) -> bytes:
    """An RSA key made outside the token and imported: a copy may exist anywhere."""
    material = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_id = signatures.expected_key_id(
        material.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    common = {Attribute.TOKEN: True, Attribute.ID: key_id, Attribute.LABEL: label}
    private = decode_rsa_private_key(
        material.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    # Imported as sensitive and non-extractable: only ALWAYS_SENSITIVE and
    # NEVER_EXTRACTABLE (set by the token) tell that it did not start life on the token.
    private.update(common)
    private.update(
        {
            Attribute.PRIVATE: True,
            Attribute.SENSITIVE: True,
            Attribute.EXTRACTABLE: False,
            Attribute.SIGN: True,
            Attribute.DECRYPT: False,
            Attribute.UNWRAP: False,
        }
    )
    session.create_object(private)
    public = decode_rsa_public_key(
        material.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.PKCS1
        )
    )
    public.update(common)
    session.create_object(public)
    return key_id


def test_refused_keys(pool: BlockingSessionPool, raw_session: Any) -> None:
    good_ec = pool.generate_key(KeySpec.EC_P256, label="good ec")
    good_ed = pool.generate_key(KeySpec.ED25519, label="good ed25519")
    extractable_id, _ = _extractable_ec_key(raw_session, "extractable")
    imported_id = _imported_rsa_key(raw_session, "imported")

    keys = {k.label: k for k in pool.list_keys()}
    assert set(keys) == {"good ec", "good ed25519", "extractable", "imported"}

    extractable = keys["extractable"]
    assert extractable.key_id == extractable_id
    assert extractable.spec is KeySpec.EC_P256
    assert (extractable.extractable, extractable.never_extractable) == (True, False)
    assert extractable.local
    assert not extractable.usable
    assert any("CKA_EXTRACTABLE is true" in p for p in extractable.problems)
    assert extractable.as_dict()["usable"] is False

    imported = keys["imported"]
    assert imported.key_id == imported_id
    assert imported.spec is KeySpec.RSA_2048
    assert (imported.extractable, imported.sensitive) == (False, True)
    assert (imported.always_sensitive, imported.never_extractable, imported.local) == (
        False,
        False,
        False,
    )
    assert not imported.usable
    assert any("CKA_ALWAYS_SENSITIVE is false" in p for p in imported.problems)
    assert pool.get_key(imported_id) == imported

    digest = bytes(range(32))
    with pytest.raises(HsmKeyRefusedError, match="refused for signing: CKA_EXTRACTABLE is true"):
        pool.sign_digest(extractable_id, digest, scheme=SignScheme.ECDSA, hash_alg=HashAlg.SHA256)
    with pytest.raises(HsmKeyRefusedError, match="CKA_ALWAYS_SENSITIVE is false"):
        pool.sign_digest(
            imported_id, digest, scheme=SignScheme.RSA_PKCS1V15, hash_alg=HashAlg.SHA256
        )

    results = {r.key.label: r for r in pool.selftest()}
    assert {label: r.ok for label, r in results.items()} == {
        "good ec": True,
        "good ed25519": True,
        "extractable": False,
        "imported": False,
    }
    assert results["good ec"].detail == "signed and verified"
    assert results["good ec"].key == good_ec
    assert results["good ed25519"].key == good_ed
    assert "CKA_EXTRACTABLE" in results["extractable"].detail
    assert "CKA_ALWAYS_SENSITIVE" in results["imported"].detail


def test_key_made_non_extractable_later_stays_refused(
    pool: BlockingSessionPool, raw_session: Any
) -> None:
    # CKA_EXTRACTABLE may be switched off after the fact; the key could have been wrapped
    # out before that, which only CKA_NEVER_EXTRACTABLE still tells.
    key_id, private = _extractable_ec_key(raw_session, "was extractable")
    private[Attribute.EXTRACTABLE] = False
    assert private[Attribute.EXTRACTABLE] is False
    with pytest.raises(pkcs11.AttributeReadOnly):
        private[Attribute.EXTRACTABLE] = True  # and it can never come back

    info = pool.get_key(key_id)
    assert (info.extractable, info.never_extractable, info.always_sensitive) == (
        False,
        False,
        True,
    )
    assert not info.usable
    with pytest.raises(HsmKeyRefusedError, match="CKA_NEVER_EXTRACTABLE is false"):
        pool.sign_digest(key_id, bytes(32), scheme=SignScheme.ECDSA, hash_alg=HashAlg.SHA256)


def test_refusal_is_per_key_and_not_cached(pool: BlockingSessionPool, raw_session: Any) -> None:
    good = pool.generate_key(KeySpec.EC_P256, label="good")
    bad_id, _ = _extractable_ec_key(raw_session, "bad")
    digest = bytes(32)
    # Several rounds so every pooled session has seen (and cached) the good key.
    for _ in range(2 * pool.config.pool_size):
        with pytest.raises(HsmKeyRefusedError):
            pool.sign_digest(bad_id, digest, scheme=SignScheme.ECDSA, hash_alg=HashAlg.SHA256)
        pool.sign_digest(good.key_id, digest, scheme=SignScheme.ECDSA, hash_alg=HashAlg.SHA256)
    assert pool.sessions_in_use == 0


@pytest.mark.parametrize("spec", tuple(KeySpec))
def test_softhsm_supports_every_spec(pool: BlockingSessionPool, spec: KeySpec) -> None:
    assert pool.supports(spec) is True


@pytest.mark.parametrize(
    ("spec", "key_type", "rsa_bits"),
    [
        (KeySpec.RSA_2048, KeyType.RSA, 2048),
        (KeySpec.RSA_3072, KeyType.RSA, 3072),
        (KeySpec.RSA_4096, KeyType.RSA, 4096),
        (KeySpec.EC_P256, KeyType.EC, None),
        (KeySpec.EC_P384, KeyType.EC, None),
        (KeySpec.ED25519, KeyType.EC_EDWARDS, None),
    ],
)
def test_key_spec(spec: KeySpec, key_type: KeyType, rsa_bits: int | None) -> None:
    assert spec.key_type == key_type
    assert KeySpec(spec.value) is spec
    if rsa_bits is not None:
        assert spec.rsa_bits == rsa_bits
