"""Token provisioning through C_InitToken / C_InitPIN."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from hsm import BlockingSessionPool, HsmConfigError, HsmPinIncorrectError, KeySpec
from hsm.provision import provision_token
from tests.conftest import TestToken, make_token


def test_provision_is_idempotent(token: TestToken) -> None:
    info, created = provision_token(label=token.label, so_pin=token.so_pin, user_pin=token.user_pin)
    assert created is False
    assert (info.label, info.serial) == (token.label, token.serial)
    again, created_again = provision_token(
        label=token.label, so_pin="ignored for an existing token", user_pin=token.user_pin
    )
    assert (again, created_again) == (info, False)


def test_provision_keeps_existing_keys(token: TestToken) -> None:
    with BlockingSessionPool(token.config()) as pool:
        key = pool.generate_key(KeySpec.EC_P256, label="survives")
    provision_token(label=token.label, so_pin=token.so_pin, user_pin=token.user_pin)
    with BlockingSessionPool(token.config()) as pool:
        assert pool.list_keys() == [key]


def test_wrong_user_pin_for_existing_token(token: TestToken) -> None:
    wrong = "sai-" + secrets.token_hex(4)
    with pytest.raises(HsmPinIncorrectError, match="exists but rejects the stored user PIN") as e:
        provision_token(label=token.label, so_pin=token.so_pin, user_pin=wrong)
    assert wrong not in str(e.value)
    assert token.user_pin not in str(e.value)
    # Still usable with the right PIN.
    with BlockingSessionPool(token.config()) as pool:
        assert pool.healthy


def test_provision_vietnamese_label(softhsm_dir: Path, tmp_path: Path) -> None:
    label = "CA phường Bến Thành"  # 22 bytes of UTF-8, within the 32 of CKA_LABEL
    made = make_token(softhsm_dir, tmp_path, label=label)
    with BlockingSessionPool(made.config()) as pool:
        assert pool.token_info().label == label


def test_provision_label_too_long() -> None:
    label = "Công an phường Bến Thành, TP.HCM"  # 32 characters, 40 bytes of UTF-8
    with pytest.raises(HsmConfigError, match="a token label is at most 32 bytes of UTF-8"):
        provision_token(label=label, so_pin="so-pin-1234", user_pin="user-pin-1234")


def test_new_tokens_get_distinct_serials(softhsm_dir: Path, tmp_path: Path) -> None:
    serials = {make_token(softhsm_dir, tmp_path).serial for _ in range(3)}
    assert len(serials) == 3
