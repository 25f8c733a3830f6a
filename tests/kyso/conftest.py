"""Isolation for the composition-root tests: no stray ``KYSO_*`` setting, no ``kyso.toml``
from the working directory, and the logging set-up restored after each test."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

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
