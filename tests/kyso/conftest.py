"""Isolation for the composition-root tests: no stray ``KYSO_*`` setting, no ``kyso.toml``
from the working directory, and the logging set-up restored after each test."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hsm import BlockingSessionPool
from kyso.access.tokens import ensure_secrets_key
from tests.conftest import TestToken, make_token

_LOGGERS = ("", "uvicorn", "uvicorn.error", "uvicorn.access", "alembic")


@pytest.fixture(autouse=True)
def isolated_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Settings come only from what each test sets (``make test`` exports KYSO_DATA_DIR)."""
    for name in list(os.environ):
        if name.startswith("KYSO_") and not name.startswith("KYSO_TEST_"):
            monkeypatch.delenv(name)
    # No stray kyso.toml: the working directory is the test's own.
    monkeypatch.chdir(tmp_path)


@pytest.fixture(autouse=True)
def restored_logging() -> Iterator[None]:
    """``create_app`` replaces the root handlers; put back what pytest installed."""
    saved = [
        (
            logging.getLogger(name),
            list(logging.getLogger(name).handlers),
            logging.getLogger(name).level,
            logging.getLogger(name).propagate,
            logging.getLogger(name).disabled,
        )
        for name in _LOGGERS
    ]
    yield
    for logger, handlers, level, propagate, disabled in saved:
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate
        logger.disabled = disabled


KYSO = shutil.which("kyso", path=str(Path(sys.executable).parent)) or shutil.which("kyso")
"""The console script installed next to the interpreter running the tests."""


@dataclass
class Kyso:
    """Runs ``kyso`` with an environment pointing at one test token and data dir."""

    env: dict[str, str]
    cwd: Path
    timeout: float = 60.0

    def __call__(self, *args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
        assert KYSO, "the kyso console script is not installed next to the interpreter"
        return subprocess.run(
            [KYSO, *args],
            env=self.env | extra_env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=self.timeout,
            check=False,
        )

    def ok(self, *args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
        result = self(*args, **extra_env)
        assert result.returncode == 0, f"kyso {' '.join(args)}: {result.stderr}"
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "--json").stdout)


@pytest.fixture
def token(softhsm_dir: Path, tmp_path: Path) -> TestToken:
    """A new token with the key that seals the accounts' TOTP secrets, which ``kyso init``
    makes: every store of the service seals with it, whatever else the test sets up."""
    made = make_token(softhsm_dir, tmp_path)
    with BlockingSessionPool(made.config(pool_size=1)) as pool:
        ensure_secrets_key(pool)
    return made


@pytest.fixture
def kyso(token: TestToken, tmp_path: Path) -> Kyso:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KYSO_")}
    env |= {
        "SOFTHSM2_CONF": os.environ["SOFTHSM2_CONF"],
        "KYSO_DATA_DIR": str(tmp_path / "data"),
        "KYSO_HSM_TOKEN_LABEL": token.label,
        "KYSO_HSM_PIN_FILE": str(token.pin_file),
        "PYTHONIOENCODING": "utf-8",
    }
    return Kyso(env=env, cwd=tmp_path)


@pytest.fixture
def kyso_db(kyso: Kyso, database_url: str) -> Kyso:
    """``kyso`` on SQLite and on PostgreSQL."""
    kyso.env["KYSO_DATABASE_URL"] = database_url
    return kyso
