"""Secret (AES-256) sealing keys: generation, attributes, AES-GCM sealing, refusals."""

from __future__ import annotations

import secrets
from typing import Any

import pkcs11
import pytest
from pkcs11 import Attribute, KeyType, MechanismFlag, ObjectClass

from hsm import (
    BlockingSessionPool,
    HsmInvalidRequestError,
    HsmKeyNotFoundError,
    HsmKeyRefusedError,
    HsmSealedDataError,
)
from hsm.sealing import MAX_AAD_BYTES, MAX_PLAINTEXT_BYTES, NONCE_BYTES

LABEL = "kyso-test-secrets"
SECRET = b"JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
AAD = b"kyso totp anh.nv"


@pytest.fixture
def sealing(pool: BlockingSessionPool) -> BlockingSessionPool:
    pool.generate_secret_key(LABEL)
    return pool


def test_round_trip_and_fresh_nonces(sealing: BlockingSessionPool) -> None:
    first = sealing.seal(LABEL, SECRET, AAD)
    second = sealing.seal(LABEL, SECRET, AAD)
    assert len(first) == NONCE_BYTES + len(SECRET) + 16
    assert first != second
    assert first[:NONCE_BYTES] != second[:NONCE_BYTES]
    assert SECRET not in first
    assert sealing.unseal(LABEL, first, AAD) == SECRET
    assert sealing.unseal(LABEL, second, AAD) == SECRET
    assert sealing.unseal(LABEL, sealing.seal(LABEL, b"", b""), b"") == b""


def test_other_aad_refused(sealing: BlockingSessionPool) -> None:
    sealed = sealing.seal(LABEL, SECRET, AAD)
    with pytest.raises(HsmSealedDataError, match="does not open"):
        sealing.unseal(LABEL, sealed, b"kyso totp ngoc.ttb")


@pytest.mark.parametrize("where", [0, NONCE_BYTES - 1, NONCE_BYTES, NONCE_BYTES + 5, -1])
def test_changed_byte_refused(sealing: BlockingSessionPool, where: int) -> None:
    sealed = bytearray(sealing.seal(LABEL, SECRET, AAD))
    sealed[where] ^= 0x01
    with pytest.raises(HsmSealedDataError) as raised:
        sealing.unseal(LABEL, bytes(sealed), AAD)
    assert SECRET.decode() not in str(raised.value)
    # A refused tag is the data's fault, not the token's: no reopen, the pool stays up.
    assert sealing.healthy
    assert sealing.unseal(LABEL, sealing.seal(LABEL, SECRET, AAD), AAD) == SECRET


@pytest.mark.parametrize("size", [0, NONCE_BYTES + 15, NONCE_BYTES + MAX_PLAINTEXT_BYTES + 17])
def test_bad_length_refused(sealing: BlockingSessionPool, size: int) -> None:
    with pytest.raises(HsmSealedDataError, match="bytes long"):
        sealing.unseal(LABEL, secrets.token_bytes(size), AAD)


def test_inputs_bounded(sealing: BlockingSessionPool) -> None:
    with pytest.raises(HsmInvalidRequestError, match="at most"):
        sealing.seal(LABEL, b"x" * (MAX_PLAINTEXT_BYTES + 1), AAD)
    with pytest.raises(HsmInvalidRequestError, match="associated data"):
        sealing.seal(LABEL, SECRET, b"a" * (MAX_AAD_BYTES + 1))


def test_other_key_does_not_open(sealing: BlockingSessionPool) -> None:
    sealing.generate_secret_key("kyso-test-other")
    sealed = sealing.seal(LABEL, SECRET, AAD)
    with pytest.raises(HsmSealedDataError):
        sealing.unseal("kyso-test-other", sealed, AAD)


