"""Settings: environment, ``kyso.toml``, the token label file, and where the PIN is not."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

from hsm import HsmConfig
from kyso.errors import SettingsError
from kyso.settings import PIN_ENV_VAR, Settings, load_settings


def test_defaults(tmp_path):
    settings = Settings(data_dir=tmp_path)
    assert settings.host == "127.0.0.1"
    assert settings.port == 8000
    assert settings.migrate_on_start is True
    assert settings.sqlalchemy_url == f"sqlite:///{tmp_path.resolve() / 'kyso.db'}"
    assert settings.secrets_dir == tmp_path.resolve() / "secrets"


def test_environment_with_kyso_prefix(monkeypatch, tmp_path):
    monkeypatch.setenv("KYSO_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("KYSO_HOST", "0.0.0.0")
    monkeypatch.setenv("KYSO_PORT", "9001")
    monkeypatch.setenv("KYSO_DATABASE_URL", "postgresql+psycopg://kyso@db/kyso")
    monkeypatch.setenv("KYSO_MIGRATE_ON_START", "false")
    monkeypatch.setenv("KYSO_HSM_TOKEN_LABEL", "Công an xã")
    monkeypatch.setenv("KYSO_HSM_POOL_SIZE", "8")
    monkeypatch.setenv("KYSO_LOG_FORMAT", "text")
    monkeypatch.setenv("PORT", "1")  # no prefix: ignored

    settings = Settings()

    assert settings.data_path == tmp_path.resolve()
    assert settings.host == "0.0.0.0"
    assert settings.port == 9001
    assert settings.sqlalchemy_url == "postgresql+psycopg://kyso@db/kyso"
    assert settings.migrate_on_start is False
    assert settings.hsm_token_label == "Công an xã"
    assert settings.hsm_pool_size == 8
    assert settings.log_format == "text"


def test_toml_from_kyso_config_and_env_wins(monkeypatch, tmp_path):
    config = tmp_path / "conf" / "kyso.toml"
    config.parent.mkdir()
    config.write_text(
        'host = "0.0.0.0"\nport = 9100\nhsm_token_label = "Phường Bến Thành"\n'
        'log_level = "DEBUG"\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("KYSO_CONFIG", str(config))
    monkeypatch.setenv("KYSO_PORT", "9200")

    settings = load_settings()

    assert settings.port == 9200
    assert settings.host == "0.0.0.0"
    assert settings.hsm_token_label == "Phường Bến Thành"
    assert settings.log_level == "DEBUG"


def test_init_arguments_win_over_env_and_toml(monkeypatch, tmp_path):
    config = tmp_path / "kyso.toml"
    config.write_text("port = 9100\n")
    monkeypatch.setenv("KYSO_CONFIG", str(config))
    monkeypatch.setenv("KYSO_PORT", "9200")
    assert load_settings(port=9300).port == 9300


def test_kyso_toml_in_the_working_directory(monkeypatch, tmp_path):
    (tmp_path / "kyso.toml").write_text("port = 9400\n")
    monkeypatch.chdir(tmp_path)
    assert Settings().port == 9400


def test_an_explicit_config_file_that_is_missing_is_an_error(monkeypatch, tmp_path):
    monkeypatch.setenv("KYSO_CONFIG", str(tmp_path / "kyso-typo.toml"))
    with pytest.raises(SettingsError, match=r"KYSO_CONFIG names .*kyso-typo\.toml"):
        load_settings()


@pytest.mark.parametrize("value", ["0", "65536", "-1", "http"])
def test_invalid_port_from_env(monkeypatch, value):
    monkeypatch.setenv("KYSO_PORT", value)
    with pytest.raises(SettingsError, match=r"invalid settings.*port") as info:
        load_settings()
    assert info.value.code == "kyso.settings"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"port": 70000}, "port"),
        ({"hsm_pool_size": 0}, "hsm_pool_size"),
        ({"hsm_acquire_timeout": 0}, "hsm_acquire_timeout"),
        ({"log_format": "xml"}, "log_format"),
        ({"tsa_url": "ftp://tsa.example.vn"}, "tsa_url"),
        ({"tsa_url": "https://tsa.example.vn"}, "KYSO_TSA_URL"),  # with the default B-LT
        ({"signing_level": "B-X"}, "signing_level"),
    ],
)
def test_invalid_values_are_settings_errors(overrides, field):
    with pytest.raises(SettingsError, match=field):
        load_settings(**overrides)


def test_an_external_tsa_with_a_level_it_can_serve():
    settings = load_settings(tsa_url="https://tsa.example.vn/tsa", signing_level="B-T")
    assert settings.tsa_url == "https://tsa.example.vn/tsa"


def test_invalid_toml_is_a_settings_error(monkeypatch, tmp_path):
    config = tmp_path / "kyso.toml"
    config.write_text("port = [\n")
    monkeypatch.setenv("KYSO_CONFIG", str(config))
    with pytest.raises(SettingsError, match="invalid settings"):
        load_settings()


def test_settings_error_is_one_line(monkeypatch):
    # The CLI prints the message as its one-line diagnosis.
    monkeypatch.setenv("KYSO_PORT", "http")
    monkeypatch.setenv("KYSO_LOG_LEVEL", "LOUD")
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert "\n" not in info.value.message
    assert "port" in info.value.message
    assert "log_level" in info.value.message


def test_token_label_from_the_secrets_directory(tmp_path):
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "token-label").write_text("kyso-1a2b3c4d\n", encoding="utf-8")

    config = Settings(data_dir=tmp_path).hsm_config()

    assert isinstance(config, HsmConfig)
    assert config.token_label == "kyso-1a2b3c4d"
    assert config.token_serial is None
    assert config.pin.env_var == PIN_ENV_VAR
    assert config.pin.file == tmp_path.resolve() / "secrets" / "user-pin"


def test_configured_label_wins_over_the_file(tmp_path):
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "token-label").write_text("from-file\n")
    config = Settings(data_dir=tmp_path, hsm_token_label="configured").hsm_config()
    assert config.token_label == "configured"


def test_serial_needs_no_label(tmp_path):
    config = Settings(data_dir=tmp_path, hsm_token_serial="0123abcd").hsm_config()
    assert config.token_serial == "0123abcd"
    assert config.token_label is None


def test_missing_token_label_gives_a_hint(tmp_path):
    settings = Settings(data_dir=tmp_path)
    with pytest.raises(SettingsError, match="KYSO_HSM_TOKEN_LABEL") as info:
        settings.hsm_config()
    assert str(tmp_path.resolve() / "secrets" / "token-label") in info.value.message
    assert "make run" in info.value.message
    assert info.value.code == "kyso.settings"


def test_hsm_config_carries_the_pool_settings(tmp_path):
    pin_file = tmp_path / "pin"
    config = Settings(
        data_dir=tmp_path,
        hsm_module="/usr/lib/softhsm/libsofthsm2.so",
        hsm_token_label="t",
        hsm_pin_file=pin_file,
        hsm_pool_size=2,
        hsm_acquire_timeout=1.5,
        hsm_retry_interval=0,
    ).hsm_config()
    assert config.module_path == "/usr/lib/softhsm/libsofthsm2.so"
    assert config.pin.file == pin_file
    assert (config.pool_size, config.acquire_timeout, config.retry_interval) == (2, 1.5, 0)


@pytest.mark.parametrize("source", ["env", "file"])
def test_pin_is_never_in_settings_or_hsm_config(monkeypatch, tmp_path, source):
    pin = f"pin-{secrets.token_hex(8)}"
    pin_file = tmp_path / "user-pin"
    if source == "env":
        monkeypatch.setenv(PIN_ENV_VAR, pin)
        pin_file.write_text("other-pin\n")
    else:
        pin_file.write_text(pin + "\n")

    settings = Settings(data_dir=tmp_path, hsm_token_label="t", hsm_pin_file=pin_file)
    config = settings.hsm_config()

    for text in (repr(settings), str(settings), settings.model_dump_json(), repr(config)):
        assert pin not in text
    assert config.pin.read() == pin


def test_pin_is_read_at_login_time(tmp_path):
    pin_file = tmp_path / "user-pin"
    pin_file.write_text("first-pin\n")
    config = Settings(data_dir=tmp_path, hsm_token_label="t", hsm_pin_file=pin_file).hsm_config()
    pin_file.write_text("second-pin\n")
    assert config.pin.read() == "second-pin"


def _embedded_conf(data_dir: Path) -> Path:
    conf = data_dir / "softhsm" / "softhsm2.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text("directories.tokendir = /nonexistent\n")
    return conf


# The test process already loaded SoftHSM with the conftest's SOFTHSM2_CONF; these tests
# change the variable only through monkeypatch, which restores it afterwards.


def test_apply_softhsm_conf_sets_the_embedded_conf_when_unset(monkeypatch, tmp_path):
    conf = _embedded_conf(tmp_path)
    monkeypatch.delenv("SOFTHSM2_CONF")
    Settings(data_dir=tmp_path).apply_softhsm_conf()
    assert os.environ["SOFTHSM2_CONF"] == str(conf.resolve())


def test_apply_softhsm_conf_keeps_an_existing_value(monkeypatch, tmp_path):
    _embedded_conf(tmp_path)
    monkeypatch.setenv("SOFTHSM2_CONF", "/etc/elsewhere/softhsm2.conf")
    Settings(data_dir=tmp_path).apply_softhsm_conf()
    assert os.environ["SOFTHSM2_CONF"] == "/etc/elsewhere/softhsm2.conf"


def test_apply_softhsm_conf_without_an_embedded_conf(monkeypatch, tmp_path):
    monkeypatch.delenv("SOFTHSM2_CONF")
    Settings(data_dir=tmp_path).apply_softhsm_conf()
    assert "SOFTHSM2_CONF" not in os.environ


def test_apply_softhsm_conf_explicit_setting_wins(monkeypatch, tmp_path):
    explicit = tmp_path / "mine.conf"
    explicit.write_text("")
    _embedded_conf(tmp_path)
    monkeypatch.setenv("SOFTHSM2_CONF", "/etc/elsewhere/softhsm2.conf")
    Settings(data_dir=tmp_path, softhsm_conf=explicit).apply_softhsm_conf()
    assert os.environ["SOFTHSM2_CONF"] == str(explicit.resolve())
