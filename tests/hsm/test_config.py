"""Configuration: finding the module, validating HsmConfig, selecting the token."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hsm import (
    BlockingSessionPool,
    HsmConfig,
    HsmConfigError,
    HsmUnavailableError,
    PinSource,
    find_pkcs11_module,
)
from hsm.config import SOFTHSM2_CANDIDATES
from tests.conftest import TestToken


def test_autodetects_softhsm() -> None:
    installed = [c for c in SOFTHSM2_CANDIDATES if Path(c).is_file()]
    assert installed, "SoftHSM2 is not installed where Kyso looks for it"
    assert find_pkcs11_module() == installed[0]
    assert find_pkcs11_module(None) == find_pkcs11_module("") == installed[0]


def test_explicit_module_path() -> None:
    found = find_pkcs11_module()
    assert find_pkcs11_module(found) == found


@pytest.mark.parametrize(
    "path", ["/nonexistent/libpkcs11.so", "/usr/lib/softhsm", "relative/libsofthsm2.so"]
)
def test_explicit_missing_module(path: str) -> None:
    with pytest.raises(HsmConfigError, match=f"PKCS#11 module not found: {path}") as caught:
        find_pkcs11_module(path)
    assert caught.value.code == "hsm.config"


def test_missing_module_fails_on_open(token: TestToken) -> None:
    pool = BlockingSessionPool(token.config(module_path="/nonexistent/libpkcs11.so"))
    with pytest.raises(HsmConfigError, match="module not found"):
        pool.open()
    assert not pool.healthy


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"pool_size": 0}, "pool size must be between 1 and 256"),
        ({"pool_size": -1}, "pool size must be between 1 and 256"),
        ({"pool_size": 257}, "pool size must be between 1 and 256"),
        ({"acquire_timeout": 0}, "timeouts must be positive"),
        ({"acquire_timeout": -1.0}, "timeouts must be positive"),
        ({"retry_interval": -0.1}, "timeouts must be positive"),
        ({"token_label": None}, "no token selected"),
        ({"token_label": ""}, "no token selected"),
        ({"token_label": None, "token_serial": ""}, "no token selected"),
    ],
)
def test_config_validation(overrides: dict[str, Any], match: str) -> None:
    values: dict[str, Any] = {"token_label": "kyso", "pin": PinSource(env_var="KYSO_HSM_PIN")}
    values.update(overrides)
    with pytest.raises(HsmConfigError, match=match):
        HsmConfig(**values)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({}, (None, 4, 5.0, 2.0)),
        ({"pool_size": 1, "acquire_timeout": 0.1, "retry_interval": 0}, (None, 1, 0.1, 0)),
        ({"pool_size": 256}, (None, 256, 5.0, 2.0)),
    ],
)
def test_config_defaults_and_bounds(
    overrides: dict[str, Any], expected: tuple[object, ...]
) -> None:
    config = HsmConfig(token_label="kyso", **overrides)
    assert (
        config.module_path,
        config.pool_size,
        config.acquire_timeout,
        config.retry_interval,
    ) == expected
    assert config.pin == PinSource()
    with pytest.raises(AttributeError):
        config.pool_size = 8  # type: ignore[misc]


def test_config_is_keyword_only() -> None:
    with pytest.raises(TypeError):
        HsmConfig("/usr/lib/softhsm/libsofthsm2.so", "kyso")  # type: ignore[call-arg]


def test_select_token_by_serial(token: TestToken) -> None:
    config = token.config(token_label=None, token_serial=token.serial)
    with BlockingSessionPool(config) as pool:
        info = pool.token_info()
        assert (info.label, info.serial) == (token.label, token.serial)
        assert "TOKEN_INITIALIZED" in info.flags
        assert "USER_PIN_INITIALIZED" in info.flags
        assert info.manufacturer == "SoftHSM project"


def test_serial_wins_over_label(token: TestToken) -> None:
    config = token.config(token_label="some other token", token_serial=token.serial)
    with BlockingSessionPool(config) as pool:
        assert pool.check().label == token.label


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"token_label": "không có token này"}, "token 'không có token này' is not present"),
        ({"token_label": None, "token_serial": "0123456789abcdef"}, "serial 0123456789abcdef"),
    ],
)
def test_unknown_token(token: TestToken, overrides: dict[str, Any], match: str) -> None:
    pool = BlockingSessionPool(token.config(**overrides))
    with pytest.raises(HsmUnavailableError, match=match) as caught:
        pool.open()
    assert caught.value.code == "hsm.unavailable"
    assert "check that the PKCS#11 module" in caught.value.diagnostics()
    assert not pool.healthy
    pool.close()


def test_operations_before_open_are_refused(token: TestToken) -> None:
    pool = BlockingSessionPool(token.config())
    with pytest.raises(HsmConfigError, match="not open"):
        _ = pool.module
    with pytest.raises(HsmUnavailableError, match="closed"):
        pool.check()