def test_attributes_on_the_token(sealing: BlockingSessionPool, raw_session: Any) -> None:
    info = sealing.find_secret_key(LABEL)
    assert info is not None
    assert info.usable
    assert info.bits == 256
    assert info.local
    key = raw_session.get_key(ObjectClass.SECRET_KEY, KeyType.AES, label=LABEL)
    read = key.get_attributes(
        [
            Attribute.TOKEN,
            Attribute.PRIVATE,
            Attribute.SENSITIVE,
            Attribute.ALWAYS_SENSITIVE,
            Attribute.EXTRACTABLE,
            Attribute.NEVER_EXTRACTABLE,
            Attribute.ENCRYPT,
            Attribute.DECRYPT,
            Attribute.SIGN,
            Attribute.VERIFY,
            Attribute.WRAP,
            Attribute.UNWRAP,
            Attribute.DERIVE,
            Attribute.VALUE_LEN,
        ]
    )
    assert read == {
        Attribute.TOKEN: True,
        Attribute.PRIVATE: True,
        Attribute.SENSITIVE: True,
        Attribute.ALWAYS_SENSITIVE: True,
        Attribute.EXTRACTABLE: False,
        Attribute.NEVER_EXTRACTABLE: True,
        Attribute.ENCRYPT: True,
        Attribute.DECRYPT: True,
        Attribute.SIGN: False,
        Attribute.VERIFY: False,
        Attribute.WRAP: False,
        Attribute.UNWRAP: False,
        Attribute.DERIVE: False,
        Attribute.VALUE_LEN: 32,
    }
    assert bytes(key[Attribute.ID]) == info.key_id
    with pytest.raises(pkcs11.AttributeSensitive):
        key[Attribute.VALUE]
    # A sealing key is no signing key: the signing inventory does not show it.
    assert [k.label for k in sealing.list_keys()] == []


def test_missing_and_duplicate_labels(pool: BlockingSessionPool) -> None:
    assert pool.find_secret_key(LABEL) is None
    with pytest.raises(HsmKeyNotFoundError, match=LABEL):
        pool.seal(LABEL, SECRET, AAD)
    pool.generate_secret_key(LABEL)
    with pytest.raises(HsmInvalidRequestError, match="exists already"):
        pool.generate_secret_key(LABEL)


def _raw_key(raw_session: Any, label: str, **template: bool) -> None:
    attributes = {
        Attribute.TOKEN: True,
        Attribute.PRIVATE: True,
        Attribute.SENSITIVE: True,
        Attribute.EXTRACTABLE: False,
        Attribute.WRAP: False,
        Attribute.UNWRAP: False,
        Attribute.DERIVE: False,
    }
    attributes.update({getattr(Attribute, name.upper()): value for name, value in template.items()})
    raw_session.generate_key(
        KeyType.AES,
        256,
        label=label,
        store=True,
        capabilities=MechanismFlag.ENCRYPT | MechanismFlag.DECRYPT,
        template=attributes,
    )


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ({"extractable": True}, "CKA_EXTRACTABLE is true"),
        ({"sensitive": False}, "CKA_SENSITIVE is false"),
        ({"wrap": True}, "CKA_WRAP"),
        ({"derive": True}, "CKA_DERIVE"),
    ],
)
def test_weak_key_refused(
    pool: BlockingSessionPool, raw_session: Any, template: dict[str, bool], problem: str
) -> None:
    _raw_key(raw_session, LABEL, **template)
    info = pool.find_secret_key(LABEL)
    assert info is not None
    assert not info.usable
    assert any(problem in p for p in info.problems)
    with pytest.raises(HsmKeyRefusedError, match=problem):
        pool.seal(LABEL, SECRET, AAD)


def test_two_keys_with_one_label_refused(pool: BlockingSessionPool, raw_session: Any) -> None:
    _raw_key(raw_session, LABEL)
    _raw_key(raw_session, LABEL)
    with pytest.raises(HsmKeyRefusedError, match="several"):
        pool.seal(LABEL, SECRET, AAD)
    with pytest.raises(HsmKeyRefusedError, match="several"):
        pool.find_secret_key(LABEL)
