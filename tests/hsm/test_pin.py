"""The user PIN: where it is read from, what happens when the token rejects or locks it,
and that it never shows in an error, a ``repr``, a traceback or a log record."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest
from pkcs11 import TokenFlag

from hsm import (
    BlockingSessionPool,
    HsmConfigError,
    HsmError,
    HsmPinIncorrectError,
    HsmPinLockedError,
    PinSource,
)
from hsm.module import Pkcs11Module
from tests.conftest import TestToken

WRONG_PIN = "sai-mật-khẩu-7391"
"""Distinctive enough that finding it in any text means it leaked."""

CKA_OS_TOKENFLAGS_HEADER = bytes.fromhex("000000008000534b0000000000000002")
"""How SoftHSM2's file store starts the token-flags attribute in ``token.object``:
the attribute type (CKA_OS_TOKENFLAGS) and the value kind (unsigned long), both as
big-endian u64; the flags follow as one more big-endian u64."""


def _texts(ex: BaseException) -> str:
    """Everything about an error that could end up in a log or a response."""
    parts = [str(ex), repr(ex), "".join(traceback.format_exception(ex))]
    if isinstance(ex, HsmError):
        parts += [ex.message, ex.diagnostics(), ex.code]
    return "\n".join(parts)


def _set_token_flags(module: Pkcs11Module, token: TestToken, *, add: int, remove: int = 0) -> None:
    """Rewrite the token's flags in its SoftHSM2 files, then make the module re-read them.

    SoftHSM itself never locks a user PIN, so this is the only way to get a token that
    reports CKF_USER_PIN_LOCKED or CKF_USER_PIN_FINAL_TRY.
    """
    path = token.token_dir() / "token.object"
    data = bytearray(path.read_bytes())
    at = data.find(CKA_OS_TOKENFLAGS_HEADER)
    assert at >= 0, "token flags not found in token.object"
    assert data.find(CKA_OS_TOKENFLAGS_HEADER, at + 1) == -1
    start = at + len(CKA_OS_TOKENFLAGS_HEADER)
    flags = int.from_bytes(data[start : start + 8], "big")
    assert flags & TokenFlag.TOKEN_INITIALIZED, "not the flags word"
    data[start : start + 8] = ((flags | add) & ~remove).to_bytes(8, "big")
    path.write_bytes(bytes(data))
    module.reinitialize()


def _token_flags(module: Pkcs11Module, token: TestToken) -> TokenFlag:
    return TokenFlag(module.lib.get_token(token_label=token.label).flags)


def test_wrong_pin_is_tried_once(token: TestToken, caplog: pytest.LogCaptureFixture) -> None:
    token.pin_file.write_text(WRONG_PIN + "\n")
    pool = BlockingSessionPool(token.config())
    caplog.set_level(logging.DEBUG)

    with pytest.raises(HsmPinIncorrectError, match="rejected the user PIN") as first:
        pool.open()
    assert first.value.code == "hsm.pin_incorrect"
    assert "will not retry a rejected PIN" in first.value.diagnostics()
    assert not pool.healthy

    # Every attempt counts towards the token's lock-out: the same PIN is not sent again,
    # neither by another open() nor by an operation trying to bring the pool back.
    with pytest.raises(HsmPinIncorrectError, match="already rejected this user PIN") as second:
        pool.open()
    with pytest.raises(HsmPinIncorrectError, match="already rejected this user PIN") as third:
        pool.check()
    assert not pool.healthy

    for ex in (first.value, second.value, third.value):
        assert WRONG_PIN not in _texts(ex)
        assert not isinstance(ex, HsmPinLockedError)
    assert WRONG_PIN not in caplog.text
    assert WRONG_PIN not in repr(vars(pool))

    # A corrected PIN is a different PIN: the pool logs in with it on the next call.
    token.pin_file.write_text(token.user_pin + "\n")
    assert pool.check().label == token.label
    assert pool.healthy
    pool.close()


def test_pin_from_environment_wins_over_file(
    token: TestToken, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong_file = tmp_path / "wrong.pin"
    wrong_file.write_text(WRONG_PIN)
    source = PinSource(env_var="KYSO_TEST_HSM_PIN", file=wrong_file)
    monkeypatch.setenv("KYSO_TEST_HSM_PIN", token.user_pin)
    assert source.read() == token.user_pin
    with BlockingSessionPool(token.config(pin=source)) as pool:
        assert pool.check().serial == token.serial


def test_environment_pin_is_used_even_when_wrong(
    token: TestToken, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KYSO_TEST_HSM_PIN", WRONG_PIN)
    source = PinSource(env_var="KYSO_TEST_HSM_PIN", file=token.pin_file)
    with pytest.raises(HsmPinIncorrectError) as caught:
        BlockingSessionPool(token.config(pin=source)).open()
    assert WRONG_PIN not in _texts(caught.value)


@pytest.mark.parametrize("value", [None, ""])
def test_unset_environment_falls_back_to_file(
    token: TestToken, monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv("KYSO_TEST_HSM_PIN", raising=False)
    else:
        monkeypatch.setenv("KYSO_TEST_HSM_PIN", value)
    source = PinSource(env_var="KYSO_TEST_HSM_PIN", file=token.pin_file)
    assert source.read() == token.user_pin  # the trailing newline is not part of the PIN
    with BlockingSessionPool(token.config(pin=source)) as pool:
        assert pool.healthy


@pytest.mark.parametrize(
    ("make_source", "match"),
    [
        (lambda tmp: PinSource(), "no user PIN configured"),
        (lambda tmp: PinSource(env_var="KYSO_TEST_UNSET_PIN"), "no user PIN configured"),
        (lambda tmp: PinSource(file=tmp / "missing.pin"), "cannot read the PIN file .*missing"),
        (lambda tmp: PinSource(file=tmp), "cannot read the PIN file"),
        (lambda tmp: PinSource(file=tmp / "empty.pin"), "PIN file .* is empty or longer than 255"),
        (lambda tmp: PinSource(file=tmp / "long.pin"), "is empty or longer than 255"),
    ],
)
def test_pin_source_errors(
    token: TestToken,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    make_source: Callable[[Path], PinSource],
    match: str,
) -> None:
    monkeypatch.delenv("KYSO_TEST_UNSET_PIN", raising=False)
    (tmp_path / "empty.pin").write_text("\n")
    long_pin = WRONG_PIN + "x" * 256
    (tmp_path / "long.pin").write_text(long_pin)
    source = make_source(tmp_path)
    with pytest.raises(HsmConfigError, match=match) as caught:
        BlockingSessionPool(token.config(pin=source)).open()
    assert caught.value.code == "hsm.config"
    assert WRONG_PIN not in _texts(caught.value)


def test_too_long_pin_from_environment_is_not_echoed(
    token: TestToken, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KYSO_TEST_HSM_PIN", WRONG_PIN * 20)
    with pytest.raises(HsmConfigError, match="environment variable KYSO_TEST_HSM_PIN") as caught:
        PinSource(env_var="KYSO_TEST_HSM_PIN").read()
    assert WRONG_PIN not in _texts(caught.value)


@pytest.mark.parametrize(
    ("flag", "match"),
    [
        (TokenFlag.USER_PIN_LOCKED, "user PIN of token .* is locked"),
        (TokenFlag.USER_PIN_FINAL_TRY, "user PIN of token .* is on its final try"),
        (TokenFlag.USER_PIN_LOCKED | TokenFlag.USER_PIN_FINAL_TRY, "is locked"),
    ],
)
def test_locked_pin_is_not_tried(
    token: TestToken, module: Pkcs11Module, flag: TokenFlag, match: str
) -> None:
    assert int(TokenFlag.USER_PIN_LOCKED) == 0x00040000
    assert int(TokenFlag.USER_PIN_FINAL_TRY) == 0x00020000
    _set_token_flags(module, token, add=flag)
    assert _token_flags(module, token) & flag == flag

    # The flags are checked before the PIN is even read: a correct PIN, a wrong one and
    # no PIN source at all give the same answer, and nothing is sent to the token.
    for source in (
        PinSource(file=token.pin_file),
        PinSource(env_var="KYSO_TEST_UNSET_PIN"),
        PinSource(),
    ):
        with pytest.raises(HsmPinLockedError, match=match) as caught:
            BlockingSessionPool(token.config(pin=source)).open()
        assert caught.value.code == "hsm.pin_locked"
        assert not isinstance(caught.value, HsmPinIncorrectError)
        assert "security officer must unlock" in caught.value.diagnostics()
        assert token.user_pin not in _texts(caught.value)
    # The flag is still there: no login reset it.
    assert _token_flags(module, token) & flag == flag

    _set_token_flags(module, token, add=0, remove=flag)
    with BlockingSessionPool(token.config()) as pool:
        assert pool.healthy


def test_pin_lock_seen_on_recovery(token: TestToken, module: Pkcs11Module) -> None:
    pool = BlockingSessionPool(token.config())
    pool.open()
    try:
        _set_token_flags(module, token, add=TokenFlag.USER_PIN_FINAL_TRY)
        # The re-initialisation killed the pool's sessions; bringing them back must not
        # spend the last attempt.
        with pytest.raises(HsmPinLockedError, match="final try"):
            pool.check()
        assert not pool.healthy
    finally:
        pool.close()
